package update

import (
	"errors"
	"fmt"
	"time"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
)

// Fallback says that boot runs something other than the slot it should:
// that slot did not verify (its files were changed, or its signing key is
// no longer trusted), or the firmware state could not be read. It stays in
// the state, and the agent reports it, until a new version is committed or
// the slot verifies again.
type Fallback struct {
	From    string `json:"from"`              // the slot that should have run
	Version string `json:"version,omitempty"` // its version
	To      string `json:"to"`                // what runs instead: a slot, or "" for the installed binary
	Reason  string `json:"reason"`
	// UntrustedKeys are the keys the refused slot is signed with when none
	// of them is trusted any more (a key removed too early).
	UntrustedKeys []string  `json:"untrusted_keys,omitempty"`
	At            time.Time `json:"at"`
}

// BootOptions are what `whisker boot` passes.
type BootOptions struct {
	Check       bundle.CheckOptions
	MaxAttempts int
	// Installed is the version of the installed binary (the one running
	// boot). It raises the anti-rollback floor; a version that does not
	// parse (a development build) is not recorded.
	Installed string
	// Log gets every decision worth a line; nil discards them.
	Log func(format string, args ...any)
}

// BootResult is what boot decided.
type BootResult struct {
	Slot    string // the slot to run, "" for the installed binary
	Version string // its version, when a slot
	// Fallback is set when boot runs something other than the slot it
	// should have (a verification failure): the caller must say so loudly.
	Fallback *Fallback
}

// Boot decides what a device runs; see BootWith.
func (l Layout) Boot(opt bundle.CheckOptions, maxAttempts int, log func(string, ...any)) (string, error) {
	r, err := l.BootWith(BootOptions{Check: opt, MaxAttempts: maxAttempts, Log: log})
	return r.Slot, err
}

// BootWith decides what a device runs: it is called on every start, before
// the agent, and never fails for lack of a good slot (it falls back to the
// installed binary, slot ""). It counts start attempts of a pending slot
// and rolls back after MaxAttempts, drops a pending mark whose switch never
// happened, and refuses a slot that does not verify, recording a Fallback.
// A committed slot refused earlier runs again once it verifies (its key
// trusted again).
func (l Layout) BootWith(o BootOptions) (BootResult, error) {
	log := o.Log
	if log == nil {
		log = func(string, ...any) {}
	}
	if o.MaxAttempts < 1 {
		o.MaxAttempts = 1
	}
	now := time.Now().UTC()
	st, err := l.ReadState()
	if err != nil {
		log("firmware state unreadable (%v); starting the installed binary", err)
		return BootResult{Fallback: &Fallback{Reason: fmt.Sprintf("firmware state unreadable: %v", err), At: now}}, nil
	}
	dirty := false
	if _, err := bundle.ParseVersion(o.Installed); err == nil {
		if st.Installed != o.Installed {
			st.Installed, dirty = o.Installed, true
		}
		if err := l.raiseFloor(o.Installed); err != nil {
			log("anti-rollback floor: %v", err)
		}
	}
	cur := l.Current()
	if p := st.Pending; p != nil {
		switch {
		case p.Slot != cur:
			log("update to %s was interrupted before the switch; staying on %s", p.Version, slotName(cur))
			reason := "interrupted before the switch"
			st.Last = &Outcome{Version: p.Version, Bundle: p.Bundle, Request: p.Request, Result: "failed", Reason: reason, At: now}
			st.Pending = nil
			st.Report = l.signReport(st, attest.Report{RequestID: p.Request, Event: attest.EventFailed, Bundle: p.Bundle,
				Version: p.Version, Running: st.running(cur), Reason: reason})
		case p.Attempts >= o.MaxAttempts:
			log("slot %s (%s) failed to become healthy in %d starts; rolling back to %s", cur, p.Version, p.Attempts, slotName(p.Previous))
			if err := l.switchTo(p.Previous); err != nil {
				return BootResult{}, err
			}
			reason := fmt.Sprintf("did not become healthy in %d starts", p.Attempts)
			st.Last = &Outcome{Version: p.Version, Bundle: p.Bundle, Request: p.Request, Result: "rolled_back", Reason: reason, At: now}
			st.Pending = nil
			cur = p.Previous
			st.Report = l.signReport(st, attest.Report{RequestID: p.Request, Event: attest.EventRolledBack, Bundle: p.Bundle,
				Version: p.Version, Running: st.running(cur), Reason: reason})
		default:
			p.Attempts++
		}
		dirty = true
	}
	// A committed slot refused at an earlier start: run it again if it
	// verifies now.
	if fb := st.Fallback; fb != nil && st.Pending == nil && fb.From != "" && fb.From == st.Committed && cur == fb.To {
		if err := l.VerifySlot(fb.From, o.Check); err == nil {
			log("slot %s (%s) verifies again; running it", fb.From, fb.Version)
			if err := l.switchTo(fb.From); err != nil {
				return BootResult{}, err
			}
			cur = fb.From
			st.Fallback = nil
			dirty = true
		}
	}
	res := BootResult{Slot: cur}
	if cur != "" {
		if err := l.VerifySlot(cur, o.Check); err != nil {
			fb := &Fallback{From: cur, Version: st.Slots[cur].Version, Reason: fmt.Sprintf("slot %s does not verify: %v", cur, err), At: now}
			var ue *bundle.UntrustedError
			if errors.As(err, &ue) {
				fb.UntrustedKeys = ue.KeyIDs
			}
			log("slot %s does not verify (%v)", cur, err)
			if alt := other(cur); st.Committed == alt && st.Slots[alt].Version != "" && l.VerifySlot(alt, o.Check) == nil {
				fb.To = alt
			}
			log("switching to %s", slotName(fb.To))
			if err := l.switchTo(fb.To); err != nil {
				return BootResult{}, err
			}
			res = BootResult{Slot: fb.To, Fallback: fb}
			if p := st.Pending; p != nil && p.Slot == cur {
				reason := "slot does not verify"
				st.Last = &Outcome{Version: p.Version, Bundle: p.Bundle, Request: p.Request, Result: "rolled_back", Reason: reason, At: now}
				st.Pending = nil
				st.Report = l.signReport(st, attest.Report{RequestID: p.Request, Event: attest.EventRolledBack, Bundle: p.Bundle,
					Version: p.Version, Running: st.running(fb.To), Reason: reason})
				if fb.To == st.Committed {
					// A new version rolled back to the known-good one: an
					// update outcome, not a degraded device.
					res.Fallback = nil
				}
			}
			if res.Fallback != nil {
				st.Fallback = res.Fallback
			}
			dirty = true
		}
	}
	if res.Fallback == nil && st.Fallback != nil && st.Fallback.To == cur {
		// Still running what an earlier start fell back to.
		res.Fallback = st.Fallback
	}
	if res.Slot != "" {
		res.Version = st.Slots[res.Slot].Version
	}
	if dirty {
		if err := l.WriteState(st); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Fallback returns the boot fallback in force (the device still runs what
// boot fell back to), or nil. An unreadable state is one. The agent
// publishes it as firmware.fallback.
func (l Layout) Fallback() *Fallback {
	st, err := l.ReadState()
	if err != nil {
		return &Fallback{Reason: fmt.Sprintf("firmware state unreadable: %v", err), At: time.Now().UTC()}
	}
	if fb := st.Fallback; fb != nil && fb.To == l.Current() {
		return fb
	}
	return nil
}
