package camera

import (
	"github.com/whiskercam/whisker/camera/frame"
	"github.com/whiskercam/whisker/internal/wait"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// CaptureConfig is the camera's slice of the agent configuration.
type CaptureConfig struct {
	// Source names the camera (see ParseSource).
	Source string
	// Options tune how it is opened (device size, rate, pixel format;
	// folder rate).
	Options SourceOptions
	// Loop restarts a finite source (file, folder) at its end.
	Loop bool
	// MaxFPS caps the frame rate; 0 means the source's own rate.
	MaxFPS float64
	// RetryMin and RetryMax bound the delay before reopening a source that
	// failed; 0 means 500 ms and 30 s.
	RetryMin, RetryMax time.Duration
	// Nice makes the capture's thread this much nicer than the process
	// (Linux), so that decoding camera frames never holds up busier work
	// such as the backbone; 0 keeps the normal priority.
	Nice int
	// StopTimeout bounds how long Run waits, once its context ends, for a
	// read that blocks inside the camera driver or network stack; 0 means
	// 2 s. A read still blocked then is abandoned: its goroutine closes the
	// source when the read returns.
	StopTimeout time.Duration
}

// Opener opens a source; tests replace it.
type Opener func(spec string, opt SourceOptions) (Source, error)

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
	rate   rateMeter
}

// Capture states, as Status.State reports them.
const (
	StateStarting  = "starting"  // opening the source for the first time
	StateUp        = "up"        // delivering frames
	StateReopening = "reopening" // the source failed; waiting to reopen it
	StateEnded     = "ended"     // a file or folder ended and Loop is off
	StateStopped   = "stopped"   // Run returned
)

// Status is the capture's state, for health reports.
type Status struct {
	State    string    // one of the State constants
	Up       bool      // a source is open and delivering frames
	Source   string    // what is (or was last) open
	Since    time.Time // when State last changed
	Frames   uint64    // frames delivered to the mailbox since start
	Skipped  uint64    // frames a live source produced above the rate cap
	FPS      float64   // delivered frames per second, recently
	Width    int       // size of the last frame
	Height   int
	LastTime time.Time // time of the last frame
	Reopens  uint64    // times the source was reopened after a failure
	Failures int       // consecutive failures since the last good frame
	LastErr  string    // the last failure, if any
	ErrTime  time.Time // when it happened
	RetryAt  time.Time // when the next reopen is due (State reopening)
}

// NewCapture returns a capture feeding box. open may be nil for the real
// sources.
func NewCapture(cfg CaptureConfig, log *slog.Logger, box *Mailbox, open Opener) *Capture {
	if open == nil {
		open = OpenSource
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 500 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(30*time.Second, cfg.RetryMin)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 2 * time.Second
	}
	c := &Capture{cfg: cfg, log: log, box: box, open: open}
	c.status = Status{State: StateStarting, Since: time.Now(), Source: redact(cfg.Source)}
	return c
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

func (c *Capture) setState(state string) {
	c.setStatus(func(s *Status) {
		if s.State != state {
			s.State, s.Since = state, time.Now()
		}
		s.Up = state == StateUp
	})
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
// closes the mailbox when it returns. Once ctx ends it returns within
// StopTimeout even if a read is blocked in the driver.
func (c *Capture) Run(ctx context.Context) error {
	defer c.box.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := NiceThread(c.cfg.Nice); err != nil {
			c.log.Debug("capture keeps the normal priority", "err", err)
		}
		c.loop(ctx)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t := time.NewTimer(c.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			c.log.Warn("camera read still blocked at shutdown; abandoning it", "source", redact(c.cfg.Source), "waited", c.cfg.StopTimeout)
		}
	}
	c.setStatus(func(s *Status) {
		if s.State != StateEnded {
			s.State, s.Since = StateStopped, time.Now()
		}
		s.Up = false
	})
	return nil
}

func (c *Capture) loop(ctx context.Context) {
	backoff := Backoff{Min: c.cfg.RetryMin, Max: c.cfg.RetryMax}
	fail := func(err error) bool {
		d := backoff.Next()
		now := time.Now()
		c.setStatus(func(s *Status) {
			if s.State != StateReopening {
				s.State, s.Since = StateReopening, now
			}
			s.Up = false
			s.LastErr, s.ErrTime, s.RetryAt = err.Error(), now, now.Add(d)
			s.Failures++
		})
		c.log.Warn("camera unavailable; will reopen it", "source", redact(c.cfg.Source), "err", err, "retry_in", d.Round(time.Millisecond))
		if !wait.Sleep(ctx, d) {
			return false
		}
		c.setStatus(func(s *Status) { s.Reopens++ })
		return true
	}
	for ctx.Err() == nil {
		src, err := c.open(c.cfg.Source, c.cfg.Options)
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		c.log.Info("camera open", "source", src.String(), "fps", src.FPS(), "live", src.Live())
		c.setStatus(func(s *Status) { s.Source, s.RetryAt = src.String(), time.Time{} })
		n, err := c.stream(ctx, src, &backoff)
		src.Close()
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, io.EOF) && n > 0 && !src.Live() && c.cfg.Loop:
			c.log.Debug("camera source ended; looping", "source", src.String())
			continue
		case errors.Is(err, io.EOF) && n > 0 && !src.Live():
			c.log.Info("camera source ended", "source", src.String(), "frames", n)
			c.setState(StateEnded)
			return
		case errors.Is(err, io.EOF) && n > 0:
			err = fmt.Errorf("%s: the stream ended after %d frames", src, n)
		case errors.Is(err, io.EOF):
			err = fmt.Errorf("%s: no frame could be read (not a video, or the device delivers nothing)", src)
		default:
			err = fmt.Errorf("%s: %w", src, err)
		}
		if !fail(err) {
			return
		}
	}
}

// stream reads frames into the mailbox at the paced rate until an error.
// A file or folder is read no faster than the rate; a live source is read
// at its own rate, and frames above the cap are skipped.
func (c *Capture) stream(ctx context.Context, src Source, backoff *Backoff) (uint64, error) {
	rate := src.FPS()
	if c.cfg.MaxFPS > 0 && (rate == 0 || c.cfg.MaxFPS < rate || src.Live()) {
		rate = c.cfg.MaxFPS
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	var f frame.Frame
	var n uint64
	next := time.Now()
	for ctx.Err() == nil {
		if err := src.Read(&f); err != nil {
			return n, err
		}
		now := time.Now()
		if n == 0 {
			backoff.Reset()
			c.setState(StateUp)
			c.setStatus(func(s *Status) { s.Failures = 0 })
		}
		n++
		if src.Live() && interval > 0 && now.Before(next) {
			c.setStatus(func(s *Status) { s.Skipped++ })
			continue
		}
		var seq uint64
		c.setStatus(func(s *Status) {
			s.Frames++
			s.LastTime = now
			s.Width, s.Height = f.Width, f.Height
			s.FPS = c.rate.tick(now)
			seq = s.Frames
		})
		f.Seq, f.Time = seq, now
		c.box.Put(&f)
		if interval == 0 {
			continue
		}
		next = next.Add(interval)
		if late := now.Sub(next); late > interval {
			next = now // fell behind: do not try to catch up
		}
		if !src.Live() && !wait.Sleep(ctx, time.Until(next)) {
			break
		}
	}
	return n, ctx.Err()
}

// rateMeter measures events per second over windows of a few seconds.
type rateMeter struct {
	start time.Time
	n     int
	rate  float64
}

func (r *rateMeter) tick(now time.Time) float64 {
	if r.start.IsZero() || now.Sub(r.start) > 10*time.Second {
		r.start, r.n, r.rate = now, 0, 0
	}
	r.n++
	if d := now.Sub(r.start); d >= 2*time.Second {
		r.rate = float64(r.n-1) / d.Seconds()
		r.start, r.n = now, 1
	}
	return r.rate
}
