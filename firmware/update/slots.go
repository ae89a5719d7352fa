// Package update installs bundles on a device with two slots, A and B: a
// bundle is verified, staged into the slot not in use, and the `current`
// link is switched atomically. The new slot is on probation until the
// agent running from it proves healthy and commits it; if it does not (it
// crashes, or produces no sightings in time) the device switches back by
// itself. Every step leaves the state directory in a form the boot step
// can always run: a complete, verified slot, or the installed binary.
package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/internal/atomicfile"
)

// Steps of an update, in order; Hooks.Step is called after each.
const (
	StepDownloaded = "downloaded"
	StepVerified   = "verified"
	StepStaged     = "staged"
	StepMarked     = "marked" // pending recorded, link not switched yet
	StepSwitched   = "switched"
	StepCommitted  = "committed"
)

// AllSteps lists the steps a crash can follow.
var AllSteps = []string{StepDownloaded, StepVerified, StepStaged, StepMarked, StepSwitched, StepCommitted}

// Hooks observe an update's progress.
type Hooks struct {
	// Step is called after each step completes.
	Step func(step string)
}

func (h Hooks) step(s string) {
	if h.Step != nil {
		h.Step(s)
	}
}

// stateFormat is the version of state.json.
const stateFormat = 1

// State is the slots' bookkeeping, in <dir>/state.json. The
// anti-rollback floor is kept apart, in <dir>/floor (see Floor).
type State struct {
	Format    int                 `json:"format"`
	Committed string              `json:"committed,omitempty"` // the slot known good
	Pending   *Pending            `json:"pending,omitempty"`
	Slots     map[string]SlotInfo `json:"slots,omitempty"`
	Last      *Outcome            `json:"last,omitempty"`
	// Installed is the version of the installed binary, as `whisker boot`
	// last saw it: what the device runs when no slot is committed.
	Installed string `json:"installed,omitempty"`
	// Staged is the slot Stage filled last, not yet activated.
	Staged *Staged `json:"staged,omitempty"`
	// Fallback is set while boot runs something other than the slot it
	// should, because that slot did not verify.
	Fallback *Fallback `json:"fallback,omitempty"`
	// Report is the last update step, signed by the device's key (absent
	// when no key is enrolled), for the agent to publish.
	Report *attest.Envelope `json:"report,omitempty"`
}

// SlotInfo describes what a slot holds.
type SlotInfo struct {
	Version  string `json:"version"`
	Bundle   string `json:"bundle"` // sha256 of the bundle file
	Backbone string `json:"backbone,omitempty"`
	// Request is the id of the update request that installed the slot;
	// the signed reports of the update carry it.
	Request string `json:"request,omitempty"`
}

// Staged is a slot filled by Stage, waiting for Activate.
type Staged struct {
	Slot          string    `json:"slot"`
	Version       string    `json:"version"`
	DowngradeFrom string    `json:"downgrade_from,omitempty"`
	At            time.Time `json:"at"`
}

// Pending is a slot on probation.
type Pending struct {
	Slot     string    `json:"slot"`
	Previous string    `json:"previous"` // "" means the installed binary
	Version  string    `json:"version"`
	Bundle   string    `json:"bundle"`
	Request  string    `json:"request,omitempty"`
	Since    time.Time `json:"since"`
	Attempts int       `json:"attempts"`
}

// Outcome is how the last update ended.
type Outcome struct {
	Version string    `json:"version"`
	Bundle  string    `json:"bundle"`
	Request string    `json:"request,omitempty"`
	Result  string    `json:"result"` // committed, rolled_back, failed
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Errors that refuse an update before anything changes.
var (
	// ErrBusy: a new version is on probation; it must be committed or
	// rolled back before the next update.
	ErrBusy = errors.New("an update is already on probation")
	// ErrNotStaged: Activate was asked for a slot Stage did not fill.
	ErrNotStaged = errors.New("slot was not staged")
)

// Layout is a device's firmware directory:
//
//	<dir>/slots/a, <dir>/slots/b   each part in parts/<part>/ with its signed manifest
//	<dir>/current -> slots/a       the slot to run
//	<dir>/state.json
//	<dir>/floor                    the anti-rollback floor
//	<dir>/device.key               the device's report-signing key, if enrolled
//	<dir>/downloads/
type Layout struct {
	Dir string
}

// Slot names.
const (
	SlotA = "a"
	SlotB = "b"
)

func (l Layout) slotDir(s string) string { return filepath.Join(l.Dir, "slots", s) }
func (l Layout) statePath() string       { return filepath.Join(l.Dir, "state.json") }
func (l Layout) currentLink() string     { return filepath.Join(l.Dir, "current") }
func (l Layout) Downloads() string       { return filepath.Join(l.Dir, "downloads") }
func (l Layout) PartDir(slot, part string) string {
	return filepath.Join(l.slotDir(slot), "parts", part)
}

// ReadState loads state.json (an empty state if there is none).
func (l Layout) ReadState() (*State, error) {
	data, err := os.ReadFile(l.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return &State{Format: stateFormat, Slots: map[string]SlotInfo{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", l.statePath(), err)
	}
	if s.Format != stateFormat {
		return nil, fmt.Errorf("%s: format %d, this build reads %d", l.statePath(), s.Format, stateFormat)
	}
	if s.Slots == nil {
		s.Slots = map[string]SlotInfo{}
	}
	return &s, nil
}

// WriteState stores state.json atomically (write, fsync, rename, fsync
// the directory).
func (l Layout) WriteState(s *State) error {
	s.Format = stateFormat
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(l.statePath(), data, 0o644)
}

// Current is the slot the link names ("" when there is none).
func (l Layout) Current() string {
	target, err := os.Readlink(l.currentLink())
	if err != nil {
		return ""
	}
	s := filepath.Base(target)
	if s != SlotA && s != SlotB {
		return ""
	}
	return s
}

// switchTo points `current` at a slot atomically (a new link renamed over
// the old one), or removes it for "" (run the installed binary).
func (l Layout) switchTo(slot string) error {
	if slot == "" {
		if err := os.Remove(l.currentLink()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return atomicfile.SyncDir(l.Dir)
	}
	tmp := l.currentLink() + ".new"
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join("slots", slot), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, l.currentLink()); err != nil {
		return err
	}
	return atomicfile.SyncDir(l.Dir)
}

func other(slot string) string {
	if slot == SlotA {
		return SlotB
	}
	return SlotA
}

// VerifySlot checks every part of a slot against its signed manifest.
func (l Layout) VerifySlot(slot string, opt bundle.CheckOptions) error {
	parts, err := os.ReadDir(filepath.Join(l.slotDir(slot), "parts"))
	if err != nil {
		return fmt.Errorf("slot %s: %w", slot, err)
	}
	if len(parts) == 0 {
		return fmt.Errorf("slot %s is empty", slot)
	}
	for _, p := range parts {
		if _, ok := bundle.Parts[p.Name()]; !ok {
			return fmt.Errorf("slot %s: unknown part %q", slot, p.Name())
		}
		if _, err := bundle.VerifyPart(l.PartDir(slot, p.Name()), p.Name(), opt); err != nil {
			return fmt.Errorf("slot %s, part %s: %w", slot, p.Name(), err)
		}
	}
	return nil
}

// SlotKeys lists, for each part of a slot, the keys its manifest is
// signed with (whether trusted or not): what a key rotation must cover
// before an old key is removed.
func (l Layout) SlotKeys(slot string) (map[string][]string, error) {
	parts, err := os.ReadDir(filepath.Join(l.slotDir(slot), "parts"))
	if err != nil {
		return nil, fmt.Errorf("slot %s: %w", slot, err)
	}
	keys := map[string][]string{}
	for _, p := range parts {
		sig, err := os.ReadFile(filepath.Join(l.PartDir(slot, p.Name()), bundle.SignatureName))
		if err != nil {
			return nil, fmt.Errorf("slot %s, part %s: %w", slot, p.Name(), err)
		}
		ids, err := bundle.SignatureKeyIDs(sig)
		if err != nil {
			return nil, fmt.Errorf("slot %s, part %s: %w", slot, p.Name(), err)
		}
		keys[p.Name()] = ids
	}
	return keys, nil
}

// File returns the path of a kind's file in a slot, if the slot has it.
func (l Layout) File(slot, kind string) (string, bool) {
	if slot == "" {
		return "", false
	}
	p := filepath.Join(l.PartDir(slot, bundle.PartOf(kind)), bundle.FileNames[kind])
	_, err := os.Stat(p)
	return p, err == nil
}

// target is the slot an update may fill: never the committed one, which
// stays the known-good fallback.
func (l Layout) target(st *State) (string, error) {
	if st.Committed != "" {
		t := other(st.Committed)
		if cur := l.Current(); cur == t {
			return "", fmt.Errorf("slot %s runs but slot %s is the committed one; boot the device before updating", cur, st.Committed)
		}
		return t, nil
	}
	if l.Current() == SlotA {
		return SlotB, nil
	}
	return SlotA, nil
}

// Stage extracts a bundle into the slot that is not committed, carrying
// forward the parts of the running slot that the bundle does not replace.
// It returns the staged slot. It refuses while an update is on probation
// (ErrBusy) and a bundle that is not newer than every version the device
// has committed, unless the bundle is a signed downgrade from the version
// the device runs (ErrNotNewer, ErrDowngrade). The running and the
// committed slots are not touched.
func (l Layout) Stage(bundlePath string, opt bundle.CheckOptions, hooks Hooks) (string, *bundle.Verified, error) {
	st, err := l.ReadState()
	if err != nil {
		return "", nil, err
	}
	if p := st.Pending; p != nil {
		return "", nil, fmt.Errorf("%w: version %s in slot %s must be committed or rolled back first", ErrBusy, p.Version, p.Slot)
	}
	// The signed manifest first: refuse an old bundle before extracting it.
	head, err := bundle.Open(bundlePath, opt)
	if err != nil {
		return "", nil, err
	}
	floor, err := l.Floor()
	if err != nil {
		return "", nil, err
	}
	if err := admit(st, floor, head.Manifest.Version, head.Manifest.DowngradeFrom); err != nil {
		return "", nil, err
	}
	target, err := l.target(st)
	if err != nil {
		return "", nil, err
	}
	cur := l.Current()
	if err := os.MkdirAll(filepath.Join(l.Dir, "slots"), 0o755); err != nil {
		return "", nil, err
	}
	l.removeStale()
	tmp, err := os.MkdirTemp(filepath.Join(l.Dir, "slots"), ".stage-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(tmp)
	extracted := filepath.Join(tmp, "bundle")
	if err := os.Mkdir(extracted, 0o755); err != nil {
		return "", nil, err
	}
	v, err := bundle.Extract(bundlePath, extracted, opt)
	if err != nil {
		return "", nil, err
	}
	if v.Manifest.Version != head.Manifest.Version || v.Manifest.DowngradeFrom != head.Manifest.DowngradeFrom {
		return "", nil, fmt.Errorf("%w: the bundle changed while it was read", bundle.ErrCorrupt)
	}
	hooks.step(StepVerified)
	slot := filepath.Join(tmp, "slot")
	for part, kinds := range bundle.Parts {
		dst := filepath.Join(slot, "parts", part)
		if slices.ContainsFunc(kinds, v.Manifest.Has) {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return "", nil, err
			}
			names := []string{bundle.ManifestName, bundle.SignatureName}
			for _, k := range kinds {
				if v.Manifest.Has(k) {
					names = append(names, bundle.FileNames[k])
				}
			}
			for _, n := range names {
				if err := copyFile(filepath.Join(extracted, n), filepath.Join(dst, n)); err != nil {
					return "", nil, err
				}
			}
			continue
		}
		if cur == "" {
			continue
		}
		src := l.PartDir(cur, part)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := copyTree(src, dst); err != nil {
			return "", nil, err
		}
	}
	if err := syncTree(slot); err != nil {
		return "", nil, err
	}
	// Replace the old inactive slot with the new one.
	final := l.slotDir(target)
	if err := os.RemoveAll(final); err != nil {
		return "", nil, err
	}
	if err := os.Rename(slot, final); err != nil {
		return "", nil, err
	}
	if err := atomicfile.SyncDir(filepath.Join(l.Dir, "slots")); err != nil {
		return "", nil, err
	}
	if err := l.VerifySlot(target, opt); err != nil {
		return "", nil, fmt.Errorf("staged slot does not verify: %w", err)
	}
	st.Staged = &Staged{Slot: target, Version: v.Manifest.Version, DowngradeFrom: v.Manifest.DowngradeFrom, At: time.Now().UTC()}
	if err := l.WriteState(st); err != nil {
		return "", nil, err
	}
	hooks.step(StepStaged)
	return target, v, nil
}

// removeStale removes what an interrupted Stage left in slots/.
func (l Layout) removeStale() {
	stale, _ := filepath.Glob(filepath.Join(l.Dir, "slots", ".stage-*"))
	for _, p := range stale {
		os.RemoveAll(p)
	}
}

// Activate puts a staged slot on probation and switches to it. The agent
// must then restart from the new slot and Commit within its deadline. The
// slot must be the one Stage filled last, with info.Version; the version
// rules of Stage are checked again.
func (l Layout) Activate(slot string, info SlotInfo, hooks Hooks) error {
	st, err := l.ReadState()
	if err != nil {
		return err
	}
	if p := st.Pending; p != nil {
		return fmt.Errorf("%w: version %s in slot %s", ErrBusy, p.Version, p.Slot)
	}
	if slot == st.Committed {
		return fmt.Errorf("slot %s holds the committed version; it is never overwritten", slot)
	}
	sg := st.Staged
	if sg == nil || sg.Slot != slot || sg.Version != info.Version {
		return fmt.Errorf("%w: %s with version %s", ErrNotStaged, slot, info.Version)
	}
	floor, err := l.Floor()
	if err != nil {
		return err
	}
	if err := admit(st, floor, sg.Version, sg.DowngradeFrom); err != nil {
		return err
	}
	prev := l.Current()
	st.Slots[slot] = info
	st.Pending = &Pending{Slot: slot, Previous: prev, Version: info.Version, Bundle: info.Bundle, Request: info.Request, Since: time.Now().UTC()}
	st.Staged = nil
	st.Report = l.signReport(st, attest.Report{RequestID: info.Request, Event: attest.EventSwitching, Bundle: info.Bundle,
		Version: info.Version, Running: attest.Running{Slot: slot, Version: info.Version, Bundle: info.Bundle}})
	if err := l.WriteState(st); err != nil {
		return err
	}
	hooks.step(StepMarked)
	if err := l.switchTo(slot); err != nil {
		return err
	}
	hooks.step(StepSwitched)
	// Only the bundles of the two slots stay.
	l.Prune()
	return nil
}

// Commit marks the pending slot good, raises the anti-rollback floor to
// its version and clears a boot fallback.
func (l Layout) Commit(hooks Hooks) (*Outcome, error) {
	st, err := l.ReadState()
	if err != nil {
		return nil, err
	}
	if st.Pending == nil {
		return st.Last, nil
	}
	p := st.Pending
	st.Committed = p.Slot
	st.Last = &Outcome{Version: p.Version, Bundle: p.Bundle, Request: p.Request, Result: "committed", At: time.Now().UTC()}
	st.Pending = nil
	st.Fallback = nil
	st.Report = l.signReport(st, attest.Report{RequestID: p.Request, Event: attest.EventCommitted, Bundle: p.Bundle,
		Version: p.Version, Running: attest.Running{Slot: p.Slot, Version: p.Version, Bundle: p.Bundle}})
	if err := l.WriteState(st); err != nil {
		return nil, err
	}
	// After the state: a power cut in between leaves the committed slot's
	// version, which counts towards the floor anyway.
	if err := l.raiseFloor(p.Version); err != nil {
		return nil, err
	}
	hooks.step(StepCommitted)
	return st.Last, nil
}

// Rollback switches back from the pending slot to the previous one.
func (l Layout) Rollback(reason string) (*Outcome, error) {
	st, err := l.ReadState()
	if err != nil {
		return nil, err
	}
	if st.Pending == nil {
		return nil, errors.New("no update is pending")
	}
	p := st.Pending
	if err := l.switchTo(p.Previous); err != nil {
		return nil, err
	}
	st.Last = &Outcome{Version: p.Version, Bundle: p.Bundle, Request: p.Request, Result: "rolled_back", Reason: reason, At: time.Now().UTC()}
	st.Pending = nil
	st.Report = l.signReport(st, attest.Report{RequestID: p.Request, Event: attest.EventRolledBack, Bundle: p.Bundle,
		Version: p.Version, Running: st.running(p.Previous), Reason: reason})
	return st.Last, l.WriteState(st)
}

// running describes a slot for a report.
func (st *State) running(slot string) attest.Running {
	if slot == "" {
		return attest.Running{Version: st.Installed}
	}
	info := st.Slots[slot]
	return attest.Running{Slot: slot, Version: info.Version, Bundle: info.Bundle}
}

func slotName(s string) string {
	if s == "" {
		return "the installed binary"
	}
	return "slot " + s
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// syncTree fsyncs every file and directory under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
