package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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
	settings  *Settings
	metrics   *metrics
	disc      *Discovery
	httpAddr  atomic.Value
	// published is bus, for readers outside the agent's goroutines.
	published atomic.Pointer[Bus]

	upd     *updater
	restart atomic.Bool
	stop    context.CancelFunc

	haMu         sync.Mutex
	lastAnnounce map[string]time.Time
	announcers   map[string]*learner.Announcer
	annCfg       learner.AnnouncerConfig
	discMu       sync.Mutex

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
	upd, err := newUpdater(cfg, version)
	if err != nil {
		return nil, err
	}
	if p, ok := upd.slotBackbone(); ok {
		log.Info("using the backbone of firmware slot "+upd.slot, "manifest", p)
		cfg.Backbone = p
	}
	bb, err := backbone.Open(cfg.Backbone, backbone.Options{Threads: cfg.BackboneThreads(), Delegate: backbone.Delegate(cfg.Delegate)})
	if err != nil {
		return nil, fmt.Errorf("backbone: %w", err)
	}
	if st := bb.Delegate(); st.Fallback != nil {
		log.Warn("delegate unavailable, the backbone runs on the CPU", "delegate", st.Requested, "reason", st.Fallback)
	}
	man := bb.Manifest()
	spec, err := bb.InputSpec()
	var pre *camera.Preprocessor
	if err == nil {
		pre, err = camera.NewPreprocessor(spec)
	}
	if err != nil {
		bb.Close()
		return nil, fmt.Errorf("backbone manifest: %w", err)
	}
	settings, err := LoadSettings(cfg.StateDir)
	if err != nil {
		pre.Close()
		bb.Close()
		return nil, err
	}
	store, err := learner.OpenStore(filepath.Join(cfg.StateDir, "samples.db"))
	if err != nil {
		pre.Close()
		bb.Close()
		return nil, err
	}
	if n, err := store.PruneAnswers(); err != nil {
		log.Warn("prune request log", "err", err)
	} else if n > 0 {
		log.Debug("pruned old request answers", "n", n)
	}
	a := &Agent{
		cfg: cfg, log: log, version: version, started: time.Now(),
		store: store, bb: bb, identity: man.Identity, pre: pre,
		box:          camera.NewMailbox(),
		recent:       newRecentSightings(cfg.Learner.Recent),
		inbound:      make(chan Inbound, inboundQueue),
		embedReqs:    make(chan embedRequest),
		announcers:   map[string]*learner.Announcer{},
		annCfg:       announcerConfig(cfg.Learner),
		settings:     settings,
		upd:          upd,
		lastAnnounce: map[string]time.Time{},
		bootID:       fmt.Sprintf("%x", time.Now().Unix()),
		disc: &Discovery{
			Prefix: cfg.HomeAssistant.DiscoveryPrefix, Topics: cfg.MQTT.TopicPrefix + "/" + cfg.Device + "/",
			Device: cfg.Device, Version: version, OffDelay: int(cfg.HomeAssistant.OffDelay.Seconds()),
		},
	}
	a.trainer = learner.NewTrainer(learner.TrainerConfig{
		HeadPath: headPath(cfg.StateDir, man.Identity),
		Train:    learner.TrainConfig{C: cfg.Learner.C, Balanced: cfg.Learner.Balanced},
		Delay:    cfg.Learner.RetrainDelay,
	}, store, man.Identity, log.With("component", "learner"))
	a.trainer.OnTrained = a.trained
	a.capture = camera.NewCapture(CaptureConfig(cfg.Camera), log.With("component", "camera"), a.box, nil)
	a.pipe, err = NewPipeline(PipelineConfig{
		Camera: cfg.Camera, Threshold: a.threshold, SampleSize: cfg.Learner.SnapshotSize, IDPrefix: a.bootID,
	}, log.With("component", "pipeline"), bb, a.box, a.trainer.Head, a.observe, pre, a.embedReqs)
	if err != nil {
		store.Close()
		pre.Close()
		bb.Close()
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(headPath(cfg.StateDir, man.Identity)), 0o750); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	a.initUpdateStatus()
	a.metrics = newMetrics(a)
	log.Info("agent ready", "device", cfg.Device, "backbone", man.Identity, "tflite", backbone.RuntimeVersion(), "delegate", bb.Delegate().Active,
		"input", man.Input.Shape, "embedding", man.Embedding, "state", cfg.StateDir)
	return a, nil
}

// Run runs the agent until ctx ends, then shuts everything down.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	ctx, a.stop = context.WithCancel(ctx)
	defer a.stop()
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
	bus, err := NewBus(a.cfg.MQTT, a.cfg.Device, a.brokerURL, a.log.With("component", "mqtt"), a.inbound, a.status, func() {
		if err := a.syncDiscovery(); err != nil {
			a.log.Warn("Home Assistant discovery", "err", err)
		}
	})
	if err != nil {
		return err
	}
	if a.cfg.Fleet.Household != "" {
		bus.Extra = map[string]string{a.sharedTopic(): topicShared}
	}
	a.bus = bus
	a.published.Store(bus)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.bus.Run(gctx) })
	g.Go(func() error { return a.trainer.Run(gctx) })
	g.Go(func() error { return a.serveRequests(gctx) })
	g.Go(func() error { return a.inference(gctx) })
	g.Go(func() error { return a.serveHTTP(gctx) })
	g.Go(func() error { return a.notifySystemd(gctx) })
	g.Go(func() error { return a.probation(gctx) })
	g.Go(func() error {
		// A finite source that ends leaves the agent serving labels and
		// commands; only ctx stops the agent.
		return a.capture.Run(gctx)
	})
	err = g.Wait()
	if a.restart.Load() {
		return ErrRestart
	}
	return err
}

func (a *Agent) close() {
	a.pre.Close()
	a.bb.Close()
	if err := a.store.Close(); err != nil {
		a.log.Error("close store", "err", err)
	}
}

// BrokerURL is the broker the agent connects to (empty until Run has
// started the connection).
func (a *Agent) BrokerURL() string {
	if b := a.published.Load(); b != nil {
		return b.url
	}
	return ""
}

// Bus returns the MQTT connection (nil until Run has created it).
func (a *Agent) Bus() *Bus { return a.published.Load() }

func (a *Agent) status() Status {
	fw := a.firmware()
	st := Status{
		State: "online", Device: a.cfg.Device, Version: a.version, Backbone: a.identity,
		Camera: a.capture.Status().Source, TS: timestamp(time.Now()),
		Firmware: &fw, Update: a.upd.get(),
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
