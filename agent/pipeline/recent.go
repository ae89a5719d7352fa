package pipeline

import (
	"sync"
	"time"
)

// Seen is a recent sighting as it can still be labelled: the features it
// was classified from and the small JPEG stored with a label.
type Seen struct {
	ID       string
	Features []float32
	JPEG     []byte
	At       time.Time
}

// recent keeps the last sightings, oldest first out, so that they can be
// labelled by id.
type recent struct {
	mu    sync.Mutex
	max   int
	order []string
	byID  map[string]Seen
}

func newRecent(n int) *recent {
	return &recent{max: max(n, 1), byID: make(map[string]Seen, n)}
}

func (r *recent) add(s Seen) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == r.max {
		delete(r.byID, r.order[0])
		r.order = r.order[1:]
	}
	r.order = append(r.order, s.ID)
	r.byID[s.ID] = s
}

// latest is the id of the newest sighting, or "".
func (r *recent) latest() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return ""
	}
	return r.order[len(r.order)-1]
}

func (r *recent) get(id string) (Seen, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.byID[id]
	return s, ok
}
