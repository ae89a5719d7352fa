package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/internal/atomicfile"
)

// ErrHash is returned when a download does not have the expected sha256.
var ErrHash = errors.New("bundle hash mismatch")

// Errors of fetching a bundle.
var (
	// ErrNoLocalBundle is the one answer to every local path inside
	// update.local_dir that does not hold the bundle asked for: missing,
	// unreadable, not a regular file, too large, or another file. It says
	// nothing about which, so that the update command cannot be used to
	// learn what files exist or what they hold.
	ErrNoLocalBundle = errors.New("no bundle with the expected sha256 at that path in update.local_dir")
	// ErrLocalPath refuses a path outside update.local_dir (or any path
	// when none is configured), before anything on disk is looked at.
	ErrLocalPath = errors.New("bundle path refused")
	// ErrHost refuses a URL whose host is not in update.allow_hosts.
	ErrHost = errors.New("bundle host not allowed")
	// ErrTimeout is a download that stalled or took too long.
	ErrTimeout = errors.New("download timed out")
	// ErrTooLarge is a bundle over update.max_size.
	ErrTooLarge = errors.New("bundle too large")
)

// LocalError is ErrNoLocalBundle with the real cause, for the device's own
// log only: its Error() is the uniform answer.
type LocalError struct {
	Detail error
}

func (e *LocalError) Error() string { return ErrNoLocalBundle.Error() }
func (e *LocalError) Unwrap() error { return ErrNoLocalBundle }

var shaPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Progress reports bytes received of a total (total is 0 when unknown).
type Progress func(done, total int64)

// Defaults of FetchOptions; the agent's configuration defaults are these.
const (
	DefaultIdleTimeout = 30 * time.Second
	DefaultTimeout     = 30 * time.Minute
	DefaultRetries     = 3
	DefaultRetryDelay  = 2 * time.Second
	// MaxRetries bounds Retries.
	MaxRetries = 10
	// maxURL bounds a bundle URL.
	maxURL = 2048
	// maxRedirects bounds the redirects a download follows.
	maxRedirects = 5
)

// FetchOptions say where a bundle may come from and how long it may take.
// A zero duration means its default; Retries is taken as it is (the
// agent's configuration defaults it to DefaultRetries).
type FetchOptions struct {
	// MaxSize refuses larger bundles (update.max_size).
	MaxSize int64
	// LocalDir is the only directory a bundle is read from by path
	// (update.local_dir); "" refuses every path. Symbolic links inside it
	// may not lead out of it.
	LocalDir string
	// AllowHosts, if not empty, lists the hosts ("host" or "host:port") a
	// bundle URL, and every redirect, may name (update.allow_hosts).
	AllowHosts []string
	// IdleTimeout aborts a try that receives nothing for this long
	// (update.idle_timeout, default 30s).
	IdleTimeout time.Duration
	// Timeout bounds the whole fetch, every try included
	// (update.download_timeout, default 30m).
	Timeout time.Duration
	// Retries is how many more tries follow a failed one (update.retries,
	// 0 to MaxRetries); each resumes where the last stopped.
	Retries int
	// RetryDelay is the pause before the first retry, doubled each time
	// (default 2s).
	RetryDelay time.Duration
	Progress   Progress
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

func (o FetchOptions) withDefaults() FetchOptions {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	return o
}

// Validate names the first option out of range, by its configuration key.
func (o FetchOptions) Validate() error {
	switch {
	case o.MaxSize < 1:
		return fmt.Errorf("update.max_size: %d must be positive", o.MaxSize)
	case o.LocalDir != "" && !filepath.IsAbs(o.LocalDir):
		return fmt.Errorf("update.local_dir: %q must be an absolute path", o.LocalDir)
	case o.IdleTimeout < 0:
		return fmt.Errorf("update.idle_timeout: %v must not be negative", o.IdleTimeout)
	case o.Timeout < 0:
		return fmt.Errorf("update.download_timeout: %v must not be negative", o.Timeout)
	case o.RetryDelay < 0:
		return fmt.Errorf("retry delay %v must not be negative", o.RetryDelay)
	case o.IdleTimeout > 0 && o.Timeout > 0 && o.IdleTimeout > o.Timeout:
		return fmt.Errorf("update.idle_timeout: %v is longer than update.download_timeout %v", o.IdleTimeout, o.Timeout)
	case o.Retries < 0 || o.Retries > MaxRetries:
		return fmt.Errorf("update.retries: %d must be between 0 and %d", o.Retries, MaxRetries)
	}
	for _, h := range o.AllowHosts {
		if h == "" || strings.ContainsAny(h, "/@ ") {
			return fmt.Errorf("update.allow_hosts: %q is not a host or host:port", h)
		}
	}
	return nil
}

// FetchBundle gets a bundle from an http(s) URL, or from a path in
// o.LocalDir, into the downloads directory, named by its hash, and checks
// that hash. Partial downloads and bundles that no slot holds are removed
// first; a failed fetch leaves nothing behind. Answers never carry the
// hash of anything but the bundle asked for.
func (l Layout) FetchBundle(ctx context.Context, source, sha string, o FetchOptions) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	sha = strings.ToLower(sha)
	if shaPattern.MatchString(sha) {
		l.Prune(sha)
	}
	return fetch(ctx, source, l.Downloads(), sha, o.withDefaults())
}

func isURL(source string) bool {
	return strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://")
}

func fetch(ctx context.Context, source, dir, sha string, o FetchOptions) (string, error) {
	sha = strings.ToLower(sha)
	if !shaPattern.MatchString(sha) {
		return "", errors.New("expected bundle hash is not a sha256 in hex")
	}
	if o.MaxSize < 1 {
		return "", fmt.Errorf("%w: no size limit set", ErrTooLarge)
	}
	// Refuse what the configuration does not allow before touching disk.
	var u *url.URL
	if isURL(source) {
		var err error
		if u, err = checkURL(source, o.AllowHosts); err != nil {
			return "", err
		}
	} else {
		if _, err := localName(source, o.LocalDir); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(dir, sha+".wsk")
	if u != nil {
		if got, err := bundle.FileSHA256(final); err == nil && got == sha {
			return final, nil // already here
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, o.Timeout, errTotalTimeout)
	defer cancel()
	part := final + ".part"
	var err error
	if u != nil {
		err = downloadWithRetries(ctx, u, part, o)
	} else {
		err = copyLocal(ctx, source, part, o)
	}
	if err == nil {
		err = checkHash(part, sha, u != nil)
	}
	if err != nil {
		os.Remove(part)
		return "", err
	}
	if err := os.Rename(part, final); err != nil {
		os.Remove(part)
		return "", err
	}
	return final, atomicfile.SyncDir(dir)
}

// checkHash compares a fetched file with the hash asked for, naming
// neither the file's hash nor its size.
func checkHash(part, sha string, detailed bool) error {
	got, err := bundle.FileSHA256(part)
	if err != nil {
		return err
	}
	if got == sha {
		return nil
	}
	if !detailed {
		return &LocalError{Detail: errors.New("sha256 differs")}
	}
	return fmt.Errorf("%w: what was fetched is not the bundle %.16s... (a truncated or replaced download; it was discarded)", ErrHash, sha)
}

// checkURL parses a bundle URL and checks its host against allow.
func checkURL(raw string, allow []string) (*url.URL, error) {
	if len(raw) > maxURL {
		return nil, fmt.Errorf("bundle URL of %d bytes is over %d", len(raw), maxURL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("bundle URL is not an http:// or https:// URL with a host")
	}
	if !hostAllowed(u, allow) {
		return nil, fmt.Errorf("%w: %s is not in update.allow_hosts", ErrHost, u.Host)
	}
	return u, nil
}

// hostAllowed matches a URL against "host" and "host:port" entries; no
// entries allow every host.
func hostAllowed(u *url.URL, allow []string) bool {
	if len(allow) == 0 {
		return true
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for _, a := range allow {
		a = strings.ToLower(a)
		if h, p, err := net.SplitHostPort(a); err == nil {
			if h == host && p == port {
				return true
			}
			continue
		}
		if strings.Trim(a, "[]") == host {
			return true
		}
	}
	return false
}

// localName is the path of source relative to dir, refusing a path that is
// not inside it. It only looks at the text.
func localName(source, dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("%w: reading bundles from a path on the device is off (set update.local_dir)", ErrLocalPath)
	}
	p := strings.TrimPrefix(source, "file://")
	if p == "" || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: empty path", ErrLocalPath)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%w: the path is not inside update.local_dir", ErrLocalPath)
	}
	return rel, nil
}

// openLocal opens a local bundle without following a link out of the
// local directory and without blocking on a FIFO, and checks that it is a
// regular file no larger than max.
func openLocal(source string, o FetchOptions) (*os.File, int64, error) {
	name, err := localName(source, o.LocalDir)
	if err != nil {
		return nil, 0, err
	}
	root, err := os.OpenRoot(o.LocalDir)
	if err != nil {
		return nil, 0, fmt.Errorf("update.local_dir: %w", err)
	}
	defer root.Close()
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, &LocalError{Detail: err}
	}
	st, err := f.Stat()
	var bad error
	switch {
	case err != nil:
		bad = err
	case !st.Mode().IsRegular():
		bad = fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	case st.Size() > o.MaxSize:
		bad = fmt.Errorf("%w: %d bytes is over the %d-byte limit", ErrTooLarge, st.Size(), o.MaxSize)
	case st.Size() == 0:
		bad = errors.New("empty file")
	}
	if bad != nil {
		f.Close()
		return nil, 0, &LocalError{Detail: bad}
	}
	return f, st.Size(), nil
}

// copyLocal copies a local bundle to part, at most its size at open.
func copyLocal(ctx context.Context, source, part string, o FetchOptions) error {
	in, size, err := openLocal(source, o)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, &ctxReader{ctx: ctx, r: io.LimitReader(in, size)})
	if err == nil && n != size {
		err = &LocalError{Detail: errors.New("the file shrank while it was read")}
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if o.Progress != nil && err == nil {
		o.Progress(n, size)
	}
	return err
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// errTotalTimeout is the cause of a fetch's context ending at Timeout.
var errTotalTimeout = errors.New("total timeout")

// attemptError is one failed try, saying whether another may help.
type attemptError struct {
	err       error
	retryable bool
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

func downloadWithRetries(ctx context.Context, u *url.URL, part string, o FetchOptions) error {
	delay := o.RetryDelay
	stopped := func() error {
		if errors.Is(context.Cause(ctx), errTotalTimeout) {
			return fmt.Errorf("%w: download of %s took longer than %v (update.download_timeout)", ErrTimeout, redact(u), o.Timeout)
		}
		return fmt.Errorf("download %s: %w", redact(u), ctx.Err())
	}
	for try := 0; ; try++ {
		err := download(ctx, u, part, o)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return stopped()
		}
		var ae *attemptError
		if !errors.As(err, &ae) || !ae.retryable || try >= o.Retries {
			if try > 0 {
				return fmt.Errorf("%w (after %d tries)", err, try+1)
			}
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return stopped()
		case <-t.C:
		}
		delay *= 2
	}
}

// redact drops credentials and the query from a URL for messages.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

func (o FetchOptions) client() *http.Client {
	tr := o.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: o.IdleTimeout}).DialContext,
			TLSHandshakeTimeout:   o.IdleTimeout,
			ResponseHeaderTimeout: o.IdleTimeout,
			DisableKeepAlives:     true,
		}
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return &attemptError{err: fmt.Errorf("download: more than %d redirects", maxRedirects)}
		}
		if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
			return &attemptError{err: fmt.Errorf("download: redirect from https to %s refused", req.URL.Scheme)}
		}
		if _, err := checkURL(req.URL.String(), o.AllowHosts); err != nil {
			return &attemptError{err: fmt.Errorf("download: redirect refused: %w", err)}
		}
		return nil
	}}
}

// download is one try: it resumes from what part already holds.
func download(ctx context.Context, u *url.URL, part string, o FetchOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	idle := time.AfterFunc(o.IdleTimeout, func() { stalled.Store(true); cancel() })
	defer idle.Stop()
	wrap := func(err error) error {
		if stalled.Load() {
			return &attemptError{err: fmt.Errorf("%w: no data from %s for %v (update.idle_timeout)", ErrTimeout, redact(u), o.IdleTimeout), retryable: true}
		}
		var ae *attemptError
		if errors.As(err, &ae) {
			return err
		}
		return &attemptError{err: fmt.Errorf("download %s: %w", redact(u), err), retryable: true}
	}

	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if have > o.MaxSize {
		have = 0
		if err := f.Truncate(0); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("bundle URL: %w", err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := o.client().Do(req)
	if err != nil {
		return wrap(err)
	}
	defer resp.Body.Close()
	total := int64(0)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if resp.ContentLength >= 0 {
			total = have + resp.ContentLength
		}
	case http.StatusOK:
		// The server does not resume (or this is a fresh start).
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		have = 0
		total = max(resp.ContentLength, 0)
	case http.StatusRequestedRangeNotSatisfiable:
		return nil // we have all of it; the hash decides
	default:
		retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests
		return &attemptError{err: fmt.Errorf("download %s: %s", redact(u), resp.Status), retryable: retry}
	}
	if total > o.MaxSize {
		return &attemptError{err: fmt.Errorf("%w: %s has %d bytes, over the %d-byte limit", ErrTooLarge, redact(u), total, o.MaxSize)}
	}
	body := io.LimitReader(resp.Body, o.MaxSize-have+1)
	buf := make([]byte, 64<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			idle.Reset(o.IdleTimeout)
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			have += int64(n)
			if have > o.MaxSize {
				return &attemptError{err: fmt.Errorf("%w: %s sends more than the %d-byte limit", ErrTooLarge, redact(u), o.MaxSize)}
			}
			if o.Progress != nil {
				o.Progress(have, total)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return wrap(rerr)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return nil
}

// Prune removes from the downloads directory every partial download and
// every bundle that neither slot came from, except the bundles (by sha256)
// in keep.
func (l Layout) Prune(keep ...string) error {
	st, err := l.ReadState()
	if err != nil {
		return err
	}
	bundles := map[string]bool{}
	for _, s := range []string{SlotA, SlotB} {
		if b := st.Slots[s].Bundle; b != "" {
			bundles[b] = true
		}
	}
	parts := map[string]bool{}
	for _, k := range keep {
		bundles[k], parts[k] = true, true
	}
	entries, err := os.ReadDir(l.Downloads())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if sha, ok := strings.CutSuffix(name, ".wsk"); ok && bundles[sha] && e.Type().IsRegular() {
			continue
		}
		if sha, ok := strings.CutSuffix(name, ".wsk.part"); ok && parts[sha] && e.Type().IsRegular() {
			continue
		}
		if err := os.RemoveAll(filepath.Join(l.Downloads(), name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
