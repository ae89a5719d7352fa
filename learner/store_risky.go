package learner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A request whose processing can take the process down (decoding an image
// from outside, running the backbone on it) is marked as in progress,
// durably, before the risky step, and the mark is cleared after it. If the
// process dies during the step, the broker delivers the request again at
// the next start; BeginRisky then finds the mark and refuses, so that one
// poisonous message cannot crash the agent at every start.

var bucketRisky = []byte("inprogress")

// ErrInterrupted is matched by the *Interruption BeginRisky returns for a
// request that was in progress when the process stopped.
var ErrInterrupted = errors.New("request was in progress when the agent stopped")

// Interruption describes a request found in progress.
type Interruption struct {
	RequestID string
	// What the request was doing (the last BeginRisky's what).
	What string
	// Since is when the request was first marked; Attempts how many
	// times it was let through.
	Since    time.Time
	Attempts int
}

func (e *Interruption) Error() string {
	return fmt.Sprintf("request %s stopped the agent while %s (%d attempt(s) since %s); it is not tried again, send it with a new request id to retry",
		e.RequestID, e.What, e.Attempts, e.Since.UTC().Format(time.RFC3339))
}

func (e *Interruption) Unwrap() error { return ErrInterrupted }

// A mark is laid out as: first-marked time (int64 unix nanoseconds, big
// endian), attempts (uint32), then what, as text.
func encodeRisky(since time.Time, attempts int, what string) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(since.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(attempts))
	return append(b, what...)
}

func decodeRisky(id string, v []byte) *Interruption {
	if len(v) < 12 {
		return &Interruption{RequestID: id, What: "an unreadable step", Attempts: 1}
	}
	return &Interruption{RequestID: id, Since: time.Unix(0, int64(binary.BigEndian.Uint64(v))),
		Attempts: int(binary.BigEndian.Uint32(v[8:])), What: string(v[12:])}
}

// BeginRisky marks requestID as in progress, doing what, and syncs the
// mark to disk before it returns. When the request was marked before and
// never ended (the process stopped during its risky step) as many times as
// StoreOptions.RiskyAttempts allows, it marks nothing and returns an
// *Interruption (matching ErrInterrupted) whose message is the reason to
// answer with. Adding a sample with the request id, ApplyOnce with it, or
// EndRisky clears the mark.
func (s *Store) BeginRisky(requestID, what string) error {
	if requestID == "" || len(requestID) > maxStringLen {
		return fmt.Errorf("mark request in progress: request id is empty or over %d bytes", maxStringLen)
	}
	if err := s.checkSpace(int64(len(requestID) + len(what) + 12)); err != nil {
		return fmt.Errorf("mark request %s in progress: %w", requestID, err)
	}
	return s.update(func(tx *bolt.Tx, _ *delta) error {
		b := tx.Bucket(bucketRisky)
		since, attempts := time.Now(), 0
		if v := b.Get([]byte(requestID)); v != nil {
			in := decodeRisky(requestID, v)
			if in.Attempts >= s.opt.riskyAttempts() {
				return in
			}
			since, attempts = in.Since, in.Attempts
		}
		return b.Put([]byte(requestID), encodeRisky(since, attempts+1, what))
	})
}

// EndRisky clears requestID's in-progress mark, durably: the risky step
// is over, whatever its outcome.
func (s *Store) EndRisky(requestID string) error {
	return s.update(func(tx *bolt.Tx, _ *delta) error {
		return tx.Bucket(bucketRisky).Delete([]byte(requestID))
	})
}

// InProgress returns requestID's in-progress mark, or nil when it has none.
func (s *Store) InProgress(requestID string) (*Interruption, error) {
	var out *Interruption
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketRisky).Get([]byte(requestID)); v != nil {
			out = decodeRisky(requestID, v)
		}
		return nil
	})
	return out, err
}
