package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/camera/frame"
	"github.com/whiskercam/whisker/learner"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner/backbone"
)

func TestSnapshotStorePrunesByCountAgeAndSize(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := newSnapshotStore(SnapshotsConfig{MaxCount: 3, MaxAge: time.Minute, MaxBytes: 100}, clock)
	jpeg := func(n int) []byte { return make([]byte, n) }
	for i := 1; i <= 4; i++ {
		s.put(fmt.Sprint(i), jpeg(10), jpeg(5), now.Add(time.Duration(i)*time.Second))
	}
	if _, _, ok := s.get("1"); ok {
		t.Error("the oldest of 4 is still kept with max_count 3")
	}
	for _, id := range []string{"2", "3", "4"} {
		if f, c, ok := s.get(id); !ok || len(f) != 10 || len(c) != 5 {
			t.Errorf("%s: %d, %d, %v", id, len(f), len(c), ok)
		}
	}
	if n, b := s.stats(); n != 3 || b != 45 {
		t.Errorf("%d kept, %d bytes", n, b)
	}
	// Older than a minute: gone, though within the count ("2" is 61 s
	// old, "4" 59 s).
	now = now.Add(63 * time.Second)
	if _, _, ok := s.get("2"); ok {
		t.Error("a 60 s old snapshot is kept with max_age 1m")
	}
	if _, _, ok := s.get("4"); !ok {
		t.Error("a 58 s old snapshot was pruned")
	}
	// Over the size: the oldest go first; one too large is not kept.
	s.put("big", jpeg(60), jpeg(20), now)
	if _, _, ok := s.get("3"); ok {
		t.Error("size bound not kept")
	}
	if _, _, ok := s.get("big"); !ok {
		t.Error("newest snapshot pruned")
	}
	s.put("huge", jpeg(90), jpeg(20), now)
	if _, _, ok := s.get("huge"); ok {
		t.Error("a snapshot larger than max_bytes was kept")
	}
	if _, b := s.stats(); b > 100 {
		t.Errorf("%d bytes kept, max 100", b)
	}
	none := newSnapshotStore(SnapshotsConfig{MaxCount: 0}, clock)
	none.put("x", jpeg(1), jpeg(1), now)
	if _, _, ok := none.get("x"); ok {
		t.Error("max_count 0 kept a snapshot")
	}
}

// petVideo composes a cat alone, then a cat and a dog together, then the
// background alone, over the frames of a real video, and returns the
// video and the frame ranges [start, end) of each part.
func petVideo(t *testing.T, fps float64) (path string, catOnly, both, empty [2]int) {
	t.Helper()
	cat, err := camera.ReadImage(testenv.Photo(t, "chelsea.png"))
	if err != nil {
		t.Fatal(err)
	}
	dog, err := camera.ReadImage(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	dogCrop := image.Rect(110, 200, 330, 550) // the dog in dog.jpg
	path = filepath.Join(t.TempDir(), "pets.avi")
	n, err := camera.ComposeVideo(path, 640, 480, fps, testenv.Video(t, "small.mp4"), []camera.Shot{
		{Seconds: 1, Photo: &cat, Height: 0.5, From: [2]float64{0.3, 0.5}, To: [2]float64{0.35, 0.5}},
		{Seconds: 1, Photo: &cat, Height: 0.5, From: [2]float64{0.25, 0.5}, To: [2]float64{0.3, 0.5},
			More: []camera.Shot{{Photo: &dog, Crop: dogCrop, Height: 0.6, From: [2]float64{0.78, 0.55}, To: [2]float64{0.74, 0.55}}}},
		{Seconds: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	k := int(fps)
	if n != 3*k {
		t.Fatalf("%d frames", n)
	}
	return path, [2]int{0, k}, [2]int{k, 2 * k}, [2]int{2 * k, 3 * k}
}

func testPipelineConfig() Config {
	return Config{Camera: DefaultCamera(), Threshold: func() float64 { return 0.6 }, SampleSize: 320, IDPrefix: "t", Recent: 300}
}

// runPipeline runs a pipeline on the frames of src until they are all
// through, and returns what the sink saw. Every frame is handed over once
// the previous one was taken, so none is dropped however slow the machine.
func runPipeline(t *testing.T, pcfg Config, manifest, src string, during func(p *Pipeline)) ([]Observation, *Pipeline) {
	return runPipelineWith(t, pcfg, manifest, src, nil, nil, during)
}

// runPipelineFrom is runPipeline with before run on the pipeline before
// the first frame.
func runPipelineFrom(t *testing.T, pcfg Config, manifest, src string, before, during func(p *Pipeline)) ([]Observation, *Pipeline) {
	return runPipelineWith(t, pcfg, manifest, src, nil, before, during)
}

// runPipelineWithHead is runPipeline with a head naming the sightings.
func runPipelineWithHead(t *testing.T, pcfg Config, manifest, src string, h *learner.Head) ([]Observation, *Pipeline) {
	return runPipelineWith(t, pcfg, manifest, src, func() *learner.Head { return h }, nil, nil)
}

func runPipelineWith(t *testing.T, pcfg Config, manifest, src string, head func() *learner.Head, before, during func(p *Pipeline)) ([]Observation, *Pipeline) {
	t.Helper()
	bb, err := backbone.Open(manifest, backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	box := camera.NewMailbox()
	var mu sync.Mutex
	var got []Observation
	p, err := New(pcfg, log, bb, box, head, func(obs []Observation) {
		mu.Lock()
		got = append(got, obs...)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if before != nil {
		before(p)
	}
	go func() { done <- p.Run(ctx) }()
	feed(t, src, box, p)
	if during != nil {
		during(p)
	}
	// Let the last frames through: wait until nothing moves for a second.
	deadline := time.Now().Add(30 * time.Second)
	last, calm := p.Stats(), 0
	for calm < 10 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		st := p.Stats()
		if st == last {
			calm++
		} else {
			last, calm = st, 0
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("pipeline did not stop within 5 s")
	}
	mu.Lock()
	defer mu.Unlock()
	return got, p
}

// feed puts every frame of a video into the mailbox once the pipeline has
// taken the one before, time-stamped as the video's own clock says (so
// that the motion gate's idle interval counts video time).
func feed(t *testing.T, path string, box *camera.Mailbox, p *Pipeline) {
	t.Helper()
	src, err := camera.OpenSource(path, camera.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.FPS() <= 0 {
		t.Fatalf("%s has no frame rate", path)
	}
	start := time.Now()
	var f frame.Frame
	for seq := uint64(1); src.Read(&f) == nil; seq++ {
		f.Seq, f.Time = seq, start.Add(time.Duration(float64(seq-1)/src.FPS()*float64(time.Second)))
		box.Put(&f)
		deadline := time.Now().Add(30 * time.Second)
		for p.Stats().Taken < seq {
			if time.Now().After(deadline) {
				t.Fatalf("frame %d not taken within 30 s", seq)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	box.Close()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// With the detecting backbone, each pet in a frame is its own sighting
// with its box, classified from its crop, with snapshots of the frame and
// the crop; a frame without pets is one whole-frame sighting.
func TestPipelineGivesOneSightingPerPet(t *testing.T) {
	video, catOnly, both, empty := petVideo(t, 3)
	pcfg := testPipelineConfig()
	pcfg.Camera.Motion.Enabled = false
	obs, p := runPipeline(t, pcfg, testenv.DetectorBackbone(t), video, nil)
	st := p.Stats()
	t.Logf("stats %+v; %d sightings", st, len(obs))
	if !st.Detecting || st.Inferred != 9 || st.Crops != 9 || st.Sightings != 12 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	byFrame := map[uint64][]Observation{}
	for _, o := range obs {
		byFrame[o.Sighting.Frame] = append(byFrame[o.Sighting.Frame], o)
	}
	in := func(f uint64, r [2]int) bool { return int(f)-1 >= r[0] && int(f)-1 < r[1] }
	var nCat, nBoth, nEmpty int
	for f, os := range byFrame {
		var classes []string
		for _, o := range os {
			s := o.Sighting
			if len(o.Features) != 1280 || len(o.JPEG) == 0 || s.Label != protocol.Unknown || s.ID == "" {
				t.Errorf("frame %d: sighting %+v with %d features, %d JPEG bytes", f, s, len(o.Features), len(o.JPEG))
			}
			if s.Box == nil {
				classes = append(classes, "-")
				continue
			}
			b := image.Rect(s.Box.X, s.Box.Y, s.Box.X+s.Box.W, s.Box.Y+s.Box.H)
			t.Logf("frame %d: %s %.3f at %v", f, s.Box.Class, s.Box.Score, b)
			// The cat is on the left, the dog on the right. Which of Cat
			// and Dog the detector says does not matter: the head names
			// the pet.
			side := "left"
			if (b.Min.X+b.Max.X)/2 > 320 {
				side = "right"
			}
			classes = append(classes, side)
			frame, crop, ok := p.Snapshot(s.ID)
			if !ok {
				t.Fatalf("no snapshot for %s", s.ID)
			}
			fi, err := camera.DecodeImage(frame)
			if err != nil || fi.Width != 640 || fi.Height != 480 {
				t.Errorf("snapshot frame: %dx%d, %v", fi.Width, fi.Height, err)
			}
			ci, err := camera.DecodeImage(crop)
			if err != nil || ci.Width > b.Dx()*13/10+2 || ci.Height > b.Dy()*13/10+2 {
				t.Errorf("snapshot crop %dx%d for box %v (%v)", ci.Width, ci.Height, b, err)
			}
		}
		switch {
		case in(f, catOnly):
			nCat++
			if strings.Join(classes, ",") != "left" {
				t.Errorf("frame %d (the cat alone): %v", f, classes)
			}
		case in(f, both):
			nBoth++
			if len(classes) != 2 || classes[0] == classes[1] || classes[0] == "-" || classes[1] == "-" {
				t.Errorf("frame %d (the cat and the dog): %v", f, classes)
			}
		case in(f, empty):
			nEmpty++
			if strings.Join(classes, ",") != "-" {
				t.Errorf("frame %d (no pet): %v", f, classes)
			}
		}
	}
	if nCat != 3 || nBoth != 3 || nEmpty != 3 {
		t.Errorf("frames seen: %d cat, %d both, %d empty", nCat, nBoth, nEmpty)
	}
	// The box travels in the message.
	for _, o := range obs {
		if o.Sighting.Box != nil {
			b, _ := json.Marshal(o.Sighting)
			if !strings.Contains(string(b), `"box":{"x":`) || !strings.Contains(string(b), `"class":"`) {
				t.Errorf("sighting JSON %s", b)
			}
			break
		}
	}
}

// With the embedding-only backbone, detection falls back to whole frames;
// the motion gate lets a still scene through only at the idle interval;
// embedding requests are served beside the camera.
func TestPipelineGatesStillFramesAndServesRequests(t *testing.T) {
	lawn, err := camera.ReadImage(testenv.Photo(t, "grass.png"))
	if err != nil {
		t.Fatal(err)
	}
	still := filepath.Join(t.TempDir(), "still.avi")
	if _, err := camera.WriteVideo(still, 320, 240, 20, &lawn, []camera.Shot{{Seconds: 3, Noise: 3}}); err != nil {
		t.Fatal(err)
	}
	pcfg := testPipelineConfig()
	pcfg.Camera.Motion.IdleInterval = time.Second
	photo, err := camera.ReadImage(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	var feats []float32
	obs, p := runPipeline(t, pcfg, testenv.BackboneManifest(t), still, func(p *Pipeline) {
		var err error
		if feats, err = p.Embed(context.Background(), &photo); err != nil {
			t.Error(err)
		}
	})
	st := p.Stats()
	t.Logf("stats %+v", st)
	// 60 frames over 3 s of video: the first, and one a second after it.
	if st.Taken != 60 || st.Inferred < 2 || st.Inferred > 4 || st.Idle < 1 || st.Still < st.Taken-4 || st.Detecting || !st.MotionOn {
		t.Errorf("stats %+v", st)
	}
	if len(obs) != int(st.Inferred) {
		t.Errorf("%d sightings for %d frames", len(obs), st.Inferred)
	}
	for _, o := range obs {
		if o.Sighting.Box != nil {
			t.Errorf("whole-frame sighting has a box: %+v", o.Sighting.Box)
		}
		if f, c, ok := p.Snapshot(o.Sighting.ID); !ok || len(f) == 0 || len(c) == 0 {
			t.Errorf("snapshot of %s: %v", o.Sighting.ID, ok)
		}
	}
	if len(feats) != 1280 {
		t.Errorf("embedding request: %d features", len(feats))
	}
}

// A paused pipeline takes every frame and recognises none; resumed, it
// recognises again.
func TestPausedPipelineRecognisesNothing(t *testing.T) {
	lawn, err := camera.ReadImage(testenv.Photo(t, "grass.png"))
	if err != nil {
		t.Fatal(err)
	}
	video := filepath.Join(t.TempDir(), "lawn.avi")
	if _, err := camera.WriteVideo(video, 320, 240, 10, &lawn, []camera.Shot{{Seconds: 1, Noise: 3}}); err != nil {
		t.Fatal(err)
	}
	pcfg := testPipelineConfig()
	pcfg.Camera.Motion.Enabled = false
	obs, p := runPipelineFrom(t, pcfg, testenv.BackboneManifest(t), video, func(p *Pipeline) { p.SetPaused(true) }, nil)
	st := p.Stats()
	if len(obs) != 0 || st.Inferred != 0 || st.Taken != 10 || st.Paused != 10 || !p.Paused() {
		t.Errorf("paused: %d sightings, stats %+v", len(obs), st)
	}
	obs, p = runPipelineFrom(t, pcfg, testenv.BackboneManifest(t), video, func(p *Pipeline) { p.SetPaused(true); p.SetPaused(false) }, nil)
	if st := p.Stats(); len(obs) != 10 || st.Inferred != 10 || st.Paused != 0 || p.Paused() {
		t.Errorf("resumed: %d sightings, stats %+v", len(obs), st)
	}
}

// BenchmarkPipelineAgainstBareInvoke compares frames through the pipeline
// (detecting backbone, pets pooled from the frame's features: one run per
// frame) with a bare loop of Invoke on the same model and threads (the
// agent's default). `whisker bench pipeline` prints the fuller table.
func BenchmarkPipelineAgainstBareInvoke(b *testing.B) {
	bb, err := backbone.Open(testenv.DetectorBackbone(b), backbone.Options{Threads: backbone.DefaultThreads()})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	b.Run("bare-invoke", func(b *testing.B) {
		var r backbone.Result
		if err := bb.Infer(frame.Input{Float: make([]float32, 300*300*3)}, &r); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := bb.Invoke(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
	b.Run("pipeline-region", func(b *testing.B) {
		photo, err := camera.ReadImage(testenv.Photo(b, "dog.jpg"))
		if err != nil {
			b.Fatal(err)
		}
		small, err := camera.EncodeJPEG(&photo, 640, 95)
		if err != nil {
			b.Fatal(err)
		}
		cam, err := camera.DecodeImage(small) // a 640x480 camera frame
		if err != nil {
			b.Fatal(err)
		}
		pcfg := testPipelineConfig()
		pcfg.Camera.Motion.Enabled = false
		pcfg.Camera.Detect.Embed = "region"
		box := camera.NewMailbox()
		p, err := New(pcfg, slog.New(slog.DiscardHandler), bb, box, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{}, 2)
		go func() { p.Run(ctx); done <- struct{}{} }()
		go func() { // a 30 fps camera
			defer func() { done <- struct{}{} }()
			var f frame.Frame
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				f.CopyFrom(&cam)
				f.Seq, f.Time = seq, time.Now()
				box.Put(&f)
				time.Sleep(33 * time.Millisecond)
			}
		}()
		start := p.Stats().Inferred
		b.ResetTimer()
		for p.Stats().Inferred-start < uint64(b.N) {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		cancel()
		<-done
		<-done
	})
}

// Trained on the pets' own sightings (the cat on the left labelled
// Tigger, the dog on the right Rex, and one empty lawn as a pet too, the
// mistake a user could make), the head names each pet from its crop, and
// a whole frame in which the detector found no pet is never named as a
// pet: it is unknown, and says why.
func TestPipelineNeverNamesAPetWithoutOne(t *testing.T) {
	video, _, _, _ := petVideo(t, 3)
	pcfg := testPipelineConfig()
	pcfg.Camera.Motion.Enabled = false
	first, _ := runPipeline(t, pcfg, testenv.DetectorBackbone(t), video, nil)
	d := &learner.Dataset{}
	lawn := false
	for _, o := range first {
		label := "Rex"
		switch {
		case o.Sighting.Box == nil && !lawn:
			label, lawn = "Tigger", true // the wrong label for an empty frame
		case o.Sighting.Box == nil:
			continue
		case o.Sighting.Box.X+o.Sighting.Box.W/2 < 320:
			label = "Tigger"
		}
		d.X = append(d.X, o.Features)
		d.Labels = append(d.Labels, label)
	}
	h, err := learner.Train(d, "test", learner.TrainConfig{C: 1, Balanced: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := runPipelineWithHead(t, pcfg, testenv.DetectorBackbone(t), video, h)
	var named, empty int
	for _, o := range obs {
		s := o.Sighting
		if s.Box == nil {
			empty++
			if s.Label != protocol.Unknown || s.Why != learner.WhyNoPet {
				t.Errorf("frame %d without a pet: named %q (why %q)", s.Frame, s.Label, s.Why)
			}
			continue
		}
		want := "Rex"
		if s.Box.X+s.Box.W/2 < 320 {
			want = "Tigger"
		}
		if s.Label == want {
			named++
		} else if s.Label != protocol.Unknown {
			t.Errorf("frame %d: %s called %q", s.Frame, want, s.Label)
		}
	}
	if empty != 3 || named < 6 {
		t.Errorf("%d frames without a pet, %d of 9 pets named", empty, named)
	}
}
