package inbox

import (
	"fmt"
	"time"
)

// Config bounds the inbox (the inbox section of the configuration).
type Config struct {
	// MaxCount, MaxAge and MaxBytes bound what is kept: the oldest
	// sightings go first when any is exceeded.
	MaxCount int           `yaml:"max_count"`
	MaxAge   time.Duration `yaml:"max_age"`
	MaxBytes int64         `yaml:"max_bytes"`
	// KeepEvery thins a visit: a sighting is kept when this long has
	// passed since the visit's last kept one, or when its name differs
	// from that one's (every sighting still counts in the visit).
	KeepEvery time.Duration `yaml:"keep_every"`
	// VisitGap ends a visit: a sighting this long after the visit's last
	// one starts a new visit.
	VisitGap time.Duration `yaml:"visit_gap"`
}

// Default keeps up to 3000 sightings, three days and 256 MiB, one
// sighting every 2 s of a visit, and ends a visit after 20 s unseen.
func Default() Config {
	return Config{MaxCount: 3000, MaxAge: 72 * time.Hour, MaxBytes: 256 << 20, KeepEvery: 2 * time.Second, VisitGap: 20 * time.Second}
}

// Validate names the first bad key (inbox.*) with its value.
func (c *Config) Validate() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: inbox.%s: %v %s", key, val, why)
	}
	switch {
	case c.MaxCount < 1 || c.MaxCount > 1_000_000:
		return bad("max_count", c.MaxCount, "must be 1 to 1000000 sightings")
	case c.MaxAge < time.Minute:
		return bad("max_age", c.MaxAge, "must be at least 1m")
	case c.MaxBytes < 1<<20:
		return bad("max_bytes", c.MaxBytes, "must be at least 1048576 (1 MiB)")
	case c.KeepEvery < 0 || c.KeepEvery > time.Hour:
		return bad("keep_every", c.KeepEvery, "must be 0s (keep every sighting) to 1h")
	case c.VisitGap < time.Second || c.VisitGap > 24*time.Hour:
		return bad("visit_gap", c.VisitGap, "must be 1s to 24h")
	}
	return nil
}
