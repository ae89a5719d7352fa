package update

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
)

// installCommit stages, activates, boots and commits a bundle.
func installCommit(t *testing.T, l Layout, opts bundle.CheckOptions, path, sha, request string) string {
	t.Helper()
	slot, v, err := l.Stage(path, opts, Hooks{})
	if err != nil {
		t.Fatalf("stage %s: %v", filepath.Base(path), err)
	}
	if err := l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha, Request: request}, Hooks{}); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Boot(opts, 3, nolog); err != nil || got != slot {
		t.Fatalf("boot after activating %s: %q %v", slot, got, err)
	}
	if _, err := l.Commit(Hooks{}); err != nil {
		t.Fatal(err)
	}
	return slot
}

// snapshot is a slot's files, to show a refused update touched nothing.
func snapshot(t *testing.T, l Layout, slot string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(l.slotDir(slot), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "%s %x\n", p, data)
		}
		return nil
	})
	return b.String()
}

// The replayed 1.0.0: with 1.1.0 committed, the older, validly signed
// bundle is refused, and so is 1.1.0 itself; nothing on disk changes. The
// floor holds across a rollback and when the state is rewritten without it.
func TestReplayedOldBundleIsRefused(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p100, sha100 := k.makeSigned(t, bundleSpec{version: "1.0.0", backbone: true})
	p110, sha110 := k.makeSigned(t, bundleSpec{version: "1.1.0"})
	installCommit(t, l, k.opts, p100, sha100, "r1")
	s110 := installCommit(t, l, k.opts, p110, sha110, "r2")
	if f, _ := l.Floor(); f != "1.1.0" {
		t.Fatalf("floor %q after committing 1.1.0", f)
	}
	before := snapshot(t, l, SlotA) + snapshot(t, l, SlotB)
	stBefore, _ := os.ReadFile(l.statePath())

	for _, tc := range []struct{ name, path string }{{"1.0.0 replayed", p100}, {"1.1.0 again", p110}} {
		_, _, err := l.Stage(tc.path, k.opts, Hooks{})
		if !errors.Is(err, ErrNotNewer) || !strings.Contains(err.Error(), "1.1.0") {
			t.Fatalf("%s: %v, want ErrNotNewer", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	if after := snapshot(t, l, SlotA) + snapshot(t, l, SlotB); after != before {
		t.Fatal("a refused bundle changed a slot")
	}
	if st, _ := os.ReadFile(l.statePath()); string(st) != string(stBefore) {
		t.Fatal("a refused bundle changed the state")
	}
	// Activate checks too: a slot staged with an old version is not
	// switched to even if Stage was bypassed.
	st, _ := l.ReadState()
	st.Staged = &Staged{Slot: other(s110), Version: "1.0.0"}
	l.WriteState(st)
	if err := l.Activate(other(s110), SlotInfo{Version: "1.0.0", Bundle: sha100}, Hooks{}); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("activate 1.0.0: %v", err)
	}

	// 1.2.0 is rolled back: 1.1.0 runs, and 1.0.0 is still refused.
	p120, sha120 := k.makeSigned(t, bundleSpec{version: "1.2.0"})
	slot, v, err := l.Stage(p120, k.opts, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha120}, Hooks{})
	if _, err := l.Rollback("no sightings"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Stage(p100, k.opts, Hooks{}); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("1.0.0 after a rollback: %v", err)
	}
	// An agent that predates the floor rewrites state.json without it and
	// without the slots' history: the floor file still refuses 1.0.0.
	os.WriteFile(l.statePath(), []byte(`{"format":1}`), 0o644)
	if _, _, err := l.Stage(p100, k.opts, Hooks{}); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("1.0.0 with a state rewritten by an old agent: %v", err)
	}
	// A damaged floor refuses every update rather than none.
	os.WriteFile(l.floorPath(), []byte("garbage"), 0o644)
	if _, _, err := l.Stage(p120, k.opts, Hooks{}); err == nil || !strings.Contains(err.Error(), "floor") {
		t.Fatalf("damaged floor: %v", err)
	}
}

// The installed binary's version counts: a fresh device installed with
// 1.1.0 refuses the 1.0.0 bundle before any slot exists.
func TestInstalledVersionIsAFloor(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	if _, err := l.BootWith(BootOptions{Check: k.opts, MaxAttempts: 2, Installed: "1.1.0"}); err != nil {
		t.Fatal(err)
	}
	p100, _ := k.makeSigned(t, bundleSpec{version: "1.0.0"})
	if _, _, err := l.Stage(p100, k.opts, Hooks{}); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("1.0.0 on a device installed with 1.1.0: %v", err)
	}
	// A development build records nothing.
	l2 := Layout{Dir: filepath.Join(k.dir, "fw2")}
	l2.BootWith(BootOptions{Check: k.opts, MaxAttempts: 2, Installed: "dev"})
	if f, _ := l2.Floor(); f != "" {
		t.Fatalf("floor %q from a development build", f)
	}
}

// A deliberate downgrade is a bundle signed as one: it installs only over
// the exact version it names, and can never be replayed afterwards; the
// floor stays, so the version left behind cannot come back either.
func TestSignedDowngrade(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p100, sha100 := k.makeSigned(t, bundleSpec{version: "1.0.0"})
	p110, sha110 := k.makeSigned(t, bundleSpec{version: "1.1.0"})
	installCommit(t, l, k.opts, p100, sha100, "r1")
	installCommit(t, l, k.opts, p110, sha110, "r2")

	wrong, _ := k.makeSigned(t, bundleSpec{version: "1.0.1", downgradeFrom: "1.2.0"})
	if _, _, err := l.Stage(wrong, k.opts, Hooks{}); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("a downgrade from a version the device does not run: %v", err)
	}
	down, shaDown := k.makeSigned(t, bundleSpec{version: "1.0.1", downgradeFrom: "1.1.0"})
	installCommit(t, l, k.opts, down, shaDown, "r3")
	st, _ := l.ReadState()
	if st.Slots[st.Committed].Version != "1.0.1" {
		t.Fatalf("committed %+v", st.Slots[st.Committed])
	}
	if f, _ := l.Floor(); f != "1.1.0" {
		t.Fatalf("floor %q after a downgrade, want it to stay 1.1.0", f)
	}
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"the downgrade bundle replayed", down, ErrDowngrade},
		{"the version left behind", p110, ErrNotNewer},
		{"the old release", p100, ErrNotNewer},
	} {
		if _, _, err := l.Stage(tc.path, k.opts, Hooks{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The next release installs.
	p111, sha111 := k.makeSigned(t, bundleSpec{version: "1.1.1"})
	installCommit(t, l, k.opts, p111, sha111, "r4")
}

// The probation update: while a new version is on probation another update
// is refused, and the committed known-good slot is never written.
func TestUpdateDuringProbationIsRefused(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p110, sha110 := k.makeSigned(t, bundleSpec{version: "1.1.0", backbone: true})
	good := installCommit(t, l, k.opts, p110, sha110, "r1")
	p120, sha120 := k.makeSigned(t, bundleSpec{version: "1.2.0"})
	slot, v, err := l.Stage(p120, k.opts, Hooks{})
	if err != nil || slot == good {
		t.Fatalf("stage 1.2.0 into %q (committed %q): %v", slot, good, err)
	}
	if err := l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha120}, Hooks{}); err != nil {
		t.Fatal(err)
	}
	l.Boot(k.opts, 3, nolog)
	goodFiles := snapshot(t, l, good)

	p130, sha130 := k.makeSigned(t, bundleSpec{version: "1.3.0"})
	if _, _, err := l.Stage(p130, k.opts, Hooks{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("update during probation: %v, want ErrBusy", err)
	}
	// Activate refuses too, and never the committed slot.
	if err := l.Activate(good, SlotInfo{Version: "1.3.0", Bundle: sha130}, Hooks{}); !errors.Is(err, ErrBusy) {
		t.Fatalf("activate during probation: %v", err)
	}
	st, _ := l.ReadState()
	if st.Pending == nil || st.Pending.Slot != slot || st.Committed != good || snapshot(t, l, good) != goodFiles {
		t.Fatalf("after the refused update: pending %+v committed %q", st.Pending, st.Committed)
	}
	if err := l.VerifySlot(good, k.opts); err != nil {
		t.Fatal(err)
	}
	// Once 1.2.0 is committed, 1.3.0 goes into the other slot: the one
	// 1.1.0 was in, never the committed 1.2.0.
	l.Commit(Hooks{})
	slot3, _, err := l.Stage(p130, k.opts, Hooks{})
	if err != nil || slot3 != good {
		t.Fatalf("1.3.0 staged into %q: %v", slot3, err)
	}
	st, _ = l.ReadState()
	if err := l.Activate(st.Committed, SlotInfo{Version: "1.3.0", Bundle: sha130}, Hooks{}); err == nil {
		t.Fatal("activated the committed slot")
	}
}

// Partial downloads and bundles that neither slot came from are removed;
// the bundles of the two slots stay.
func TestDownloadsArePruned(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	local := t.TempDir()
	var shas []string
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		p, sha := k.makeSigned(t, bundleSpec{version: v})
		data, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(local, v+".wsk"), data, 0o644)
		got, err := l.FetchBundle(context.Background(), filepath.Join(local, v+".wsk"), sha, FetchOptions{MaxSize: 1 << 20, LocalDir: local})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(l.Downloads(), strings.Repeat("cd", 32)+".wsk.part"), []byte("stale"), 0o644)
		installCommit(t, l, k.opts, got, sha, "r-"+v)
		shas = append(shas, sha)
	}
	entries, _ := os.ReadDir(l.Downloads())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{shas[1] + ".wsk", shas[2] + ".wsk"}; strings.Join(sorted(names), ",") != strings.Join(sorted(want), ",") {
		t.Fatalf("downloads hold %v, want the two slots' bundles %v", names, want)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// Key rotation: add the new key, roll a bundle signed by both that
// carries every part, remove the old key: boot runs the new slot, no
// fallback. Removing the old key while a part of the running slot is
// signed by it alone is a loud fallback, which heals when the key is
// trusted again.
func TestKeyRotation(t *testing.T) {
	k := newKit(t)
	newPub, newKey, _ := ed25519.GenerateKey(nil)
	oldOnly := k.opts
	both := bundle.CheckOptions{Trusted: []ed25519.PublicKey{k.pub, newPub}}
	newOnly := bundle.CheckOptions{Trusted: []ed25519.PublicKey{newPub}}

	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p1, sha1 := k.makeSigned(t, bundleSpec{version: "1.1.0", backbone: true, head: true})
	installCommit(t, l, oldOnly, p1, sha1, "r1")
	// Step 1: devices trust both keys. Step 2: a release signed by both,
	// with every part the devices hold.
	p2, sha2 := k.makeSigned(t, bundleSpec{version: "1.2.0", backbone: true, head: true, keys: []ed25519.PrivateKey{k.key, newKey}})
	s2 := installCommit(t, l, both, p2, sha2, "r2")
	// Step 3: the old key goes.
	r, err := l.BootWith(BootOptions{Check: newOnly, MaxAttempts: 2})
	if err != nil || r.Slot != s2 || r.Fallback != nil || l.Fallback() != nil {
		t.Fatalf("after removing the old key: %+v %v", r, err)
	}

	// The trap: a release that brings only the agent leaves the backbone
	// and head signed by the old key alone.
	l2 := Layout{Dir: filepath.Join(k.dir, "fw2")}
	installCommit(t, l2, oldOnly, p1, sha1, "r1")
	p3, sha3 := k.makeSigned(t, bundleSpec{version: "1.2.0", keys: []ed25519.PrivateKey{k.key, newKey}})
	s3 := installCommit(t, l2, both, p3, sha3, "r2")
	var lines []string
	r, err = l2.BootWith(BootOptions{Check: newOnly, MaxAttempts: 2, Log: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }})
	if err != nil || r.Slot != "" || r.Fallback == nil || r.Fallback.From != s3 || r.Fallback.Version != "1.2.0" {
		t.Fatalf("boot with a part signed by the removed key: %+v %v", r, err)
	}
	if fb := l2.Fallback(); fb == nil || len(fb.UntrustedKeys) != 1 || fb.UntrustedKeys[0] != bundle.KeyID(k.pub) {
		t.Fatalf("recorded fallback %+v", fb)
	}
	t.Logf("fallback: %+v", *r.Fallback)
	// It stays loud at every start while it lasts...
	if r, _ := l2.BootWith(BootOptions{Check: newOnly, MaxAttempts: 2}); r.Fallback == nil {
		t.Fatal("the second start forgot the fallback")
	}
	// ...and heals once the key is trusted again.
	r, err = l2.BootWith(BootOptions{Check: both, MaxAttempts: 2})
	if err != nil || r.Slot != s3 || r.Fallback != nil || l2.Fallback() != nil {
		t.Fatalf("with the key back: %+v %v", r, err)
	}
}

// Every update step leaves a report signed by the device's key that a
// rollout can check; without a key there is none.
func TestSignedReports(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	os.MkdirAll(l.Dir, 0o755)
	if _, err := attest.GenerateDeviceKey(l.DeviceKeyPath(), l.DevicePubPath(), "cam1"); err != nil {
		t.Fatal(err)
	}
	_, pub, _ := attest.LoadPublic(l.DevicePubPath())
	ring := attest.Keyring{"cam1": pub}
	check := func(event, request, sha string) *attest.Report {
		t.Helper()
		e, err := l.Report()
		if err != nil || e == nil {
			t.Fatalf("no report after %s: %v", event, err)
		}
		r, err := ring.Verify("cam1", e)
		if err != nil || r.Event != event || r.RequestID != request || r.Bundle != sha {
			t.Fatalf("report %+v %v, want %s for %s", r, err, event, request)
		}
		return r
	}
	p1, sha1 := k.makeSigned(t, bundleSpec{version: "1.1.0"})
	slot, v, _ := l.Stage(p1, k.opts, Hooks{})
	l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha1, Request: "fleet-1"}, Hooks{})
	check(attest.EventSwitching, "fleet-1", sha1)
	l.Boot(k.opts, 2, nolog)
	l.Commit(Hooks{})
	if r := check(attest.EventCommitted, "fleet-1", sha1); !r.Succeeded("fleet-1", sha1) {
		t.Fatalf("committed report %+v", r)
	}
	// Asked again for what it runs: a fresh report for the new request.
	e, err := l.AttestCurrent("fleet-2", sha1)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ring.Verify("cam1", e); err != nil || !r.Succeeded("fleet-2", sha1) {
		t.Fatalf("current: %+v %v", r, err)
	}
	if _, err := l.AttestCurrent("fleet-3", strings.Repeat("0", 64)); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("attest another bundle: %v", err)
	}
	// A version that never starts: boot rolls it back, signed.
	p2, sha2 := k.makeSigned(t, bundleSpec{version: "1.2.0"})
	slot, v, _ = l.Stage(p2, k.opts, Hooks{})
	l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha2, Request: "fleet-4"}, Hooks{})
	for range 3 {
		l.Boot(k.opts, 2, nolog)
	}
	if r := check(attest.EventRolledBack, "fleet-4", sha2); r.Running.Bundle != sha1 || r.Succeeded("fleet-4", sha2) {
		t.Fatalf("rolled back report %+v", r)
	}
	if _, err := l.AttestFailed("fleet-5", sha2, "download failed"); err != nil {
		t.Fatal(err)
	}
	check(attest.EventFailed, "fleet-5", sha2)

	// No key, no report.
	l2 := Layout{Dir: filepath.Join(k.dir, "fw2")}
	installCommit(t, l2, k.opts, p1, sha1, "r1")
	if e, _ := l2.Report(); e != nil {
		t.Fatalf("a report without a key: %+v", e)
	}
	if _, err := l2.AttestCurrent("x", sha1); !errors.Is(err, ErrNoDeviceKey) {
		t.Fatalf("attest without a key: %v", err)
	}
}

// A new version whose slot does not verify at its first start is rolled
// back to the committed slot: an update outcome, not a fallback.
func TestUnverifiablePendingSlotIsARollback(t *testing.T) {
	k := newKit(t)
	l := Layout{Dir: filepath.Join(k.dir, "fw")}
	p1, sha1 := k.makeSigned(t, bundleSpec{version: "1.1.0"})
	good := installCommit(t, l, k.opts, p1, sha1, "r1")
	p2, sha2 := k.makeSigned(t, bundleSpec{version: "1.2.0"})
	slot, v, _ := l.Stage(p2, k.opts, Hooks{})
	l.Activate(slot, SlotInfo{Version: v.Manifest.Version, Bundle: sha2}, Hooks{})
	agent, _ := l.File(slot, bundle.KindAgent)
	os.WriteFile(agent, []byte("#!/bin/sh\nexit 1\n"), 0o755)
	r, err := l.BootWith(BootOptions{Check: k.opts, MaxAttempts: 2})
	if err != nil || r.Slot != good || r.Fallback != nil || l.Fallback() != nil {
		t.Fatalf("boot: %+v %v", r, err)
	}
	if st, _ := l.ReadState(); st.Last == nil || st.Last.Result != "rolled_back" || st.Pending != nil {
		t.Fatalf("outcome %+v", st.Last)
	}
	// The committed slot itself tampered with: that is a fallback.
	agent, _ = l.File(good, bundle.KindAgent)
	os.WriteFile(agent, []byte("#!/bin/sh\nexit 1\n"), 0o755)
	if r, _ := l.BootWith(BootOptions{Check: k.opts, MaxAttempts: 2}); r.Slot != "" || r.Fallback == nil || r.Fallback.From != good {
		t.Fatalf("tampered committed slot: %+v", r)
	}
}
