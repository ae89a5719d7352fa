package agent

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/update"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/embedder"
)

// ErrRestart is returned by Run when the agent stops to start a new
// version (or to roll one back): its supervisor (systemd, through
// `whisker boot`) starts it again. The command exits with RestartExitCode.
var ErrRestart = errors.New("restarting to switch firmware slots")

// RestartExitCode is the exit status that asks for a restart.
const RestartExitCode = 3

// Environment set by `whisker boot` for the agent it starts.
const (
	EnvBooted = "WHISKER_BOOT"
	EnvSlot   = "WHISKER_SLOT"
)

// UpdateStatus is the update part of the status topic.
type UpdateStatus struct {
	State    string  `json:"state"` // downloading, verifying, re-embedding, switching, probation, committed, rolled_back, failed
	Version  string  `json:"version,omitempty"`
	Bundle   string  `json:"bundle,omitempty"`
	Progress float64 `json:"progress,omitempty"`
	Error    string  `json:"error,omitempty"`
	At       string  `json:"at,omitempty"`
}

// FirmwareStatus says what the device runs.
type FirmwareStatus struct {
	Slot    string `json:"slot"` // "a", "b", or "" for the installed binary
	Version string `json:"version"`
	Bundle  string `json:"bundle,omitempty"`
}

// updater is the agent's update machinery.
type updater struct {
	layout  update.Layout
	booted  bool   // started by `whisker boot`, which can switch slots
	slot    string // the slot this process runs from
	opts    bundle.CheckOptions
	running sync.Mutex // one update at a time

	mu     sync.Mutex
	status *UpdateStatus
}

func newUpdater(cfg Config, version string) (*updater, error) {
	u := &updater{layout: update.Layout{Dir: filepath.Join(cfg.StateDir, "firmware")}}
	u.booted = os.Getenv(EnvBooted) == "1"
	u.slot = os.Getenv(EnvSlot)
	keys, err := bundle.LoadPublicKeys(cfg.Update.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("update.trusted_keys: %w", err)
	}
	u.opts = bundle.CheckOptions{Trusted: keys, AgentVersion: version}
	return u, nil
}

func (u *updater) set(s UpdateStatus) {
	s.At = timestamp(time.Now())
	u.mu.Lock()
	u.status = &s
	u.mu.Unlock()
}

func (u *updater) get() *UpdateStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.status == nil {
		return nil
	}
	c := *u.status
	return &c
}

// slotBackbone returns the backbone manifest the running slot carries.
func (u *updater) slotBackbone() (string, bool) {
	if !u.booted || u.slot == "" {
		return "", false
	}
	return u.layout.File(u.slot, bundle.KindBackboneManifest)
}

// firmware describes what this process runs.
func (a *Agent) firmware() FirmwareStatus {
	fs := FirmwareStatus{Slot: a.upd.slot, Version: a.version}
	if st, err := a.upd.layout.ReadState(); err == nil && a.upd.slot != "" {
		if info, ok := st.Slots[a.upd.slot]; ok {
			fs.Version, fs.Bundle = info.Version, info.Bundle
		}
	}
	return fs
}

// initUpdateStatus reports how the last update ended, if this process is
// the first to start after it.
func (a *Agent) initUpdateStatus() {
	st, err := a.upd.layout.ReadState()
	if err != nil {
		a.log.Warn("firmware state", "err", err)
		return
	}
	switch {
	case st.Pending != nil && st.Pending.Slot == a.upd.slot && a.upd.booted:
		a.upd.set(UpdateStatus{State: "probation", Version: st.Pending.Version, Bundle: st.Pending.Bundle})
	case st.Last != nil:
		a.upd.set(UpdateStatus{State: st.Last.Result, Version: st.Last.Version, Bundle: st.Last.Bundle, Error: st.Last.Reason})
	}
}

// probation runs while this slot is pending: it commits once the agent
// is healthy (broker connected and enough sightings), or rolls back and
// restarts when the deadline passes first.
func (a *Agent) probation(ctx context.Context) error {
	st, err := a.upd.layout.ReadState()
	if err != nil || st.Pending == nil || st.Pending.Slot != a.upd.slot || !a.upd.booted {
		return nil
	}
	p := *st.Pending
	a.log.Info("new firmware on probation", "version", p.Version, "slot", p.Slot, "deadline", a.cfg.Update.HealthTimeout)
	a.mu.Lock()
	base := a.sightings
	a.mu.Unlock()
	deadline := time.NewTimer(a.cfg.Update.HealthTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			a.mu.Lock()
			n := a.sightings - base
			a.mu.Unlock()
			if n < uint64(a.cfg.Update.MinSightings) || a.bus == nil || !a.bus.Connected() {
				continue
			}
			out, err := a.upd.layout.Commit(a.hooks())
			if err != nil {
				a.log.Error("commit firmware", "err", err)
				return nil
			}
			a.log.Info("new firmware committed", "version", out.Version, "sightings", n)
			a.upd.set(UpdateStatus{State: "committed", Version: out.Version, Bundle: out.Bundle})
			a.publishStatusAsync()
			return nil
		case <-deadline.C:
			reason := fmt.Sprintf("no %d sightings with the broker connected within %v", a.cfg.Update.MinSightings, a.cfg.Update.HealthTimeout)
			a.log.Error("new firmware is unhealthy; rolling back", "version", p.Version, "reason", reason)
			if _, err := a.upd.layout.Rollback(reason); err != nil {
				a.log.Error("roll back", "err", err)
				return nil
			}
			a.requestRestart()
			return nil
		}
	}
}

// hooks returns the update step hooks. WHISKER_UPDATE_CRASH_AFTER=<step>
// makes the process kill itself after that step, as a power cut would;
// the crash tests use it.
func (a *Agent) hooks() update.Hooks {
	step := os.Getenv("WHISKER_UPDATE_CRASH_AFTER")
	return update.Hooks{Step: func(s string) {
		a.log.Debug("update step done", "step", s)
		if s == step {
			a.log.Warn("killing the process after an update step (WHISKER_UPDATE_CRASH_AFTER)", "step", s)
			crash()
		}
	}}
}

// startUpdate checks an update request and runs it in the background; the
// outcome is published on the result topic (under the same request id)
// and in the status.
func (a *Agent) startUpdate(ctx context.Context, req *CmdRequest) error {
	if !a.upd.booted {
		return errors.New("updates need the agent to be started by `whisker boot` (as the systemd unit does), which can switch slots")
	}
	if len(a.upd.opts.Trusted) == 0 {
		return errors.New("no update.trusted_keys are configured, so no bundle can be trusted")
	}
	if !a.upd.running.TryLock() {
		return errors.New("an update is already in progress")
	}
	source := req.URL
	if source == "" {
		source = req.Path
	}
	go func() {
		defer a.upd.running.Unlock()
		res := Result{RequestID: req.RequestID, Cmd: req.Cmd, Topic: TopicCmd}
		version, err := a.runUpdate(ctx, source, req.SHA256)
		if err != nil {
			a.log.Error("update failed; still running the current version", "err", err)
			a.upd.set(UpdateStatus{State: "failed", Bundle: req.SHA256, Error: err.Error()})
			res.Error = "update failed: " + err.Error()
		} else {
			res.Ok = true
			res.Update = &UpdateStatus{State: "switching", Version: version, Bundle: req.SHA256}
		}
		res.TS = timestamp(time.Now())
		if err := a.bus.PublishResult(res); err != nil {
			a.log.Warn("publish update result", "err", err)
		}
		a.publishStatusAsync()
		if err == nil {
			time.Sleep(200 * time.Millisecond) // let the status go out
			a.requestRestart()
		}
	}()
	return nil
}

func (a *Agent) runUpdate(ctx context.Context, source, sha string) (string, error) {
	hooks := a.hooks()
	a.upd.set(UpdateStatus{State: "downloading", Bundle: sha})
	a.publishStatusAsync()
	last := time.Now()
	path, err := update.Fetch(ctx, source, a.upd.layout.Downloads(), sha, a.cfg.Update.MaxSize, func(done, total int64) {
		if total > 0 && time.Since(last) > time.Second {
			last = time.Now()
			a.upd.set(UpdateStatus{State: "downloading", Bundle: sha, Progress: round4(float64(done) / float64(total))})
			a.publishStatusAsync()
		}
	})
	if err != nil {
		return "", err
	}
	hooks.Step(update.StepDownloaded)
	a.upd.set(UpdateStatus{State: "verifying", Bundle: sha})
	a.publishStatusAsync()
	slot, v, err := a.upd.layout.Stage(path, a.upd.opts, hooks)
	if err != nil {
		return "", err
	}
	version := v.Manifest.Version
	info := update.SlotInfo{Version: version, Bundle: sha, Backbone: a.identity}
	// A new backbone: re-embed every stored sample and train its head
	// before the switch, so that no label is lost.
	if manifestPath, ok := a.upd.layout.File(slot, bundle.KindBackboneManifest); ok {
		man, err := model.ReadManifest(manifestPath)
		if err != nil {
			return "", fmt.Errorf("staged backbone: %w", err)
		}
		info.Backbone = man.Identity
		if man.Identity != a.identity {
			if err := a.reembed(ctx, manifestPath, version, sha); err != nil {
				return "", fmt.Errorf("re-embedding the stored samples with the new backbone: %w", err)
			}
		}
	}
	a.upd.set(UpdateStatus{State: "switching", Version: version, Bundle: sha})
	if err := a.upd.layout.Activate(slot, info, hooks); err != nil {
		return "", err
	}
	a.log.Info("update staged and activated; restarting into it", "version", version, "slot", slot)
	return version, nil
}

// reembed computes features with a new backbone for every sample stored
// with the current one (from the sample's JPEG) and trains the new
// backbone's head. Samples already re-embedded (by an interrupted try) are
// not done twice: each carries a request id naming its source.
func (a *Agent) reembed(ctx context.Context, manifestPath, version, sha string) error {
	emb, err := embedder.Open(manifestPath, backbone.Options{Threads: a.cfg.BackboneThreads()})
	if err != nil {
		return err
	}
	defer emb.Close()
	man := emb.Backbone().Manifest()
	type item struct {
		id    uint64
		label string
		at    time.Time
		jpeg  []byte
	}
	var items []item
	err = a.store.ForEach(true, func(s learner.Sample) error {
		if s.Backbone == a.identity {
			items = append(items, item{s.ID, s.Label, s.Time, s.JPEG})
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.log.Info("re-embedding stored samples with the new backbone", "samples", len(items), "backbone", man.Identity)
	for i, it := range items {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		frame, err := camera.DecodeImage(it.jpeg)
		if err != nil {
			return fmt.Errorf("sample %d: %w", it.id, err)
		}
		feats, err := emb.Embed(&frame)
		if err != nil {
			return fmt.Errorf("sample %d: %w", it.id, err)
		}
		_, _, err = a.store.Add(learner.Sample{
			Label: it.label, Backbone: man.Identity, Time: it.at, JPEG: it.jpeg, Features: feats,
			Source: fmt.Sprintf("reembed:%d", it.id), RequestID: fmt.Sprintf("reembed:%s:%d", man.Identity, it.id),
		})
		if err != nil {
			return err
		}
		if i%10 == 0 || i == len(items)-1 {
			a.upd.set(UpdateStatus{State: "re-embedding", Version: version, Bundle: sha, Progress: round4(float64(i+1) / float64(len(items)))})
			a.publishStatusAsync()
		}
	}
	d, err := a.store.Dataset(man.Identity)
	if err != nil {
		return err
	}
	h, err := learner.Train(d, man.Identity, learner.TrainConfig{C: a.cfg.Learner.C, Balanced: a.cfg.Learner.Balanced}, nil)
	switch {
	case errors.Is(err, learner.ErrTooFewClasses):
		a.log.Info("no head to train for the new backbone yet", "samples", len(d.X))
	case err != nil:
		return err
	default:
		if err := h.Save(headPath(a.cfg.StateDir, man.Identity)); err != nil {
			return err
		}
		a.log.Info("head trained for the new backbone", "classes", h.Classes, "samples", h.Samples)
	}
	return nil
}

// headPath is where the head trained on a backbone is kept: one file per
// backbone identity, so that a rollback finds its head again.
func headPath(stateDir, identity string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, identity)
	return filepath.Join(stateDir, "heads", name+".json")
}

// requestRestart stops the agent so that its supervisor starts it again.
func (a *Agent) requestRestart() {
	a.restart.Store(true)
	if a.stop != nil {
		a.stop()
	}
}

// TrustedKeys is for tests and tools that need the device's keys.
func (a *Agent) TrustedKeys() []ed25519.PublicKey { return a.upd.opts.Trusted }
