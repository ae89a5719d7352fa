package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whiskercam/whisker/internal/testenv"
)

func TestParseSource(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		spec string
		kind Kind
		rest string
		bad  string
	}{
		{"/dev/video0", KindDevice, "/dev/video0", ""},
		{"2", KindDevice, "2", ""},
		{"99", "", "", "camera index 99"},
		{"rtsp://cam.local:554/stream1", KindStream, "rtsp://cam.local:554/stream1", ""},
		{"https://cam.local/mjpg/video.mjpg", KindStream, "https://cam.local/mjpg/video.mjpg", ""},
		{"ftp://cam/x", "", "", "unknown URL scheme"},
		{"gst: libcamerasrc ! videoconvert ! appsink", KindGStreamer, "libcamerasrc ! videoconvert ! appsink", ""},
		{"nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink", KindGStreamer,
			"nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink", ""},
		{"gst:", "", "", "empty GStreamer pipeline"},
		{dir, KindFolder, dir, ""},
		{"/var/lib/whisker/porch.mp4", KindFile, "/var/lib/whisker/porch.mp4", ""},
		{"  ", "", "", "no camera source"},
	} {
		kind, rest, err := ParseSource(tc.spec)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%q: %v, want an error mentioning %q", tc.spec, err, tc.bad)
			}
			continue
		}
		if err != nil || kind != tc.kind || rest != tc.rest {
			t.Errorf("%q: %s %q %v, want %s %q", tc.spec, kind, rest, err, tc.kind, tc.rest)
		}
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://admin:hunter2@10.0.0.5:554/Streaming/101": "rtsp://admin:xxxxx@10.0.0.5:554/Streaming/101",
		"http://user:p%40ss@cam/video.mjpg":               "http://user:xxxxx@cam/video.mjpg",
		"rtsp://10.0.0.5/stream":                          "rtsp://10.0.0.5/stream",
		"rtsp://viewer@cam":                               "rtsp://viewer@cam",
		"/dev/video0":                                     "/dev/video0",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// The video in gocv's module zip: a real recording, read to its end.
func TestReadsRealVideoFromPackage(t *testing.T) {
	src, err := OpenSource(testenv.Video(t, "small.mp4"), SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Live() || src.FPS() != 30 {
		t.Errorf("live %v fps %g, want a 30 fps file", src.Live(), src.FPS())
	}
	if n := readToEnd(t, src, 560, 320); n != 166 {
		t.Errorf("%d frames, want 166", n)
	}
}

// opens counts how often a capture opened its source, around the real
// opener.
type opens struct {
	n    atomic.Int32
	open Opener
}

func (o *opens) Open(spec string, opt SourceOptions) (Source, error) {
	o.n.Add(1)
	return o.open(spec, opt)
}

// runCapture runs a capture on a real source until cond holds (checked
// every 20 ms) or 20 s pass, and returns its status then.
func runCapture(t *testing.T, cfg CaptureConfig, cond func(Status) bool) (Status, *opens) {
	t.Helper()
	o := &opens{open: OpenSource}
	box := NewMailbox()
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	}
	c := NewCapture(cfg, slog.New(slog.DiscardHandler), box, o.Open)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	// Keep the mailbox drained, as the inference worker does.
	go func() {
		var f frame.Frame
		for box.Take(context.Background(), &f) == nil {
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	var st Status
	for {
		st = c.Status()
		if cond(st) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("capture did not stop within 5 s")
	}
	if got := c.Status(); got.State != StateStopped || got.Up {
		t.Errorf("after stop: state %q up %v", got.State, got.Up)
	}
	return st, o
}

// A GStreamer pipeline (videotestsrc from gstreamer1.0-plugins-base) that
// ends after 12 buffers: a live source's end is a failure, reported and
// followed by a reopen.
func TestGStreamerPipelineEndsAndReopens(t *testing.T) {
	pipeline := "videotestsrc num-buffers=12 pattern=ball ! video/x-raw,width=160,height=120 ! videoconvert ! video/x-raw,format=BGR ! appsink"
	src, err := OpenSource(pipeline, SourceOptions{})
	if err != nil {
		t.Fatalf("%v (make deps installs gstreamer1.0-plugins-base)", err)
	}
	if !src.Live() || !strings.HasPrefix(src.String(), "GStreamer pipeline") {
		t.Errorf("source %s live %v", src, src.Live())
	}
	var f frame.Frame
	n := 0
	for src.Read(&f) == nil {
		if f.Width != 160 || f.Height != 120 {
			t.Fatalf("frame is %dx%d", f.Width, f.Height)
		}
		n++
	}
	src.Close()
	if n != 12 {
		t.Fatalf("read %d frames, want 12", n)
	}
	st, o := runCapture(t, CaptureConfig{Source: "gst:" + pipeline}, func(s Status) bool { return s.Reopens >= 2 && s.Frames >= 24 })
	if st.Reopens < 2 || o.n.Load() < 3 || !strings.Contains(st.LastErr, "the stream ended after 12 frames") {
		t.Errorf("status %+v after %d opens", st, o.n.Load())
	}
}

// mjpegServer serves frames of a video as an HTTP MJPEG stream
// (multipart/x-mixed-replace), as network cameras do, and ends each
// connection after perConn frames.
func mjpegServer(t *testing.T, video string, perConn int) *httptest.Server {
	t.Helper()
	src, err := OpenSource(video, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var jpegs [][]byte
	var f frame.Frame
	for len(jpegs) < perConn && src.Read(&f) == nil {
		j, err := EncodeJPEG(&f, 320, 80)
		if err != nil {
			t.Fatal(err)
		}
		jpegs = append(jpegs, j)
	}
	src.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=whiskerframe")
		fl := w.(http.Flusher)
		for _, j := range jpegs {
			fmt.Fprintf(w, "--whiskerframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(j))
			w.Write(j)
			io.WriteString(w, "\r\n")
			fl.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPMJPEGStreamEndsAndReopens(t *testing.T) {
	srv := mjpegServer(t, testenv.Video(t, "small.mp4"), 15)
	url := srv.URL + "/video.mjpg"
	st, o := runCapture(t, CaptureConfig{Source: url}, func(s Status) bool { return s.Reopens >= 1 && s.Frames >= 20 })
	if st.Frames < 20 || st.Reopens < 1 || o.n.Load() < 2 {
		t.Fatalf("status %+v after %d opens", st, o.n.Load())
	}
	if !strings.Contains(st.LastErr, "stream ended") || !strings.Contains(st.Source, "stream http://") {
		t.Errorf("status %+v", st)
	}
	if st.Width != 320 || st.Height != 182 {
		t.Errorf("frames are %dx%d, want 320x182", st.Width, st.Height)
	}
}

// Sources that cannot deliver: a clear error each, and the capture keeps
// trying to reopen them (a camera may come back).
func TestFailingSourcesAreRetried(t *testing.T) {
	dir := t.TempDir()
	notVideo := dir + "/notes.avi"
	if err := os.WriteFile(notVideo, []byte("plain text, not a video"), 0o644); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk")
	if err := os.Mkdir(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "cat.jpg"), []byte("\xff\xd8\xff not really a JPEG"), 0o644); err != nil {
		t.Fatal(err)
	}
	demo, err := os.ReadFile(testenv.DemoVideo(t))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.avi")
	if err := os.WriteFile(truncated, demo[:4096], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ spec, want string }{
		{junk, "no frame could be read"},
		{truncated, "truncated.avi"},
		{"/dev/video63", "/dev/video63: no such file"},
		{"37", "/dev/video37: no such file"},
		{notVideo, "notes.avi"},
		{dir + "/gone.mp4", "no such file"},
		{"http://127.0.0.1:1/none.mjpg", "127.0.0.1:1"},
	} {
		st, o := runCapture(t, CaptureConfig{Source: tc.spec}, func(s Status) bool { return s.Reopens >= 2 && s.Failures >= 3 })
		if st.Up || st.State != StateReopening || st.Reopens < 2 || o.n.Load() < 3 || st.RetryAt.IsZero() || st.Failures < 3 {
			t.Errorf("%s: status %+v after %d opens", tc.spec, st, o.n.Load())
		}
		if !strings.Contains(st.LastErr, tc.want) {
			t.Errorf("%s: error %q, want it to mention %q", tc.spec, st.LastErr, tc.want)
		}
	}
}

// A password in a stream URL never reaches the status or its errors.
func TestStatusHidesPasswords(t *testing.T) {
	st, _ := runCapture(t, CaptureConfig{Source: "http://admin:hunter2@127.0.0.1:1/video.mjpg"}, func(s Status) bool { return s.Reopens >= 1 })
	if strings.Contains(st.Source, "hunter2") || strings.Contains(st.LastErr, "hunter2") || !strings.Contains(st.LastErr, "admin:xxxxx@") {
		t.Errorf("status %+v", st)
	}
}

// Any configuration string parses without a panic, and what is not an
// error is one of the kinds, with nothing but a prefix and spaces removed.
func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"/dev/video0", "3", "rtsp://a:b@c/d", "gst:videotestsrc ! appsink", "x ! y", "", "file.mp4", "://", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		kind, rest, err := ParseSource(spec)
		if err != nil {
			return
		}
		switch kind {
		case KindDevice, KindGStreamer, KindStream, KindFile, KindFolder:
		default:
			t.Fatalf("%q: kind %q", spec, kind)
		}
		if rest == "" || !strings.Contains(spec, rest) {
			t.Fatalf("%q: rest %q", spec, rest)
		}
		if r := redact(spec); len(r) > len(spec)+5 {
			t.Fatalf("redact(%q) = %q", spec, r)
		}
	})
}
