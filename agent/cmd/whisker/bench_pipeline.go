package main

import (
	"context"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/pipeline"
	"github.com/whiskercam/whisker/agent/protocol"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/detect"
)

type benchOptions struct {
	deps      string
	manifest  string
	threads   int
	seconds   float64
	rounds    int
	sourceFPS float64
	cpuFPS    float64
	skipCPU   bool
	profile   string
}

func benchPipelineCmd() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Camera pipeline: throughput against bare Invoke, preprocessing, motion gate CPU, detections",
		Long: `Measure the camera pipeline on this machine and print tables:

 1. throughput: frames per second through the whole pipeline (capture of a
    640x480 video, preprocessing, backbone with detection, pets, head,
    snapshots) against a bare loop of Invoke on the same model with the
    same threads, in the same run, alternating;
 2. preprocessing: time per 640x480 frame to the model input, and its
    share of a frame's time; the motion gate's time per frame;
 3. CPU seconds per minute with the motion gate on and off, for a still
    scene (a photograph with sensor noise) and a moving one (pets
    composited over a real video), at the default camera settings;
 4. detection: the top detections on the package photographs.

The videos are made in a temporary directory from the files make deps
fetches. Timings depend on what else runs: run it on a quiet machine.`,
		Example: "  whisker bench pipeline\n  whisker bench pipeline --seconds 30 --threads 4",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.deps == "" {
				o.deps = os.Getenv("WHISKER_DEPS")
			}
			if o.deps == "" {
				o.deps = ".deps"
			}
			if o.manifest == "" {
				o.manifest = filepath.Join(o.deps, "models", "backbone-detect.manifest.json")
			}
			if o.threads <= 0 {
				o.threads = backbone.DefaultThreads()
			}
			if o.profile != "" {
				pf, err := os.Create(o.profile)
				if err != nil {
					return err
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			return benchPipeline(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.deps, "deps", "", "directory make deps fills (default $WHISKER_DEPS or .deps)")
	f.StringVar(&o.manifest, "backbone", "", "backbone manifest (default: the detecting backbone in --deps)")
	f.IntVar(&o.threads, "threads", 0, "backbone threads (0: the agent's default, all cores but one)")
	f.Float64Var(&o.seconds, "seconds", 15, "seconds per measurement")
	f.IntVar(&o.rounds, "rounds", 4, "alternating rounds of bare loop and pipeline")
	f.Float64Var(&o.sourceFPS, "source-fps", 30, "frame rate of the video fed to the throughput measurement")
	f.Float64Var(&o.cpuFPS, "max-fps", 2, "camera.max_fps for the CPU measurement")
	f.BoolVar(&o.skipCPU, "skip-cpu", false, "leave out the CPU-per-minute measurement")
	f.StringVar(&o.profile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file")
	return cmd
}

// benchSteps is the number of measurements benchPipeline makes, for its
// progress: three per throughput round, preprocessing, four CPU runs and
// the detections.
func benchSteps(o benchOptions) int {
	n := 3*o.rounds + 2
	if !o.skipCPU {
		n += 4
	}
	return n
}

func benchPipeline(ctx context.Context, w, stderr io.Writer, o benchOptions) error {
	bb, err := backbone.Open(o.manifest, backbone.Options{Threads: o.threads})
	if err != nil {
		return fmt.Errorf("%w (make deps makes the detecting backbone)", err)
	}
	defer bb.Close()
	man := bb.Manifest()
	photos := filepath.Join(o.deps, "testdata")
	dir, err := os.MkdirTemp("", "whisker-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(w, "Whisker camera pipeline, %s, %d CPUs, GOMAXPROCS %d, backbone threads %d\n", runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), o.threads)
	fmt.Fprintf(w, "backbone %s (%s, input %v, detects %v)\n", filepath.Base(o.manifest), man.Identity, man.Input.Shape, bb.Detects())
	fmt.Fprintf(w, "load average before: %s\n\n", loadAvg())

	// A file is played at its own rate (or the cap, frame by frame): the
	// throughput video has the camera's rate, and the CPU videos the
	// capped rate, so that they show as much motion per frame as a camera
	// would in real time.
	moving := filepath.Join(dir, "moving.avi")
	if err := makeBenchVideos(photos, filepath.Join(o.deps, "videos", "small.mp4"), moving, "", o.sourceFPS); err != nil {
		return err
	}
	movingCPU, stillCPU := filepath.Join(dir, "moving-cpu.avi"), filepath.Join(dir, "still-cpu.avi")
	if err := makeBenchVideos(photos, filepath.Join(o.deps, "videos", "small.mp4"), movingCPU, stillCPU, o.cpuFPS); err != nil {
		return err
	}

	steps := newProgress(stderr, benchSteps(o), fmt.Sprintf("measuring (%g s each)", o.seconds))
	defer steps.Finish()

	// 1. Throughput.
	fmt.Fprintf(w, "## Throughput (640x480 video at %g fps, motion gate off, detection on; %d alternating rounds of %g s)\n\n", o.sourceFPS, o.rounds, o.seconds)
	var bare, region, crop []benchRun
	for range o.rounds {
		r, err := bareLoop(ctx, bb, moving, o.seconds)
		if err != nil {
			return err
		}
		bare = append(bare, r)
		steps.Add(1)
		for _, mode := range []string{"region", "crop"} {
			_, r, err := runBenchPipeline(ctx, bb, moving, mode, false, 0, o.seconds)
			if err != nil {
				return err
			}
			if mode == "region" {
				region = append(region, r)
			} else {
				crop = append(crop, r)
			}
			steps.Add(1)
		}
	}
	b, rg, cr := sumRuns(bare), sumRuns(region), sumRuns(crop)
	fmt.Fprintln(w, "| run | frames/s | backbone runs/s | vs bare Invoke | backbone busy | ms per run | CPU ms per run |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	row := func(name string, r benchRun) {
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.1f%% | %.0f%% | %.1f | %.1f |\n", name, r.fps(), r.runsPerSec(), 100*r.runsPerSec()/b.runsPerSec(),
			100*r.busy(), 1000*r.inferSecs/r.runs, r.cpuPerRunMS())
	}
	row("bare loop of Invoke (same model, same threads, a frame of the video as input)", b)
	row("pipeline, pets embedded by region (one run per frame)", rg)
	row("pipeline, pets embedded by crop (a run per frame and per pet)", cr)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| pipeline stage, wall ms per frame | prepare (gate, preprocessing) | infer (backbone, decoding, crops) | finish (head, JPEGs) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, x := range []struct {
		name string
		r    benchRun
	}{{"region", rg}, {"crop", cr}} {
		fmt.Fprintf(w, "| %s | %.2f | %.1f | %.2f |\n", x.name, 1000*x.r.prepSecs/x.r.frames, 1000*x.r.inferSecs/x.r.frames, 1000*x.r.finishSecs/x.r.frames)
	}
	fmt.Fprintf(w, "\nPer round, backbone runs/s (bare, region, crop):")
	for i := range bare {
		fmt.Fprintf(w, " %.2f %.2f %.2f;", bare[i].runsPerSec(), region[i].runsPerSec(), crop[i].runsPerSec())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)

	// 2. Preprocessing and the gate.
	pre, err := preprocessTimes(bb, moving)
	if err != nil {
		return err
	}
	steps.Add(1)
	frameMS := 1000 / rg.fps()
	fmt.Fprintln(w, "## Preprocessing (one 640x480 frame, median of 200)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| step | ms per frame | share of a pipeline frame |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, p := range pre {
		fmt.Fprintf(w, "| %s | %.2f | %.1f%% |\n", p.name, p.ms, 100*p.ms/frameMS)
	}
	fmt.Fprintf(w, "| (a pipeline frame, region mode) | %.1f | 100%% |\n\n", frameMS)

	// 3. CPU per minute.
	if !o.skipCPU {
		fmt.Fprintf(w, "## CPU seconds per minute (camera.max_fps %g, videos at %g fps, detection on, crops embedded, %g s each)\n\n", o.cpuFPS, o.cpuFPS, o.seconds)
		fmt.Fprintln(w, "| scene | motion gate | frames through the backbone | CPU s per minute |")
		fmt.Fprintln(w, "|---|---|---:|---:|")
		cpu := map[string]float64{}
		for _, v := range []struct{ name, path string }{{"still (photograph + sensor noise)", stillCPU}, {"moving (pets over a real video)", movingCPU}} {
			for _, gate := range []bool{false, true} {
				st, r, err := runBenchPipeline(ctx, bb, v.path, "crop", gate, o.cpuFPS, o.seconds)
				if err != nil {
					return err
				}
				steps.Add(1)
				perMin := r.cpu / r.secs * 60
				on := map[bool]string{true: "on", false: "off"}[gate]
				cpu[v.name+on] = perMin
				fmt.Fprintf(w, "| %s | %s | %d of %d | %.1f |\n", v.name, on, st.Inferred, st.Taken, perMin)
			}
		}
		stillOn := cpu["still (photograph + sensor noise)on"]
		movingOff := cpu["moving (pets over a real video)off"]
		fmt.Fprintf(w, "\nA still scene with the gate on costs %.1f%% of the CPU of a busy one without it.\n\n", 100*stillOn/movingOff)
	}

	// 4. Detection.
	fmt.Fprintln(w, "## Detection on the package photographs (pets: Cat, Dog; score >= 0.5)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| photograph | size | pets found | top detections, any class |")
	fmt.Fprintln(w, "|---|---|---|---|")
	if err := benchDetections(w, bb, photos); err != nil {
		return err
	}
	steps.Add(1)
	steps.Finish()
	fmt.Fprintf(w, "\nload average after: %s\n", loadAvg())
	return nil
}

// makeBenchVideos writes a moving scene (a cat and a dog walking over the
// frames of a real video) and, unless still is "", a still one (a
// photograph with sensor noise), 640x480, 10 s each.
func makeBenchVideos(photos, background, moving, still string, fps float64) error {
	read := func(name string) (*frame.Frame, error) {
		f, err := camera.ReadImage(filepath.Join(photos, name))
		if err != nil {
			return nil, fmt.Errorf("%w (run make deps)", err)
		}
		return &f, nil
	}
	cat, err := read("chelsea.png")
	if err != nil {
		return err
	}
	dog, err := read("dog.jpg")
	if err != nil {
		return err
	}
	lawn, err := read("grass.png")
	if err != nil {
		return err
	}
	dogCrop := image.Rect(110, 200, 330, 550)
	if _, err := camera.ComposeVideo(moving, 640, 480, fps, background, []camera.Shot{
		{Seconds: 5, Photo: cat, Height: 0.5, From: [2]float64{0.2, 0.5}, To: [2]float64{0.4, 0.55}, Noise: 2,
			More: []camera.Shot{{Photo: dog, Crop: dogCrop, Height: 0.55, From: [2]float64{0.85, 0.5}, To: [2]float64{0.7, 0.5}}}},
		{Seconds: 5, Photo: cat, Height: 0.45, From: [2]float64{0.4, 0.55}, To: [2]float64{0.25, 0.45}, Noise: 2,
			More: []camera.Shot{{Photo: dog, Crop: dogCrop, Height: 0.6, From: [2]float64{0.7, 0.5}, To: [2]float64{0.8, 0.55}}}},
	}); err != nil {
		return fmt.Errorf("moving video: %w", err)
	}
	if still == "" {
		return nil
	}
	if _, err := camera.WriteVideo(still, 640, 480, fps, lawn, []camera.Shot{{Seconds: 10, Noise: 2}}); err != nil {
		return fmt.Errorf("still video: %w", err)
	}
	return nil
}

// bareLoop runs Invoke back to back for about seconds, on the first
// frame of video.
func bareLoop(ctx context.Context, bb *backbone.Backbone, video string, seconds float64) (benchRun, error) {
	spec, err := bb.InputSpec()
	if err != nil {
		return benchRun{}, err
	}
	f, err := firstFrame(video)
	if err != nil {
		return benchRun{}, err
	}
	pre, err := camera.NewPreprocessor(spec)
	if err != nil {
		return benchRun{}, err
	}
	var in frame.Input
	err = pre.Prepare(&f, image.Rectangle{}, &in)
	pre.Close()
	if err != nil {
		return benchRun{}, err
	}
	var r backbone.Result
	if err := bb.Infer(in, &r); err != nil { // sets the input and warms up
		return benchRun{}, err
	}
	start, c0 := time.Now(), cpuSeconds()
	n := 0
	for time.Since(start).Seconds() < seconds && ctx.Err() == nil {
		if err := bb.Invoke(); err != nil {
			return benchRun{}, err
		}
		n++
	}
	secs := time.Since(start).Seconds()
	return benchRun{frames: float64(n), runs: float64(n), secs: secs, cpu: cpuSeconds() - c0, inferSecs: secs}, ctx.Err()
}

// runBenchPipeline runs capture and pipeline on a looping video as the
// agent does (default configuration, with the given embedding mode, gate
// and rate cap), and returns the counters over the measured seconds after
// a warm-up of 3 s.
func runBenchPipeline(ctx context.Context, bb *backbone.Backbone, video, embed string, gate bool, maxFPS, seconds float64) (protocol.PipelineStats, benchRun, error) {
	cfg := config.Default()
	cam := cfg.Camera
	cam.Source, cam.Loop, cam.MaxFPS = video, true, maxFPS
	cam.Motion.Enabled = gate
	cam.Detect.Embed = embed
	log := slog.New(slog.DiscardHandler)
	box := camera.NewMailbox()
	var published atomic.Uint64
	p, err := pipeline.New(pipeline.Config{Camera: cam, SampleSize: cfg.Learner.SnapshotSize, IDPrefix: "bench", Recent: cfg.Learner.Recent},
		log, bb, box, nil, func(obs []pipeline.Observation) { published.Add(uint64(len(obs))) })
	if err != nil {
		return protocol.PipelineStats{}, benchRun{}, err
	}
	defer p.Close()
	capture := camera.NewCapture(cam.Capture(), log, box, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { capture.Run(rctx); done <- struct{}{} }()
	go func() { p.Run(rctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return protocol.PipelineStats{}, benchRun{}, ctx.Err()
	}
	s0, t0, c0 := p.Stats(), time.Now(), cpuSeconds()
	select {
	case <-time.After(time.Duration(seconds * float64(time.Second))):
	case <-ctx.Done():
		return protocol.PipelineStats{}, benchRun{}, ctx.Err()
	}
	s1, secs, cpu := p.Stats(), time.Since(t0).Seconds(), cpuSeconds()-c0
	st := protocol.PipelineStats{
		Taken: s1.Taken - s0.Taken, Still: s1.Still - s0.Still, Inferred: s1.Inferred - s0.Inferred,
		Crops: s1.Crops - s0.Crops, Pets: s1.Pets - s0.Pets, Sightings: s1.Sightings - s0.Sightings, Dropped: s1.Dropped - s0.Dropped,
		PrepNanos: s1.PrepNanos - s0.PrepNanos, InferNs: s1.InferNs - s0.InferNs, FinishNs: s1.FinishNs - s0.FinishNs,
	}
	return st, benchRun{frames: float64(st.Inferred), runs: float64(st.Inferred + st.Crops), secs: secs, cpu: cpu,
		inferSecs: float64(st.InferNs) / 1e9, prepSecs: float64(st.PrepNanos) / 1e9, finishSecs: float64(st.FinishNs) / 1e9}, nil
}

// benchRun is one measurement: frames through the pipeline (or Invokes of
// the bare loop), backbone runs, wall and CPU seconds, and the time the
// infer stage spent on them.
type benchRun struct {
	frames, runs, secs, cpu, inferSecs float64
	prepSecs, finishSecs               float64
}

func (r benchRun) fps() float64         { return r.frames / r.secs }
func (r benchRun) runsPerSec() float64  { return r.runs / r.secs }
func (r benchRun) cpuPerRunMS() float64 { return 1000 * r.cpu / r.runs }

// busy is the share of the wall time the backbone stage was running.
func (r benchRun) busy() float64 { return r.inferSecs / r.secs }

func sumRuns(rs []benchRun) benchRun {
	var t benchRun
	for _, r := range rs {
		t.frames += r.frames
		t.runs += r.runs
		t.secs += r.secs
		t.cpu += r.cpu
		t.inferSecs += r.inferSecs
		t.prepSecs += r.prepSecs
		t.finishSecs += r.finishSecs
	}
	return t
}

type stepTime struct {
	name string
	ms   float64
}

func firstFrame(video string) (frame.Frame, error) {
	src, err := camera.OpenSource(video, camera.SourceOptions{})
	if err != nil {
		return frame.Frame{}, err
	}
	defer src.Close()
	var f frame.Frame
	return f, src.Read(&f)
}

func preprocessTimes(bb *backbone.Backbone, video string) ([]stepTime, error) {
	f, err := firstFrame(video)
	if err != nil {
		return nil, err
	}
	spec, err := bb.InputSpec()
	if err != nil {
		return nil, err
	}
	median := func(fn func() error) (float64, error) {
		var ts []float64
		for range 200 {
			start := time.Now()
			if err := fn(); err != nil {
				return 0, err
			}
			ts = append(ts, float64(time.Since(start).Microseconds())/1000)
		}
		sort.Float64s(ts)
		return ts[len(ts)/2], nil
	}
	var out []stepTime
	for _, s := range []struct {
		name string
		edit func(*frame.Spec)
	}{
		{fmt.Sprintf("resize + normalise to %dx%d float32 (the backbone's input)", spec.Width, spec.Height), func(*frame.Spec) {}},
		{fmt.Sprintf("resize + quantise to %dx%d uint8 (an 8-bit model)", spec.Width, spec.Height), func(s *frame.Spec) {
			s.Type, s.Scale, s.Zero = frame.Uint8, 1.0/128, 128
		}},
	} {
		sp := spec
		s.edit(&sp)
		p, err := camera.NewPreprocessor(sp)
		if err != nil {
			return nil, err
		}
		var in frame.Input
		ms, err := median(func() error { return p.Prepare(&f, image.Rectangle{}, &in) })
		p.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, stepTime{s.name, ms})
	}
	g, err := camera.NewMotionGate(camera.MotionConfig{})
	if err != nil {
		return nil, err
	}
	defer g.Close()
	ms, err := median(func() error {
		_, err := g.Check(&f)
		g.Accept()
		return err
	})
	if err != nil {
		return nil, err
	}
	out = append(out, stepTime{"motion gate (160 px grey, blur, difference)", ms})
	return out, nil
}

func benchDetections(w io.Writer, bb *backbone.Backbone, photos string) error {
	if !bb.Detects() {
		fmt.Fprintln(w, "| (the backbone does not detect) | | | |")
		return nil
	}
	man := bb.Manifest()
	layout, err := detect.Layout(man.Detection.Anchors)
	if err != nil {
		return err
	}
	labels := man.Detection.Labels
	all, err := detect.NewDecoder(detect.Config{Anchors: layout, Scales: man.Detection.BoxScales, NumClasses: len(labels), Labels: labels, MinScore: 0.3, IoU: 0.6})
	if err != nil {
		return err
	}
	spec, err := bb.InputSpec()
	if err != nil {
		return err
	}
	pre, err := camera.NewPreprocessor(spec)
	if err != nil {
		return err
	}
	defer pre.Close()
	for _, name := range []string{"chelsea.png", "dog.jpg", "person.jpg", "horses.jpg", "eagle.jpg", "grass.png", "coffee.png"} {
		f, err := camera.ReadImage(filepath.Join(photos, name))
		if err != nil {
			return err
		}
		var in frame.Input
		if err := pre.Prepare(&f, image.Rectangle{}, &in); err != nil {
			return err
		}
		var r backbone.Result
		if err := bb.Infer(in, &r); err != nil {
			return err
		}
		dets, err := all.Decode(r.Boxes, r.Scores)
		if err != nil {
			return err
		}
		var pets, top []string
		for i, d := range dets {
			rect := pre.ToFrame(&f, d.Box.YMin, d.Box.XMin, d.Box.YMax, d.Box.XMax)
			desc := fmt.Sprintf("%s %.2f (%d,%d)-(%d,%d)", d.Label, d.Score, rect.Min.X, rect.Min.Y, rect.Max.X, rect.Max.Y)
			if (d.Label == "Cat" || d.Label == "Dog") && d.Score >= 0.5 {
				pets = append(pets, desc)
			}
			if i < 3 {
				top = append(top, desc)
			}
		}
		if len(pets) == 0 {
			pets = []string{"none"}
		}
		if len(top) == 0 {
			top = []string{"nothing above 0.3"}
		}
		fmt.Fprintf(w, "| %s | %dx%d | %s | %s |\n", name, f.Width, f.Height, strings.Join(pets, "; "), strings.Join(top, "; "))
	}
	return nil
}

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}
