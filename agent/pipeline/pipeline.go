// Package pipeline turns camera frames into sightings: the motion gate,
// preprocessing, the backbone (with pet detection and crops), the head's
// names and scores, and the snapshots of each sighting. It owns the
// backbone while it runs, and embeds images for others on request.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/camera/frame"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/detect"
)

// embedRequest asks the inference goroutine (which owns the backbone) to
// embed an image.
type embedRequest struct {
	img    *frame.Frame
	detect bool // find the pet and embed its crop (EmbedPet)
	reply  chan embedResult
}

type embedResult struct {
	features []float32
	pet      Pet
	err      error
}

// Observation is one sighting as the pipeline hands it on: the message,
// the features it was classified from, and a small JPEG of what was
// embedded (the frame, or the pet's crop) to store with a label.
type Observation struct {
	Sighting protocol.Sighting
	Features []float32
	JPEG     []byte
	At       time.Time
	Infer    time.Duration // backbone time for the frame (and its crops)
}

// Config is what the pipeline needs of the agent configuration.
type Config struct {
	Camera CameraConfig
	// Threshold returns the probability setting below which a sighting is
	// "unknown"; 0 uses the head's calibrated limits.
	Threshold func() float64
	// SampleSize is the longer side of the JPEG stored with a label.
	SampleSize int
	// IDPrefix starts every sighting id.
	IDPrefix string
	// Recent is how many recent sightings can be labelled by id.
	Recent int
	// NoPetLabels mean "no pet here": a whole frame in which the detector
	// found no pet is named one of them or unknown, never a pet.
	NoPetLabels []string
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
	cfg  Config
	log  *slog.Logger
	bb   *backbone.Backbone
	box  *camera.Mailbox
	head func() *learner.Head
	sink func([]Observation) // the sightings of one frame

	prep     *camera.Preprocessor // owned by the prepare stage
	crop     *camera.Preprocessor // owned by the infer stage
	gate     *camera.MotionGate   // nil without the motion gate
	dec      *detect.Decoder      // nil without detection
	snaps    *snapshotStore
	recent   *recent
	requests chan embedRequest

	free    chan *job
	toInfer chan *job
	toPost  chan *job

	seq       atomic.Uint64
	stats     pipelineCounters
	unknownMu sync.Mutex
	unknown   map[string]uint64       // unknown sightings by reason
	capture   chan chan captureResult // capture-now requests
	paused    atomic.Bool
}

type pipelineCounters struct {
	taken, still, paused, idle, inferred, crops, pets, sightings, dropped, errors atomic.Uint64
	prep, infer, finish                                                           atomic.Uint64
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

// New prepares a pipeline reading box and running bb. head returns the
// current head (nil: sightings are "unknown"); sink receives the
// sightings of each frame, in the finish goroutine (nil drops them).
func New(cfg Config, log *slog.Logger, bb *backbone.Backbone, box *camera.Mailbox,
	head func() *learner.Head, sink func([]Observation)) (*Pipeline, error) {
	spec, err := bb.InputSpec()
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		cfg: cfg, log: log, bb: bb, box: box, head: head, sink: sink,
		snaps:    newSnapshotStore(cfg.Camera.Snapshots, nil),
		recent:   newRecent(cfg.Recent),
		requests: make(chan embedRequest),
		capture:  make(chan chan captureResult, 4),
	}
	if p.cfg.Threshold == nil {
		p.cfg.Threshold = func() float64 { return 0 }
	}
	if head == nil {
		p.head = func() *learner.Head { return nil }
	}
	if sink == nil {
		p.sink = func([]Observation) {}
	}
	fail := func(err error) (*Pipeline, error) {
		p.Close()
		return nil, err
	}
	if p.prep, err = camera.NewPreprocessor(spec); err != nil {
		return fail(fmt.Errorf("backbone manifest: %w", err))
	}
	if p.crop, err = camera.NewPreprocessor(spec); err != nil {
		return fail(err)
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
	if p.crop != nil {
		p.crop.Close()
	}
	if p.gate != nil {
		p.gate.Close()
	}
}

// Stats returns the pipeline's counters.
func (p *Pipeline) Stats() protocol.PipelineStats {
	c := &p.stats
	return protocol.PipelineStats{
		Taken: c.taken.Load(), Still: c.still.Load(), Paused: c.paused.Load(), Idle: c.idle.Load(), Inferred: c.inferred.Load(),
		Crops: c.crops.Load(), Pets: c.pets.Load(), Sightings: c.sightings.Load(), Dropped: c.dropped.Load(),
		Errors: c.errors.Load(), PrepNanos: c.prep.Load(), InferNs: c.infer.Load(), FinishNs: c.finish.Load(),
		MotionOn: p.gate != nil, Detecting: p.dec != nil,
	}
}

// SetPaused pauses recognition (true) or resumes it: while paused, the
// frames the camera delivers are taken and counted (Stats.Paused) but
// none goes through the backbone, so no sighting is made. Capture and
// Embed still work.
func (p *Pipeline) SetPaused(paused bool) {
	if p.paused.Swap(paused) != paused {
		p.log.Info("recognition", "paused", paused)
	}
}

// Paused says whether recognition is paused.
func (p *Pipeline) Paused() bool { return p.paused.Load() }

// Snapshot returns the JPEG snapshots of a recent sighting: the frame
// with every pet's box and name drawn on it, and the crop of the pet (for
// a sighting without a box, the frame again). ok is false for an id that
// is unknown or was pruned (camera.snapshots: max_count, max_age,
// max_bytes). The slices are shared: do not modify them.
func (p *Pipeline) Snapshot(id string) (img, crop []byte, ok bool) { return p.snaps.get(id) }

// Recent returns a recent sighting's features and the JPEG to store with
// a label, for the last cfg.Recent sightings; "latest" names the newest.
func (p *Pipeline) Recent(id string) (Seen, bool) {
	if id == "latest" {
		id = p.recent.latest()
	}
	return p.recent.get(id)
}

// Embed runs the backbone on an image, between frames, and returns its
// feature vector. It waits at most 30 s for the backbone.
func (p *Pipeline) Embed(ctx context.Context, img *frame.Frame) ([]float32, error) {
	r := embedRequest{img: img, reply: make(chan embedResult, 1)}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case p.requests <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("the backbone is busy")
	}
	select {
	case out := <-r.reply:
		return out.features, out.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Capture classifies the next frame whatever the motion gate says, and
// returns its (first) sighting.
func (p *Pipeline) Capture(ctx context.Context) (*protocol.Sighting, error) {
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
		if j.capture == nil && p.paused.Load() {
			p.stats.paused.Add(1)
			p.free <- j
			continue
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
			if r.detect {
				pet, err := p.embedPet(r.img, &reqIn, &reqRes)
				r.reply <- embedResult{pet: pet, err: err}
				continue
			}
			feats, err := p.embedRequest(r.img, &reqIn, &reqRes)
			r.reply <- embedResult{features: feats, err: err}
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
			s := protocol.Sighting{Label: protocol.Unknown, Scores: map[string]float64{}, TS: protocol.Timestamp(j.frame.Time), Frame: j.frame.Seq}
			s.ID = fmt.Sprintf("%s-%d", p.cfg.IDPrefix, p.seq.Add(1))
			if h != nil {
				p.Name(h, &s, it.features, it.det != nil)
			} else {
				s.Why = WhyNoHead
			}
			p.countUnknown(&s)
			if it.det != nil {
				s.Box = &protocol.SightingBox{X: it.rect.Min.X, Y: it.rect.Min.Y, W: it.rect.Dx(), H: it.rect.Dy(),
					ImageW: j.frame.Width, ImageH: j.frame.Height, Class: it.det.Label, Score: round4(float64(it.det.Score))}
				text := fmt.Sprintf("%s %.2f", it.det.Label, it.det.Score)
				if s.Label != protocol.Unknown {
					text = fmt.Sprintf("%s %.2f", s.Label, s.Confidence)
				}
				marks[i] = camera.Mark{Rect: it.rect, Label: text}
			}
			obs[i] = Observation{Sighting: s, Features: it.features, At: j.frame.Time, Infer: j.infer}
		}
		p.encode(j, marks, obs)
		for _, o := range obs {
			p.recent.add(Seen{ID: o.Sighting.ID, Features: o.Features, JPEG: o.JPEG, At: o.At})
		}
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

// WhyNoHead is why every sighting is unknown before two labels are known.
const WhyNoHead = "nothing is labelled yet: label at least two names (two pets, or a pet and neither)"

// classify names a sighting with the head: a labelled class, or unknown
// with the reason (too unsure, unlike every pet, more like other animals
// and scenes, or no pet detected in a whole frame, which is never named
// as a pet). The reference class of other animals and scenes is left out
// of the scores.
// Name names a pet's (or a frame's) features with head h into s, as the
// camera's sightings are named: its label, confidence, scores and, when
// unknown, why and the nearest name. boxed says the detector found the
// pet; with a detecting backbone, a frame without one is never named as
// a pet. It reports false when h cannot classify the features.
func (p *Pipeline) Name(h *learner.Head, s *protocol.Sighting, features []float32, boxed bool) bool {
	pr, err := h.ClassifyWith(features, learner.ClassifyOptions{
		Threshold: p.cfg.Threshold(), NoPet: !boxed && p.dec != nil, NoPetLabels: p.cfg.NoPetLabels,
	})
	if err != nil {
		p.log.Error("classify", "err", err)
		return false
	}
	s.Scores = make(map[string]float64, len(h.Classes))
	for k, c := range h.Classes {
		if c != learner.Background {
			s.Scores[c] = round4(pr.Scores[k])
		}
	}
	s.Confidence = round4(pr.Confidence)
	s.Label, s.Why, s.Nearest = pr.Label, pr.Why, ""
	if pr.Label == protocol.Unknown {
		s.Nearest = pr.Nearest
	}
	return true
}

// countUnknown counts an unknown sighting under its reason.
func (p *Pipeline) countUnknown(s *protocol.Sighting) {
	if s.Label != protocol.Unknown {
		return
	}
	p.unknownMu.Lock()
	if p.unknown == nil {
		p.unknown = map[string]uint64{}
	}
	p.unknown[s.Why]++
	p.unknownMu.Unlock()
}

// Unknown returns how many sightings came out unknown, by reason.
func (p *Pipeline) Unknown() map[string]uint64 {
	p.unknownMu.Lock()
	defer p.unknownMu.Unlock()
	return maps.Clone(p.unknown)
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
			obs[i].JPEG, err = camera.EncodeJPEG(&j.frame, p.cfg.SampleSize, camera.JPEGQuality)
			cropSnap = frameSnap
		case keep && max(it.crop.Dx(), it.crop.Dy()) <= min(p.cfg.SampleSize, snap.Size) && snap.Quality == camera.JPEGQuality:
			obs[i].JPEG, err = camera.CropJPEG(&j.frame, it.crop, 0, camera.JPEGQuality)
			cropSnap = obs[i].JPEG
		default:
			obs[i].JPEG, err = camera.CropJPEG(&j.frame, it.crop, p.cfg.SampleSize, camera.JPEGQuality)
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

type captureResult struct {
	sighting *protocol.Sighting
	err      error
}

func round4(x float64) float64 {
	return float64(int64(x*10000+0.5)) / 10000
}
