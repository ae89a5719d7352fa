package learner

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openWith(t *testing.T, opt StoreOptions) *Store {
	t.Helper()
	s, err := OpenStoreWith(filepath.Join(t.TempDir(), "store.db"), opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// bigSample carries a JPEG-sized payload of n random bytes.
func bigSample(label, req string, n int) Sample {
	smp := sample(label, req, 1, 2)
	smp.JPEG = make([]byte, n)
	for i := range smp.JPEG {
		smp.JPEG[i] = byte(rand.Uint32())
	}
	return smp
}

func TestStoreRefusesInvalidSamples(t *testing.T) {
	s := openWith(t, StoreOptions{Dims: map[string]int{"bb@1": 3}, MaxJPEGBytes: 1000})
	long := strings.Repeat("x", maxStringLen+1)
	for _, tc := range []struct {
		name string
		edit func(*Sample)
	}{
		{"no label", func(s *Sample) { s.Label = "" }},
		{"no backbone", func(s *Sample) { s.Backbone = "" }},
		{"no features", func(s *Sample) { s.Features = nil }},
		{"label too long", func(s *Sample) { s.Label = long }},
		{"source too long", func(s *Sample) { s.Source = long }},
		{"request id too long", func(s *Sample) { s.RequestID = long }},
		{"label not UTF-8", func(s *Sample) { s.Label = "Tig\xffger" }},
		{"NaN", func(s *Sample) { s.Features[1] = float32(math.NaN()) }},
		{"infinity", func(s *Sample) { s.Features[2] = float32(math.Inf(-1)) }},
		{"one value where the backbone computes three", func(s *Sample) { s.Features = []float32{1} }},
		{"JPEG over the limit", func(s *Sample) { s.JPEG = make([]byte, 1001) }},
	} {
		smp := sample("Tigger", "r-"+tc.name, 1, 2, 3)
		tc.edit(&smp)
		if _, _, err := s.Add(smp); !errors.Is(err, ErrInvalidSample) {
			t.Errorf("%s: %v, want ErrInvalidSample", tc.name, err)
		}
		// In a batch, one bad sample keeps the good ones out too.
		if _, _, err := s.AddMany([]Sample{sample("Misty", "good-"+tc.name, 1, 2, 3), smp}); !errors.Is(err, ErrInvalidSample) {
			t.Errorf("%s in a batch: %v", tc.name, err)
		}
	}
	if n, _ := s.Len(); n != 0 {
		t.Fatalf("%d samples stored from refused adds", n)
	}
	if _, _, err := s.Add(sample("Tigger", "ok", 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetLabel(1, "Tig\xffger"); !errors.Is(err, ErrInvalidSample) {
		t.Fatalf("relabel to a non-UTF-8 name: %v", err)
	}
}

// A backbone not configured takes the length of its first sample; a
// stranger's shorter vector after it is refused, so training keeps working.
func TestStoreLearnsFeatureLength(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AddMany([]Sample{sample("a", "1", 1, 2, 3), sample("b", "2", 1)}); !errors.Is(err, ErrInvalidSample) {
		t.Fatalf("a batch of mixed lengths: %v", err)
	}
	for i, l := range []string{"a", "b"} {
		if _, _, err := s.Add(sample(l, fmt.Sprint(i), 1, 2, 3)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Add(sample("junk", "shared:x:1", 1)); !errors.Is(err, ErrInvalidSample) {
		t.Fatalf("1 value after 3: %v", err)
	}
	other := sample("a", "other", 1)
	other.Backbone = "bb@2"
	if _, _, err := s.Add(other); err != nil {
		t.Fatalf("another backbone's own length: %v", err)
	}
	// A store written before lengths were checked: a short vector sits
	// among the others. It is left out of the dataset, not an error.
	err = s.db.Update(func(tx *bolt.Tx) error {
		junk := sample("junk", "old", 9)
		return tx.Bucket(bucketSamples).Put(idKey(999), junk.encode())
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.Dataset("bb@1")
	if err != nil || len(d.X) != 2 || d.Labels[0] != "a" || d.Labels[1] != "b" {
		t.Fatalf("dataset %v, %v", d, err)
	}
	if _, err := Train(d, "bb@1", TrainConfig{C: 1}, nil); err != nil {
		t.Fatalf("training with the short vector in the store: %v", err)
	}
}

func TestStoreQuotas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	opt := StoreOptions{MaxSamplesPerLabel: 3, MaxSamplesPerOrigin: 2, MaxBytes: 1 << 20}
	s, err := OpenStoreWith(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for i := range 3 {
		id, _, err := s.Add(sample("Tigger", fmt.Sprint("t", i), 1, 2))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, _, err := s.Add(sample("Tigger", "t3", 1, 2)); !errors.Is(err, ErrLabelFull) {
		t.Fatalf("fourth sample of a label with a quota of 3: %v", err)
	}
	// A retried request is answered as before, quota or not.
	if id, dup, err := s.Add(sample("Tigger", "t0", 1, 2)); err != nil || !dup || id != ids[0] {
		t.Fatalf("retry at the quota: %d %v %v", id, dup, err)
	}
	if _, _, err := s.Add(sample("Misty", "m0", 1, 2)); err != nil {
		t.Fatalf("another label: %v", err)
	}
	if _, err := s.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(sample("Tigger", "t4", 1, 2)); err != nil {
		t.Fatalf("after a forget, the label has room again: %v", err)
	}
	// Per sharing camera.
	shared := func(origin string, n int) Sample {
		smp := sample(fmt.Sprint("pet", n), fmt.Sprintf("shared:%s:%d", origin, n), 1, 2)
		smp.Source = smp.RequestID
		return smp
	}
	for i := range 2 {
		if _, _, err := s.Add(shared("porch", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Add(shared("porch", 2)); !errors.Is(err, ErrOriginFull) {
		t.Fatalf("third sample from one camera with a quota of 2: %v", err)
	}
	if _, _, err := s.Add(shared("garden", 0)); err != nil {
		t.Fatalf("another camera: %v", err)
	}
	// Bytes: about 300 KB a sample under a 1 MiB limit.
	n := 0
	for i := range 10 {
		_, _, err := s.Add(bigSample(fmt.Sprint("big", i), fmt.Sprint("b", i), 300<<10))
		if errors.Is(err, ErrStoreFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d samples of 300 KB under a 1 MiB limit, want 3", n)
	}
	st := s.DiskStatus()
	if st.DataBytes < 900<<10 || st.DataBytes > 1<<20 || st.MaxBytes != 1<<20 || st.OK || !strings.Contains(st.Problem, "limit") {
		t.Fatalf("status %+v", st)
	}
	// The counts are rebuilt from the file when it is opened again.
	s.Close()
	s, err = OpenStoreWith(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, smp := range []Sample{sample("Tigger", "t5", 1, 2), shared("porch", 3), bigSample("big9", "b9", 300<<10)} {
		if _, _, err := s.Add(smp); err == nil {
			t.Fatalf("%s after reopening: stored over a quota", smp.RequestID)
		}
	}
}

func TestStoreOptionsValidate(t *testing.T) {
	if err := DefaultStoreOptions().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []StoreOptions{
		{MaxSamplesPerLabel: -1}, {MaxSamplesPerOrigin: -1}, {MaxBytes: 1000}, {MaxJPEGBytes: -1},
		{ReserveBytes: -1}, {RiskyAttempts: -1}, {Dims: map[string]int{"bb": 0}}, {Dims: map[string]int{"": 3}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
		if _, err := OpenStoreWith(filepath.Join(t.TempDir(), "s.db"), bad, nil); err == nil {
			t.Errorf("opened with %+v", bad)
		}
	}
}

// The free-space check refuses a write that would eat into the reserve,
// before anything is written, and DiskStatus says so.
func TestStoreKeepsDiskReserve(t *testing.T) {
	s := openWith(t, StoreOptions{ReserveBytes: 10 << 20})
	free := int64(20 << 20)
	s.freeSpace = func(string) (int64, error) { return free, nil }
	if _, _, err := s.Add(bigSample("a", "1", 1<<20)); err != nil {
		t.Fatalf("20 MiB free, 1 MiB sample: %v", err)
	}
	if st := s.DiskStatus(); !st.OK || st.FreeBytes != free || st.ReserveBytes != 10<<20 || st.Samples != 1 {
		t.Fatalf("status %+v", st)
	}
	free = 11 << 20
	_, _, err := s.Add(bigSample("a", "2", 1<<20))
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("11 MiB free, 10 MiB reserve, 1 MiB sample: %v", err)
	}
	if err := s.BeginRisky("r", "decode"); err != nil {
		t.Fatalf("a mark fits: %v", err)
	}
	free = 10<<20 + 1000
	if err := s.BeginRisky("r2", "decode"); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("a mark with the reserve gone: %v", err)
	}
	if n, _ := s.Len(); n != 1 {
		t.Fatalf("%d samples", n)
	}
	st := s.DiskStatus()
	if st.OK || !strings.Contains(st.Problem, "disk nearly full") || st.LastWriteError != "" {
		t.Fatalf("status %+v: want nearly full, and no failed write (nothing was tried)", st)
	}
	// Forgetting still works on a full disk.
	if n, err := s.Relabel("a", ""); err != nil || n != 1 {
		t.Fatalf("forget on a full disk: %d %v", n, err)
	}
}

// In a user and mount namespace of its own, a child process mounts an
// 8 MiB tmpfs and fills it: first with the reserve on, then to the last
// byte with every check beforehand off, so that commits themselves hit
// ENOSPC. Nothing it acknowledged is lost, nothing refused is stored, and
// the store works again once there is room.
func TestStoreOnAFullDisk(t *testing.T) {
	dir := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	c, err := startChild(t, "diskfull", dir, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
	})
	if err != nil {
		if os.Getenv("WHISKER_TEST_EXEC") != "" {
			t.Skipf("no user namespaces under the emulator (%v): the full-disk test runs in make test", err)
		}
		t.Fatalf("start a child in its own user and mount namespace (needs unprivileged user namespaces): %v", err)
	}
	lines, err := c.rest()
	out := strings.Join(lines, "\n")
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{
		"reserve: refused: store samples: " + ErrDiskFull.Error(),
		"reserve status: ok=false",
		"full: refused: store samples: " + ErrDiskFull.Error(),
		"no space left on device",
		"full status: ok=false",
		"after freeing: ok",
		"recovered status: ok=true",
		"reopened: every acknowledged sample is there, no refused one, check ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("child output lacks %q", want)
		}
	}
}

func diskFullChild(dir string, say func(string, ...any), result func(error) string) int {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		say("mount: %v", err)
		return 4
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		say("mount: %v", err)
		return 4
	}
	path := filepath.Join(dir, "s.db")
	acked := map[string]bool{}
	refused := map[string]bool{}
	status := func(st DiskStatus) string {
		return fmt.Sprintf("ok=%v free=%d problem=%q", st.OK, st.FreeBytes, st.Problem)
	}
	add := func(s *Store, req string, n int) error {
		_, _, err := s.Add(bigSample("Tigger", req, n))
		if err == nil {
			acked[req] = true
		} else {
			refused[req] = true
		}
		return err
	}

	// With a 2 MiB reserve, the check refuses before the disk is full.
	s, err := OpenStoreWith(path, StoreOptions{ReserveBytes: 2 << 20}, nil)
	if err != nil {
		say("open: %v", err)
		return 1
	}
	for i := 0; ; i++ {
		if err := add(s, fmt.Sprint("a", i), 200<<10); err != nil {
			if errors.Is(err, ErrDiskFull) {
				say("reserve: refused: %v (after %d samples)", err, i)
			} else {
				say("reserve: %s", result(err))
			}
			break
		}
	}
	say("reserve status: %s", status(s.DiskStatus()))
	s.Close()

	// To the last byte, no check beforehand: the commits meet ENOSPC.
	s, err = OpenStoreWith(path, StoreOptions{}, nil)
	if err != nil {
		say("open: %v", err)
		return 1
	}
	s.freeSpace = func(string) (int64, error) { return -1, nil }
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		say("filler: %v", err)
		return 1
	}
	for _, chunk := range []int{64 << 10, 1} {
		for {
			if _, err := f.Write(make([]byte, chunk)); err != nil {
				break
			}
		}
	}
	f.Close()
	failed := 0
	for i := 0; failed < 3 && i < 200; i++ {
		if err := add(s, fmt.Sprint("b", i), 20<<10); err != nil {
			if errors.Is(err, ErrDiskFull) {
				say("full: refused: %v", err)
			} else {
				say("full: %s", result(err))
			}
			failed++
		}
	}
	say("full status: %s", status(s.DiskStatus()))
	os.Remove(filler)
	say("after freeing: %s", result(add(s, "c", 20<<10)))
	say("recovered status: %s", status(s.DiskStatus()))
	s.Close()

	s, err = OpenStore(path)
	if err != nil {
		say("reopen: %v", err)
		return 1
	}
	defer s.Close()
	var problems []string
	for req := range acked {
		if _, ok, _ := s.Request(req); !ok {
			problems = append(problems, "acknowledged "+req+" lost")
		}
	}
	for req := range refused {
		if _, ok, _ := s.Request(req); ok {
			problems = append(problems, "refused "+req+" stored")
		}
	}
	if err := s.view(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		problems = append(problems, "check: "+err.Error())
	}
	if n, _ := s.Len(); n != len(acked) {
		problems = append(problems, fmt.Sprintf("%d samples, %d acknowledged", n, len(acked)))
	}
	if len(problems) > 0 {
		say("reopened: %s", strings.Join(problems, "; "))
		return 1
	}
	say("reopened: every acknowledged sample is there, no refused one, check ok (%d acknowledged, %d refused)", len(acked), len(refused))
	return 0
}

// A change refused by its own logic (an unknown label, a quota) is not a
// disk problem: DiskStatus stays OK.
func TestStoreRefusalIsNotADiskProblem(t *testing.T) {
	s := openWith(t, StoreOptions{MaxSamplesPerLabel: 1})
	_, err := s.ApplyOnce("r", func(tx *Tx) (any, error) { return nil, errors.New("unknown label") }, nil)
	if err == nil || err.Error() != "unknown label" {
		t.Fatalf("ApplyOnce: %v", err)
	}
	if _, _, err := s.Add(sample("a", "1", 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(sample("a", "2", 1)); !errors.Is(err, ErrLabelFull) {
		t.Fatal(err)
	}
	if st := s.DiskStatus(); !st.OK || st.LastWriteError != "" {
		t.Fatalf("status %+v", st)
	}
}
