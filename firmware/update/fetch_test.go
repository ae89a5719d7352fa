package update

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/whiskercam/whisker/firmware/bundle"
)

// bundleSpec is what a test bundle carries and how it is signed.
type bundleSpec struct {
	version       string
	backbone      bool
	head          bool
	downgradeFrom string
	keys          []ed25519.PrivateKey // default the kit's key
}

// makeSigned packs a bundle as spec says.
func (k *kit) makeSigned(t testing.TB, spec bundleSpec) (string, string) {
	t.Helper()
	src := filepath.Join(k.dir, fmt.Sprintf("src-%s-%d", spec.version, time.Now().UnixNano()))
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "whisker"), []byte("#!/bin/sh\necho "+spec.version+"\n"), 0o755)
	inputs := []bundle.Input{{Kind: bundle.KindAgent, Path: filepath.Join(src, "whisker")}}
	if spec.backbone {
		os.WriteFile(filepath.Join(src, "bb.tflite"), []byte(strings.Repeat(spec.version, 500)), 0o644)
		os.WriteFile(filepath.Join(src, "bb.json"), []byte(`{"v":"`+spec.version+`"}`), 0o644)
		inputs = append(inputs, bundle.Input{Kind: bundle.KindBackbone, Path: filepath.Join(src, "bb.tflite")},
			bundle.Input{Kind: bundle.KindBackboneManifest, Path: filepath.Join(src, "bb.json")})
	}
	if spec.head {
		os.WriteFile(filepath.Join(src, "head.json"), []byte(`{"head":"`+spec.version+`"}`), 0o644)
		inputs = append(inputs, bundle.Input{Kind: bundle.KindHead, Path: filepath.Join(src, "head.json")})
	}
	keys := spec.keys
	if len(keys) == 0 {
		keys = []ed25519.PrivateKey{k.key}
	}
	path := filepath.Join(src, spec.version+".wsk")
	f, _ := os.Create(path)
	if _, err := bundle.Create(f, inputs, bundle.CreateOptions{Version: spec.version, DowngradeFrom: spec.downgradeFrom, Key: keys[0], AlsoKeys: keys[1:]}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sha, _ := bundle.FileSHA256(path)
	return path, sha
}

// fifo makes a FIFO nobody writes to.
func fifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// within fails the test if f has not returned after d (a bound on a call
// that must not block, not a wait).
func within[T any](t *testing.T, d time.Duration, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
		var zero T
		return zero
	}
}

var longHex = regexp.MustCompile(`[0-9a-f]{12,}`)

// The file oracle: a path outside update.local_dir is refused before it is
// opened; inside it, every path that is not the bundle asked for (missing,
// another file, a directory, a FIFO, a device, a link out, too large) gets
// one and the same answer, nothing is copied and no hash is named.
func TestLocalPathsDoNotLeak(t *testing.T) {
	k := newKit(t)
	bpath, sha := k.makeSigned(t, bundleSpec{version: "1.1.0"})
	local := t.TempDir()
	data, _ := os.ReadFile(bpath)
	os.WriteFile(filepath.Join(local, "good.wsk"), data, 0o644)
	os.WriteFile(filepath.Join(local, "other.wsk"), []byte("another file"), 0o644)
	os.Mkdir(filepath.Join(local, "dir.wsk"), 0o755)
	fifo(t, filepath.Join(local, "fifo.wsk"))
	os.Symlink("/etc/shadow", filepath.Join(local, "shadow.wsk"))
	os.Symlink("good.wsk", filepath.Join(local, "alias.wsk"))
	big, _ := os.Create(filepath.Join(local, "big.wsk"))
	big.Truncate(2 << 20) // sparse: over the limit, costs nothing
	big.Close()
	ctx := context.Background()
	opts := FetchOptions{MaxSize: 1 << 20, LocalDir: local}

	type try struct {
		name, source string
		want         error
	}
	run := func(t *testing.T, l Layout, o FetchOptions, tc try) error {
		t.Helper()
		err := within(t, 10*time.Second, func() error { _, err := l.FetchBundle(ctx, tc.source, sha, o); return err })
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			return err
		}
		if err != nil && longHex.MatchString(err.Error()) {
			t.Errorf("%s: the answer names a hash: %v", tc.name, err)
		}
		assertEmpty(t, l.Downloads())
		return err
	}
	l := Layout{Dir: t.TempDir()}
	var answers []string
	for _, tc := range []try{
		{"missing", filepath.Join(local, "missing.wsk"), ErrNoLocalBundle},
		{"another file", filepath.Join(local, "other.wsk"), ErrNoLocalBundle},
		{"a directory", filepath.Join(local, "dir.wsk"), ErrNoLocalBundle},
		{"a FIFO", filepath.Join(local, "fifo.wsk"), ErrNoLocalBundle},
		{"a link to /etc/shadow", filepath.Join(local, "shadow.wsk"), ErrNoLocalBundle},
		{"too large", filepath.Join(local, "big.wsk"), ErrNoLocalBundle},
		{"a relative name", "missing.wsk", ErrNoLocalBundle},
	} {
		if err := run(t, l, opts, tc); err != nil {
			answers = append(answers, err.Error())
		}
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Fatalf("answers differ, so they tell files apart: %q and %q", answers[0], a)
		}
	}
	t.Logf("every path that does not hold the bundle: %q", answers[0])
	var le *LocalError
	_, err := l.FetchBundle(ctx, filepath.Join(local, "fifo.wsk"), sha, opts)
	if !errors.As(err, &le) || !strings.Contains(le.Detail.Error(), "not a regular file") {
		t.Fatalf("the cause for the device's log: %v", err)
	}

	// Outside the directory: refused on the path's text alone.
	for _, tc := range []try{
		{"/etc/shadow", "/etc/shadow", ErrLocalPath},
		{"/dev/zero", "/dev/zero", ErrLocalPath},
		{"climbing out", filepath.Join(local, "..", "etc", "shadow"), ErrLocalPath},
		{"file URL", "file:///etc/shadow", ErrLocalPath},
		{"the directory itself", local, ErrLocalPath},
	} {
		run(t, l, opts, tc)
	}
	// With no local directory configured, no path at all.
	run(t, l, FetchOptions{MaxSize: 1 << 20}, try{"no local_dir", filepath.Join(local, "good.wsk"), ErrLocalPath})
	// Even a careless local_dir of /etc or /dev gives nothing away: not
	// the shadow file's hash, not a byte of /dev/zero.
	run(t, l, FetchOptions{MaxSize: 1 << 20, LocalDir: "/etc"}, try{"/etc/shadow in local_dir /etc", "/etc/shadow", ErrNoLocalBundle})
	run(t, l, FetchOptions{MaxSize: 1 << 20, LocalDir: "/dev"}, try{"/dev/zero in local_dir /dev", "/dev/zero", ErrNoLocalBundle})

	// The bundle itself, and through a link that stays inside.
	for _, name := range []string{"good.wsk", "alias.wsk"} {
		got, err := l.FetchBundle(ctx, filepath.Join(local, name), sha, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h, _ := bundle.FileSHA256(got); h != sha {
			t.Fatalf("%s: fetched %s", name, h)
		}
	}
}

// slowServer sends 1 KB every interval until the client goes away, and
// counts requests.
func slowServer(t *testing.T, interval time.Duration) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Length", fmt.Sprint(1<<20))
		tick := time.NewTicker(interval)
		defer tick.Stop()
		chunk := make([]byte, 1024)
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// The slow server: 1 KB every 2 s no longer holds an update for ever. The
// idle timeout ends each try, the retries are bounded, and nothing is left
// in the downloads directory. A server that never stalls is stopped by the
// total timeout.
func TestSlowServerTimesOut(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	ctx := context.Background()
	srv, calls := slowServer(t, 2*time.Second)
	l := Layout{Dir: t.TempDir()}
	start := time.Now()
	_, err := l.FetchBundle(ctx, srv.URL, sha, FetchOptions{MaxSize: 2 << 20, IdleTimeout: 200 * time.Millisecond, Retries: 2, RetryDelay: time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "idle_timeout") || calls.Load() != 3 {
		t.Fatalf("slow server: %v after %d requests", err, calls.Load())
	}
	t.Logf("1 KB every 2s: %v (%d tries, %v)", err, calls.Load(), time.Since(start).Round(10*time.Millisecond))
	assertEmpty(t, l.Downloads())

	steady, _ := slowServer(t, 10*time.Millisecond)
	_, err = l.FetchBundle(ctx, steady.URL, sha, FetchOptions{MaxSize: 2 << 20, IdleTimeout: 200 * time.Millisecond, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "download_timeout") {
		t.Fatalf("steady trickle: %v", err)
	}
	assertEmpty(t, l.Downloads())

	// Cancelled by the caller (the agent stopping): said as such.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.FetchBundle(cctx, steady.URL, sha, FetchOptions{MaxSize: 2 << 20}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	assertEmpty(t, l.Downloads())
}

func TestRetriesAndHosts(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	ctx := context.Background()
	var calls atomic.Int32
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://elsewhere.example/b.wsk", http.StatusFound)
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	l := Layout{Dir: t.TempDir()}
	o := FetchOptions{MaxSize: 1 << 20, Retries: 2, RetryDelay: time.Millisecond}
	if _, err := l.FetchBundle(ctx, srv.URL, sha, o); err == nil || calls.Load() != 3 {
		t.Fatalf("503: %v after %d requests, want 3", err, calls.Load())
	}
	status = http.StatusNotFound
	calls.Store(0)
	if _, err := l.FetchBundle(ctx, srv.URL, sha, o); err == nil || calls.Load() != 1 {
		t.Fatalf("404: %v after %d requests, want 1", err, calls.Load())
	}
	// The allow-list: other hosts are refused before any request, and so
	// is a redirect to one.
	calls.Store(0)
	host := strings.TrimPrefix(srv.URL, "http://")
	o.AllowHosts = []string{"updates.example"}
	if _, err := l.FetchBundle(ctx, srv.URL, sha, o); !errors.Is(err, ErrHost) || calls.Load() != 0 {
		t.Fatalf("host not allowed: %v after %d requests", err, calls.Load())
	}
	o.AllowHosts = []string{host}
	if _, err := l.FetchBundle(ctx, srv.URL+"/redirect", sha, o); !errors.Is(err, ErrHost) || calls.Load() != 1 {
		t.Fatalf("redirect out of the allow-list: %v after %d requests", err, calls.Load())
	}
	assertEmpty(t, l.Downloads())
	for _, tc := range []struct {
		url   string
		allow []string
		ok    bool
	}{
		{"http://Updates.Example/x", []string{"updates.example"}, true},
		{"https://updates.example/x", []string{"updates.example:443"}, true},
		{"http://updates.example/x", []string{"updates.example:443"}, false},
		{"http://updates.example:8088/x", []string{"updates.example:8088"}, true},
		{"http://[::1]:8088/x", []string{"::1"}, true},
		{"http://evil.example/x", []string{"updates.example"}, false},
		{"http://updates.example.evil.example/x", []string{"updates.example"}, false},
		{"http://anything/x", nil, true},
	} {
		if _, err := checkURL(tc.url, tc.allow); (err == nil) != tc.ok {
			t.Errorf("%s with %v: %v", tc.url, tc.allow, err)
		}
	}
	for _, bad := range []FetchOptions{{MaxSize: 0}, {MaxSize: 1, LocalDir: "relative"}, {MaxSize: 1, Retries: 99}, {MaxSize: 1, Retries: -1},
		{MaxSize: 1, IdleTimeout: time.Hour, Timeout: time.Minute}, {MaxSize: 1, AllowHosts: []string{"http://x/"}}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// Whatever path localName accepts names something inside the directory.
func FuzzLocalName(f *testing.F) {
	for _, s := range []string{"/srv/bundles/a.wsk", "a.wsk", "../etc/shadow", "/srv/bundles/../x", "file:///srv/bundles/b", "/srv/bundles", "/srv/bundlesx/a", "./../a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, source string) {
		const dir = "/srv/bundles"
		rel, err := localName(source, dir)
		if err != nil {
			if !errors.Is(err, ErrLocalPath) {
				t.Fatalf("%q: %v", source, err)
			}
			return
		}
		full := filepath.Join(dir, rel)
		if !strings.HasPrefix(full, dir+"/") || filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			t.Fatalf("%q accepted as %q (%s)", source, rel, full)
		}
	})
}
