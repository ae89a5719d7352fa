package agent

import (
	"context"
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
	pipe     *Pipeline
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
	spec, err := InputSpec(bb)
	var pre *camera.Preprocessor
	if err == nil {
		pre, err = camera.NewPreprocessor(spec)
	}
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
	a.capture = camera.NewCapture(CaptureConfig(cfg.Camera), log.With("component", "camera"), a.box, nil)
	a.pipe, err = NewPipeline(PipelineConfig{
		Camera: cfg.Camera, Threshold: cfg.Learner.Threshold, SampleSize: cfg.Learner.SnapshotSize, IDPrefix: a.bootID,
	}, log.With("component", "pipeline"), bb, a.box, a.trainer.Head, a.observe, pre, a.embedReqs)
	if err != nil {
		store.Close()
		pre.Close()
		bb.Close()
		return nil, err
	}
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
