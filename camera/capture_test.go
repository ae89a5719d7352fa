package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// liveFake is a camera that delivers a frame every 1/fps seconds (virtual
// time), n frames in all, then blocks until released; a blocked read
// returns io.EOF-like failure when released.
type liveFake struct {
	fps     float64
	n       int
	release chan struct{}
}

func (s *liveFake) Read(dst *frame.Frame) error {
	if s.n == 0 {
		<-s.release
		return errors.New("device unplugged")
	}
	s.n--
	time.Sleep(time.Duration(float64(time.Second) / s.fps))
	*dst = frame.Frame{Width: 2, Height: 2, Stride: 6, Data: make([]byte, 12)}
	return nil
}
func (s *liveFake) FPS() float64   { return s.fps }
func (s *liveFake) Live() bool     { return true }
func (s *liveFake) Close() error   { return nil }
func (s *liveFake) String() string { return "camera fake" }

// A live camera is read at its own rate; the cap delivers every sixth
// frame of a 30 fps camera at 5 fps and counts the rest as skipped.
func TestLiveSourceIsCappedBySkipping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &liveFake{fps: 30, n: 300, release: make(chan struct{})}
		open := func(string, SourceOptions) (Source, error) { return src, nil }
		box := NewMailbox()
		c := NewCapture(CaptureConfig{Source: "cam", MaxFPS: 5}, slog.New(slog.DiscardHandler), box, open)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		time.Sleep(10*time.Second + 500*time.Millisecond) // 300 frames at 30 fps take 10 s
		synctest.Wait()
		st := c.Status()
		if st.Frames+st.Skipped != 300 {
			t.Errorf("%d delivered + %d skipped, want 300 read", st.Frames, st.Skipped)
		}
		if st.Frames < 49 || st.Frames > 51 {
			t.Errorf("%d frames delivered in 10 s, want 50 at 5 fps", st.Frames)
		}
		if st.FPS < 4.5 || st.FPS > 5.5 {
			t.Errorf("measured %.2f fps, want about 5", st.FPS)
		}
		if !st.Up || st.State != StateUp {
			t.Errorf("status %+v", st)
		}
		cancel()
		// The read is blocked in the "driver": Run gives up after the stop
		// timeout (2 s) instead of hanging.
		start := time.Now()
		<-done
		if took := time.Since(start); took != 2*time.Second {
			t.Errorf("Run returned %v after cancel, want the 2 s stop timeout", took)
		}
		if st := c.Status(); st.State != StateStopped || st.Up {
			t.Errorf("after stop: %+v", st)
		}
		close(src.release) // the driver returns; the abandoned reader exits
	})
}

// A file source ends: without Loop the capture stops and says so; with
// Loop it is read again from the start.
func TestFiniteSourceEndsOrLoops(t *testing.T) {
	for _, loop := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			opened := 0
			open := func(string, SourceOptions) (Source, error) {
				opened++
				return &fakeSource{n: 10, err: io.EOF, fps: 10}, nil
			}
			box := NewMailbox()
			c := NewCapture(CaptureConfig{Source: "file", Loop: loop}, slog.New(slog.DiscardHandler), box, open)
			ctx, cancel := context.WithTimeout(context.Background(), 4950*time.Millisecond)
			defer cancel()
			c.Run(ctx)
			st := c.Status()
			switch {
			case !loop && (opened != 1 || st.Frames != 10 || st.State != StateEnded):
				t.Errorf("no loop: opened %d, status %+v", opened, st)
			case loop && (opened != 5 || st.Frames != 50 || st.State != StateStopped || st.Reopens != 0):
				// 10 frames at 10 fps per pass: five passes in 5 s, and a
				// loop is not a reopen after a failure.
				t.Errorf("loop: opened %d, status %+v", opened, st)
			}
		})
	}
}

func TestBackoffDoublesToCapWithJitter(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 8 * time.Second}
	for i, want := range []time.Duration{1, 2, 4, 8, 8, 8} {
		want *= time.Second
		d := b.Next()
		if d < want || d > want*6/5 {
			t.Errorf("delay %d is %v, want %v to %v", i, d, want, want*6/5)
		}
	}
	b.Reset()
	if d := b.Next(); d > 1200*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}
