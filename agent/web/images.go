package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/image/draw"

	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/plots"
)

// sightingID is what a sighting id in a path may be; anything else is not
// looked up at all.
var sightingID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

func writeJPEG(w http.ResponseWriter, data []byte, cache bool) {
	w.Header().Set("Content-Type", "image/jpeg")
	if cache { // sightings and samples never change under their id
		w.Header().Set("Cache-Control", "private, max-age=3600")
	}
	w.Write(data)
}

// sightingImage serves a sighting's crop, frame or thumbnail, from the
// inbox or, for one the inbox did not keep, the recent snapshots.
func (s *Server) sightingImage(w http.ResponseWriter, r *http.Request) {
	id, kind := r.PathValue("id"), r.PathValue("kind")
	if !sightingID.MatchString(id) {
		http.NotFound(w, r)
		return
	}
	var data []byte
	var err error
	switch kind {
	case "crop.jpg", "thumb.jpg":
		if data, err = s.inbox.Crop(id); err != nil {
			if _, crop, ok := s.be.Snapshot(id); ok {
				data, err = crop, nil
			}
		}
	case "frame.jpg":
		if data, err = s.inbox.FrameJPEG(id); err != nil {
			if frame, _, ok := s.be.Snapshot(id); ok {
				data, err = frame, nil
			}
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil || len(data) == 0 {
		http.NotFound(w, r)
		return
	}
	if kind == "thumb.jpg" {
		if data, err = s.thumbs.get("s/"+id, data); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	writeJPEG(w, data, true)
}

// sampleImage serves a stored sample's picture as a thumbnail.
func (s *Server) sampleImage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		http.NotFound(w, r)
		return
	}
	data, err := s.be.SampleJPEG(id)
	if err != nil || len(data) == 0 {
		http.NotFound(w, r)
		return
	}
	if data, err = s.thumbs.get("p/"+strconv.FormatUint(id, 10), data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJPEG(w, data, false)
}

// liveFrame serves the newest frame with the pets' boxes.
func (s *Server) liveFrame(w http.ResponseWriter, r *http.Request) {
	_, data, ok := s.be.Latest()
	if !ok {
		http.Error(w, "no frame yet", http.StatusNotFound)
		return
	}
	writeJPEG(w, data, false)
}

// thumbSide is the longer side of thumbnails, in pixels.
const thumbSide = 160

// maxThumbSource bounds the pictures thumbnails are made of (a shared
// sample from another camera may claim any size).
const maxThumbSource = 4096

// thumbCache keeps thumbnails made from stored JPEGs (decoded with Go's
// own JPEG decoder after checking their size), the newest n.
type thumbCache struct {
	mu    sync.Mutex
	n     int
	order []string
	m     map[string][]byte
}

func newThumbCache(n int) *thumbCache { return &thumbCache{n: n, m: map[string][]byte{}} }

func (c *thumbCache) get(key string, src []byte) ([]byte, error) {
	c.mu.Lock()
	if t, ok := c.m[key]; ok {
		c.mu.Unlock()
		return t, nil
	}
	c.mu.Unlock()
	t, err := thumbnail(src)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok {
		if len(c.order) >= c.n {
			delete(c.m, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, key)
		c.m[key] = t
	}
	return t, nil
}

func thumbnail(src []byte) ([]byte, error) {
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	if cfg.Width > maxThumbSource || cfg.Height > maxThumbSource || cfg.Width < 1 || cfg.Height < 1 {
		return nil, fmt.Errorf("thumbnail: %dx%d picture", cfg.Width, cfg.Height)
	}
	if max(cfg.Width, cfg.Height) <= thumbSide {
		return src, nil
	}
	img, err := jpeg.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("thumbnail: %w", err)
	}
	w, h := cfg.Width, cfg.Height
	if w >= h {
		w, h = thumbSide, max(1, h*thumbSide/w)
	} else {
		w, h = max(1, w*thumbSide/h), thumbSide
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, img.Bounds(), draw.Src, nil)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 75}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// evaluation is the latest cross-validation of the stored samples, with
// its plots, made in the background for the health page (it takes
// seconds) and kept until the head changes.
type evaluation struct {
	mu      sync.Mutex
	key     string
	running bool
	st      evalState
}

type evalState struct {
	Running   bool
	Err       string
	Report    *learner.Report
	Confusion []byte
	Curve     []byte
	Took      time.Duration
}

func headKey(h *learner.HeadSummary) string {
	return fmt.Sprintf("%s/%d/%v", h.Trained.Format(time.RFC3339Nano), h.Samples, h.Classes)
}

// state returns the evaluation of head h, starting it when there is none.
func (e *evaluation) state(s *Server, h *learner.HeadSummary) *evalState {
	key := headKey(h)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.key != key && !e.running {
		e.key, e.running = key, true
		go e.run(s, key)
	}
	st := e.st
	st.Running = e.running || e.key != key
	return &st
}

func (e *evaluation) run(s *Server, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-s.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	st := evalState{}
	rep, err := s.be.Evaluate(ctx)
	if err == nil {
		st.Report = rep
		st.Confusion, st.Curve, err = renderPlots(rep)
	}
	if err != nil {
		st.Err = err.Error()
	}
	st.Took = time.Since(start).Round(time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.key == key {
		e.st = st
	}
	e.running = false
}

// renderPlots draws the confusion matrix and the learning curve (as
// `whisker eval` does) and returns the PNGs.
func renderPlots(rep *learner.Report) (confusion, curve []byte, err error) {
	dir, err := os.MkdirTemp("", "whisker-plots-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	if len(rep.Classes) > 0 && len(rep.Confusion) == len(rep.Classes) {
		p := filepath.Join(dir, "confusion.png")
		if err := plots.Confusion(rep, p); err != nil {
			return nil, nil, err
		}
		if confusion, err = os.ReadFile(p); err != nil {
			return nil, nil, err
		}
	}
	if len(rep.Curve) > 0 {
		p := filepath.Join(dir, "curve.png")
		if err := plots.LearningCurve(rep, p); err != nil {
			return nil, nil, err
		}
		if curve, err = os.ReadFile(p); err != nil {
			return nil, nil, err
		}
	}
	return confusion, curve, nil
}

var errNoPlot = errors.New("no such plot")

func (s *Server) plotImage(w http.ResponseWriter, r *http.Request) {
	s.eval.mu.Lock()
	st := s.eval.st
	s.eval.mu.Unlock()
	var data []byte
	switch r.PathValue("name") {
	case "confusion.png":
		data = st.Confusion
	case "curve.png":
		data = st.Curve
	}
	if len(data) == 0 {
		http.Error(w, errNoPlot.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(data)
}
