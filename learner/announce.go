package learner

import (
	"fmt"
	"time"
)

// AnnouncerConfig says how much agreement announces a pet.
type AnnouncerConfig struct {
	// A pet is announced when at least N of the last M frames name it
	// (frames below the threshold count as Unknown). Defaults 3 of 5.
	N int
	M int
	// MaxGap forgets the frames seen before a gap this long (a stalled
	// camera); 0 never does.
	MaxGap time.Duration
}

func (c AnnouncerConfig) withDefaults() AnnouncerConfig {
	if c.N == 0 && c.M == 0 {
		c.N, c.M = 3, 5
	}
	return c
}

// Validate names a bad setting.
func (c AnnouncerConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.M < 1 || c.M > 1000:
		return fmt.Errorf("announce window M = %d: must be between 1 and 1000 frames", c.M)
	case c.N < 1 || c.N > c.M:
		return fmt.Errorf("announce agreement N = %d: must be between 1 and M = %d", c.N, c.M)
	case c.MaxGap < 0:
		return fmt.Errorf("announce max gap %v is negative", c.MaxGap)
	}
	return nil
}

// Event kinds.
const (
	Arrived = "arrived"
	Left    = "left"
)

// Event is a change of the announced pet.
type Event struct {
	Kind  string    `json:"kind"` // Arrived or Left
	Label string    `json:"label"`
	At    time.Time `json:"at"`
	// Frames is how many of the window's frames named the pet, and
	// Confidence their mean confidence (0 for Left).
	Frames     int     `json:"frames"`
	Confidence float64 `json:"confidence,omitempty"`
}

// Announcer turns per-frame predictions into announcements, so that one
// odd frame never fires an automation: a pet arrives when N of the last M
// frames name it, and leaves when none of the last M frames does (or
// another pet arrives). It holds no clock: the caller passes each frame's
// time. It is not safe for concurrent use; one goroutine feeds it.
type Announcer struct {
	cfg     AnnouncerConfig
	window  []observation // the last M frames, oldest first
	current string
}

type observation struct {
	label string
	conf  float64
	at    time.Time
}

// NewAnnouncer checks cfg and returns an announcer with no pet present.
func NewAnnouncer(cfg AnnouncerConfig) (*Announcer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Announcer{cfg: cfg, window: make([]observation, 0, cfg.M)}, nil
}

// Current is the pet announced now, or "".
func (a *Announcer) Current() string { return a.current }

// Observe feeds one frame: its label after the open-set threshold (a class,
// or Unknown) and the confidence of that label. It returns the events the
// frame causes: none, one, or two when one pet replaces another (Left,
// then Arrived).
func (a *Announcer) Observe(at time.Time, label string, confidence float64) []Event {
	var events []Event
	if n := len(a.window); a.cfg.MaxGap > 0 && n > 0 && at.Sub(a.window[n-1].at) > a.cfg.MaxGap {
		a.window = a.window[:0]
		if a.current != "" {
			events = append(events, Event{Kind: Left, Label: a.current, At: at})
			a.current = ""
		}
	}
	if len(a.window) == a.cfg.M {
		copy(a.window, a.window[1:])
		a.window = a.window[:a.cfg.M-1]
	}
	a.window = append(a.window, observation{label: label, conf: confidence, at: at})

	// The best-supported pet of the window: most frames, then highest
	// confidence.
	best, bestN, bestConf := "", 0, 0.0
	count := map[string]int{}
	sum := map[string]float64{}
	for _, o := range a.window {
		if o.label == "" || o.label == Unknown {
			continue
		}
		count[o.label]++
		sum[o.label] += o.conf
	}
	for l, n := range count {
		mean := sum[l] / float64(n)
		if n > bestN || (n == bestN && mean > bestConf) || (n == bestN && mean == bestConf && l < best) {
			best, bestN, bestConf = l, n, mean
		}
	}
	if a.current != "" && (count[a.current] == 0 || (bestN >= a.cfg.N && best != a.current && bestN > count[a.current])) {
		events = append(events, Event{Kind: Left, Label: a.current, At: at, Frames: count[a.current]})
		a.current = ""
	}
	if a.current == "" && bestN >= a.cfg.N {
		a.current = best
		events = append(events, Event{Kind: Arrived, Label: best, At: at, Frames: bestN, Confidence: bestConf})
	}
	return events
}

// Reset forgets the window and the current pet (without an event).
func (a *Announcer) Reset() {
	a.window = a.window[:0]
	a.current = ""
}
