package learner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syncedStore says whether a store syncs every commit: bbolt's options
// that trade durability for speed are all off.
func syncedStore(s *Store) error {
	db := s.db
	if db.NoSync || db.NoGrowSync || db.NoFreelistSync {
		return fmt.Errorf("store does not sync every commit: NoSync %v, NoGrowSync %v, NoFreelistSync %v", db.NoSync, db.NoGrowSync, db.NoFreelistSync)
	}
	return nil
}

func TestStoreSyncOptions(t *testing.T) {
	for _, opt := range []StoreOptions{{}, DefaultStoreOptions()} {
		s, err := OpenStoreWith(filepath.Join(t.TempDir(), "s.db"), opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := syncedStore(s); err != nil {
			t.Fatal(err)
		}
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		if err := syncedStore(s); err != nil {
			t.Fatalf("after compaction: %v", err)
		}
		s.Close()
	}
}

// A child process makes every fsync fail (a seccomp filter), then writes:
// each kind of write the store acknowledges must fail, because each
// syncs before it returns. The same write with syncing turned off goes
// through, so a store that stopped syncing would fail this test.
func TestStoreCommitsFailWhenSyncsFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	c, err := startChild(t, "syncfail", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := c.rest()
	if err != nil && !(len(lines) > 1 && strings.HasPrefix(lines[1], "seccomp:")) {
		t.Fatalf("child: %v\n%s", err, strings.Join(lines, "\n"))
	}
	got := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ": ")
		got[k] = v
	}
	if s := got["seccomp"]; s != "" {
		if os.Getenv("WHISKER_TEST_EXEC") != "" {
			t.Skipf("no seccomp under the emulator (%s): the sync check runs in make test", s)
		}
		t.Fatalf("cannot make fsync fail: %s", s)
	}
	if got["before"] != "ok" {
		t.Fatalf("a write before fsync failed: %s", got["before"])
	}
	for _, k := range []string{"add", "begin", "compact", "atomicfile"} {
		if !strings.Contains(got[k], "input/output error") {
			t.Errorf("%s with every fsync failing: %q, want an I/O error (it does not sync)", k, got[k])
		}
	}
	if got["nosync add"] != "ok" {
		t.Errorf("with syncing off the write was expected to go through: %q", got["nosync add"])
	}
	// The failed writes left the store as it was.
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, _ := s.Request("after"); ok {
		t.Error("the sample whose commit failed is in the store")
	}
	if _, ok, _ := s.Request("before"); !ok {
		t.Error("the sample committed before is gone")
	}
	if in, _ := s.InProgress("r"); in != nil {
		t.Errorf("a mark whose commit failed is in the store: %+v", in)
	}
}
