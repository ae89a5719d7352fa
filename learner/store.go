package learner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// storeSchema is the layout version of the store's buckets.
const storeSchema = "1"

var (
	bucketMeta     = []byte("meta")
	bucketSamples  = []byte("samples")
	bucketRequests = []byte("requests")
	keySchema      = []byte("schema")
)

// Errors of the store. A write refused with one of them changed nothing.
var (
	// ErrNotFound is returned for a sample id the store does not hold.
	ErrNotFound = errors.New("no such sample")
	// ErrInvalidSample: a sample with a missing or oversized field, a
	// feature vector of another length than its backbone computes, or
	// values that are not finite.
	ErrInvalidSample = errors.New("invalid sample")
	// ErrLabelFull: the label has StoreOptions.MaxSamplesPerLabel samples.
	ErrLabelFull = errors.New("label has its maximum number of samples")
	// ErrOriginFull: the camera that shared the sample has
	// StoreOptions.MaxSamplesPerOrigin samples here.
	ErrOriginFull = errors.New("camera that shared the sample has its maximum number of samples here")
	// ErrStoreFull: the samples would take more than StoreOptions.MaxBytes.
	ErrStoreFull = errors.New("store is at its size limit")
	// ErrDiskFull: the write would leave less than StoreOptions.ReserveBytes
	// free on the store's file system, or the file system is full.
	ErrDiskFull = errors.New("not enough free disk space")
)

// StoreOptions bound what a store accepts. The zero value sets no quota,
// no reserve and no known feature lengths; samples are checked all the
// same (see AddMany).
type StoreOptions struct {
	// MaxSamplesPerLabel bounds the samples of one label, per backbone
	// (0: no limit). Renaming or merging labels is never refused.
	MaxSamplesPerLabel int
	// MaxSamplesPerOrigin bounds the samples another camera shared (a
	// Source of "shared:CAMERA:ID"), per camera and backbone (0: no limit).
	MaxSamplesPerOrigin int
	// MaxBytes bounds the bytes of stored samples (0: no limit). The file
	// itself is never let grow past MaxBytes*3/2 + 32 MiB.
	MaxBytes int64
	// MaxJPEGBytes bounds one sample's JPEG (0: only the 16 MiB every
	// record is held to).
	MaxJPEGBytes int
	// ReserveBytes is the free space a write must leave on the store's
	// file system (0: only what the write itself needs).
	ReserveBytes int64
	// Dims gives the feature length each known backbone identity computes.
	// A backbone not listed takes the length of its first stored sample.
	Dims map[string]int
	// CompactMinBytes: after a write that removed samples, the file is
	// compacted when at least this many bytes, and half of it, would be
	// given back (0: 16 MiB; negative: never on its own).
	CompactMinBytes int64
	// RiskyAttempts is how many times BeginRisky lets one request id
	// through without a matching end (0: once).
	RiskyAttempts int
}

// DefaultStoreOptions are the limits suggested for the agent.
func DefaultStoreOptions() StoreOptions {
	return StoreOptions{
		MaxSamplesPerLabel:  500,
		MaxSamplesPerOrigin: 1000,
		MaxBytes:            512 << 20,
		MaxJPEGBytes:        2 << 20,
		ReserveBytes:        64 << 20,
		CompactMinBytes:     16 << 20,
		RiskyAttempts:       1,
	}
}

// Validate checks the options.
func (o StoreOptions) Validate() error {
	switch {
	case o.MaxSamplesPerLabel < 0:
		return fmt.Errorf("samples per label %d: want 0 (no limit) or more", o.MaxSamplesPerLabel)
	case o.MaxSamplesPerOrigin < 0:
		return fmt.Errorf("samples per origin %d: want 0 (no limit) or more", o.MaxSamplesPerOrigin)
	case o.MaxBytes != 0 && (o.MaxBytes < 1<<20 || o.MaxBytes > 1<<40):
		return fmt.Errorf("store size limit %d: want 0 (no limit) or 1 MiB to 1 TiB", o.MaxBytes)
	case o.MaxJPEGBytes < 0 || o.MaxJPEGBytes > maxJPEGLen:
		return fmt.Errorf("JPEG size limit %d: want 0 to %d", o.MaxJPEGBytes, maxJPEGLen)
	case o.ReserveBytes < 0:
		return fmt.Errorf("disk reserve %d: want 0 or more", o.ReserveBytes)
	case o.RiskyAttempts < 0 || o.RiskyAttempts > 100:
		return fmt.Errorf("risky attempts %d: want 0 to 100", o.RiskyAttempts)
	}
	for bb, n := range o.Dims {
		if bb == "" || n < 1 || n > maxFeatureDim {
			return fmt.Errorf("feature length %d for backbone %q: want 1 to %d", n, bb, maxFeatureDim)
		}
	}
	return nil
}

func (o StoreOptions) compactMin() int64 {
	if o.CompactMinBytes == 0 {
		return 16 << 20
	}
	return o.CompactMinBytes
}

func (o StoreOptions) riskyAttempts() int { return max(o.RiskyAttempts, 1) }

// Store keeps labelled samples in a bbolt database: one file, copy-on-write
// B+tree pages and an fsync per committed transaction, so a sample that
// Add has returned survives a power cut, and a cut mid-write leaves the
// previous consistent state.
type Store struct {
	path string
	opt  StoreOptions
	log  *slog.Logger
	// freeSpace says how many bytes the file system holding dir has free
	// for this process (-1: unknown); tests replace it.
	freeSpace func(dir string) (int64, error)

	// swap is held for reading while db is used, and for writing while
	// compaction replaces the file.
	swap sync.RWMutex
	db   *bolt.DB

	// mu serialises writes and guards what follows.
	mu          sync.Mutex
	tally       tally
	lastErr     error
	lastErrAt   time.Time
	refusedFull error // the last sample refused for the size limit, until samples are added or removed
	lastCompact time.Time
	compactNote string
}

// OpenStore opens (creating if needed) the store at path, with no quotas.
func OpenStore(path string) (*Store, error) {
	return OpenStoreWith(path, StoreOptions{}, nil)
}

// OpenStoreWith opens (creating if needed) the store at path with
// quotas, a disk reserve and known feature lengths. log may be nil.
func OpenStoreWith(path string, opt StoreOptions, log *slog.Logger) (*Store, error) {
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{path: path, opt: opt, log: log, freeSpace: freeSpace}
	db, err := bolt.Open(path, 0o600, s.boltOptions())
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: it is locked by another process (is another whisker running?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// A compaction cut short leaves its copy behind; the store is intact.
	// (The store is locked now, so no other process is compacting it.)
	if err := os.Remove(compactPath(path)); err == nil {
		log.Warn("removed the copy an interrupted compaction left", "path", compactPath(path))
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
		for _, b := range [][]byte{bucketSamples, bucketRequests, bucketResults, bucketRisky} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			var err error
			s.tally, err = tallySamples(tx)
			return err
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.db = db
	for bb, byLen := range s.tally.lengths {
		want := s.dim(bb)
		if n := s.tally.samplesOf(bb) - byLen[want]; n > 0 {
			log.Warn("stored samples have another feature length than their backbone; training leaves them out",
				"backbone", bb, "samples", n, "length", want)
		}
	}
	return s, nil
}

// boltOptions are the database options: every commit is synced (the
// defaults), and the file is capped when the store has a size limit.
func (s *Store) boltOptions() *bolt.Options {
	o := &bolt.Options{Timeout: 5 * time.Second}
	if s.opt.MaxBytes > 0 {
		o.MaxSize = int(s.opt.MaxBytes + s.opt.MaxBytes/2 + 32<<20)
	}
	return o
}

// Close closes the database, after any write or compaction under way.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.swap.Lock()
	defer s.swap.Unlock()
	return s.db.Close()
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

func idKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, id)
}

// view runs fn in a read transaction.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	s.swap.RLock()
	defer s.swap.RUnlock()
	return s.db.View(fn)
}

// update runs fn in a write transaction and, when it commits, applies
// what fn recorded in its delta to the in-memory tally. A write that gave
// back space may then compact the file.
func (s *Store) update(fn func(*bolt.Tx, *delta) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d delta
	var refusal error // fn's own error: nothing was written
	err := func() error {
		s.swap.RLock()
		defer s.swap.RUnlock()
		return s.db.Update(func(tx *bolt.Tx) error {
			d = delta{}
			refusal = fn(tx, &d)
			return refusal
		})
	}()
	switch {
	case err != nil && err == refusal:
		if errors.Is(err, ErrStoreFull) {
			s.refusedFull = err
		}
		return err
	case err != nil:
		return s.writeFailed(err)
	}
	s.lastErr = nil
	s.tally.apply(&d)
	if d.bytes != 0 {
		s.refusedFull = nil
	}
	if d.bytes < 0 || d.pruned {
		s.compactIfWorthIt()
	}
	return nil
}

// writeFailed keeps a failed commit for DiskStatus and says when the
// failure is a full disk or store.
func (s *Store) writeFailed(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device"):
		err = fmt.Errorf("%w: %w", ErrDiskFull, err)
	case errors.Is(err, berrors.ErrMaxSizeReached):
		err = fmt.Errorf("%w: the file reached its cap of %d bytes: %w", ErrStoreFull, s.boltOptions().MaxSize, err)
	}
	s.lastErr, s.lastErrAt = err, time.Now()
	s.log.Error("store write failed", "path", s.path, "err", err)
	return err
}

// checkSpace refuses a write of about n bytes that would leave less than
// the reserve free. A copy-on-write commit writes new pages before it
// frees the old ones: the estimate is twice the data plus some pages.
func (s *Store) checkSpace(n int64) error {
	free, err := s.freeSpace(dirOf(s.path))
	if err != nil || free < 0 {
		return nil // unknown: the write itself will tell
	}
	need := 2*n + 64<<10
	if free-need < s.opt.ReserveBytes {
		return fmt.Errorf("%w: %s has %d bytes free; a write of %d bytes must leave %d", ErrDiskFull, dirOf(s.path), free, n, s.opt.ReserveBytes)
	}
	return nil
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
// on error, none. Each is treated as Add treats one. A sample is refused
// (ErrInvalidSample) without a label or backbone identity, with a string
// over 4096 bytes or not UTF-8, without features, with a value that is
// not finite, with another feature length than its backbone computes, or
// with a JPEG over the limit; quotas are checked next (ErrLabelFull,
// ErrOriginFull, ErrStoreFull), then the free space (ErrDiskFull). A
// stored request id's BeginRisky mark is cleared in the same transaction.
func (s *Store) AddMany(smps []Sample) (ids []uint64, dups []bool, err error) {
	var size int64
	encs := make([][]byte, len(smps))
	for i := range smps {
		smp := &smps[i]
		if err := s.checkSample(smp); err != nil {
			return nil, nil, fmt.Errorf("store samples: %w", err)
		}
		if smp.Time.IsZero() {
			smp.Time = time.Now()
		}
		encs[i] = smp.encode()
		size += int64(len(encs[i]))
	}
	if err := s.checkSpace(size); err != nil {
		return nil, nil, fmt.Errorf("store samples: %w", err)
	}
	ids, dups = make([]uint64, len(smps)), make([]bool, len(smps))
	err = s.update(func(tx *bolt.Tx, d *delta) error {
		reqs := tx.Bucket(bucketRequests)
		b := tx.Bucket(bucketSamples)
		risky := tx.Bucket(bucketRisky)
		for i, smp := range smps {
			if smp.RequestID != "" {
				if v := reqs.Get([]byte(smp.RequestID)); len(v) == 8 {
					ids[i], dups[i] = binary.BigEndian.Uint64(v), true
					continue
				}
			}
			if err := s.checkQuota(smp, int64(len(encs[i])), d); err != nil {
				return err
			}
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			ids[i] = seq
			smp.ID = seq
			if err := b.Put(idKey(seq), encs[i]); err != nil {
				return err
			}
			d.add(smp, len(encs[i]))
			if smp.RequestID != "" {
				if err := reqs.Put([]byte(smp.RequestID), idKey(seq)); err != nil {
					return err
				}
				if err := risky.Delete([]byte(smp.RequestID)); err != nil {
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

// checkSample checks one sample on its own and against the feature length
// of its backbone.
func (s *Store) checkSample(smp *Sample) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSample, fmt.Sprintf(format, a...))
	}
	if smp.Label == "" {
		return bad("sample has no label")
	}
	if len(smp.Features) == 0 || smp.Backbone == "" {
		return bad("sample has no features or backbone identity")
	}
	for _, f := range []struct{ name, v string }{{"label", smp.Label}, {"backbone", smp.Backbone}, {"source", smp.Source}, {"request id", smp.RequestID}} {
		if len(f.v) > maxStringLen || !utf8.ValidString(f.v) {
			return bad("%s is over %d bytes or not UTF-8", f.name, maxStringLen)
		}
	}
	if len(smp.Features) > maxFeatureDim {
		return bad("%d feature values, over %d", len(smp.Features), maxFeatureDim)
	}
	for i, v := range smp.Features {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return bad("feature %d is %v", i, v)
		}
	}
	if want := s.dimFor(smp.Backbone); want > 0 && len(smp.Features) != want {
		return bad("%d feature values; backbone %s computes %d", len(smp.Features), smp.Backbone, want)
	}
	limit := maxJPEGLen
	if s.opt.MaxJPEGBytes > 0 {
		limit = s.opt.MaxJPEGBytes
	}
	if len(smp.JPEG) > limit {
		return bad("JPEG of %d bytes, over %d", len(smp.JPEG), limit)
	}
	return nil
}

// dimFor is the feature length of a backbone's samples: configured, or
// the length its stored samples have (0: none yet).
func (s *Store) dimFor(backbone string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dim(backbone)
}

// dim is dimFor with s.mu held.
func (s *Store) dim(backbone string) int {
	if n := s.opt.Dims[backbone]; n > 0 {
		return n
	}
	return s.tally.dims[backbone]
}

// checkQuota checks a new sample of n encoded bytes against the quotas,
// counting what the transaction added so far (d). It runs with s.mu held.
func (s *Store) checkQuota(smp Sample, n int64, d *delta) error {
	if want := s.dim(smp.Backbone); want == 0 {
		if got, ok := d.dims[smp.Backbone]; ok && got != len(smp.Features) {
			return fmt.Errorf("%w: %d feature values; an earlier sample of backbone %s in this batch has %d", ErrInvalidSample, len(smp.Features), smp.Backbone, got)
		}
	} else if len(smp.Features) != want {
		return fmt.Errorf("%w: %d feature values; backbone %s computes %d", ErrInvalidSample, len(smp.Features), smp.Backbone, want)
	}
	lk := countKey{smp.Backbone, smp.Label}
	if m := s.opt.MaxSamplesPerLabel; m > 0 && s.tally.labels[lk]+d.labels[lk] >= m {
		return fmt.Errorf("%w: %q has %d samples (learner.max_samples_per_label)", ErrLabelFull, smp.Label, m)
	}
	if o := SampleOrigin(smp.Source); o != "" {
		ok := countKey{smp.Backbone, o}
		if m := s.opt.MaxSamplesPerOrigin; m > 0 && s.tally.origins[ok]+d.origins[ok] >= m {
			return fmt.Errorf("%w: camera %q shared %d samples", ErrOriginFull, o, m)
		}
	}
	if m := s.opt.MaxBytes; m > 0 && s.tally.bytes+d.bytes+n > m {
		return fmt.Errorf("%w: samples take %d bytes, the limit is %d", ErrStoreFull, s.tally.bytes+d.bytes, m)
	}
	return nil
}

// SampleOrigin is the camera a shared sample came from: CAMERA for a
// Source of "shared:CAMERA:ID", "" for this camera's own samples.
func SampleOrigin(source string) string {
	rest, ok := strings.CutPrefix(source, "shared:")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	if rest == "" {
		return "?"
	}
	return rest
}

// Request returns the id of the sample a request id stored, if any.
func (s *Store) Request(requestID string) (id uint64, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	return s.view(func(tx *bolt.Tx) error {
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

// Dataset loads the feature vectors computed by one backbone. Samples of
// another length than the backbone's (stored before lengths were checked)
// are left out, and logged.
func (s *Store) Dataset(backbone string) (*Dataset, error) {
	d := &Dataset{}
	want := s.dimFor(backbone)
	var skipped []uint64
	err := s.ForEach(false, func(smp Sample) error {
		if smp.Backbone != backbone {
			return nil
		}
		if want > 0 && len(smp.Features) != want {
			skipped = append(skipped, smp.ID)
			return nil
		}
		d.X = append(d.X, smp.Features)
		d.Labels = append(d.Labels, smp.Label)
		d.IDs = append(d.IDs, smp.ID)
		return nil
	})
	if len(skipped) > 0 {
		s.log.Warn("samples of another feature length left out of training; forget them to stop this warning",
			"backbone", backbone, "length", want, "samples", len(skipped), "first", skipped[:min(len(skipped), 10)])
	}
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
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSamples).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: sample key %x", ErrCorrupt, k)
			}
			h, err := decodeHead(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			if backbone == "" || h.backbone == backbone {
				m[h.label]++
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
	err := s.update(func(tx *bolt.Tx, d *delta) error {
		b := tx.Bucket(bucketSamples)
		v := b.Get(idKey(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		if out, err = decodeSample(id, v, false); err != nil {
			return err
		}
		d.remove(out, len(v))
		return b.Delete(idKey(id))
	})
	return out, err
}

// SetLabel gives one sample another label and returns the sample as it
// was (without its JPEG).
func (s *Store) SetLabel(id uint64, label string) (Sample, error) {
	var old Sample
	err := s.update(func(tx *bolt.Tx, d *delta) error {
		var err error
		old, err = (&Tx{tx: tx, d: d}).SetLabel(id, label)
		return err
	})
	return old, err
}

// Relabel renames every sample of label from to label to (to == "" deletes
// them) and returns how many changed.
func (s *Store) Relabel(from, to string) (int, error) {
	if len(to) > maxStringLen || !utf8.ValidString(to) {
		return 0, fmt.Errorf("%w: label is over %d bytes or not UTF-8", ErrInvalidSample, maxStringLen)
	}
	n := 0
	err := s.update(func(tx *bolt.Tx, d *delta) error {
		var err error
		n, err = relabelTx(tx, d, from, to)
		return err
	})
	return n, err
}

func relabelTx(tx *bolt.Tx, d *delta, from, to string) (int, error) {
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
		d.remove(smp, len(v))
		var nv []byte
		if to != "" {
			smp.Label = to
			nv = smp.encode()
			d.add(smp, len(nv))
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
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketSamples).Stats().KeyN
		return nil
	})
	return n, err
}

// countKey names a label, or a sharing camera, of one backbone.
type countKey struct{ backbone, name string }

// tally is what the store holds, kept in memory for the quotas: counted
// at open, then changed by each committed write.
type tally struct {
	labels  map[countKey]int
	origins map[countKey]int
	dims    map[string]int // feature length per backbone
	bytes   int64          // encoded bytes of all samples
	samples int
	// lengths counts, per backbone, the stored samples of each feature
	// length (at open only).
	lengths map[string]map[int]int
}

// samplesOf is how many samples of a backbone the store held at open.
func (t *tally) samplesOf(backbone string) int {
	n := 0
	for _, c := range t.lengths[backbone] {
		n += c
	}
	return n
}

// delta is what one write transaction changed.
type delta struct {
	labels  map[countKey]int
	origins map[countKey]int
	dims    map[string]int
	bytes   int64
	samples int
	pruned  bool // request-log entries were removed
}

func bump(m *map[countKey]int, k countKey, by int) {
	if *m == nil {
		*m = map[countKey]int{}
	}
	(*m)[k] += by
}

func (d *delta) add(smp Sample, n int) {
	bump(&d.labels, countKey{smp.Backbone, smp.Label}, 1)
	if o := SampleOrigin(smp.Source); o != "" {
		bump(&d.origins, countKey{smp.Backbone, o}, 1)
	}
	if _, ok := d.dims[smp.Backbone]; !ok {
		if d.dims == nil {
			d.dims = map[string]int{}
		}
		d.dims[smp.Backbone] = len(smp.Features)
	}
	d.bytes += int64(n)
	d.samples++
}

func (d *delta) remove(smp Sample, n int) {
	bump(&d.labels, countKey{smp.Backbone, smp.Label}, -1)
	if o := SampleOrigin(smp.Source); o != "" {
		bump(&d.origins, countKey{smp.Backbone, o}, -1)
	}
	d.bytes -= int64(n)
	d.samples--
}

func (t *tally) apply(d *delta) {
	for k, n := range d.labels {
		bump(&t.labels, k, n)
		if t.labels[k] <= 0 {
			delete(t.labels, k)
		}
	}
	for k, n := range d.origins {
		bump(&t.origins, k, n)
		if t.origins[k] <= 0 {
			delete(t.origins, k)
		}
	}
	for bb, n := range d.dims {
		if t.dims == nil {
			t.dims = map[string]int{}
		}
		if _, ok := t.dims[bb]; !ok {
			t.dims[bb] = n
		}
	}
	t.bytes += d.bytes
	t.samples += d.samples
}

// tallySamples counts the stored samples. A backbone's feature length is
// the one most of its samples have.
func tallySamples(tx *bolt.Tx) (tally, error) {
	t := tally{labels: map[countKey]int{}, origins: map[countKey]int{}, dims: map[string]int{}, lengths: map[string]map[int]int{}}
	lengths := t.lengths
	err := tx.Bucket(bucketSamples).ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("%w: sample key %x", ErrCorrupt, k)
		}
		h, err := decodeHead(binary.BigEndian.Uint64(k), v)
		if err != nil {
			return err
		}
		t.labels[countKey{h.backbone, h.label}]++
		if o := SampleOrigin(h.source); o != "" {
			t.origins[countKey{h.backbone, o}]++
		}
		if lengths[h.backbone] == nil {
			lengths[h.backbone] = map[int]int{}
		}
		lengths[h.backbone][h.dim]++
		t.bytes += int64(len(v))
		t.samples++
		return nil
	})
	for bb, byLen := range lengths {
		best := 0
		for n, c := range byLen {
			if c > byLen[best] || c == byLen[best] && n > best {
				best = n
			}
		}
		t.dims[bb] = best
	}
	return t, err
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	} else if i == 0 {
		return "/"
	}
	return "."
}
