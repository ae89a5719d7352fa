package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
)

// Agent is the running daemon.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	version string
	started time.Time

	store    *learner.Store
	trainer  *learner.Trainer
	bb       *backbone.Backbone
	identity string
	pre      *camera.Preprocessor
	box      *camera.Mailbox
	capture  *camera.Capture
	recent   *recentSightings

	inbound   chan Inbound
	embedReqs chan embedRequest
	bus       *Bus

	// brokerURL is the broker the bus connects to; set in Run when the
	// embedded broker starts.
	brokerURL string

	mu         sync.Mutex
	sightings  uint64
	embedAvgMS float64
	bootID     string
}

// inboundQueue bounds requests waiting for the request worker.
const inboundQueue = 64

// New opens everything the agent needs (state, backbone, camera
// configuration) and fails early, naming what is wrong.
func New(cfg Config, log *slog.Logger, version string) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	bb, err := backbone.Open(cfg.Backbone, backbone.Options{Threads: cfg.Threads})
	if err != nil {
		return nil, fmt.Errorf("backbone: %w", err)
	}
	man := bb.Manifest()
	pre, err := camera.NewPreprocessor(camera.Spec{
		Width:  man.Input.Shape[2],
		Height: man.Input.Shape[1],
		RGB:    man.Preprocess.ColorOrder == "RGB",
		Mean:   man.Preprocess.Mean,
		Std:    man.Preprocess.Std,
		Fit:    camera.Fit(man.Preprocess.Resize),
	})
	if err != nil {
		bb.Close()
		return nil, fmt.Errorf("backbone manifest: %w", err)
	}
	store, err := learner.OpenStore(filepath.Join(cfg.StateDir, "samples.db"))
	if err != nil {
		pre.Close()
		bb.Close()
		return nil, err
	}
	a := &Agent{
		cfg: cfg, log: log, version: version, started: time.Now(),
		store: store, bb: bb, identity: man.Identity, pre: pre,
		box:       camera.NewMailbox(),
		recent:    newRecentSightings(cfg.Learner.Recent),
		inbound:   make(chan Inbound, inboundQueue),
		embedReqs: make(chan embedRequest),
		bootID:    fmt.Sprintf("%x", time.Now().Unix()),
	}
	a.trainer = learner.NewTrainer(learner.TrainerConfig{
		HeadPath: filepath.Join(cfg.StateDir, "head.json"),
		Train:    learner.TrainConfig{C: cfg.Learner.C, Balanced: cfg.Learner.Balanced},
		Delay:    cfg.Learner.RetrainDelay,
	}, store, man.Identity, log.With("component", "learner"))
	a.trainer.OnTrained = func(*learner.Head, learner.TrainReport) { a.publishStatusAsync() }
	a.capture = camera.NewCapture(camera.CaptureConfig{
		Source: cfg.Camera.Source, Loop: cfg.Camera.Loop, MaxFPS: cfg.Camera.MaxFPS, FolderFPS: cfg.Camera.FolderFPS,
	}, log.With("component", "camera"), a.box, nil)
	log.Info("agent ready", "device", cfg.Device, "backbone", man.Identity, "tflite", backbone.RuntimeVersion(),
		"input", man.Input.Shape, "embedding", man.Embedding, "state", cfg.StateDir)
	return a, nil
}

// Run runs the agent until ctx ends, then shuts everything down.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	a.brokerURL = a.cfg.MQTT.Broker
	if a.brokerURL == "" {
		br, err := StartEmbeddedBroker(a.cfg.MQTT.EmbeddedListen, a.log)
		if err != nil {
			return err
		}
		defer br.Close()
		a.brokerURL = br.URL()
		a.log.Info("embedded MQTT broker listening", "url", a.brokerURL)
	}
	a.bus = NewBus(a.cfg.MQTT, a.cfg.Device, a.brokerURL, a.log.With("component", "mqtt"), a.inbound, a.status)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.bus.Run(gctx) })
	g.Go(func() error { return a.trainer.Run(gctx) })
	g.Go(func() error { return a.serveRequests(gctx) })
	g.Go(func() error { return a.inference(gctx) })
	g.Go(func() error {
		// A finite source that ends leaves the agent serving labels and
		// commands; only ctx stops the agent.
		return a.capture.Run(gctx)
	})
	return g.Wait()
}

func (a *Agent) close() {
	a.pre.Close()
	a.bb.Close()
	if err := a.store.Close(); err != nil {
		a.log.Error("close store", "err", err)
	}
}

// BrokerURL is the broker the agent connects to (valid once Run started).
func (a *Agent) BrokerURL() string { return a.brokerURL }

// Bus returns the MQTT connection (valid once Run started).
func (a *Agent) Bus() *Bus { return a.bus }

func (a *Agent) status() Status {
	st := Status{
		State: "online", Device: a.cfg.Device, Version: a.version, Backbone: a.identity,
		Camera: a.capture.Status().Source, TS: timestamp(time.Now()),
	}
	if h := a.trainer.Head(); h != nil {
		st.Labels = h.Classes
	}
	return st
}

func (a *Agent) publishStatusAsync() {
	if a.bus == nil || !a.bus.Connected() {
		return
	}
	st := a.status()
	go func() {
		if err := a.bus.PublishStatus(st); err != nil {
			a.log.Debug("publish status", "err", err)
		}
	}()
}

// embedRequest asks the inference goroutine (which owns the backbone) to
// embed an image.
type embedRequest struct {
	frame camera.Frame
	reply chan embedResult
}

type embedResult struct {
	features []float32
	err      error
}

// inference owns the preprocessor and the backbone: it classifies the
// latest frame whenever one arrives, and embeds images for label requests.
func (a *Agent) inference(ctx context.Context) error {
	var f camera.Frame
	var input []float32
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-a.embedReqs:
			feats, err := a.embed(&r.frame, &input)
			r.reply <- embedResult{feats, err}
		case <-a.box.Ready():
			if a.box.TryTake(&f) {
				a.classify(&f, &input)
			}
		}
	}
}

func (a *Agent) embed(f *camera.Frame, input *[]float32) ([]float32, error) {
	in, err := a.pre.Process(f, *input)
	if err != nil {
		return nil, err
	}
	*input = in
	return a.bb.Embed(in)
}

func (a *Agent) classify(f *camera.Frame, input *[]float32) {
	start := time.Now()
	feats, err := a.embed(f, input)
	if err != nil {
		a.log.Error("embed frame", "frame", f.Seq, "err", err)
		return
	}
	took := time.Since(start)
	s := Sighting{Label: Unknown, Scores: map[string]float64{}, TS: timestamp(f.Time), Frame: f.Seq}
	if h := a.trainer.Head(); h != nil {
		p, err := h.Predict(feats)
		if err != nil {
			a.log.Error("predict", "err", err)
		} else {
			best, conf := h.Best(p)
			for i, c := range h.Classes {
				s.Scores[c] = round4(p[i])
			}
			s.Confidence = round4(conf)
			if conf >= a.cfg.Learner.Threshold {
				s.Label = best
			}
		}
	}
	jpeg, err := camera.EncodeJPEG(f, a.cfg.Learner.SnapshotSize, 85)
	if err != nil {
		a.log.Error("encode snapshot", "err", err)
	}
	a.mu.Lock()
	a.sightings++
	s.ID = fmt.Sprintf("%s-%d", a.bootID, a.sightings)
	if a.embedAvgMS == 0 {
		a.embedAvgMS = float64(took.Microseconds()) / 1000
	} else {
		a.embedAvgMS = 0.9*a.embedAvgMS + 0.1*float64(took.Microseconds())/1000
	}
	a.mu.Unlock()
	a.recent.add(recentSighting{id: s.ID, features: feats, jpeg: jpeg, at: f.Time})
	a.log.Debug("sighting", "id", s.ID, "label", s.Label, "confidence", s.Confidence, "embed", took.Round(time.Microsecond))
	a.bus.PublishSighting(s)
}

func round4(x float64) float64 {
	return float64(int64(x*10000+0.5)) / 10000
}

// serveRequests answers label and command messages one at a time. A
// message is acknowledged to the broker only after its answer is
// published, so a request whose answer was lost is delivered again (and
// its request_id keeps it from being applied twice).
func (a *Agent) serveRequests(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-a.inbound:
			res := a.handle(ctx, in)
			res.Topic = in.Topic
			res.TS = timestamp(time.Now())
			if !res.Ok {
				a.log.Warn("request refused", "topic", in.Topic, "request_id", res.RequestID, "reason", res.Error)
			}
			if err := a.bus.PublishResult(res); err != nil {
				a.log.Warn("answer not published; the broker will redeliver the request", "request_id", res.RequestID, "err", err)
				continue
			}
			in.Ack()
			a.log.Debug("request answered", "topic", in.Topic, "request_id", res.RequestID, "ok", res.Ok)
		}
	}
}

// handle turns one request into its result; it never panics.
func (a *Agent) handle(ctx context.Context, in Inbound) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("request handler panicked", "topic", in.Topic, "panic", r)
			res = Result{RequestID: res.RequestID, Error: fmt.Sprintf("internal error: %v", r)}
		}
	}()
	switch in.Topic {
	case TopicLabel:
		return a.handleLabel(ctx, in.Payload)
	case TopicCmd:
		return a.handleCmd(in.Payload)
	}
	return Result{Error: "unknown topic"}
}

func failed(err error) Result {
	var re *RequestError
	if errors.As(err, &re) {
		return Result{RequestID: re.RequestID, Error: re.Reason}
	}
	return Result{Error: err.Error()}
}

func (a *Agent) handleLabel(ctx context.Context, payload []byte) Result {
	req, err := DecodeLabel(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		return failed(err)
	}
	res := Result{RequestID: req.RequestID, Label: req.Label}
	smp := learner.Sample{Label: req.Label, Backbone: a.identity, Time: time.Now(), RequestID: req.RequestID}
	if req.SightingID != "" {
		r, ok := a.recent.get(req.SightingID)
		if !ok {
			res.Error = fmt.Sprintf("unknown sighting id %q: it is not among the last %d sightings (learner.recent)", req.SightingID, a.cfg.Learner.Recent)
			return res
		}
		smp.Features, smp.JPEG, smp.Source = r.features, r.jpeg, "sighting:"+req.SightingID
	} else {
		frame, err := camera.DecodeImage(req.ImageBytes())
		if err != nil {
			res.Error = fmt.Sprintf("image cannot be read: %v (send a base64 JPEG or PNG)", err)
			return res
		}
		feats, err := a.embedOnWorker(ctx, frame)
		if err != nil {
			res.Error = fmt.Sprintf("image could not be embedded: %v", err)
			return res
		}
		jpeg, err := camera.EncodeJPEG(&frame, a.cfg.Learner.SnapshotSize, 85)
		if err != nil {
			res.Error = fmt.Sprintf("image could not be re-encoded: %v", err)
			return res
		}
		smp.Features, smp.JPEG, smp.Source = feats, jpeg, "image"
	}
	id, dup, err := a.store.Add(smp)
	if err != nil {
		a.log.Error("store label", "err", err)
		res.Error = fmt.Sprintf("label not stored: %v", err)
		return res
	}
	res.Ok, res.SampleID, res.Duplicate = true, id, dup
	if counts, err := a.store.Counts(a.identity); err == nil {
		res.Labels = counts
	}
	if !dup {
		a.log.Info("label stored", "label", req.Label, "sample", id, "source", smp.Source, "request_id", req.RequestID)
		a.trainer.Kick()
	}
	return res
}

func (a *Agent) embedOnWorker(ctx context.Context, f camera.Frame) ([]float32, error) {
	r := embedRequest{frame: f, reply: make(chan embedResult, 1)}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case a.embedReqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, errors.New("inference is busy")
	}
	select {
	case out := <-r.reply:
		return out.features, out.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *Agent) handleCmd(payload []byte) Result {
	req, err := DecodeCmd(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		return failed(err)
	}
	res := Result{RequestID: req.RequestID, Cmd: req.Cmd}
	switch req.Cmd {
	case "retrain":
		rep := a.trainer.Retrain()
		res.Train = &TrainResult{Samples: rep.Samples, Classes: rep.Classes, Iterations: rep.Iters,
			Millis: float64(rep.Duration.Microseconds()) / 1000}
		if rep.Err != nil {
			res.Error = rep.Err.Error()
			return res
		}
	case "labels":
		counts, err := a.store.Counts(a.identity)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Labels = counts
	case "stats":
		st, err := a.Stats()
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Stats = st
	}
	res.Ok = true
	return res
}

// Stats gathers the numbers the stats command reports.
func (a *Agent) Stats() (*Stats, error) {
	counts, err := a.store.Counts(a.identity)
	if err != nil {
		return nil, err
	}
	cs := a.capture.Status()
	_, dropped := a.box.Stats()
	_, runs := a.trainer.Last()
	a.mu.Lock()
	st := &Stats{
		Device: a.cfg.Device, Version: a.version, UptimeSeconds: time.Since(a.started).Seconds(),
		Backbone: a.identity, Runtime: "TensorFlow Lite " + backbone.RuntimeVersion(),
		Labels: counts, Sightings: a.sightings, EmbedMillis: round4(a.embedAvgMS),
		TrainingRuns: runs, Threshold: a.cfg.Learner.Threshold,
		Camera: CameraStats{Up: cs.Up, Source: cs.Source, Frames: cs.Frames, Dropped: dropped, Reopens: cs.Reopens, Error: cs.LastErr},
	}
	a.mu.Unlock()
	for _, c := range counts {
		st.Samples += c.Samples
	}
	if h := a.trainer.Head(); h != nil {
		st.Head = &HeadInfo{Classes: h.Classes, Samples: h.Samples, Trained: timestamp(h.Trained)}
	}
	return st, nil
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

func (r *recentSightings) get(id string) (recentSighting, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.byID[id]
	return s, ok
}
