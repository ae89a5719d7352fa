package agent

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/detect"
)

// SightingBox is where a detected pet is, in pixels of a frame of
// ImageW x ImageH, with the detector's class and score.
type SightingBox struct {
	X      int     `json:"x"`
	Y      int     `json:"y"`
	W      int     `json:"w"`
	H      int     `json:"h"`
	ImageW int     `json:"image_w"`
	ImageH int     `json:"image_h"`
	Class  string  `json:"class"`
	Score  float64 `json:"score"`
}

// embedRequest asks the inference goroutine (which owns the backbone) to
// embed an image.
type embedRequest struct {
	frame frame.Frame
	reply chan embedResult
}

type embedResult struct {
	features []float32
	err      error
}

// Observation is one sighting as the pipeline hands it on: the message,
// the features it was classified from, and a small JPEG of what was
// embedded (the frame, or the pet's crop) to store with a label.
type Observation struct {
	Sighting Sighting
	Features []float32
	JPEG     []byte
	At       time.Time
	Infer    time.Duration // backbone time for the frame (and its crops)
}

// PipelineConfig is what the pipeline needs of the agent configuration.
type PipelineConfig struct {
	Camera CameraConfig
	// Threshold returns the probability setting below which a sighting is
	// "unknown"; 0 uses the head's calibrated limits.
	Threshold func() float64
	// SampleSize is the longer side of the JPEG stored with a label.
	SampleSize int
	// IDPrefix starts every sighting id.
	IDPrefix string
}

// Pipeline turns the latest frames into sightings in three stages, each
// its own goroutine, so that the backbone never waits for pixels and the
// camera never waits for anything:
//
//	mailbox ─> prepare (motion gate, preprocessing) ─> infer (backbone,
//	detection, crops) ─> [bounded queue] ─> finish (head, snapshots, sink)
//
// The infer goroutine owns the backbone and also serves embedding
// requests. A fixed set of jobs (frame, input and output buffers)
// circulates between the stages, so steady state allocates little; when
// the finish stage falls behind, frames are dropped and counted.
type Pipeline struct {
	cfg  PipelineConfig
	log  *slog.Logger
	bb   *backbone.Backbone
	box  *camera.Mailbox
	head func() *learner.Head
	sink func([]Observation) // the sightings of one frame

	prep     *camera.Preprocessor // owned by the prepare stage
	crop     *camera.Preprocessor // owned by the infer stage
	ownsCrop bool
	gate     *camera.MotionGate // nil without the motion gate
	dec      *detect.Decoder    // nil without detection
	snaps    *snapshotStore
	requests chan embedRequest

	free    chan *job
	toInfer chan *job
	toPost  chan *job

	seq     atomic.Uint64
	stats   pipelineCounters
	capture chan chan captureResult // capture-now requests
}

// PipelineStats counts what happened to frames.
type PipelineStats struct {
	Taken     uint64 `json:"taken"`     // frames taken from the mailbox
	Still     uint64 `json:"still"`     // skipped by the motion gate
	Idle      uint64 `json:"idle"`      // classified although still (idle interval)
	Inferred  uint64 `json:"inferred"`  // frames through the backbone
	Crops     uint64 `json:"crops"`     // extra backbone runs on pet crops
	Pets      uint64 `json:"pets"`      // pets detected
	Sightings uint64 `json:"sightings"` // sightings handed on
	Dropped   uint64 `json:"dropped"`   // inferred frames dropped because finishing fell behind
	Errors    uint64 `json:"errors"`    // frames lost to an error
	PrepNanos uint64 `json:"prep_ns"`   // total preprocessing time
	InferNs   uint64 `json:"infer_ns"`  // total backbone time
	FinishNs  uint64 `json:"finish_ns"` // total finishing time
	MotionOn  bool   `json:"motion_on"` // the motion gate is on
	Detecting bool   `json:"detecting"` // pets are detected and cropped
}

type pipelineCounters struct {
	taken, still, idle, inferred, crops, pets, sightings, dropped, errors atomic.Uint64
	prep, infer, finish                                                   atomic.Uint64
}

// job is one frame on its way through the pipeline, with its buffers.
type job struct {
	frame   frame.Frame
	input   frame.Input
	res     backbone.Result
	items   []item
	trigger string
	infer   time.Duration
	// capture, when set, receives the job's first sighting.
	capture chan captureResult
}

// item is one sighting of a job: a pet (with a box) or the whole frame.
type item struct {
	det      *detect.Detection
	rect     image.Rectangle // frame pixels: the box, or the frame
	crop     image.Rectangle // what was embedded
	features []float32
}

// nestedPet: a pet box that lies this much inside a better one is the
// same animal (SSD often adds a looser box around an animal and what
// stands beside it); two pets rarely hide four fifths of one behind the
// other.
const nestedPet = 0.8

// finishQueue bounds inferred frames waiting for the finish stage.
const finishQueue = 2

// NewPipeline prepares a pipeline reading box and running bb. head returns
// the current head (nil: sightings are "unknown"); sink receives the
// sightings of each frame, in the finish goroutine. crop preprocesses pet crops and
// embedding requests; nil makes one (closed by Close).
func NewPipeline(cfg PipelineConfig, log *slog.Logger, bb *backbone.Backbone, box *camera.Mailbox,
	head func() *learner.Head, sink func([]Observation), crop *camera.Preprocessor, requests chan embedRequest) (*Pipeline, error) {
	spec, err := bb.InputSpec()
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		cfg: cfg, log: log, bb: bb, box: box, head: head, sink: sink, requests: requests,
		snaps:   newSnapshotStore(cfg.Camera.Snapshots, nil),
		capture: make(chan chan captureResult, 4),
	}
	if p.cfg.Threshold == nil {
		p.cfg.Threshold = func() float64 { return 0 }
	}
	if head == nil {
		p.head = func() *learner.Head { return nil }
	}
	if p.requests == nil {
		p.requests = make(chan embedRequest)
	}
	fail := func(err error) (*Pipeline, error) {
		p.Close()
		return nil, err
	}
	if p.prep, err = camera.NewPreprocessor(spec); err != nil {
		return fail(fmt.Errorf("backbone manifest: %w", err))
	}
	p.crop = crop
	if crop == nil {
		if p.crop, err = camera.NewPreprocessor(spec); err != nil {
			return fail(err)
		}
		p.ownsCrop = true
	}
	if m := cfg.Camera.Motion; m.Enabled {
		if p.gate, err = camera.NewMotionGate(camera.MotionConfig{Width: m.Width, PixelThreshold: m.PixelThreshold, MinArea: m.MinArea}); err != nil {
			return fail(fmt.Errorf("camera.motion: %w", err))
		}
	}
	if d := cfg.Camera.Detect; d.Enabled {
		if !bb.Detects() {
			log.Info("the backbone has no detector outputs: classifying whole frames (a backbone cut with --detect, such as backbone-detect.manifest.json, finds each pet; see docs/camera.md)")
		} else if p.dec, err = newDecoder(bb, d); err != nil {
			return fail(err)
		}
	}
	n := 3 + finishQueue // one job in each stage, and the queue
	p.free = make(chan *job, n)
	for range n {
		p.free <- &job{}
	}
	p.toInfer = make(chan *job)
	p.toPost = make(chan *job, finishQueue)
	return p, nil
}

func newDecoder(bb *backbone.Backbone, d DetectConfig) (*detect.Decoder, error) {
	det := bb.Manifest().Detection
	layout, err := detect.Layout(det.Anchors)
	if err != nil {
		return nil, fmt.Errorf("backbone manifest: %w", err)
	}
	var classes []int
	for _, name := range d.Classes {
		i := slices.Index(det.Labels, name)
		if i <= 0 {
			return nil, fmt.Errorf("config: camera.detect.classes: %q is not a class of the detector (%v)", name, det.Labels[1:])
		}
		classes = append(classes, i)
	}
	dec, err := detect.NewDecoder(detect.Config{
		Anchors: layout, Scales: det.BoxScales, NumClasses: len(det.Labels), Labels: det.Labels, Classes: classes,
		MinScore: float32(d.MinScore), IoU: float32(d.IoU), MaxTotal: d.MaxPets,
	})
	if err != nil {
		return nil, fmt.Errorf("detector: %w", err)
	}
	return dec, nil
}

// Close frees what NewPipeline made. Call it after Run returned.
func (p *Pipeline) Close() {
	if p.prep != nil {
		p.prep.Close()
	}
	if p.ownsCrop && p.crop != nil {
		p.crop.Close()
	}
	if p.gate != nil {
		p.gate.Close()
	}
}

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() PipelineStats {
	c := &p.stats
	return PipelineStats{
		Taken: c.taken.Load(), Still: c.still.Load(), Idle: c.idle.Load(), Inferred: c.inferred.Load(),
		Crops: c.crops.Load(), Pets: c.pets.Load(), Sightings: c.sightings.Load(), Dropped: c.dropped.Load(),
		Errors: c.errors.Load(), PrepNanos: c.prep.Load(), InferNs: c.infer.Load(), FinishNs: c.finish.Load(),
		MotionOn: p.gate != nil, Detecting: p.dec != nil,
	}
}

// Snapshot returns the snapshots of a recent sighting (see Agent.Snapshot).
func (p *Pipeline) Snapshot(id string) (frame, crop []byte, ok bool) { return p.snaps.get(id) }

// Capture classifies the next frame whatever the motion gate says, and
// returns its (first) sighting.
func (p *Pipeline) Capture(ctx context.Context) (*Sighting, error) {
	reply := make(chan captureResult, 1)
	select {
	case p.capture <- reply:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case r := <-reply:
		return r.sighting, r.err
	case <-t.C:
		return nil, errors.New("no frame from the camera within 30 s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run runs the three stages until ctx ends. When the camera ends for
// good (a file without loop), the infer stage keeps serving embedding
// requests until ctx ends.
func (p *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { p.prepare(ctx) })
	wg.Go(func() { p.finish(ctx) })
	wg.Go(func() { p.infer(ctx) })
	wg.Go(func() { p.logDrops(ctx) })
	wg.Wait()
	return nil
}

// prepare takes the latest frame, asks the motion gate whether it is worth
// the backbone, and preprocesses it, on a thread nicer than the backbone's.
func (p *Pipeline) prepare(ctx context.Context) {
	if err := camera.NiceThread(sideNice); err != nil {
		p.log.Debug("prepare stage keeps the normal priority", "err", err)
	}
	idle := p.cfg.Camera.Motion.IdleInterval
	var lastPassed time.Time
	for {
		var j *job
		select {
		case <-ctx.Done():
			return
		case j = <-p.free:
		}
		if err := p.box.Take(ctx, &j.frame); err != nil {
			if errors.Is(err, camera.ErrClosed) {
				p.log.Info("camera stopped delivering frames; still serving requests")
			}
			return
		}
		p.stats.taken.Add(1)
		j.trigger = "frame"
		j.capture = nil
		select {
		case j.capture = <-p.capture:
			j.trigger = "capture"
		default:
		}
		if p.gate != nil && j.capture == nil {
			m, err := p.gate.Check(&j.frame)
			if err != nil {
				p.log.Error("motion gate", "frame", j.frame.Seq, "err", err)
				p.stats.errors.Add(1)
				p.free <- j
				continue
			}
			switch {
			case m.Moving:
				j.trigger = "motion"
			case idle > 0 && j.frame.Time.Sub(lastPassed) >= idle:
				j.trigger = "idle"
				p.stats.idle.Add(1)
			default:
				p.stats.still.Add(1)
				p.free <- j
				continue
			}
			p.gate.Accept()
			lastPassed = j.frame.Time
		}
		start := time.Now()
		if err := p.prep.Prepare(&j.frame, image.Rectangle{}, &j.input); err != nil {
			p.log.Error("preprocess frame", "frame", j.frame.Seq, "err", err)
			p.stats.errors.Add(1)
			p.free <- j
			continue
		}
		p.stats.prep.Add(uint64(time.Since(start)))
		select {
		case <-ctx.Done():
			return
		case p.toInfer <- j:
		}
	}
}

// infer owns the backbone: it runs it on prepared frames (and on pet
// crops), and embeds images for label requests.
func (p *Pipeline) infer(ctx context.Context) {
	var reqIn frame.Input
	var reqRes backbone.Result
	var cropIn frame.Input
	var cropRes backbone.Result
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.requests:
			feats, err := p.embedRequest(&r.frame, &reqIn, &reqRes)
			r.reply <- embedResult{feats, err}
		case j := <-p.toInfer:
			start := time.Now()
			if err := p.inferJob(j, &cropIn, &cropRes); err != nil {
				p.log.Error("infer frame", "frame", j.frame.Seq, "err", err)
				p.stats.errors.Add(1)
				if j.capture != nil {
					j.capture <- captureResult{err: fmt.Errorf("the frame could not be classified: %w", err)}
				}
				p.free <- j
				continue
			}
			j.infer = time.Since(start)
			p.stats.infer.Add(uint64(j.infer))
			p.stats.inferred.Add(1)
			if j.capture != nil {
				p.toPost <- j // an answer is owed: never dropped
				continue
			}
			select {
			case p.toPost <- j:
			default:
				p.stats.dropped.Add(1)
				p.free <- j
			}
		}
	}
}

func (p *Pipeline) embedRequest(f *frame.Frame, in *frame.Input, res *backbone.Result) ([]float32, error) {
	if err := p.crop.Prepare(f, image.Rectangle{}, in); err != nil {
		return nil, err
	}
	if err := p.bb.Infer(*in, res); err != nil {
		return nil, err
	}
	return slices.Clone(res.Embedding), nil
}

func (p *Pipeline) inferJob(j *job, cropIn *frame.Input, cropRes *backbone.Result) error {
	if err := p.bb.Infer(j.input, &j.res); err != nil {
		return err
	}
	j.items = j.items[:0]
	whole := image.Rect(0, 0, j.frame.Width, j.frame.Height)
	if p.dec == nil {
		j.items = append(j.items, item{rect: whole, crop: whole, features: slices.Clone(j.res.Embedding)})
		return nil
	}
	dets, err := p.dec.Decode(j.res.Boxes, j.res.Scores)
	if err != nil {
		return err
	}
	d := p.cfg.Camera.Detect
	dets = detect.MergeAcrossClasses(dets, float32(d.IoU), nestedPet)
	for i := range dets {
		det := &dets[i]
		rect := p.crop.ToFrame(&j.frame, det.Box.YMin, det.Box.XMin, det.Box.YMax, det.Box.XMax)
		if rect.Dx() < 4 || rect.Dy() < 4 {
			continue
		}
		it := item{det: det, rect: rect, crop: camera.Expand(rect, d.Margin, j.frame.Width, j.frame.Height)}
		switch d.Embed {
		case "region":
			it.features, err = j.res.RegionEmbedding(det.Box.YMin, det.Box.XMin, det.Box.YMax, det.Box.XMax, nil)
		default:
			if err = p.crop.Prepare(&j.frame, it.crop, cropIn); err == nil {
				err = p.bb.Infer(*cropIn, cropRes)
				it.features = slices.Clone(cropRes.Embedding)
				p.stats.crops.Add(1)
			}
		}
		if err != nil {
			return fmt.Errorf("embed pet %d: %w", i, err)
		}
		j.items = append(j.items, it)
	}
	p.stats.pets.Add(uint64(len(j.items)))
	if len(j.items) == 0 && (d.ReportEmpty || j.capture != nil) {
		j.items = append(j.items, item{rect: whole, crop: whole, features: slices.Clone(j.res.Embedding)})
	}
	return nil
}

// finish names each sighting with the head, keeps its snapshots, and hands
// it on, on a thread nicer than the backbone's: its JPEG encoding takes the
// cores the backbone leaves idle, and if it falls behind, the bounded queue
// drops frames (counted).
func (p *Pipeline) finish(ctx context.Context) {
	if err := camera.NiceThread(sideNice); err != nil {
		p.log.Debug("finish stage keeps the normal priority", "err", err)
	}
	for {
		var j *job
		select {
		case <-ctx.Done():
			return
		case j = <-p.toPost:
		}
		start := time.Now()
		h := p.head()
		marks := make([]camera.Mark, len(j.items))
		obs := make([]Observation, len(j.items))
		for i, it := range j.items {
			s := Sighting{Label: Unknown, Scores: map[string]float64{}, TS: timestamp(j.frame.Time), Frame: j.frame.Seq}
			s.ID = fmt.Sprintf("%s-%d", p.cfg.IDPrefix, p.seq.Add(1))
			if h != nil {
				pr, err := h.Classify(it.features, p.cfg.Threshold())
				if err != nil {
					p.log.Error("classify", "err", err)
				} else {
					for k, c := range h.Classes {
						s.Scores[c] = round4(pr.Scores[k])
					}
					s.Confidence = round4(pr.Confidence)
					s.Label = pr.Label // a class, or Unknown when unsure or far from every class
				}
			}
			if it.det != nil {
				s.Box = &SightingBox{X: it.rect.Min.X, Y: it.rect.Min.Y, W: it.rect.Dx(), H: it.rect.Dy(),
					ImageW: j.frame.Width, ImageH: j.frame.Height, Class: it.det.Label, Score: round4(float64(it.det.Score))}
				text := fmt.Sprintf("%s %.2f", it.det.Label, it.det.Score)
				if s.Label != Unknown {
					text = fmt.Sprintf("%s %.2f", s.Label, s.Confidence)
				}
				marks[i] = camera.Mark{Rect: it.rect, Label: text}
			}
			obs[i] = Observation{Sighting: s, Features: it.features, At: j.frame.Time, Infer: j.infer}
		}
		p.encode(j, marks, obs)
		p.stats.sightings.Add(uint64(len(obs)))
		p.sink(obs)
		if j.capture != nil {
			if len(obs) > 0 {
				s := obs[0].Sighting
				j.capture <- captureResult{sighting: &s}
			} else {
				j.capture <- captureResult{err: errors.New("the frame gave no sighting")}
			}
			j.capture = nil
		}
		p.stats.finish.Add(uint64(time.Since(start)))
		p.free <- j
	}
}

// encode makes the JPEGs of a frame's sightings: for each, the small JPEG
// stored with a label (the pet's crop, or the frame), and the snapshots.
// The frame snapshot, with every pet's box and name drawn, is encoded once
// and shared by the frame's sightings; each pet's crop is its own. A
// crop small enough for both sizes is encoded once.
func (p *Pipeline) encode(j *job, marks []camera.Mark, obs []Observation) {
	snap := p.cfg.Camera.Snapshots
	keep := snap.MaxCount > 0
	var frameSnap []byte
	if keep {
		var shown []camera.Mark
		for _, m := range marks {
			if !m.Rect.Empty() {
				m.Primary = true
				shown = append(shown, m)
			}
		}
		var err error
		if frameSnap, err = camera.SnapshotJPEG(&j.frame, shown, snap.Size, snap.Quality); err != nil {
			p.log.Error("encode snapshot", "frame", j.frame.Seq, "err", err)
			keep = false
		}
	}
	for i, it := range j.items {
		var err error
		var cropSnap []byte
		switch {
		case it.det == nil:
			obs[i].JPEG, err = camera.EncodeJPEG(&j.frame, p.cfg.SampleSize, 85)
			cropSnap = frameSnap
		case keep && max(it.crop.Dx(), it.crop.Dy()) <= min(p.cfg.SampleSize, snap.Size) && snap.Quality == 85:
			obs[i].JPEG, err = camera.CropJPEG(&j.frame, it.crop, 0, 85)
			cropSnap = obs[i].JPEG
		default:
			obs[i].JPEG, err = camera.CropJPEG(&j.frame, it.crop, p.cfg.SampleSize, 85)
			if err == nil && keep {
				cropSnap, err = camera.CropJPEG(&j.frame, it.crop, snap.Size, snap.Quality)
			}
		}
		if err != nil {
			p.log.Error("encode sighting JPEG", "sighting", obs[i].Sighting.ID, "err", err)
			continue
		}
		if keep {
			p.snaps.put(obs[i].Sighting.ID, frameSnap, cropSnap, j.frame.Time)
		}
	}
}

// sideNice is how much nicer than the backbone the capture, prepare and
// finish threads run: with 10, they get about a tenth of the share of the
// backbone's threads while both want the CPU. On a small board a
// preempted TensorFlow Lite worker leaves its partner spinning at the next
// barrier, so the side work should fill idle time, not take turns.
const sideNice = 10

// logDrops reports dropped frames at most once a minute.
func (p *Pipeline) logDrops(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var lastBox, lastPost uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, box := p.box.Stats()
		post := p.stats.dropped.Load()
		if box > lastBox || post > lastPost {
			p.log.Info("frames dropped in the last minute", "replaced_in_mailbox", box-lastBox, "finishing_fell_behind", post-lastPost,
				"hint", "the camera delivers more than the backbone can take; camera.max_fps lowers it")
		}
		lastBox, lastPost = box, post
	}
}

// CaptureConfig is the capture's part of the camera configuration.
func CaptureConfig(c CameraConfig) camera.CaptureConfig {
	return camera.CaptureConfig{
		Source: c.Source, Loop: c.Loop, MaxFPS: c.MaxFPS, RetryMax: c.RetryMax, Nice: sideNice,
		Options: camera.SourceOptions{
			FolderFPS: c.FolderFPS, Width: c.Device.Width, Height: c.Device.Height, FPS: c.Device.FPS, PixelFormat: c.Device.PixelFormat,
		},
	}
}

// inference runs the agent's pipeline.
func (a *Agent) inference(ctx context.Context) error {
	defer a.pipe.Close()
	return a.pipe.Run(ctx)
}

// observe publishes the sightings of a frame, remembers them for
// labelling, and announces the pets they name.
func (a *Agent) observe(obs []Observation) {
	for _, o := range obs {
		s := o.Sighting
		a.mu.Lock()
		a.sightings++
		ms := float64(o.Infer.Microseconds()) / 1000
		if a.embedAvgMS == 0 {
			a.embedAvgMS = ms
		} else {
			a.embedAvgMS = 0.9*a.embedAvgMS + 0.1*ms
		}
		a.mu.Unlock()
		a.recent.add(recentSighting{id: s.ID, features: o.Features, jpeg: o.JPEG, at: o.At})
		a.log.Debug("sighting", "id", s.ID, "label", s.Label, "confidence", s.Confidence, "box", s.Box != nil, "infer", o.Infer.Round(time.Microsecond))
		a.bus.PublishSighting(s)
		a.metrics.sightings.WithLabelValues(s.Label).Inc()
	}
	if len(obs) > 0 {
		a.metrics.inference.Observe(obs[0].Infer.Seconds())
		a.announce(obs)
	}
}

// PipelineStats returns the camera pipeline's counters (frames gated,
// inferred, dropped; pets found).
func (a *Agent) PipelineStats() PipelineStats { return a.pipe.Stats() }

// CameraStatus returns the capture's state: up or down, reopening, the
// last error.
func (a *Agent) CameraStatus() camera.Status { return a.capture.Status() }

func round4(x float64) float64 {
	return float64(int64(x*10000+0.5)) / 10000
}

// recentSightings keeps the features and frames of the last sightings so
// that they can be labelled by id.
type recentSightings struct {
	mu    sync.Mutex
	max   int
	order []string
	byID  map[string]recentSighting
}

type recentSighting struct {
	id       string
	features []float32
	jpeg     []byte
	at       time.Time
}

func newRecentSightings(n int) *recentSightings {
	return &recentSightings{max: n, byID: make(map[string]recentSighting, n)}
}

func (r *recentSightings) add(s recentSighting) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == r.max {
		delete(r.byID, r.order[0])
		r.order = r.order[1:]
	}
	r.order = append(r.order, s.id)
	r.byID[s.id] = s
}

// latest is the id of the newest sighting, or "".
func (r *recentSightings) latest() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return ""
	}
	return r.order[len(r.order)-1]
}

func (r *recentSightings) get(id string) (recentSighting, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.byID[id]
	return s, ok
}
