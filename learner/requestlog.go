package learner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The request log remembers the answer to each state-changing request by
// its request id, in the same transaction as the change, so that a retried
// request (the same id, after a lost answer or a crash) is answered again
// without being applied twice.

var bucketResults = []byte("results")

// requestLogTTL is how long answers are remembered.
const requestLogTTL = 30 * 24 * time.Hour

// ErrDuplicate is returned when a request id was already applied; the
// recorded answer comes with it.
var ErrDuplicate = errors.New("request already applied")

func resultBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	if tx.Writable() {
		return tx.CreateBucketIfNotExists(bucketResults)
	}
	return tx.Bucket(bucketResults), nil
}

func encodeResult(answer []byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())), answer...)
}

// RecordedAnswer returns the answer recorded for a request id.
func (s *Store) RecordedAnswer(reqID string) ([]byte, bool, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		b, _ := resultBucket(tx)
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(reqID)); len(v) >= 8 {
			out = append([]byte(nil), v[8:]...)
		}
		return nil
	})
	return out, out != nil, err
}

// ApplyOnce runs change inside one transaction with recording its answer
// under reqID. If reqID was recorded before, change does not run and the
// earlier answer is returned with ErrDuplicate. change receives the
// transaction's view of the store; answer builds the answer to record from
// change's result. A BeginRisky mark of reqID is cleared with the change.
func (s *Store) ApplyOnce(reqID string, change func(*Tx) (any, error), answer func(any) ([]byte, error)) ([]byte, error) {
	if reqID == "" {
		return nil, errors.New("request id is empty")
	}
	var out []byte
	dup := false
	err := s.update(func(tx *bolt.Tx, d *delta) error {
		b, err := resultBucket(tx)
		if err != nil {
			return err
		}
		if v := b.Get([]byte(reqID)); len(v) >= 8 {
			out, dup = append([]byte(nil), v[8:]...), true
			return nil
		}
		res, err := change(&Tx{tx: tx, d: d})
		if err != nil {
			return err
		}
		if out, err = answer(res); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRisky).Delete([]byte(reqID)); err != nil {
			return err
		}
		return b.Put([]byte(reqID), encodeResult(out))
	})
	if err != nil {
		return nil, err
	}
	if dup {
		return out, ErrDuplicate
	}
	return out, nil
}

// Tx is a write transaction on the store, for ApplyOnce.
type Tx struct {
	tx *bolt.Tx
	d  *delta
}

// Relabel renames (or with to == "" deletes) every sample of a label.
func (t *Tx) Relabel(from, to string) (int, error) { return relabelTx(t.tx, t.d, from, to) }

// Delete removes one sample and returns its label.
func (t *Tx) Delete(id uint64) (string, error) {
	b := t.tx.Bucket(bucketSamples)
	v := b.Get(idKey(id))
	if v == nil {
		return "", fmt.Errorf("sample %d: %w", id, ErrNotFound)
	}
	smp, err := decodeSample(id, v, false)
	if err != nil {
		return "", err
	}
	t.d.remove(smp, len(v))
	return smp.Label, b.Delete(idKey(id))
}

// SetLabel gives one sample another label and returns the sample as it
// was, with its features and without its JPEG.
func (t *Tx) SetLabel(id uint64, label string) (Sample, error) {
	if label == "" || len(label) > maxStringLen || !utf8.ValidString(label) {
		return Sample{}, fmt.Errorf("%w: label is empty, over %d bytes or not UTF-8", ErrInvalidSample, maxStringLen)
	}
	b := t.tx.Bucket(bucketSamples)
	v := b.Get(idKey(id))
	if v == nil {
		return Sample{}, fmt.Errorf("sample %d: %w", id, ErrNotFound)
	}
	smp, err := decodeSample(id, v, true)
	if err != nil {
		return Sample{}, err
	}
	old := smp
	smp.Label = label
	nv := smp.encode()
	t.d.remove(old, len(v))
	t.d.add(smp, len(nv))
	old.JPEG = nil
	return old, b.Put(idKey(id), nv)
}

// PruneAnswers forgets answers, and in-progress marks, older than the
// log's lifetime.
func (s *Store) PruneAnswers() (int, error) {
	n := 0
	cutoff := uint64(time.Now().Add(-requestLogTTL).UnixNano())
	err := s.update(func(tx *bolt.Tx, d *delta) error {
		b, err := resultBucket(tx)
		if err != nil {
			return err
		}
		n = 0
		for _, b := range []*bolt.Bucket{b, tx.Bucket(bucketRisky)} {
			var old [][]byte
			err = b.ForEach(func(k, v []byte) error {
				if len(v) < 8 || binary.BigEndian.Uint64(v) < cutoff {
					old = append(old, append([]byte(nil), k...))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range old {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n += len(old)
		}
		d.pruned = n > 0
		return nil
	})
	return n, err
}
