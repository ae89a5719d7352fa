package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gocv.io/x/gocv"
)

// ErrClosed is returned after a mailbox or source is closed.
var ErrClosed = errors.New("closed")

// Source yields frames. Read fills dst, reusing its buffer, and returns
// io.EOF when the source ends (a file or folder at its end, a stream that
// stopped).
type Source interface {
	Read(dst *frame.Frame) error
	// FPS is the source's native frame rate, or 0 when it has none.
	FPS() float64
	// Live says whether the source runs in real time (a camera or a
	// stream): its reads wait for the next frame, and its end is a failure
	// rather than the end of a recording.
	Live() bool
	Close() error
	String() string
}

// Kind is the type of source a configuration string names.
type Kind string

// Source kinds.
const (
	KindDevice    Kind = "device"    // a V4L2 camera: /dev/videoN or an index
	KindGStreamer Kind = "gstreamer" // a GStreamer pipeline ending in appsink
	KindStream    Kind = "stream"    // an RTSP or HTTP(S) MJPEG URL
	KindFile      Kind = "file"      // a video file
	KindFolder    Kind = "folder"    // a folder of images
)

// SourceOptions tune how a source is opened.
type SourceOptions struct {
	// FolderFPS is the rate at which a folder's images are shown.
	FolderFPS float64
	// Width, Height, FPS and PixelFormat (a FOURCC such as MJPG or YUYV)
	// are requested from a device; 0 or "" keeps the driver's choice.
	Width, Height int
	FPS           float64
	PixelFormat   string
}

// Validate checks the options.
func (o SourceOptions) Validate() error {
	switch {
	case o.Width < 0 || o.Height < 0 || o.Width > 8192 || o.Height > 8192:
		return fmt.Errorf("capture size %dx%d", o.Width, o.Height)
	case o.FPS < 0 || o.FPS > 1000:
		return fmt.Errorf("capture rate %g fps", o.FPS)
	case o.FolderFPS < 0 || o.FolderFPS > 1000:
		return fmt.Errorf("folder rate %g fps", o.FolderFPS)
	case o.PixelFormat != "" && len(o.PixelFormat) != 4:
		return fmt.Errorf("pixel format %q: want a four-character code such as MJPG or YUYV", o.PixelFormat)
	}
	return nil
}

// ParseSource says what kind of source spec names, without opening it:
// a URL (rtsp://, rtsps://, http://, https://) is a stream; a string with
// " ! " or a "gst:" prefix is a GStreamer pipeline; a path under /dev or a
// number is a V4L2 device; a directory is a folder of images; anything
// else is a video file. It returns the spec with any prefix removed.
func ParseSource(spec string) (Kind, string, error) {
	s := strings.TrimSpace(spec)
	lower := strings.ToLower(s)
	switch {
	case s == "":
		return "", "", errors.New("no camera source configured")
	case strings.HasPrefix(lower, "gst:"):
		s = strings.TrimSpace(s[4:])
		if s == "" {
			return "", "", errors.New("empty GStreamer pipeline after gst:")
		}
		return KindGStreamer, s, nil
	case strings.Contains(s, " ! "):
		return KindGStreamer, s, nil
	case strings.HasPrefix(lower, "rtsp://"), strings.HasPrefix(lower, "rtsps://"),
		strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"):
		return KindStream, s, nil
	case strings.Contains(s, "://"):
		return "", "", fmt.Errorf("camera source %q: unknown URL scheme (rtsp, rtsps, http, https)", s)
	case strings.HasPrefix(s, "/dev/"):
		return KindDevice, s, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 63 {
			return "", "", fmt.Errorf("camera index %d: want 0 to 63", n)
		}
		return KindDevice, s, nil
	}
	if st, err := os.Stat(s); err == nil && st.IsDir() {
		return KindFolder, s, nil
	}
	return KindFile, s, nil
}

// OpenSource opens the source a configuration string names (see
// ParseSource).
func OpenSource(spec string, opt SourceOptions) (Source, error) {
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("camera source %q: %w", spec, err)
	}
	kind, s, err := ParseSource(spec)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindDevice:
		return openDevice(s, opt)
	case KindGStreamer:
		return openCapture(s, "GStreamer pipeline", gocv.VideoCaptureGstreamer, true)
	case KindStream:
		return openCapture(s, "stream", gocv.VideoCaptureFFmpeg, true)
	case KindFolder:
		return openFolder(s, opt.FolderFPS)
	}
	if _, err := os.Stat(s); err != nil {
		return nil, fmt.Errorf("camera source %q: %w", s, err)
	}
	// FFmpeg reads files directly; the default order would try GStreamer
	// and the image-sequence reader first, with noisy failures.
	return openCapture(s, "video", gocv.VideoCaptureFFmpeg, false)
}

// videoSource is anything OpenCV's VideoCapture reads.
type videoSource struct {
	what string // "video", "stream", "camera", "GStreamer pipeline"
	name string
	cap  *gocv.VideoCapture
	mat  gocv.Mat
	fps  float64
	live bool
}

func openCapture(name, what string, api gocv.VideoCaptureAPI, live bool) (*videoSource, error) {
	vc, err := gocv.VideoCaptureFileWithAPI(name, api)
	if err != nil {
		// OpenCV's message repeats the name, password and all.
		return nil, fmt.Errorf("open %s %q: %s", what, redact(name), strings.ReplaceAll(err.Error(), name, redact(name)))
	}
	if !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open %s %q: OpenCV cannot read it as a %s", what, redact(name), what)
	}
	return newVideoSource(vc, what, name, live), nil
}

func newVideoSource(vc *gocv.VideoCapture, what, name string, live bool) *videoSource {
	v := &videoSource{what: what, name: name, cap: vc, mat: gocv.NewMat(), fps: vc.Get(gocv.VideoCaptureFPS), live: live}
	if v.fps <= 0 || v.fps > 1000 {
		v.fps = 0
	}
	return v
}

func openDevice(name string, opt SourceOptions) (*videoSource, error) {
	var vc *gocv.VideoCapture
	var err error
	if n, aerr := strconv.Atoi(name); aerr == nil {
		if _, serr := os.Stat(fmt.Sprintf("/dev/video%d", n)); serr != nil {
			return nil, fmt.Errorf("open camera %d: /dev/video%d: %w", n, n, serr)
		}
		vc, err = gocv.VideoCaptureDeviceWithAPI(n, gocv.VideoCaptureV4L2)
	} else {
		if _, serr := os.Stat(name); serr != nil {
			return nil, fmt.Errorf("open camera %s: %w", name, serr)
		}
		vc, err = gocv.VideoCaptureFileWithAPI(name, gocv.VideoCaptureV4L2)
	}
	if err != nil {
		return nil, fmt.Errorf("open camera %s: %w", name, err)
	}
	if !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open camera %s: V4L2 cannot open it (is it a capture device, and is it free?)", name)
	}
	// The pixel format goes first: it decides which sizes and rates exist.
	if opt.PixelFormat != "" {
		vc.Set(gocv.VideoCaptureFOURCC, vc.ToCodec(strings.ToUpper(opt.PixelFormat)))
	}
	if opt.Width > 0 {
		vc.Set(gocv.VideoCaptureFrameWidth, float64(opt.Width))
	}
	if opt.Height > 0 {
		vc.Set(gocv.VideoCaptureFrameHeight, float64(opt.Height))
	}
	if opt.FPS > 0 {
		vc.Set(gocv.VideoCaptureFPS, opt.FPS)
	}
	return newVideoSource(vc, "camera", name, true), nil
}

func (v *videoSource) Read(dst *frame.Frame) error {
	if v.cap == nil {
		return ErrClosed
	}
	if !v.cap.Read(&v.mat) || v.mat.Empty() {
		return io.EOF
	}
	return frameFromMat(v.mat, dst)
}

func (v *videoSource) FPS() float64   { return v.fps }
func (v *videoSource) Live() bool     { return v.live }
func (v *videoSource) String() string { return v.what + " " + redact(v.name) }

func (v *videoSource) Close() error {
	if v.cap == nil {
		return nil
	}
	err := v.cap.Close()
	v.mat.Close()
	v.cap = nil
	return err
}

// redact hides a password in a URL (rtsp://user:secret@host/...) so that
// it never reaches logs or status messages.
func redact(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	host, path, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(host, "@")
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(host[:at], ":")
	if !hasPass {
		return s
	}
	out := scheme + "://" + user + ":xxxxx" + host[at:]
	if strings.Contains(rest, "/") {
		out += "/" + path
	}
	return out
}

// imageExts are the file types a folder source reads.
var imageExts = []string{".jpg", ".jpeg", ".png", ".bmp", ".webp"}

// IsImageFile says whether a file name has an image extension.
func IsImageFile(name string) bool {
	return slices.Contains(imageExts, strings.ToLower(filepath.Ext(name)))
}

type folderSource struct {
	dir   string
	files []string
	next  int
	fps   float64
}

func openFolder(dir string, fps float64) (*folderSource, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open image folder %q: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && IsImageFile(e.Name()) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("image folder %q has no images (%s)", dir, strings.Join(imageExts, " "))
	}
	if fps <= 0 {
		fps = 1
	}
	return &folderSource{dir: dir, files: files, fps: fps}, nil
}

func (s *folderSource) Read(dst *frame.Frame) error {
	for s.next < len(s.files) {
		path := s.files[s.next]
		s.next++
		data, err := readLimited(path, MaxImageBytes)
		if errors.Is(err, ErrNotImage) {
			continue // too large to be an image this package reads; skip it
		}
		if err != nil {
			return fmt.Errorf("image folder: %w", err)
		}
		f, err := DecodeImage(data)
		if err != nil {
			continue // not every file named .jpg is one; skip it
		}
		dst.Data, dst.Width, dst.Height, dst.Stride = f.Data, f.Width, f.Height, f.Stride
		return nil
	}
	return io.EOF
}

func (s *folderSource) FPS() float64   { return s.fps }
func (s *folderSource) Live() bool     { return false }
func (s *folderSource) String() string { return "image folder " + s.dir }
func (s *folderSource) Close() error   { return nil }
