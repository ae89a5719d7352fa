package learner

import (
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/whiskercam/whisker/internal/atomicfile"
)

// bbolt never shrinks its file: pages freed by a delete are reused, never
// given back. Compaction copies the live data into a new file and swaps it
// in, crash-safely: the copy is written and synced beside the store, then
// renamed over it and the directory synced. A crash before the rename
// leaves the old file (the copy is removed at the next open); after it,
// the new one, complete.

func compactPath(path string) string { return path + ".compact" }

// DiskStatus is the store's disk health, for the agent to show.
type DiskStatus struct {
	Path string `json:"path"`
	// FileBytes is the size of the store file, DataBytes what its samples
	// take, ReclaimableBytes what a compaction would give back.
	FileBytes        int64 `json:"file_bytes"`
	DataBytes        int64 `json:"data_bytes"`
	ReclaimableBytes int64 `json:"reclaimable_bytes"`
	Samples          int   `json:"samples"`
	// MaxBytes is the limit on DataBytes (0: none).
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// FreeBytes is what the file system has free (-1: unknown);
	// ReserveBytes what writes leave free.
	FreeBytes    int64 `json:"free_bytes"`
	ReserveBytes int64 `json:"reserve_bytes"`
	// OK is false when the next sample would likely be refused for space,
	// or the last write failed; Problem says why.
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
	// LastWriteError is the error of the last write, if it failed.
	LastWriteError   string    `json:"last_write_error,omitempty"`
	LastWriteErrorAt time.Time `json:"last_write_error_at,omitzero"`
	LastCompaction   time.Time `json:"last_compaction,omitzero"`
	// CompactionNote says why the last compaction the store wanted did not run.
	CompactionNote string `json:"compaction_note,omitempty"`
}

// DiskStatus reports the store's size, the free space beside it and the
// last write failure.
func (s *Store) DiskStatus() DiskStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := DiskStatus{Path: s.path, DataBytes: s.tally.bytes, Samples: s.tally.samples, MaxBytes: s.opt.MaxBytes,
		ReserveBytes: s.opt.ReserveBytes, LastCompaction: s.lastCompact, CompactionNote: s.compactNote, OK: true}
	var problems []string
	if fi, err := os.Stat(s.path); err == nil {
		st.FileBytes = fi.Size()
	} else {
		problems = append(problems, err.Error())
	}
	if inUse, err := s.inUse(); err == nil {
		st.ReclaimableBytes = max(st.FileBytes-inUse, 0)
	}
	free, err := s.freeSpace(dirOf(s.path))
	switch {
	case err != nil:
		st.FreeBytes = -1
		problems = append(problems, "free space unknown: "+err.Error())
	default:
		st.FreeBytes = free
		if free >= 0 && free < s.opt.ReserveBytes+1<<20 {
			problems = append(problems, fmt.Sprintf("disk nearly full: %d bytes free, %d kept in reserve", free, s.opt.ReserveBytes))
		}
	}
	switch {
	case s.refusedFull != nil:
		problems = append(problems, fmt.Sprintf("store at its size limit: samples take %d of %d bytes, and the last one was refused", s.tally.bytes, s.opt.MaxBytes))
	case s.opt.MaxBytes > 0 && s.tally.bytes >= s.opt.MaxBytes*95/100:
		problems = append(problems, fmt.Sprintf("store nearly at its size limit: samples take %d of %d bytes", s.tally.bytes, s.opt.MaxBytes))
	}
	if s.lastErr != nil {
		st.LastWriteError, st.LastWriteErrorAt = s.lastErr.Error(), s.lastErrAt
		problems = append(problems, "last write failed: "+s.lastErr.Error())
	}
	if len(problems) > 0 {
		st.OK = false
		st.Problem = problems[0]
		for _, p := range problems[1:] {
			st.Problem += "; " + p
		}
	}
	return st
}

// inUse is the bytes of the file's pages that hold data.
func (s *Store) inUse() (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		st := tx.DB().Stats()
		n = tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(tx.DB().Info().PageSize)
		return nil
	})
	return n, err
}

// Compact rewrites the store into a file that holds only its live data,
// so that the space of deleted samples goes back to the file system.
// Writes wait while it runs; reads only while the files are swapped.
func (s *Store) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compact()
}

// compactIfWorthIt compacts when enough of the file is free pages. It runs
// with s.mu held, after a write that removed something; its failure is
// logged and kept for DiskStatus, not returned: the write succeeded.
func (s *Store) compactIfWorthIt() {
	minBytes := s.opt.compactMin()
	if minBytes < 0 {
		return
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return
	}
	inUse, err := s.inUse()
	if err != nil {
		return
	}
	if free := fi.Size() - inUse; free < minBytes || free < fi.Size()/2 {
		return
	}
	if err := s.compact(); err != nil {
		s.log.Error("store compaction failed; the store is unchanged", "path", s.path, "err", err)
	}
}

// compact runs with s.mu held.
func (s *Store) compact() (err error) {
	defer func() {
		if err != nil {
			s.compactNote = err.Error()
		}
	}()
	inUse, err := s.inUse()
	if err != nil {
		return err
	}
	if free, err := s.freeSpace(dirOf(s.path)); err == nil && free >= 0 && free < inUse+inUse/8+1<<20 {
		return fmt.Errorf("compaction needs about %d bytes free, %s has %d", inUse+inUse/8+1<<20, dirOf(s.path), free)
	}
	// Writers wait on s.mu while the copy is made; readers go on.
	before, _ := os.Stat(s.path)
	tmp := compactPath(s.path)
	os.Remove(tmp)
	err = func() error {
		s.swap.RLock()
		defer s.swap.RUnlock()
		dst, err := bolt.Open(tmp, 0o600, s.boltOptions())
		if err != nil {
			return err
		}
		err = bolt.Compact(dst, s.db, 32<<20)
		if err == nil {
			err = dst.Sync()
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		return err
	}()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", s.path, err)
	}
	// Readers wait while the files are swapped.
	s.swap.Lock()
	defer s.swap.Unlock()
	if err := s.db.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: close: %w", s.path, err)
	}
	renameErr := os.Rename(tmp, s.path)
	if renameErr == nil {
		renameErr = atomicfile.SyncDir(dirOf(s.path))
	}
	// Reopen whichever file is now at the path: the old one if the rename
	// failed, the compacted one if it did not.
	db, err := bolt.Open(s.path, 0o600, s.boltOptions())
	if err != nil {
		return fmt.Errorf("compact %s: reopen: %w (the store is closed)", s.path, err)
	}
	s.db = db
	if renameErr != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", s.path, renameErr)
	}
	s.lastCompact, s.compactNote = time.Now(), ""
	if after, err := os.Stat(s.path); err == nil && before != nil {
		s.log.Info("store compacted", "path", s.path, "bytes_before", before.Size(), "bytes_after", after.Size())
	}
	return nil
}
