package camera

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gocv.io/x/gocv"
)

// ErrClosed is returned after a mailbox or source is closed.
var ErrClosed = errors.New("closed")

// Source yields frames. Read fills dst, reusing its buffer, and returns
// io.EOF when a finite source (a file, a folder) ends.
type Source interface {
	Read(dst *Frame) error
	// FPS is the source's native frame rate, or 0 when it has none.
	FPS() float64
	Close() error
	String() string
}

// OpenSource opens the source a configuration string names: a video file
// or a folder of images.
func OpenSource(spec string, folderFPS float64) (Source, error) {
	if spec == "" {
		return nil, errors.New("no camera source configured")
	}
	st, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("camera source %q: %w", spec, err)
	}
	if st.IsDir() {
		return openFolder(spec, folderFPS)
	}
	return openVideo(spec)
}

type videoSource struct {
	path string
	cap  *gocv.VideoCapture
	mat  gocv.Mat
	fps  float64
}

func openVideo(path string) (*videoSource, error) {
	// FFmpeg reads files directly; the default order would try GStreamer
	// and the image-sequence reader first, with noisy failures.
	vc, err := gocv.VideoCaptureFileWithAPI(path, gocv.VideoCaptureFFmpeg)
	if err != nil {
		return nil, fmt.Errorf("open video %q: %w", path, err)
	}
	if !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("open video %q: OpenCV cannot read it as a video", path)
	}
	v := &videoSource{path: path, cap: vc, mat: gocv.NewMat(), fps: vc.Get(gocv.VideoCaptureFPS)}
	if v.fps <= 0 || v.fps > 1000 {
		v.fps = 0
	}
	return v, nil
}

func (v *videoSource) Read(dst *Frame) error {
	if v.cap == nil {
		return ErrClosed
	}
	if !v.cap.Read(&v.mat) || v.mat.Empty() {
		return io.EOF
	}
	return frameFromMat(v.mat, dst)
}

func (v *videoSource) FPS() float64   { return v.fps }
func (v *videoSource) String() string { return "video " + v.path }

func (v *videoSource) Close() error {
	if v.cap == nil {
		return nil
	}
	err := v.cap.Close()
	v.mat.Close()
	v.cap = nil
	return err
}

// imageExts are the file types a folder source reads.
var imageExts = []string{".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

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

func (s *folderSource) Read(dst *Frame) error {
	for s.next < len(s.files) {
		path := s.files[s.next]
		s.next++
		data, err := os.ReadFile(path)
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
func (s *folderSource) String() string { return "image folder " + s.dir }
func (s *folderSource) Close() error   { return nil }
