// Package ota installs signed update bundles on a running agent: it
// downloads and verifies a bundle, stages it into the other firmware
// slot, re-embeds the stored samples when the bundle brings a new
// backbone (so that no label is lost), switches slots and restarts; after
// a switch it keeps the new version on probation until the agent is
// healthy, and rolls back when it is not. The slots themselves are
// firmware/update's; this package runs an update inside the agent.
package ota

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/update"
)

// ErrRestart is returned by the agent's Run when it stops to start a new
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

// Config controls installing bundles (the update section of the
// configuration; see `whisker bundle`).
type Config struct {
	// TrustedKeys are public key files (PEM); bundles signed by others are
	// refused. With none, every bundle is refused.
	TrustedKeys []string `yaml:"trusted_keys"`
	// MaxSize refuses larger bundles (bytes).
	MaxSize int64 `yaml:"max_size"`
	// HealthTimeout: a new version that has not produced MinSightings
	// sightings with the broker connected by then is rolled back.
	HealthTimeout time.Duration `yaml:"health_timeout"`
	MinSightings  int           `yaml:"min_sightings"`
	// MaxAttempts: starts of a new version before it is rolled back.
	MaxAttempts int `yaml:"max_attempts"`
	// LocalDir is the only directory a bundle is read from by path; ""
	// refuses every path. Relative to the configuration file.
	LocalDir string `yaml:"local_dir"`
	// AllowHosts, if not empty, are the hosts (or host:port) a bundle URL
	// and each of its redirects may name.
	AllowHosts []string `yaml:"allow_hosts"`
	// IdleTimeout cuts a download try that receives nothing this long;
	// DownloadTimeout ends the whole fetch, retries included.
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	DownloadTimeout time.Duration `yaml:"download_timeout"`
	// Retries are the further tries after a failed one, each resuming
	// where the last stopped.
	Retries int `yaml:"retries"`
}

// Default is no trusted keys (no updates), bundles up to 512 MiB, two
// minutes and two starts for a new version to prove itself, no bundles by
// path, and the download limits of firmware/update.
func Default() Config {
	return Config{MaxSize: 512 << 20, HealthTimeout: 2 * time.Minute, MinSightings: 3, MaxAttempts: 2,
		IdleTimeout: update.DefaultIdleTimeout, DownloadTimeout: update.DefaultTimeout, Retries: update.DefaultRetries}
}

// FetchOptions are the limits of a bundle download, from the configuration.
func (c *Config) FetchOptions() update.FetchOptions {
	return update.FetchOptions{MaxSize: c.MaxSize, LocalDir: c.LocalDir, AllowHosts: c.AllowHosts,
		IdleTimeout: c.IdleTimeout, Timeout: c.DownloadTimeout, Retries: c.Retries}
}

// Validate names the first bad key (update.*) with its value.
func (c *Config) Validate() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: update.%s: %v %s", key, val, why)
	}
	switch {
	case c.MaxSize < 1<<20:
		return bad("max_size", c.MaxSize, "must be at least 1048576 bytes")
	case c.HealthTimeout < 5*time.Second:
		return bad("health_timeout", c.HealthTimeout, "must be at least 5s")
	case c.MinSightings < 1:
		return bad("min_sightings", c.MinSightings, "must be at least 1")
	case c.MaxAttempts < 1 || c.MaxAttempts > 10:
		return bad("max_attempts", c.MaxAttempts, "must be between 1 and 10")
	// Zero would quietly mean firmware/update's default: say so instead.
	case c.IdleTimeout <= 0:
		return bad("idle_timeout", c.IdleTimeout, "must be above 0")
	case c.DownloadTimeout <= 0:
		return bad("download_timeout", c.DownloadTimeout, "must be above 0")
	}
	// The download options name their own keys (update.local_dir, ...).
	if err := c.FetchOptions().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Layout is the firmware slots of a state directory.
func Layout(stateDir string) update.Layout {
	return update.Layout{Dir: filepath.Join(stateDir, "firmware")}
}

// SlotBackbone returns the backbone manifest of the slot this process was
// started from by `whisker boot`, if it carries one: the agent opens that
// backbone instead of the configured one.
func SlotBackbone(stateDir string) (string, bool) {
	slot := os.Getenv(EnvSlot)
	if os.Getenv(EnvBooted) != "1" || slot == "" {
		return "", false
	}
	return Layout(stateDir).File(slot, bundle.KindBackboneManifest)
}

// Agent is what an update needs of the running agent.
type Agent struct {
	// Reembed computes the stored samples' features with the backbone of
	// a manifest and trains that backbone's head (progress from 0 to 1).
	Reembed func(ctx context.Context, manifest string, progress func(float64)) error
	// Health says how many sightings the agent has made so far and
	// whether the broker is connected: probation watches both.
	Health func() (sightings uint64, connected bool)
	// Changed is called whenever the update status changes.
	Changed func()
	// Finish publishes the outcome of an update request and the status,
	// and returns once both are acknowledged (or failed to be).
	Finish func(protocol.Result)
	// Restart stops the agent so that its supervisor starts it again.
	Restart func()
}

// Updater runs updates and probation for one agent process.
type Updater struct {
	cfg      Config
	log      *slog.Logger
	agent    Agent
	version  string
	identity string
	layout   update.Layout
	booted   bool   // started by `whisker boot`, which can switch slots
	slot     string // the slot this process runs from
	opts     bundle.CheckOptions
	running  sync.Mutex // one update at a time

	mu     sync.Mutex
	status *protocol.UpdateStatus
}

// New prepares the updater of an agent running version with the backbone
// identity, and reports how the last update ended, if this process is the
// first to start after it.
func New(cfg Config, stateDir, version, identity string, log *slog.Logger, agent Agent) (*Updater, error) {
	keys, err := bundle.LoadPublicKeys(cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("update.trusted_keys: %w", err)
	}
	u := &Updater{
		cfg: cfg, log: log, agent: agent, version: version, identity: identity,
		layout: Layout(stateDir),
		booted: os.Getenv(EnvBooted) == "1",
		slot:   os.Getenv(EnvSlot),
		opts:   bundle.CheckOptions{Trusted: keys, AgentVersion: version},
	}
	st, err := u.layout.ReadState()
	switch {
	case err != nil:
		log.Warn("firmware state", "err", err)
	case st.Pending != nil && st.Pending.Slot == u.slot && u.booted:
		u.set(protocol.UpdateStatus{State: "probation", Version: st.Pending.Version, Bundle: st.Pending.Bundle})
	case st.Last != nil:
		u.set(protocol.UpdateStatus{State: st.Last.Result, Version: st.Last.Version, Bundle: st.Last.Bundle, Error: st.Last.Reason})
	}
	if fb := u.Fallback(); fb != nil {
		log.Error("firmware fallback: not running the slot that should run", "from", slotLabel(fb.From), "version", fb.Version,
			"running", slotLabel(fb.To), "reason", fb.Reason, "untrusted_keys", strings.Join(fb.UntrustedKeys, ","))
	}
	return u, nil
}

func slotLabel(s string) string {
	if s == "" {
		return "installed binary"
	}
	return s
}

// TrustedKeys are the keys bundles must be signed with.
func (u *Updater) TrustedKeys() []ed25519.PublicKey { return u.opts.Trusted }

func (u *Updater) set(s protocol.UpdateStatus) {
	s.At = protocol.Timestamp(time.Now())
	u.mu.Lock()
	u.status = &s
	u.mu.Unlock()
	if u.agent.Changed != nil {
		u.agent.Changed()
	}
}

// Status is how the last or current update is going (nil: none yet).
func (u *Updater) Status() *protocol.UpdateStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.status == nil {
		return nil
	}
	c := *u.status
	return &c
}

// Firmware describes what this process runs, and the boot fallback in
// force, if any.
func (u *Updater) Firmware() protocol.FirmwareStatus {
	fs := protocol.FirmwareStatus{Slot: u.slot, Version: u.version, Fallback: u.Fallback()}
	if st, err := u.layout.ReadState(); err == nil && u.slot != "" {
		if info, ok := st.Slots[u.slot]; ok {
			fs.Version, fs.Bundle = info.Version, info.Bundle
		}
	}
	return fs
}

// Fallback is the boot fallback in force (the device runs something other
// than the slot that should run), or nil.
func (u *Updater) Fallback() *protocol.Fallback {
	fb := u.layout.Fallback()
	if fb == nil {
		return nil
	}
	return &protocol.Fallback{From: fb.From, Version: fb.Version, To: fb.To, Reason: fb.Reason,
		UntrustedKeys: fb.UntrustedKeys, At: protocol.Timestamp(fb.At)}
}

// Report is the last update step signed by the device's key, or nil (no
// key, or no update yet).
func (u *Updater) Report() *attest.Envelope {
	env, err := u.layout.Report()
	if err != nil {
		u.log.Debug("signed update report", "err", err)
		return nil
	}
	return env
}

// Probation runs while this slot is pending: it commits once the agent
// is healthy (broker connected and enough sightings), or rolls back and
// restarts when the deadline passes first. It returns at once when the
// slot is not on probation.
func (u *Updater) Probation(ctx context.Context) error {
	st, err := u.layout.ReadState()
	if err != nil || st.Pending == nil || st.Pending.Slot != u.slot || !u.booted {
		return nil
	}
	p := *st.Pending
	u.log.Info("new firmware on probation", "version", p.Version, "slot", p.Slot, "deadline", u.cfg.HealthTimeout)
	base, _ := u.agent.Health()
	deadline := time.NewTimer(u.cfg.HealthTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			n, connected := u.agent.Health()
			if n-base < uint64(u.cfg.MinSightings) || !connected {
				continue
			}
			out, err := u.layout.Commit(hooks(u.log))
			if err != nil {
				u.log.Error("commit firmware", "err", err)
				return nil
			}
			u.log.Info("new firmware committed", "version", out.Version, "sightings", n-base)
			u.set(protocol.UpdateStatus{State: "committed", Version: out.Version, Bundle: out.Bundle})
			return nil
		case <-deadline.C:
			reason := fmt.Sprintf("no %d sightings with the broker connected within %v", u.cfg.MinSightings, u.cfg.HealthTimeout)
			u.log.Error("new firmware is unhealthy; rolling back", "version", p.Version, "reason", reason)
			if _, err := u.layout.Rollback(reason); err != nil {
				u.log.Error("roll back", "err", err)
				return nil
			}
			u.agent.Restart()
			return nil
		}
	}
}

// hooks returns the update step hooks. WHISKER_UPDATE_CRASH_AFTER=<step>
// makes the process kill itself after that step, as a power cut would;
// the crash tests use it.
func hooks(log *slog.Logger) update.Hooks {
	step := os.Getenv("WHISKER_UPDATE_CRASH_AFTER")
	return update.Hooks{Step: func(s string) {
		log.Debug("update step done", "step", s)
		if s == step {
			log.Warn("killing the process after an update step (WHISKER_UPDATE_CRASH_AFTER)", "step", s)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}}
}

// Start checks an update request and runs it in the background. The
// outcome is answered through Agent.Finish under the same request id, with
// that step's report signed by the device's key when it has one, and a
// successful update restarts the agent into the new slot. A request for
// the bundle the device already runs, committed, is answered at once with
// a signed report saying so.
func (u *Updater) Start(ctx context.Context, req *protocol.CmdRequest) error {
	if !u.booted {
		return errors.New("updates need the agent to be started by `whisker boot` (as the systemd unit does), which can switch slots")
	}
	if len(u.opts.Trusted) == 0 {
		return errors.New("no update.trusted_keys are configured, so no bundle can be trusted")
	}
	// One update at a time: a version on probation is settled first
	// (refused here, before anything is fetched; Stage refuses it too).
	st, err := u.layout.ReadState()
	if err != nil {
		return fmt.Errorf("update refused: firmware state: %w", err)
	}
	if p := st.Pending; p != nil {
		return fmt.Errorf("update refused: %w: version %s in slot %s must be committed or rolled back first", update.ErrBusy, p.Version, p.Slot)
	}
	if !u.running.TryLock() {
		return errors.New("an update is already in progress")
	}
	source := req.URL
	if source == "" {
		source = req.Path
	}
	id, sha := req.RequestID, req.SHA256
	go func() {
		res := protocol.Result{RequestID: id, Cmd: req.Cmd, Topic: protocol.TopicCmd}
		// Already running it, committed: nothing to fetch.
		if env, err := u.layout.AttestCurrent(id, sha); err == nil {
			u.running.Unlock()
			fw := u.Firmware()
			u.log.Info("update asks for the bundle this device runs; answered with a signed report", "version", fw.Version, "request_id", id)
			res.Ok, res.UpdateReport, res.TS = true, env, protocol.Timestamp(time.Now())
			res.Update = &protocol.UpdateStatus{State: "current", Version: fw.Version, Bundle: sha, At: res.TS}
			u.agent.Finish(res)
			return
		}
		version, err := u.run(ctx, id, source, sha)
		res.TS = protocol.Timestamp(time.Now())
		if err != nil {
			u.log.Error("update failed; still running the current version", "err", err, "request_id", id)
			res.UpdateReport = u.attestFailed(id, sha, err)
			u.set(protocol.UpdateStatus{State: "failed", Bundle: sha, Error: err.Error()})
			res.Error = "update failed: " + err.Error()
			u.running.Unlock() // over: the next update may start
			u.agent.Finish(res)
			return
		}
		// Switched: no other update until the restart.
		res.Ok = true
		res.Update = &protocol.UpdateStatus{State: "switching", Version: version, Bundle: sha}
		res.UpdateReport = u.Report()
		u.agent.Finish(res)
		u.agent.Restart()
	}()
	return nil
}

// attestFailed signs and stores that update id of bundle sha stopped
// before the switch, and returns the report (nil when the device has no
// key). An update that got as far as marking its slot pending is left to
// boot, which reports how it ends.
func (u *Updater) attestFailed(id, sha string, cause error) *attest.Envelope {
	if st, err := u.layout.ReadState(); err == nil && st.Pending != nil && st.Pending.Request == id {
		return u.Report()
	}
	env, err := u.layout.AttestFailed(id, sha, cause.Error())
	if err != nil {
		if !errors.Is(err, update.ErrNoDeviceKey) {
			u.log.Error("the failed update's report is not signed", "err", err)
		}
		return nil
	}
	return env
}

func (u *Updater) run(ctx context.Context, id, source, sha string) (string, error) {
	hk := hooks(u.log)
	u.set(protocol.UpdateStatus{State: "downloading", Bundle: sha})
	opts := u.cfg.FetchOptions()
	last := time.Now()
	opts.Progress = func(done, total int64) {
		if total > 0 && time.Since(last) > time.Second {
			last = time.Now()
			u.set(protocol.UpdateStatus{State: "downloading", Bundle: sha, Progress: round4(float64(done) / float64(total))})
		}
	}
	path, err := u.layout.FetchBundle(ctx, source, sha, opts)
	if err != nil {
		var le *update.LocalError
		if errors.As(err, &le) {
			// Why the path does not hold the bundle stays on the device:
			// the answer is the same for every such path.
			u.log.Warn("no bundle at the local path", "path", source, "cause", le.Detail, "request_id", id)
		}
		return "", err
	}
	hk.Step(update.StepDownloaded)
	u.set(protocol.UpdateStatus{State: "verifying", Bundle: sha})
	slot, v, err := u.layout.Stage(path, u.opts, hk)
	if err != nil {
		return "", err
	}
	version := v.Manifest.Version
	info := update.SlotInfo{Version: version, Bundle: sha, Backbone: u.identity, Request: id}
	// A new backbone: re-embed every stored sample and train its head
	// before the switch, so that no label is lost.
	if manifest, ok := u.layout.File(slot, bundle.KindBackboneManifest); ok {
		identity, err := manifestIdentity(manifest)
		if err != nil {
			return "", fmt.Errorf("staged backbone: %w", err)
		}
		info.Backbone = identity
		if identity != u.identity {
			err := u.agent.Reembed(ctx, manifest, func(done float64) {
				u.set(protocol.UpdateStatus{State: "re-embedding", Version: version, Bundle: sha, Progress: round4(done)})
			})
			if err != nil {
				return "", fmt.Errorf("re-embedding the stored samples with the new backbone: %w", err)
			}
		}
	}
	u.set(protocol.UpdateStatus{State: "switching", Version: version, Bundle: sha})
	if err := u.layout.Activate(slot, info, hk); err != nil {
		return "", err
	}
	u.log.Info("update staged and activated; restarting into it", "version", version, "slot", slot, "request_id", id)
	return version, nil
}

func round4(x float64) float64 {
	return float64(int64(x*10000+0.5)) / 10000
}

func manifestIdentity(path string) (string, error) {
	man, err := model.ReadManifest(path)
	if err != nil {
		return "", err
	}
	return man.Identity, nil
}
