package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/whiskercam/whisker/internal/testenv"
)

func solid(w, h int, b, g, r byte) frame.Frame {
	f := frame.Frame{Width: w, Height: h, Stride: w * 3, Data: make([]byte, w*h*3)}
	for i := 0; i < len(f.Data); i += 3 {
		f.Data[i], f.Data[i+1], f.Data[i+2] = b, g, r
	}
	return f
}

func TestMailboxKeepsLatestAndCountsDrops(t *testing.T) {
	box := NewMailbox()
	for i := 1; i <= 3; i++ {
		f := frame.Frame{Seq: uint64(i), Data: []byte{byte(i)}}
		box.Put(&f)
	}
	var got frame.Frame
	if err := box.Take(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 3 || got.Data[0] != 3 {
		t.Fatalf("took frame %d, want the latest (3)", got.Seq)
	}
	if put, dropped := box.Stats(); put != 3 || dropped != 2 {
		t.Fatalf("put %d dropped %d, want 3 and 2", put, dropped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := box.Take(ctx, &got); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty mailbox: %v", err)
	}
	box.Close()
	if err := box.Take(context.Background(), &got); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed mailbox: %v", err)
	}
}

// Buffers are recycled, never shared: what the producer writes after Put
// does not change what the consumer took.
func TestMailboxSwapsBuffers(t *testing.T) {
	box := NewMailbox()
	f := frame.Frame{Data: []byte{1, 2, 3}}
	box.Put(&f)
	var got frame.Frame
	box.TryTake(&got)
	f.Data = append(f.Data[:0], 9, 9, 9)
	box.Put(&f)
	if got.Data[0] != 1 {
		t.Fatalf("consumer's frame changed to %v", got.Data)
	}
}

func TestPreprocessNormalisesAndOrdersChannels(t *testing.T) {
	f := solid(64, 48, 10, 128, 250) // B, G, R
	for _, tc := range []struct {
		name string
		rgb  bool
		want [3]float32
	}{
		{"RGB", true, [3]float32{(250 - 127.5) / 127.5, (128 - 127.5) / 127.5, (10 - 127.5) / 127.5}},
		{"BGR", false, [3]float32{(10 - 127.5) / 127.5, (128 - 127.5) / 127.5, (250 - 127.5) / 127.5}},
	} {
		p, err := NewPreprocessor(frame.Spec{Width: 30, Height: 20, RGB: tc.rgb, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.Process(&f, nil)
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 30*20*3 {
			t.Fatalf("%s: %d values", tc.name, len(out))
		}
		for i, v := range out {
			if d := v - tc.want[i%3]; d > 1e-6 || d < -1e-6 {
				t.Fatalf("%s: value %d is %g, want %g", tc.name, i, v, tc.want[i%3])
			}
		}
	}
}

func TestPreprocessLetterboxPads(t *testing.T) {
	f := solid(200, 100, 255, 255, 255) // wide and white
	p, err := NewPreprocessor(frame.Spec{Width: 10, Height: 10, RGB: true, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}, Fit: frame.FitLetterbox})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out, err := p.Process(&f, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 200x100 fits as 10x5, centred: rows 0-1 and 7-9 are padding.
	for y := range 10 {
		v := out[(y*10+5)*3]
		if pad := y < 2 || y >= 7; pad && v != padGrey || !pad && v != 255 {
			t.Fatalf("row %d is %g (pad %v)", y, v, pad)
		}
	}
}

func TestPreprocessRejectsBadFrames(t *testing.T) {
	p, err := NewPreprocessor(frame.Spec{Width: 8, Height: 8, Std: [3]float32{1, 1, 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, f := range []frame.Frame{{}, {Width: 4, Height: 4, Stride: 12, Data: make([]byte, 10)}} {
		if _, err := p.Process(&f, nil); err == nil {
			t.Errorf("frame %dx%d with %d bytes accepted", f.Width, f.Height, len(f.Data))
		}
	}
	if _, err := NewPreprocessor(frame.Spec{Width: 8, Height: 8}); err == nil {
		t.Error("zero std accepted")
	}
}

func TestImageDecodeAndJPEG(t *testing.T) {
	f, err := ReadImage(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Width != 768 || f.Height != 576 {
		t.Fatalf("dog.jpg is %dx%d", f.Width, f.Height)
	}
	jpeg, err := EncodeJPEG(&f, 320, 85)
	if err != nil {
		t.Fatal(err)
	}
	small, err := DecodeImage(jpeg)
	if err != nil {
		t.Fatal(err)
	}
	if small.Width != 320 || small.Height != 240 {
		t.Fatalf("snapshot is %dx%d, want 320x240", small.Width, small.Height)
	}
	for _, bad := range [][]byte{nil, []byte("not an image"), jpeg[:len(jpeg)/3]} {
		if _, err := DecodeImage(bad); err == nil && len(bad) < 100 {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestSourcesReportClearErrors(t *testing.T) {
	dir := t.TempDir()
	notVideo := filepath.Join(dir, "notes.avi")
	os.WriteFile(notVideo, []byte("plain text, not a video"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	for _, tc := range []struct{ spec, want string }{
		{filepath.Join(dir, "missing.avi"), "no such file"},
		{notVideo, "notes.avi"},
		{empty, "has no images"},
		{"", "no camera source"},
	} {
		src, err := OpenSource(tc.spec, SourceOptions{FolderFPS: 1})
		if err == nil {
			// Some OpenCV backends open anything and fail on the first read.
			var f frame.Frame
			err = src.Read(&f)
			src.Close()
			if err == nil {
				t.Errorf("%q: opened and read", tc.spec)
				continue
			}
			if errors.Is(err, io.EOF) {
				continue // a file with no frames ends at once
			}
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want it to mention %q", tc.spec, err, tc.want)
		}
	}
}

func TestDemoVideoReadsBack(t *testing.T) {
	src, err := OpenSource(testenv.DemoVideo(t), SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.FPS() != 10 {
		t.Errorf("fps %g", src.FPS())
	}
	if n := readToEnd(t, src, 640, 480); n != 330 {
		t.Fatalf("%d frames, want 330", n)
	}
}

// readToEnd reads a source to its end and returns how many frames it
// gave, each of which must be w x h.
func readToEnd(t *testing.T, src Source, w, h int) int {
	t.Helper()
	var f frame.Frame
	n := 0
	for {
		err := src.Read(&f)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Width != w || f.Height != h {
			t.Fatalf("frame %d is %dx%d", n, f.Width, f.Height)
		}
		n++
	}
}

// fakeSource yields n frames, then fails with err.
type fakeSource struct {
	n   int
	err error
	fps float64
}

func (s *fakeSource) Read(dst *frame.Frame) error {
	if s.n == 0 {
		return s.err
	}
	s.n--
	*dst = frame.Frame{Width: 2, Height: 2, Stride: 6, Data: make([]byte, 12)}
	return nil
}
func (s *fakeSource) FPS() float64   { return s.fps }
func (s *fakeSource) Live() bool     { return false }
func (s *fakeSource) Close() error   { return nil }
func (s *fakeSource) String() string { return "fake" }

// A failing camera is reopened with growing, capped delays; the frame rate
// cap paces capture. Time is virtual (testing/synctest).
func TestCaptureReopensWithBackoffAndPaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var opens []time.Time
		open := func(string, SourceOptions) (Source, error) {
			mu.Lock()
			defer mu.Unlock()
			opens = append(opens, time.Now())
			switch {
			case len(opens) <= 4:
				return nil, errors.New("device vanished")
			case len(opens) == 5:
				return &fakeSource{n: 50, err: errors.New("unplugged"), fps: 30}, nil
			}
			return nil, errors.New("gone for good")
		}
		box := NewMailbox()
		c := NewCapture(CaptureConfig{Source: "cam", MaxFPS: 5}, slog.New(slog.DiscardHandler), box, open)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		time.Sleep(30 * time.Second)
		cancel()
		<-done

		mu.Lock()
		defer mu.Unlock()
		if len(opens) < 6 {
			t.Fatalf("opened %d times in 30 s", len(opens))
		}
		// Delays: 0.5, 1, 2, 4 s (+ up to 20% jitter) between failed opens.
		for i, want := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second} {
			gap := opens[i+1].Sub(opens[i])
			if gap < want || gap > want*6/5+time.Millisecond {
				t.Errorf("retry %d after %v, want %v to %v", i+1, gap, want, want*6/5)
			}
		}
		// 50 frames at the 5 fps cap take 10 s.
		st := c.Status()
		if st.Frames != 50 {
			t.Errorf("%d frames captured, want 50", st.Frames)
		}
		if took := opens[5].Sub(opens[4]); took < 10*time.Second {
			t.Errorf("50 frames took %v, want at least 10 s at 5 fps", took)
		}
		if st.Up || st.Reopens < 5 || !strings.Contains(st.LastErr, "gone for good") {
			t.Errorf("status %+v", st)
		}
	})
}
