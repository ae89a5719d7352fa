package web

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
)

// Config is the web page's section of the configuration (web.*).
type Config struct {
	// Enabled serves the page on http.listen, beside /metrics and
	// /healthz.
	Enabled bool `yaml:"enabled"`
	// Users may log in. Beyond loopback the page asks everyone to log in
	// and is refused without users; on loopback anyone on the machine may
	// use it without.
	Users []User `yaml:"users"`
	// SessionTTL logs a user out after this long without a visit.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// MaxUpload bounds one uploaded photo (bytes); a request carrying more
	// is refused before anything is read into memory beyond it.
	MaxUpload int64 `yaml:"max_upload"`
	// MaxFiles bounds the photos of one upload.
	MaxFiles int `yaml:"max_files"`
	// VisitSamples is how many sightings of a visit one click stores
	// (spread over the visit).
	VisitSamples int `yaml:"visit_samples"`
	// Unsure: a visit named with a confidence below this comes right after
	// the unknown ones in the inbox.
	Unsure float64 `yaml:"unsure"`
	// StrangerLabel is what "not my pet" stores: an animal that is none of
	// yours. It must be one of learner.no_pet_labels, so it is never
	// announced.
	StrangerLabel string `yaml:"stranger_label"`
	// NeitherLabel is what "neither" stores: no pet in view.
	NeitherLabel string `yaml:"neither_label"`
}

// User is one person who may log in. PasswordHash is an argon2id hash in
// the PHC format ($argon2id$v=19$m=...,t=...,p=...$salt$hash, as `whisker
// passwd` makes) or a bcrypt hash ($2a$, $2b$, $2y$).
type User struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"`
}

// Default serves the page, with sessions of 30 days, photos up to 5 MiB,
// 10 photos at a time and 6 samples per labelled visit.
func Default() Config {
	return Config{Enabled: true, SessionTTL: 30 * 24 * time.Hour, MaxUpload: 5 << 20, MaxFiles: 10, VisitSamples: 6,
		Unsure: 0.8, StrangerLabel: "stranger", NeitherLabel: "neither"}
}

var userName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// Validate names the first bad key (web.*) with its value. listen is
// http.listen; maxPayload is mqtt.max_payload, which bounds a labelled
// photo once encoded.
func (c *Config) Validate(listen string, maxPayload int) error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: web.%s: %v %s", key, val, why)
	}
	if !c.Enabled {
		return nil
	}
	switch {
	case c.SessionTTL < time.Minute || c.SessionTTL > 365*24*time.Hour:
		return bad("session_ttl", c.SessionTTL, "must be between 1m and 8760h")
	case c.MaxUpload < 1024 || c.MaxUpload > int64(maxPayload)/4*3-4096:
		return bad("max_upload", c.MaxUpload, fmt.Sprintf("must be between 1024 and %d bytes (a photo is sent base64-encoded within mqtt.max_payload %d)", int64(maxPayload)/4*3-4096, maxPayload))
	case c.MaxFiles < 1 || c.MaxFiles > 100:
		return bad("max_files", c.MaxFiles, "must be 1 to 100")
	case c.VisitSamples < 1 || c.VisitSamples > protocol.MaxBatch:
		return bad("visit_samples", c.VisitSamples, fmt.Sprintf("must be 1 to %d", protocol.MaxBatch))
	case !(c.Unsure >= 0 && c.Unsure <= 1):
		return bad("unsure", c.Unsure, "must be between 0 and 1")
	}
	for key, l := range map[string]string{"stranger_label": c.StrangerLabel, "neither_label": c.NeitherLabel} {
		if err := protocol.CheckLabelName(l); err != nil {
			return bad(key, fmt.Sprintf("%q", l), "is not a label name: "+err.Error())
		}
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case !userName.MatchString(u.Name):
			return bad(fmt.Sprintf("users[%d].name", i), fmt.Sprintf("%q", u.Name), "must be 1-64 letters, digits, '.', '_', '@' or '-'")
		case seen[strings.ToLower(u.Name)]:
			return bad(fmt.Sprintf("users[%d].name", i), fmt.Sprintf("%q", u.Name), "is given twice")
		}
		seen[strings.ToLower(u.Name)] = true
		if _, err := parseHash(u.PasswordHash); err != nil {
			return bad(fmt.Sprintf("users[%d].password_hash", i), "(hidden)", "is not a usable hash: "+err.Error()+" (`whisker passwd` makes one)")
		}
	}
	if listen != "" && !Loopback(listen) && len(c.Users) == 0 {
		return bad("users", "[]", fmt.Sprintf("must name at least one user: http.listen %q is reachable beyond this machine, and the page changes what the camera knows (`whisker passwd` makes a password hash; or listen on 127.0.0.1, or set web.enabled: false)", listen))
	}
	return nil
}

// Loopback says whether a listen address (host:port) is reachable only
// from this machine.
func Loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
