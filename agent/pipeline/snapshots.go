package pipeline

import (
	"sync"
	"time"
)

// snapshotStore keeps, in memory, two JPEGs per sighting: the frame with
// the sighting's box drawn on it, and the crop of the pet (the frame
// again for a whole-frame sighting). It forgets the oldest first, beyond
// a count, an age and a total size. Memory rather than disk: a camera
// that runs for months on an SD card should not write a JPEG a second.
type snapshotStore struct {
	mu       sync.Mutex
	maxCount int
	maxAge   time.Duration
	maxBytes int
	now      func() time.Time

	order []string // oldest first
	byID  map[string]snapshot
	bytes int
}

type snapshot struct {
	frame, crop []byte
	at          time.Time
}

func newSnapshotStore(cfg SnapshotsConfig, now func() time.Time) *snapshotStore {
	if now == nil {
		now = time.Now
	}
	return &snapshotStore{maxCount: cfg.MaxCount, maxAge: cfg.MaxAge, maxBytes: cfg.MaxBytes, now: now, byID: map[string]snapshot{}}
}

// put stores the snapshots of sighting id, taken at at.
func (s *snapshotStore) put(id string, frame, crop []byte, at time.Time) {
	size := len(frame) + len(crop)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxCount == 0 || (s.maxBytes > 0 && size > s.maxBytes) {
		return
	}
	if old, ok := s.byID[id]; ok {
		s.bytes -= len(old.frame) + len(old.crop)
		s.remove(id)
	}
	s.order = append(s.order, id)
	s.byID[id] = snapshot{frame: frame, crop: crop, at: at}
	s.bytes += size
	s.prune()
}

// get returns the snapshots of sighting id, unless they were pruned.
func (s *snapshotStore) get(id string) (frame, crop []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	sn, ok := s.byID[id]
	if !ok {
		return nil, nil, false
	}
	return sn.frame, sn.crop, true
}

// stats returns how many snapshots are kept and their total size.
func (s *snapshotStore) stats() (count, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	return len(s.order), s.bytes
}

// prune drops the oldest snapshots until the store is within its count,
// age and size. The caller holds mu.
func (s *snapshotStore) prune() {
	now := s.now()
	for len(s.order) > 0 {
		oldest := s.byID[s.order[0]]
		if len(s.order) <= s.maxCount && (s.maxAge == 0 || now.Sub(oldest.at) <= s.maxAge) && (s.maxBytes == 0 || s.bytes <= s.maxBytes) {
			return
		}
		s.bytes -= len(oldest.frame) + len(oldest.crop)
		delete(s.byID, s.order[0])
		s.order = s.order[1:] // append reallocates in time, freeing the head
	}
}

func (s *snapshotStore) remove(id string) {
	delete(s.byID, id)
	for i, x := range s.order {
		if x == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			return
		}
	}
}
