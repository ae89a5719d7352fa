// Package agent is the Whisker daemon: the wiring of the camera pipeline
// (agent/pipeline), the learner, Home Assistant (agent/homeassistant), the
// inbox and the web page (agent/inbox, agent/web) and updates (agent/ota)
// to MQTT, whose wire contract is agent/protocol. It also runs the request
// worker, the MQTT connection and the embedded broker (agent/broker), HTTP
// (metrics, health, the page) and systemd notification. Its configuration
// is agent/config, its Prometheus metrics agent/metrics. It holds no math
// and no pixels of its own.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/whiskercam/whisker/agent/broker"
	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/homeassistant"
	"github.com/whiskercam/whisker/agent/inbox"
	"github.com/whiskercam/whisker/agent/metrics"
	"github.com/whiskercam/whisker/agent/ota"
	"github.com/whiskercam/whisker/agent/pipeline"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/agent/web"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/embedder"
)

// Agent is the running daemon: it wires the camera pipeline, the learner,
// Home Assistant, updates and MQTT together.
type Agent struct {
	cfg      config.Config
	log      *slog.Logger
	version  string
	started  time.Time
	identity string // the backbone's, stored next to every feature vector

	bb       *backbone.Backbone
	store    *learner.Store
	trainer  *learner.Trainer
	box      *camera.Mailbox
	capture  *camera.Capture
	pipe     *pipeline.Pipeline
	ha       *homeassistant.Service
	ota      *ota.Updater
	settings *config.Settings
	metrics  *metrics.Metrics
	inbox    *inbox.Inbox
	web      *web.Server

	// obsMu orders what is told to Home Assistant: frames as they come,
	// and frames named again (reclassify). ring holds the last frames.
	obsMu   sync.Mutex
	ring    []ringFrame
	reclass chan struct{}
	dim     int // the backbone's feature length
	// statusMu orders the status publications (publishStatusAsync).
	statusMu sync.Mutex

	// household holds the enrolled keys of the cameras whose shared
	// samples are stored; signer is this camera's device key, which signs
	// what it shares.
	household attest.Keyring
	signer    *attest.Signer
	disk      diskWatch
	// riskyHook, when set (by tests), runs after a request is marked as
	// in progress and before its risky step.
	riskyHook func(requestID string)

	inbound  chan Inbound
	bus      atomic.Pointer[Bus] // nil until Run has made it
	httpAddr atomic.Value
	restart  atomic.Bool
	stop     context.CancelFunc

	sightings atomic.Uint64
	embedMu   sync.Mutex
	embedAvg  float64 // milliseconds, moving average
}

// inboundQueue bounds requests waiting for the request worker.
const inboundQueue = 64

// New opens everything the agent needs (state, backbone, camera
// configuration) and fails early, naming what is wrong. What it opened is
// closed again when it fails.
func New(cfg config.Config, log *slog.Logger, version string) (a *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if p, ok := ota.SlotBackbone(cfg.StateDir); ok {
		log.Info("using the backbone of the running firmware slot", "manifest", p)
		cfg.Backbone = p
	}
	a = &Agent{cfg: cfg, log: log, version: version, started: time.Now(), box: camera.NewMailbox(),
		inbound: make(chan Inbound, inboundQueue), reclass: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if a.bb, err = backbone.Open(cfg.Backbone, backbone.Options{Threads: cfg.BackboneThreads(), Delegate: backbone.Delegate(cfg.Delegate)}); err != nil {
		return nil, fmt.Errorf("backbone: %w", err)
	}
	if st := a.bb.Delegate(); st.Fallback != nil {
		log.Warn("delegate unavailable, the backbone runs on the CPU", "delegate", st.Requested, "reason", st.Fallback)
	}
	man := a.bb.Manifest()
	a.identity, a.dim = man.Identity, man.Embedding
	if a.settings, err = config.LoadSettings(cfg.StateDir); err != nil {
		return nil, err
	}
	if a.store, err = learner.OpenStoreWith(filepath.Join(cfg.StateDir, "samples.db"), cfg.StoreOptions(a.identity, a.dim), log.With("component", "store")); err != nil {
		return nil, err
	}
	if cfg.Fleet.Household != "" {
		if a.household, err = attest.LoadKeyring(cfg.Fleet.HouseholdKeys); err != nil {
			return nil, fmt.Errorf("fleet.household_keys: %w", err)
		}
		if a.signer, err = ota.Layout(cfg.StateDir).Signer(); err != nil {
			return nil, fmt.Errorf("fleet.household: this camera signs what it shares with its device key: %w", err)
		}
		if a.signer.Device != cfg.Device {
			return nil, fmt.Errorf("fleet.household: the device key names %q, this camera is %q", a.signer.Device, cfg.Device)
		}
	}
	if n, err := a.store.PruneAnswers(); err != nil {
		log.Warn("prune request log", "err", err)
	} else if n > 0 {
		log.Debug("pruned old request answers", "n", n)
	}
	if a.inbox, err = inbox.Open(filepath.Join(cfg.StateDir, "inbox.db"), cfg.Inbox, log.With("component", "inbox"), nil); err != nil {
		return nil, err
	}
	a.trainer = learner.NewTrainer(a.trainerConfig(cfg.Backbone, a.identity, a.bb.Detects()), a.store, a.identity, log.With("component", "learner"))
	a.trainer.OnTrained = a.trained
	a.capture = camera.NewCapture(cfg.Camera.Capture(), log.With("component", "camera"), a.box, nil)
	a.pipe, err = pipeline.New(pipeline.Config{
		Camera: cfg.Camera, Threshold: a.threshold, SampleSize: cfg.Learner.SnapshotSize,
		IDPrefix: fmt.Sprintf("%x", a.started.Unix()), Recent: cfg.Learner.Recent, NoPetLabels: cfg.Learner.NoPetLabels,
	}, log.With("component", "pipeline"), a.bb, a.box, a.trainer.Head, a.observe)
	if err != nil {
		return nil, err
	}
	a.pipe.SetPaused(a.settings.Paused())
	a.ha, err = homeassistant.New(cfg.HomeAssistant, homeassistant.Options{
		Device: cfg.Device, Version: version, Topics: cfg.MQTT.TopicPrefix + "/" + cfg.Device + "/",
		ConfigurationURL: cfg.ConfigurationURL(),
		NoPetLabels:      cfg.Learner.NoPetLabels, Announce: cfg.Learner.Announcer(), Pets: a.labels,
		State: a.haState, Firmware: a.haFirmware,
		Announced: func(l string) { a.metrics.Announced(l) },
	}, log.With("component", "homeassistant"), lazyBus{&a.bus}, a.settings)
	if err != nil {
		return nil, err
	}
	a.ota, err = ota.New(cfg.Update, cfg.StateDir, version, a.identity, log.With("component", "update"), ota.Agent{
		Reembed: a.reembed,
		Health:  a.health,
		Changed: a.publishStatusAsync,
		Finish:  a.finishUpdate,
		Restart: a.requestRestart,
	})
	if err != nil {
		return nil, err
	}
	a.metrics = metrics.New(version, a.identity, a.reading)
	if cfg.Web.Enabled && cfg.HTTP.Listen != "" {
		if a.web, err = web.New(cfg.Web, web.Options{Device: cfg.Device, Version: version, Listen: cfg.HTTP.Listen,
			Secure: cfg.HTTP.TLS.CertFile != ""}, log.With("component", "web"), webBackend{a}, a.inbox); err != nil {
			return nil, err
		}
	}
	log.Info("agent ready", "device", cfg.Device, "backbone", a.identity, "tflite", backbone.RuntimeVersion(), "delegate", a.bb.Delegate().Active,
		"input", man.Input.Shape, "embedding", man.Embedding, "state", cfg.StateDir)
	return a, nil
}

// Run runs the agent until ctx ends, then shuts everything down. It
// returns ota.ErrRestart when the agent stopped to switch firmware slots.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	ctx, a.stop = context.WithCancel(ctx)
	defer a.stop()
	url, mq := a.cfg.MQTT.Broker, a.cfg.MQTT
	if url == "" {
		br, err := broker.Start(broker.Options{
			Listen: mq.EmbeddedListen, Access: mq.Embedded, Topics: a.cfg.BrokerTopics(), MaxPayload: mq.MaxPayload,
			Device: a.cfg.Device, ClientID: clientID(mq, a.cfg.Device),
		}, a.log)
		if err != nil {
			return err
		}
		defer br.Close()
		url = br.URL()
		// The agent is a camera of its own broker, with a password made
		// for this run.
		mq.Username, mq.Password = br.AgentCredentials()
		mq.TLS = protocol.TLSConfig{}
		a.log.Info("embedded MQTT broker listening", "url", url, "users", len(mq.Embedded.Users), "anonymous_on_loopback", mq.Embedded.Anonymous)
	}
	bus, err := NewBus(mq, a.cfg.Device, url, a.log.With("component", "mqtt"), a.inbound, a.status, func() {
		if err := a.ha.Sync(); err != nil {
			a.log.Warn("Home Assistant discovery", "err", err)
		}
	})
	if err != nil {
		return err
	}
	bus.Extra = map[string]string{}
	if a.cfg.Fleet.Household != "" {
		bus.Extra[protocol.SharedTopic(a.cfg.MQTT.TopicPrefix, a.cfg.Fleet.Household)] = topicShared
	}
	for topic, name := range a.ha.Subscriptions() {
		bus.Extra[topic] = name
	}
	a.bus.Store(bus)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return bus.Run(gctx) })
	g.Go(func() error { return a.trainer.Run(gctx) })
	g.Go(func() error { return a.serveRequests(gctx) })
	g.Go(func() error { return a.pipe.Run(gctx) })
	g.Go(func() error { return a.serveHTTP(gctx) })
	g.Go(func() error { return a.inbox.Run(gctx, time.Second) })
	g.Go(func() error { return a.reclassifier(gctx) })
	g.Go(func() error { return a.notifySystemd(gctx) })
	g.Go(func() error { return a.ota.Probation(gctx) })
	g.Go(func() error { return a.ha.Run(gctx) })
	g.Go(func() error { return a.watchDisk(gctx) })
	g.Go(func() error {
		// A finite source that ends leaves the agent serving labels and
		// commands; only ctx stops the agent.
		return a.capture.Run(gctx)
	})
	err = g.Wait()
	if a.restart.Load() {
		return ota.ErrRestart
	}
	return err
}

// close frees what New opened; each part may be missing when New failed.
func (a *Agent) close() {
	if a.pipe != nil {
		a.pipe.Close()
	}
	if a.bb != nil {
		a.bb.Close()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Error("close store", "err", err)
		}
	}
	if a.inbox != nil {
		if err := a.inbox.Close(); err != nil {
			a.log.Error("close inbox", "err", err)
		}
	}
}

// BrokerURL is the broker the agent connects to (empty until Run has
// started the connection).
func (a *Agent) BrokerURL() string {
	if b := a.bus.Load(); b != nil {
		return b.url
	}
	return ""
}

// Bus returns the MQTT connection (nil until Run has created it).
func (a *Agent) Bus() *Bus { return a.bus.Load() }

func (a *Agent) connected() bool {
	b := a.bus.Load()
	return b != nil && b.Connected()
}

// lazyBus is the agent's connection once Run has made it.
type lazyBus struct{ p *atomic.Pointer[Bus] }

func (l lazyBus) PublishRaw(topic string, payload []byte, retained bool) error {
	b := l.p.Load()
	if b == nil {
		return errors.New("not connected to the broker yet")
	}
	return b.PublishRaw(topic, payload, retained)
}

func (l lazyBus) Connected() bool {
	b := l.p.Load()
	return b != nil && b.Connected()
}

func (a *Agent) status() protocol.Status {
	fw := a.ota.Firmware()
	st := protocol.Status{
		State: "online", Device: a.cfg.Device, Version: a.version, Backbone: a.identity,
		Camera: a.capture.Status().Source, TS: protocol.Timestamp(time.Now()),
		Firmware: &fw, Update: a.ota.Status(), UpdateReport: a.ota.Report(), Paused: a.pipe.Paused(),
		Disk: a.diskHealth(),
	}
	if h := a.trainer.Head(); h != nil {
		st.Labels = h.Labels()
	}
	return st
}

// publishStatusAsync publishes the status again, without waiting. The
// publications are made one at a time, each with the status as it is
// when its turn comes, so that the last one published is never older
// than the last change.
func (a *Agent) publishStatusAsync() {
	b := a.bus.Load()
	if b == nil || !b.Connected() {
		return
	}
	a.ha.StateChanged()
	go func() {
		a.statusMu.Lock()
		defer a.statusMu.Unlock()
		if err := b.PublishStatus(a.status()); err != nil {
			a.log.Debug("publish status", "err", err)
		}
	}()
}

// observe publishes the sightings of a frame and announces the pets they
// name.
func (a *Agent) observe(obs []pipeline.Observation) {
	if len(obs) == 0 {
		return
	}
	sightings := make([]protocol.Sighting, len(obs))
	for i, o := range obs {
		s := o.Sighting
		sightings[i] = s
		a.sightings.Add(1)
		a.log.Debug("sighting", "id", s.ID, "label", s.Label, "confidence", s.Confidence, "box", s.Box != nil, "infer", o.Infer.Round(time.Microsecond))
		if b := a.bus.Load(); b != nil {
			b.PublishSighting(s)
		}
		a.metrics.Sighted(s.Label, o.At, a.ha.IsPet(s.Label))
	}
	ms := float64(obs[0].Infer.Microseconds()) / 1000
	a.embedMu.Lock()
	if a.embedAvg == 0 {
		a.embedAvg = ms
	} else {
		a.embedAvg = 0.9*a.embedAvg + 0.1*ms
	}
	a.embedMu.Unlock()
	a.metrics.Inferred(obs[0].Infer)
	a.obsMu.Lock()
	defer a.obsMu.Unlock()
	a.remember(obs, sightings)
	a.ha.Observe(obs[0].At, sightings, func(i int) (frame, crop []byte) {
		if img, crop, ok := a.pipe.Snapshot(sightings[i].ID); ok {
			return img, crop // the frame with the pets' boxes drawn, and the pet
		}
		return obs[i].JPEG, obs[i].JPEG
	})
}

// threshold is the probability below which a sighting is "unknown": the
// one set over MQTT if any, else the configured one (0: calibrated).
func (a *Agent) threshold() float64 {
	if t, ok := a.settings.Threshold(); ok {
		return t
	}
	return a.cfg.Learner.Threshold
}

// labels are the labels with samples of the running backbone, sorted.
func (a *Agent) labels() ([]string, error) {
	counts, err := a.store.Counts(a.identity)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(counts))
	for i, c := range counts {
		out[i] = c.Label
	}
	return out, nil
}

// labelsChanged brings Home Assistant's entities and the status up to
// date after labels were added, renamed or forgotten.
func (a *Agent) labelsChanged() {
	a.publishStatusAsync()
	a.ha.LabelsChanged()
	if labels, err := a.labels(); err == nil {
		a.metrics.Prune(labels)
	}
}

// health is what probation after an update watches: how many frames the
// agent has recognised (or, while recognition is paused, taken), and
// whether the broker is connected.
func (a *Agent) health() (uint64, bool) {
	return a.sightings.Load() + a.pipe.Stats().Paused, a.connected()
}

// trained records a training run in the metrics and the status.
func (a *Agent) trained(_ *learner.Head, rep learner.TrainReport) {
	a.metrics.Trained(rep)
	a.publishStatusAsync()
	if rep.Err == nil {
		a.kickReclassify()
	}
}

// reembed computes the stored samples' features with the backbone of a
// staged update and trains its head, before the agent switches to it.
func (a *Agent) reembed(ctx context.Context, manifest string, progress func(float64)) error {
	emb, err := embedder.Open(manifest, backbone.Options{Threads: a.cfg.BackboneThreads()})
	if err != nil {
		return err
	}
	defer emb.Close()
	return emb.Reembed(ctx, a.store, a.identity, a.trainerConfig(manifest, emb.Identity(), emb.Backbone().Detects()), a.log.With("component", "update"), progress)
}

// trainerConfig is the learner's configuration for the head of the
// backbone a manifest describes: with the backbone's reference set of
// other animals and scenes (computed by make deps beside the manifest) as
// one more class, so that strangers are unknown from the first labels.
// Without one, the head still works, naming every animal as one of the
// labelled ones more often; the log says how to make it.
//
// The reference set holds sightings as the pipeline makes them from pets
// it detected (crops); a backbone that classifies whole frames learns
// without it, since a whole frame is far from every crop.
func (a *Agent) trainerConfig(manifest, identity string, detects bool) learner.TrainerConfig {
	tc := a.cfg.Trainer(identity)
	path := learner.ReferencePath(manifest)
	if !detects || !a.cfg.Camera.Detect.Enabled {
		a.log.Info("whole frames are classified: the reference set of other animals and scenes, made of pet crops, is not used", "backbone", manifest)
		return tc
	}
	switch ref, err := learner.LoadReference(path, identity); {
	case err == nil:
		tc.Background.Reference = ref
		a.log.Info("reference set of other animals and scenes loaded", "path", path)
	case errors.Is(err, os.ErrNotExist):
		a.log.Warn("no reference set beside the backbone: strangers are more often named as pets", "path", path,
			"hint", "make deps (or whisker model reference) computes it")
	default:
		a.log.Error("reference set not used", "path", path, "err", err)
	}
	return tc
}

// finishUpdate answers an update request and publishes the status, and
// returns once the broker has both (or could not take them).
func (a *Agent) finishUpdate(res protocol.Result) {
	b := a.bus.Load()
	if b == nil {
		return
	}
	if err := b.PublishResult(res); err != nil {
		a.log.Warn("publish update result", "err", err)
	}
	if err := b.PublishStatus(a.status()); err != nil {
		a.log.Warn("publish status", "err", err)
	}
}

// requestRestart stops the agent so that its supervisor starts it again.
func (a *Agent) requestRestart() {
	a.restart.Store(true)
	if a.stop != nil {
		a.stop()
	}
}
