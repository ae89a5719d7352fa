//go:build soak && matprofile

package pipeline

import (
	"context"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner/backbone"
)

// TestSoak runs the camera and the whole pipeline (motion gate, detection,
// crops, snapshots, label embeddings) on a looping video for
// WHISKER_SOAK (default 10m), and checks that open Mats (gocv's
// matprofile) and goroutines do not grow, and return to where they were
// once everything stopped. make soak runs it.
func TestSoak(t *testing.T) {
	d := 10 * time.Minute
	if s := os.Getenv("WHISKER_SOAK"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("WHISKER_SOAK=%q: %v", s, err)
		}
	}
	cat, err := camera.ReadImage(testenv.Photo(t, "chelsea.png"))
	if err != nil {
		t.Fatal(err)
	}
	dog, err := camera.ReadImage(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	// A 3 s video: the capture reopens it every 3 s.
	video := filepath.Join(t.TempDir(), "loop.avi")
	if _, err := camera.ComposeVideo(video, 640, 480, 10, testenv.Video(t, "small.mp4"), []camera.Shot{
		{Seconds: 1, Photo: &cat, Height: 0.5, From: [2]float64{0.25, 0.5}, To: [2]float64{0.35, 0.5}, Noise: 2,
			More: []camera.Shot{{Photo: &dog, Crop: image.Rect(110, 200, 330, 550), Height: 0.6, From: [2]float64{0.8, 0.5}, To: [2]float64{0.7, 0.5}}}},
		{Seconds: 1, Noise: 2},
		{Seconds: 1, Photo: &dog, Crop: image.Rect(110, 200, 330, 550), Height: 0.6, From: [2]float64{0.3, 0.5}, To: [2]float64{0.6, 0.5}, Noise: 2},
	}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	mats0, goroutines0 := gocv.MatProfile.Count(), runtime.NumGoroutine()
	t.Logf("before: %d open Mats, %d goroutines", mats0, goroutines0)

	bb, err := backbone.Open(testenv.DetectorBackbone(t), backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	pcfg := testPipelineConfig()
	pcfg.Camera.Motion.IdleInterval = 5 * time.Second
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	box := camera.NewMailbox()
	var sightings atomic.Uint64
	p, err := New(pcfg, log, bb, box, nil, func(obs []Observation) {
		sightings.Add(uint64(len(obs)))
	})
	if err != nil {
		t.Fatal(err)
	}
	capture := camera.NewCapture(camera.CaptureConfig{Source: video, Loop: true}, log, box, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 3)
	go func() { capture.Run(ctx); done <- struct{}{} }()
	go func() { p.Run(ctx); done <- struct{}{} }()
	// Label requests embed photographs now and then, as MQTT would ask.
	go func() {
		defer func() { done <- struct{}{} }()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			img := dog.Clone()
			feats, err := p.Embed(ctx, &img)
			if ctx.Err() != nil {
				return
			}
			if err != nil || len(feats) != 1280 {
				t.Errorf("embedding request: %v, %d features", err, len(feats))
			}
		}
	}()

	type sample struct {
		at               time.Duration
		mats, goroutines int
		heapMB           float64
	}
	var samples []sample
	start := time.Now()
	every := max(d/20, time.Second)
	for time.Since(start) < d {
		time.Sleep(every)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := sample{time.Since(start).Round(time.Second), gocv.MatProfile.Count(), runtime.NumGoroutine(), float64(ms.HeapInuse) / (1 << 20)}
		samples = append(samples, s)
		cs, ps := capture.Status(), p.Stats()
		t.Logf("%6v  Mats %3d  goroutines %3d  heap %6.1f MB  | frames %d, loops of the video %d, inferred %d, crops %d, sightings %d, still %d, dropped %d",
			s.at, s.mats, s.goroutines, s.heapMB, cs.Frames, cs.Frames/30, ps.Inferred, ps.Crops, sightings.Load(), ps.Still, ps.Dropped)
	}
	cancel()
	for range 3 {
		<-done
	}
	st := p.Stats()
	p.Close()
	bb.Close()
	if st.Inferred < 100 || st.Crops == 0 || st.Errors != 0 {
		t.Errorf("the soak did too little or failed: %+v", st)
	}
	if n := len(samples); n >= 4 {
		// After the first tenth, which warms up: no growth beyond the
		// frames in flight at the moment of a sample.
		base := samples[1]
		for _, s := range samples[2:] {
			if s.mats > base.mats+8 || s.goroutines > base.goroutines+4 {
				t.Errorf("at %v: %d Mats and %d goroutines; at %v there were %d and %d", s.at, s.mats, s.goroutines, base.at, base.mats, base.goroutines)
			}
		}
	}
	// Stopped: everything the soak opened is closed again.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (gocv.MatProfile.Count() != mats0 || runtime.NumGoroutine() > goroutines0) {
		time.Sleep(100 * time.Millisecond)
	}
	mats1, goroutines1 := gocv.MatProfile.Count(), runtime.NumGoroutine()
	t.Logf("after: %d open Mats, %d goroutines (before: %d, %d)", mats1, goroutines1, mats0, goroutines0)
	if mats1 != mats0 {
		var b strings.Builder
		gocv.MatProfile.WriteTo(&b, 1)
		t.Errorf("%d Mats left open:\n%s", mats1-mats0, b.String())
	}
	if goroutines1 > goroutines0 {
		t.Errorf("%d goroutines left running", goroutines1-goroutines0)
	}
}
