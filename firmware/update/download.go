package update

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/whiskercam/whisker/firmware/bundle"
)

// ErrHash is returned when a download does not have the expected sha256.
var ErrHash = errors.New("bundle hash mismatch")

var shaPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Progress reports bytes received of a total (total is 0 when unknown).
type Progress func(done, total int64)

// Fetch gets a bundle from an http(s) URL or a local path into dir, named
// by its hash, and checks that hash. An interrupted HTTP download resumes
// where it stopped (Range request) the next time. Nothing over maxSize is
// read.
func Fetch(ctx context.Context, source, dir, sha string, maxSize int64, progress Progress) (string, error) {
	sha = strings.ToLower(sha)
	if !shaPattern.MatchString(sha) {
		return "", fmt.Errorf("expected bundle hash %q is not a sha256 in hex", sha)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	final := filepath.Join(dir, sha+".wsk")
	if got, err := bundle.FileSHA256(final); err == nil && got == sha {
		return final, nil // already here
	}
	part := final + ".part"
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		if err := download(ctx, source, part, maxSize, progress); err != nil {
			return "", err
		}
	} else {
		path := strings.TrimPrefix(source, "file://")
		if err := copyLimited(path, part, maxSize); err != nil {
			return "", err
		}
	}
	got, err := bundle.FileSHA256(part)
	if err != nil {
		return "", err
	}
	if got != sha {
		os.Remove(part)
		return "", fmt.Errorf("%w: got %s, expected %s (a truncated or replaced download; it was discarded)", ErrHash, got[:16], sha[:16])
	}
	if err := os.Rename(part, final); err != nil {
		return "", err
	}
	return final, nil
}

func download(ctx context.Context, url, part string, maxSize int64, progress Progress) error {
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bundle URL: %w", err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	client := &http.Client{Timeout: 0, Transport: &http.Transport{ResponseHeaderTimeout: 30 * time.Second, Proxy: http.ProxyFromEnvironment}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
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
		total = resp.ContentLength
	case http.StatusRequestedRangeNotSatisfiable:
		return nil // we have all of it; the hash decides
	default:
		return fmt.Errorf("download %s: %s", url, resp.Status)
	}
	if total > maxSize {
		return fmt.Errorf("download %s: %d bytes is over the %d-byte limit", url, total, maxSize)
	}
	body := io.LimitReader(resp.Body, maxSize-have+1)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			have += int64(n)
			if have > maxSize {
				return fmt.Errorf("download %s: more than the %d-byte limit", url, maxSize)
			}
			if progress != nil {
				progress(have, total)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("download %s: %w (it resumes from byte %d next time)", url, rerr, have)
		}
	}
	return f.Sync()
}

func copyLimited(src, dst string, maxSize int64) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil {
		return err
	} else if st.Size() > maxSize {
		return fmt.Errorf("bundle %s: %d bytes is over the %d-byte limit", src, st.Size(), maxSize)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.LimitReader(in, maxSize+1)); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
