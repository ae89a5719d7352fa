package learner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// storeSchema is the layout version of the store's buckets.
const storeSchema = "1"

var (
	bucketMeta     = []byte("meta")
	bucketSamples  = []byte("samples")
	bucketRequests = []byte("requests")
	keySchema      = []byte("schema")
)

// ErrNotFound is returned for a sample id the store does not hold.
var ErrNotFound = errors.New("no such sample")

// Store keeps labelled samples in a bbolt database: one file, copy-on-write
// B+tree pages and an fsync per committed transaction, so a sample that
// Add has returned survives a power cut, and a cut mid-write leaves the
// previous consistent state.
type Store struct {
	db   *bolt.DB
	path string
}

// OpenStore opens (creating if needed) the store at path.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: it is locked by another process (is another whisker running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
			if err := meta.Put(keySchema, []byte(storeSchema)); err != nil {
				return err
			}
		case string(v) != storeSchema:
			return fmt.Errorf("store schema %q, this build reads %q", v, storeSchema)
		}
		for _, b := range [][]byte{bucketSamples, bucketRequests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path is the database file.
func (s *Store) Path() string { return s.path }

func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// Add stores a sample durably and returns its id. A sample whose RequestID
// the store has seen before is not stored again: Add returns the first
// sample's id and dup true.
func (s *Store) Add(smp Sample) (id uint64, dup bool, err error) {
	ids, dups, err := s.AddMany([]Sample{smp})
	if err != nil {
		return 0, false, err
	}
	return ids[0], dups[0], nil
}

// AddMany stores samples in one transaction (one fsync): all of them or,
// on error, none. Each is treated as Add treats one.
func (s *Store) AddMany(smps []Sample) (ids []uint64, dups []bool, err error) {
	for i := range smps {
		smp := &smps[i]
		if smp.Label == "" {
			return nil, nil, errors.New("sample has no label")
		}
		if len(smp.Features) == 0 || smp.Backbone == "" {
			return nil, nil, errors.New("sample has no features or backbone identity")
		}
		if smp.Time.IsZero() {
			smp.Time = time.Now()
		}
	}
	ids, dups = make([]uint64, len(smps)), make([]bool, len(smps))
	err = s.db.Update(func(tx *bolt.Tx) error {
		reqs := tx.Bucket(bucketRequests)
		b := tx.Bucket(bucketSamples)
		for i, smp := range smps {
			if smp.RequestID != "" {
				if v := reqs.Get([]byte(smp.RequestID)); len(v) == 8 {
					ids[i], dups[i] = binary.BigEndian.Uint64(v), true
					continue
				}
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			ids[i] = seq
			smp.ID = seq
			if err := b.Put(idKey(seq), smp.encode()); err != nil {
				return err
			}
			if smp.RequestID != "" {
				if err := reqs.Put([]byte(smp.RequestID), idKey(seq)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store samples: %w", err)
	}
	return ids, dups, nil
}

// Request returns the id of the sample a request id stored, if any.
func (s *Store) Request(requestID string) (id uint64, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketRequests).Get([]byte(requestID)); len(v) == 8 {
			id, ok = binary.BigEndian.Uint64(v), true
		}
		return nil
	})
	return id, ok, err
}

// Get returns one sample with its JPEG.
func (s *Store) Get(id uint64) (Sample, error) {
	var out Sample
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSamples).Get(idKey(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		out, err = decodeSample(id, v, true)
		return err
	})
	return out, err
}

// ForEach calls fn for every sample in id order. The JPEG is loaded only
// when withJPEG is set. A record that does not decode stops the walk with
// an error naming it.
func (s *Store) ForEach(withJPEG bool, fn func(Sample) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSamples).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: sample key %x", ErrCorrupt, k)
			}
			smp, err := decodeSample(binary.BigEndian.Uint64(k), v, withJPEG)
			if err != nil {
				return err
			}
			return fn(smp)
		})
	})
}

// Dataset loads the feature vectors computed by one backbone.
func (s *Store) Dataset(backbone string) (*Dataset, error) {
	d := &Dataset{}
	err := s.ForEach(false, func(smp Sample) error {
		if smp.Backbone == backbone {
			d.X = append(d.X, smp.Features)
			d.Labels = append(d.Labels, smp.Label)
			d.IDs = append(d.IDs, smp.ID)
		}
		return nil
	})
	return d, err
}

// LabelCount is the number of samples of one label.
type LabelCount struct {
	Label   string `json:"label"`
	Samples int    `json:"samples"`
}

// Counts returns the samples per label (of one backbone, or of all when
// backbone is ""), sorted by label.
func (s *Store) Counts(backbone string) ([]LabelCount, error) {
	m := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSamples).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: sample key %x", ErrCorrupt, k)
			}
			label, bb, err := decodeLabel(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			if backbone == "" || bb == backbone {
				m[label]++
			}
			return nil
		})
	})
	out := make([]LabelCount, 0, len(m))
	for l, n := range m {
		out = append(out, LabelCount{l, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out, err
}

// Delete removes one sample.
func (s *Store) Delete(id uint64) error {
	_, err := s.Remove(id)
	return err
}

// Remove deletes one sample and returns it (without its JPEG). Its request
// id stays known, so a retried request does not bring it back.
func (s *Store) Remove(id uint64) (Sample, error) {
	var out Sample
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSamples)
		v := b.Get(idKey(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		if out, err = decodeSample(id, v, false); err != nil {
			return err
		}
		return b.Delete(idKey(id))
	})
	return out, err
}

// SetLabel gives one sample another label and returns the sample as it
// was (without its JPEG).
func (s *Store) SetLabel(id uint64, label string) (Sample, error) {
	var old Sample
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		old, err = (&Tx{tx: tx}).SetLabel(id, label)
		return err
	})
	return old, err
}

// Relabel renames every sample of label from to label to (to == "" deletes
// them) and returns how many changed.
func (s *Store) Relabel(from, to string) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = relabelTx(tx, from, to)
		return err
	})
	return n, err
}

func relabelTx(tx *bolt.Tx, from, to string) (int, error) {
	b := tx.Bucket(bucketSamples)
	type change struct {
		k []byte
		v []byte
	}
	var changes []change
	err := b.ForEach(func(k, v []byte) error {
		smp, err := decodeSample(binary.BigEndian.Uint64(k), v, true)
		if err != nil {
			return err
		}
		if smp.Label != from {
			return nil
		}
		var nv []byte
		if to != "" {
			smp.Label = to
			nv = smp.encode()
		}
		changes = append(changes, change{append([]byte(nil), k...), nv})
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, c := range changes {
		if c.v == nil {
			err = b.Delete(c.k)
		} else {
			err = b.Put(c.k, c.v)
		}
		if err != nil {
			return 0, err
		}
	}
	return len(changes), nil
}

// Len is the number of stored samples.
func (s *Store) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSamples).Stats().KeyN
		return nil
	})
	return n, err
}
