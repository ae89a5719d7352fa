package camera

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// CaptureConfig is the camera's slice of the agent configuration.
type CaptureConfig struct {
	// Source names the camera: a video file or a folder of images.
	Source string
	// Loop restarts a finite source (file, folder) at its end.
	Loop bool
	// MaxFPS caps the frame rate; 0 means the source's own rate.
	MaxFPS float64
	// FolderFPS is the rate at which a folder's images are shown.
	FolderFPS float64
}

// Opener opens a source; tests replace it.
type Opener func(spec string, folderFPS float64) (Source, error)

// Capture reads frames from a source into a mailbox, never waiting for the
// consumer. A source that fails is reopened with capped exponential
// backoff and jitter.
type Capture struct {
	cfg  CaptureConfig
	log  *slog.Logger
	box  *Mailbox
	open Opener

	mu     sync.Mutex
	status Status
}

// Status is the capture's state, for health reports.
type Status struct {
	Up       bool      // a source is open and delivering frames
	Source   string    // what is open
	Frames   uint64    // frames captured since start
	LastErr  string    // the last failure, if any
	LastTime time.Time // time of the last frame
	Reopens  uint64    // times the source was reopened after a failure
}

// NewCapture returns a capture feeding box. open may be nil for the real
// sources.
func NewCapture(cfg CaptureConfig, log *slog.Logger, box *Mailbox, open Opener) *Capture {
	if open == nil {
		open = func(spec string, folderFPS float64) (Source, error) { return OpenSource(spec, folderFPS) }
	}
	return &Capture{cfg: cfg, log: log, box: box, open: open}
}

// Status returns a snapshot of the capture's state.
func (c *Capture) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Capture) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

// Backoff doubles a delay from Min up to Max, with up to 20% jitter.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next delay.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(b.cur*2, b.Max)
	}
	jitter := time.Duration(rand.Int64N(int64(b.cur)/5 + 1))
	return b.cur + jitter
}

// Reset starts over from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Run captures until ctx ends or a finite source ends without Loop. It
// closes the mailbox when it returns.
func (c *Capture) Run(ctx context.Context) error {
	defer c.box.Close()
	backoff := Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second}
	for ctx.Err() == nil {
		src, err := c.open(c.cfg.Source, c.cfg.FolderFPS)
		if err != nil {
			d := backoff.Next()
			c.log.Warn("camera unavailable; retrying", "source", c.cfg.Source, "err", err, "retry_in", d.Round(time.Millisecond))
			c.setStatus(func(s *Status) { s.Up, s.LastErr = false, err.Error() })
			if !sleep(ctx, d) {
				break
			}
			c.setStatus(func(s *Status) { s.Reopens++ })
			continue
		}
		c.log.Info("camera open", "source", src.String(), "fps", src.FPS())
		c.setStatus(func(s *Status) { s.Up, s.Source = true, src.String() })
		n, err := c.stream(ctx, src)
		src.Close()
		if n > 0 {
			backoff.Reset()
		}
		if ctx.Err() != nil {
			break
		}
		switch {
		case errors.Is(err, io.EOF) && n > 0 && c.cfg.Loop:
			c.log.Debug("camera source ended; looping", "source", src.String())
			continue
		case errors.Is(err, io.EOF) && n > 0:
			c.log.Info("camera source ended", "source", src.String(), "frames", n)
			c.setStatus(func(s *Status) { s.Up = false })
			return nil
		case errors.Is(err, io.EOF):
			err = errors.New("source delivered no frames")
		}
		d := backoff.Next()
		c.log.Warn("camera failed; reopening", "source", src.String(), "err", err, "retry_in", d.Round(time.Millisecond))
		c.setStatus(func(s *Status) { s.Up, s.LastErr = false, err.Error() })
		if !sleep(ctx, d) {
			break
		}
		c.setStatus(func(s *Status) { s.Reopens++ })
	}
	c.setStatus(func(s *Status) { s.Up = false })
	return nil
}

// stream reads frames into the mailbox at the paced rate until an error.
func (c *Capture) stream(ctx context.Context, src Source) (uint64, error) {
	rate := src.FPS()
	if c.cfg.MaxFPS > 0 && (rate == 0 || c.cfg.MaxFPS < rate) {
		rate = c.cfg.MaxFPS
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	var f Frame
	var n uint64
	next := time.Now()
	for ctx.Err() == nil {
		if err := src.Read(&f); err != nil {
			return n, err
		}
		n++
		now := time.Now()
		var seq uint64
		c.setStatus(func(s *Status) {
			s.Frames++
			s.LastTime = now
			seq = s.Frames
		})
		f.Seq, f.Time = seq, now
		c.box.Put(&f)
		if interval > 0 {
			next = next.Add(interval)
			if late := now.Sub(next); late > interval {
				next = now // fell behind: do not try to catch up
			}
			if !sleep(ctx, time.Until(next)) {
				break
			}
		}
	}
	return n, ctx.Err()
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
