package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/firmware/attest"
	"github.com/whiskercam/whisker/firmware/bundle"
	"github.com/whiskercam/whisker/firmware/update"
)

// TestMain lets a test run this binary as the real `whisker` command in a
// child process (WHISKER_TEST_MAIN=1): `whisker boot` then decides and
// execs a slot's agent for real. The installed binary's `run` is replaced
// by a line saying that it ran, so no camera or broker is needed.
func TestMain(m *testing.M) {
	if os.Getenv("WHISKER_TEST_MAIN") == "1" {
		if v := os.Getenv("WHISKER_TEST_VERSION"); v != "" {
			version = v
		}
		if len(os.Args) > 1 && os.Args[1] == "run" {
			fmt.Printf("installed binary %s ran, slot %q\n", version, os.Getenv("WHISKER_SLOT"))
			os.Exit(0)
		}
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// whisker runs the command in a child process and returns its output.
func whisker(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "WHISKER_TEST_MAIN=1"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// device is one camera's configuration and firmware directory.
type device struct {
	t      *testing.T
	dir    string
	layout update.Layout
	keys   map[string]ed25519.PrivateKey // fleet signing keys by name
}

func newDevice(t *testing.T) *device {
	d := &device{t: t, dir: t.TempDir(), keys: map[string]ed25519.PrivateKey{}}
	d.layout = update.Layout{Dir: filepath.Join(d.dir, "state", "firmware")}
	for _, name := range []string{"old", "new"} {
		base := filepath.Join(d.dir, name)
		if _, err := bundle.GenerateKeys(base+".key", base+".pub"); err != nil {
			t.Fatal(err)
		}
		d.keys[name], _ = bundle.LoadPrivateKey(base + ".key")
	}
	return d
}

// config writes a configuration trusting the named keys.
func (d *device) config(trusted ...string) string {
	var pubs []string
	for _, k := range trusted {
		pubs = append(pubs, filepath.Join(d.dir, k+".pub"))
	}
	path := filepath.Join(d.dir, "trust-"+strings.Join(trusted, "-")+".yaml")
	cfg := fmt.Sprintf(`device: cam1
state_dir: %s
backbone: %s
camera: {source: %s}
update: {trusted_keys: [%s], max_attempts: 2}
`, filepath.Join(d.dir, "state"), filepath.Join(d.dir, "no-backbone.json"), filepath.Join(d.dir, "no-camera"), strings.Join(pubs, ", "))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		d.t.Fatal(err)
	}
	return path
}

func (d *device) opts(trusted ...string) bundle.CheckOptions {
	var keys []ed25519.PublicKey
	for _, k := range trusted {
		keys = append(keys, d.keys[k].Public().(ed25519.PublicKey))
	}
	return bundle.CheckOptions{Trusted: keys}
}

// bundle packs an agent script (and a head, if withHead) signed by keys.
func (d *device) bundle(version string, withHead bool, keys ...string) (string, string) {
	src := filepath.Join(d.dir, "src-"+version)
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "whisker"), []byte("#!/bin/sh\necho \"agent "+version+" ran from slot $WHISKER_SLOT\"\n"), 0o755)
	inputs := []bundle.Input{{Kind: bundle.KindAgent, Path: filepath.Join(src, "whisker")}}
	if withHead {
		os.WriteFile(filepath.Join(src, "head.json"), []byte(`{"version":"`+version+`"}`), 0o644)
		inputs = append(inputs, bundle.Input{Kind: bundle.KindHead, Path: filepath.Join(src, "head.json")})
	}
	var privs []ed25519.PrivateKey
	for _, k := range keys {
		privs = append(privs, d.keys[k])
	}
	path := filepath.Join(d.dir, version+".wsk")
	f, _ := os.Create(path)
	if _, err := bundle.Create(f, inputs, bundle.CreateOptions{Version: version, Key: privs[0], AlsoKeys: privs[1:]}); err != nil {
		d.t.Fatal(err)
	}
	f.Close()
	sha, _ := bundle.FileSHA256(path)
	return path, sha
}

// boot runs `whisker boot` and returns what it started and its log.
func (d *device) boot(config string) (string, string) {
	d.t.Helper()
	out, log, err := whisker(d.t, []string{"WHISKER_TEST_VERSION=1.0.0"}, "boot", "--config", config)
	if err != nil {
		d.t.Fatalf("whisker boot: %v\n%s%s", err, out, log)
	}
	return strings.TrimSpace(out), log
}

// install stages and activates a bundle as the agent does, boots it with
// a real `whisker boot` and commits it.
func (d *device) install(path, sha, config string, trusted ...string) {
	d.t.Helper()
	slot, v, err := d.layout.Stage(path, d.opts(trusted...), update.Hooks{})
	if err != nil {
		d.t.Fatalf("stage %s: %v", filepath.Base(path), err)
	}
	if err := d.layout.Activate(slot, update.SlotInfo{Version: v.Manifest.Version, Bundle: sha}, update.Hooks{}); err != nil {
		d.t.Fatal(err)
	}
	want := fmt.Sprintf("agent %s ran from slot %s", v.Manifest.Version, slot)
	if out, log := d.boot(config); out != want {
		d.t.Fatalf("boot after installing %s: %q, want %q\n%s", v.Manifest.Version, out, want, log)
	}
	if _, err := d.layout.Commit(update.Hooks{}); err != nil {
		d.t.Fatal(err)
	}
}

// Key rotation as docs/firmware.md describes it, with real `whisker boot`
// processes: trust the new key beside the old, roll a release signed by
// both that carries every part, check, remove the old key. Boot keeps
// running the new release; nothing falls back.
func TestKeyRotationWithoutFallback(t *testing.T) {
	d := newDevice(t)
	trustOld, trustBoth, trustNew := d.config("old"), d.config("old", "new"), d.config("new")
	// The installed binary runs while no slot is committed.
	if out, _ := d.boot(trustOld); out != `installed binary 1.0.0 ran, slot ""` {
		t.Fatalf("fresh device: %q", out)
	}
	p1, sha1 := d.bundle("1.1.0", true, "old")
	d.install(p1, sha1, trustOld, "old")

	// 1. Trust both keys. 2. A release signed by both, with every part.
	p2, sha2 := d.bundle("1.2.0", true, "old", "new")
	d.install(p2, sha2, trustBoth, "old", "new")
	// 3. Check, then remove the old key.
	out, _, err := whisker(t, nil, "keys", "check", "--config", trustBoth, "--without", filepath.Join(d.dir, "old.pub"))
	if err != nil {
		t.Fatalf("keys check before removing the old key: %v\n%s", err, out)
	}
	t.Logf("whisker keys check --without old.pub:\n%s", out)
	got, log := d.boot(trustNew)
	if got != "agent 1.2.0 ran from slot b" || strings.Contains(log, "level=ERROR") {
		t.Fatalf("after removing the old key: %q\n%s", got, log)
	}
	if fb := d.layout.Fallback(); fb != nil {
		t.Fatalf("fallback recorded: %+v", fb)
	}
}

// The trap, and its loud status: a release that brings only the agent
// leaves the head signed by the old key alone. `keys check` says so before
// the key is removed; if it is removed anyway, boot falls back to the
// installed binary with an error in the log and a fallback in the state
// (firmware.fallback), and runs the slot again once the key is back.
func TestRemovingAKeyTooEarlyIsLoud(t *testing.T) {
	d := newDevice(t)
	trustOld, trustBoth, trustNew := d.config("old"), d.config("old", "new"), d.config("new")
	p1, sha1 := d.bundle("1.1.0", true, "old")
	d.install(p1, sha1, trustOld, "old")
	p2, sha2 := d.bundle("1.2.0", false, "old", "new")
	d.install(p2, sha2, trustBoth, "old", "new")

	out, _, err := whisker(t, nil, "keys", "check", "--config", trustBoth, "--without", filepath.Join(d.dir, "old.pub"))
	if err == nil || !strings.Contains(out, "NO:") {
		t.Fatalf("keys check missed the head signed by the old key alone: %v\n%s", err, out)
	}
	t.Logf("whisker keys check --without old.pub:\n%s", out)

	got, log := d.boot(trustNew)
	oldID := bundle.KeyID(d.keys["old"].Public().(ed25519.PublicKey))
	if got != `installed binary 1.0.0 ran, slot ""` || !strings.Contains(log, "level=ERROR") ||
		!strings.Contains(log, "firmware fallback") || !strings.Contains(log, oldID) {
		t.Fatalf("boot without the old key: %q\n%s", got, log)
	}
	fb := d.layout.Fallback()
	if fb == nil || fb.From != "b" || fb.Version != "1.2.0" || len(fb.UntrustedKeys) != 1 || fb.UntrustedKeys[0] != oldID {
		t.Fatalf("recorded fallback %+v", fb)
	}
	t.Logf("boot log:\n%s", log)
	if got, log := d.boot(trustBoth); got != "agent 1.2.0 ran from slot b" || strings.Contains(log, "level=ERROR") {
		t.Fatalf("with the old key back: %q\n%s", got, log)
	}
	if fb := d.layout.Fallback(); fb != nil {
		t.Fatalf("fallback still recorded: %+v", fb)
	}
}

// `whisker boot` records the installed binary's version as the
// anti-rollback floor: the validly signed 1.0.0 bundle is refused on a
// device installed with 1.1.0.
func TestBootRecordsTheInstalledVersion(t *testing.T) {
	d := newDevice(t)
	cfg := d.config("old")
	if _, _, err := whisker(t, []string{"WHISKER_TEST_VERSION=1.1.0"}, "boot", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	p, _ := d.bundle("1.0.0", false, "old")
	if _, _, err := d.layout.Stage(p, d.opts("old"), update.Hooks{}); !errors.Is(err, update.ErrNotNewer) {
		t.Fatalf("1.0.0 on a device installed with 1.1.0: %v", err)
	}
}

func TestDeviceKeyAndSignCommands(t *testing.T) {
	d := newDevice(t)
	cfg := d.config("old")
	out, errOut, err := whisker(t, nil, "keys", "gen", "--device", "--config", cfg)
	if err != nil {
		t.Fatalf("keys gen --device: %v\n%s%s", err, out, errOut)
	}
	signer, err := d.layout.Signer()
	if err != nil || signer.Device != "cam1" {
		t.Fatalf("device key: %+v %v", signer, err)
	}
	if device, pub, err := attest.LoadPublic(d.layout.DevicePubPath()); err != nil || device != "cam1" || !pub.Equal(signer.Public()) {
		t.Fatalf("device.pub: %s %v", device, err)
	}
	if st, _ := os.Stat(d.layout.DeviceKeyPath()); st.Mode().Perm() != 0o600 {
		t.Fatalf("device.key mode %v", st.Mode())
	}
	if _, _, err := whisker(t, nil, "keys", "gen", "--device", "--config", cfg); err == nil {
		t.Fatal("a second keys gen --device replaced the key")
	}

	// bundle sign: a bundle signed by the old key, checked, signed by the
	// new one too.
	p, _ := d.bundle("1.1.0", true, "old")
	resigned := filepath.Join(d.dir, "both.wsk")
	out, errOut, err = whisker(t, nil, "bundle", "sign", p, "--key", filepath.Join(d.dir, "new.key"),
		"--pub", filepath.Join(d.dir, "old.pub"), "-o", resigned)
	if err != nil {
		t.Fatalf("bundle sign: %v\n%s%s", err, out, errOut)
	}
	for _, k := range []string{"old", "new"} {
		if _, err := bundle.VerifyFile(resigned, bundle.CheckOptions{Trusted: d.opts(k).Trusted, AnyTarget: true}); err != nil {
			t.Errorf("re-signed bundle with the %s key: %v", k, err)
		}
	}
	// Nobody signs what does not verify.
	if _, _, err := whisker(t, nil, "bundle", "sign", p, "--key", filepath.Join(d.dir, "new.key"),
		"--pub", filepath.Join(d.dir, "new.pub"), "-o", filepath.Join(d.dir, "x.wsk")); err == nil {
		t.Fatal("signed a bundle that does not verify")
	}
	// bundle create with two keys and a downgrade flag.
	down := filepath.Join(d.dir, "down.wsk")
	out, errOut, err = whisker(t, nil, "bundle", "create", "--version", "1.0.5", "--downgrade-from", "1.1.0",
		"--key", filepath.Join(d.dir, "old.key"), "--key", filepath.Join(d.dir, "new.key"),
		"--agent", filepath.Join(d.dir, "src-1.1.0", "whisker"), "-o", down)
	if err != nil || !strings.Contains(out, "a downgrade from 1.1.0") {
		t.Fatalf("bundle create --downgrade-from: %v\n%s%s", err, out, errOut)
	}
	v, err := bundle.VerifyFile(down, bundle.CheckOptions{Trusted: d.opts("new").Trusted})
	if err != nil || v.Manifest.DowngradeFrom != "1.1.0" {
		t.Fatalf("downgrade bundle: %+v %v", v, err)
	}
}
