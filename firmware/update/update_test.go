package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/firmware/bundle"
)

type kit struct {
	dir  string
	key  ed25519.PrivateKey
	pub  ed25519.PublicKey
	opts bundle.CheckOptions
}

func newKit(t testing.TB) *kit {
	k := &kit{dir: t.TempDir()}
	var err error
	k.pub, err = bundle.GenerateKeys(filepath.Join(k.dir, "k.key"), filepath.Join(k.dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if k.key, err = bundle.LoadPrivateKey(filepath.Join(k.dir, "k.key")); err != nil {
		t.Fatal(err)
	}
	k.opts = bundle.CheckOptions{Trusted: []ed25519.PublicKey{k.pub}}
	return k
}

// makeBundle packs an agent "binary" and optionally a backbone.
func (k *kit) makeBundle(t testing.TB, version string, withBackbone bool) (string, string) {
	t.Helper()
	src := filepath.Join(k.dir, "src-"+version)
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "whisker"), []byte("#!/bin/sh\necho "+version+"\n"), 0o755))
	inputs := []bundle.Input{{Kind: bundle.KindAgent, Path: filepath.Join(src, "whisker")}}
	if withBackbone {
		must(t, os.WriteFile(filepath.Join(src, "bb.tflite"), bytes.Repeat([]byte(version), 500), 0o644))
		must(t, os.WriteFile(filepath.Join(src, "bb.json"), []byte(`{"v":"`+version+`"}`), 0o644))
		inputs = append(inputs, bundle.Input{Kind: bundle.KindBackbone, Path: filepath.Join(src, "bb.tflite")},
			bundle.Input{Kind: bundle.KindBackboneManifest, Path: filepath.Join(src, "bb.json")})
	}
	path := filepath.Join(k.dir, version+".wsk")
	f, err := os.Create(path)
	must(t, err)
	if _, err := bundle.Create(f, inputs, bundle.CreateOptions{Version: version, Key: k.key}); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
	sha, err := bundle.FileSHA256(path)
	must(t, err)
	return path, sha
}

// must stops the test on a setup step's error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// bootAndCommit starts the staged version once and commits it, as a
// healthy agent would.
func bootAndCommit(t testing.TB, l Layout, k *kit) {
	t.Helper()
	_, err := l.Boot(k.opts, 2, nolog)
	must(t, err)
	_, err = l.Commit(Hooks{})
	must(t, err)
}

func install(t testing.TB, l Layout, k *kit, path, sha, version string, hooks Hooks) string {
	t.Helper()
	slot, v, err := l.Stage(path, k.opts, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha}, hooks); err != nil {
		t.Fatal(err)
	}
	return slot
}

func nolog(string, ...any) {}

func TestInstallCommitAndCarryForward(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	if s, _ := l.Boot(k.opts, 3, nolog); s != "" {
		t.Fatalf("fresh device boots %q, want the installed binary", s)
	}
	p1, sha1 := k.makeBundle(t, "1.1.0", true)
	s1 := install(t, l, k, p1, sha1, "1.1.0", Hooks{})
	if boot, _ := l.Boot(k.opts, 3, nolog); boot != s1 {
		t.Fatalf("boots %q, want %q", boot, s1)
	}
	if _, err := l.Commit(Hooks{}); err != nil {
		t.Fatal(err)
	}
	// An agent-only bundle keeps the backbone of the slot before it.
	p2, sha2 := k.makeBundle(t, "1.2.0", false)
	s2 := install(t, l, k, p2, sha2, "1.2.0", Hooks{})
	if s2 == s1 {
		t.Fatal("staged into the slot in use")
	}
	if _, ok := l.File(s2, bundle.KindBackbone); !ok {
		t.Fatal("the backbone was not carried forward")
	}
	agent, _ := l.File(s2, bundle.KindAgent)
	if data, _ := os.ReadFile(agent); !strings.Contains(string(data), "1.2.0") {
		t.Fatalf("slot %s runs %q", s2, data)
	}
	if err := l.VerifySlot(s2, k.opts); err != nil {
		t.Fatal(err)
	}
}

func TestUnhealthySlotRollsBack(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p1, sha1 := k.makeBundle(t, "1.1.0", true)
	good := install(t, l, k, p1, sha1, "1.1.0", Hooks{})
	bootAndCommit(t, l, k)
	p2, sha2 := k.makeBundle(t, "1.2.0", false)
	bad := install(t, l, k, p2, sha2, "1.2.0", Hooks{})
	// The new slot crashes on every start: two tries, then back.
	for i, want := range []string{bad, bad, good} {
		if got, _ := l.Boot(k.opts, 2, nolog); got != want {
			t.Fatalf("start %d boots %q, want %q", i+1, got, want)
		}
	}
	st, _ := l.ReadState()
	if st.Pending != nil || st.Last == nil || st.Last.Result != "rolled_back" || st.Last.Version != "1.2.0" {
		t.Fatalf("state after rollback: %+v %+v", st.Pending, st.Last)
	}
	// The agent-initiated rollback (no sightings in time) does the same.
	p3, sha3 := k.makeBundle(t, "1.3.0", false)
	install(t, l, k, p3, sha3, "1.3.0", Hooks{})
	_, err := l.Boot(k.opts, 2, nolog)
	must(t, err)
	if _, err := l.Rollback("no sightings within 2m0s"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Boot(k.opts, 2, nolog); got != good {
		t.Fatalf("after rollback boots %q, want %q", got, good)
	}
}

func TestTamperedSlotIsNotRun(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p1, sha1 := k.makeBundle(t, "1.1.0", true)
	s := install(t, l, k, p1, sha1, "1.1.0", Hooks{})
	bootAndCommit(t, l, k)
	agent, ok := l.File(s, bundle.KindAgent)
	if !ok {
		t.Fatal("no agent in the slot")
	}
	must(t, os.WriteFile(agent, []byte("#!/bin/sh\nrm -rf /\n"), 0o755))
	if got, _ := l.Boot(k.opts, 2, nolog); got != "" {
		t.Fatalf("boots tampered slot %q", got)
	}
}

// TestMain lets the test binary run an update in a child process that
// kills itself (SIGKILL, as a power cut would) right after a given step.
func TestMain(m *testing.M) {
	if step := os.Getenv("WHISKER_TEST_CRASH_AFTER"); step != "" {
		os.Exit(crashingUpdate(step))
	}
	os.Exit(m.Run())
}

func crashingUpdate(step string) int {
	dir := os.Getenv("WHISKER_TEST_DIR")
	pub, err := bundle.LoadPublicKey(filepath.Join(dir, "k.pub"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts := bundle.CheckOptions{Trusted: []ed25519.PublicKey{pub}}
	l := Layout{Dir: filepath.Join(dir, "fw")}
	hooks := Hooks{Step: func(s string) {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}}
	src := os.Getenv("WHISKER_TEST_BUNDLE")
	path, err := l.FetchBundle(context.Background(), src, os.Getenv("WHISKER_TEST_SHA"), FetchOptions{MaxSize: 1 << 30, LocalDir: filepath.Dir(src)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	hooks.step(StepDownloaded)
	slot, v, err := l.Stage(path, opts, hooks)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: os.Getenv("WHISKER_TEST_SHA")}, hooks); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// The new version boots and proves healthy.
	if _, err := l.Boot(opts, 3, nolog); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := l.Commit(hooks); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func TestKillAtEachStepLeavesABootableVerifiedSlot(t *testing.T) {
	for _, step := range AllSteps {
		t.Run(step, func(t *testing.T) {
			k := newKit(t)
			l := Layout{Dir: filepath.Join(k.dir, "fw")}
			p1, sha1 := k.makeBundle(t, "1.1.0", true)
			good := install(t, l, k, p1, sha1, "1.1.0", Hooks{})
			bootAndCommit(t, l, k)
			p2, sha2 := k.makeBundle(t, "1.2.0", false)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "WHISKER_TEST_CRASH_AFTER="+step, "WHISKER_TEST_DIR="+k.dir,
				"WHISKER_TEST_BUNDLE="+p2, "WHISKER_TEST_SHA="+sha2)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child did not die by SIGKILL after %s: %v\n%s", step, err, out)
			}
			// Power back: boot picks a slot that verifies, and it is the
			// old or the new version, whole.
			slot, err := l.Boot(k.opts, 2, nolog)
			if err != nil {
				t.Fatal(err)
			}
			if slot == "" {
				t.Fatalf("after a crash at %q the device fell back to the installed binary", step)
			}
			if err := l.VerifySlot(slot, k.opts); err != nil {
				t.Fatalf("after a crash at %q: slot %s does not verify: %v", step, slot, err)
			}
			agent, _ := l.File(slot, bundle.KindAgent)
			data, _ := os.ReadFile(agent)
			t.Logf("crash after %-10s -> boots slot %s (%s)", step, slot, strings.TrimSpace(strings.TrimPrefix(string(data), "#!/bin/sh\necho")))
			if slot != good && !strings.Contains(string(data), "1.2.0") {
				t.Fatalf("slot %s is neither the old slot nor the new version", slot)
			}
		})
	}
}

// flakyServer serves a file but cuts the first response in half; it
// records the Range header of each request.
func flakyServer(t *testing.T, data []byte) (*httptest.Server, *atomic.Int32, *atomic.Value) {
	var calls atomic.Int32
	var lastRange atomic.Value
	lastRange.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastRange.Store(r.Header.Get("Range"))
		if calls.Add(1) == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data[:len(data)/2])
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		http.ServeContent(w, r, "b.wsk", time.Now(), bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &lastRange
}

func TestFetchResumesAndChecksHash(t *testing.T) {
	k := newKit(t)
	path, sha := k.makeBundle(t, "1.1.0", true)
	data, err := os.ReadFile(path)
	must(t, err)
	ctx := context.Background()

	// A cut download without retries fails and leaves nothing.
	srv, _, _ := flakyServer(t, data)
	l := Layout{Dir: t.TempDir()}
	if _, err := l.FetchBundle(ctx, srv.URL, sha, FetchOptions{MaxSize: 1 << 30, Retries: 0}); err == nil {
		t.Fatal("a cut download succeeded")
	}
	assertEmpty(t, l.Downloads())

	// With a retry it resumes where the cut left it.
	srv, calls, lastRange := flakyServer(t, data)
	got, err := l.FetchBundle(ctx, srv.URL, sha, FetchOptions{MaxSize: 1 << 30, Retries: 1, RetryDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, data) || calls.Load() != 2 {
		t.Fatalf("resumed download differs (calls %d)", calls.Load())
	}
	if want := fmt.Sprintf("bytes=%d-", len(data)/2); lastRange.Load() != want {
		t.Fatalf("second try asked for %q, want %q", lastRange.Load(), want)
	}

	// A wrong expected hash: refused, nothing kept, and the answer does
	// not carry the hash of what was served.
	other := strings.Repeat("0", 64)
	l2 := Layout{Dir: t.TempDir()}
	_, err = l2.FetchBundle(ctx, srv.URL, other, FetchOptions{MaxSize: 1 << 30})
	if !errors.Is(err, ErrHash) || strings.Contains(err.Error(), sha[:8]) {
		t.Fatalf("hash mismatch: %v", err)
	}
	assertEmpty(t, l2.Downloads())
	// Over the size limit.
	if _, err := l2.FetchBundle(ctx, srv.URL, sha, FetchOptions{MaxSize: 100}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("size limit: %v", err)
	}
	assertEmpty(t, l2.Downloads())
}

// assertEmpty fails if dir holds anything.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("%s was left in %s", e.Name(), dir)
	}
}
