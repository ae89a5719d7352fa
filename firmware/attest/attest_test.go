package attest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var sha = strings.Repeat("3f", 32)

func enrolled(t testing.TB, devices ...string) (Keyring, map[string]*Signer) {
	t.Helper()
	dir := t.TempDir()
	signers := map[string]*Signer{}
	for _, d := range devices {
		priv := filepath.Join(dir, d+".key")
		if _, err := GenerateDeviceKey(priv, filepath.Join(dir, d+".pub"), d); err != nil {
			t.Fatal(err)
		}
		s, err := LoadSigner(priv)
		if err != nil {
			t.Fatal(err)
		}
		signers[d] = s
		os.Remove(priv) // the rollout keeps only public keys
	}
	k, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k, signers
}

func committed(req string) Report {
	return Report{RequestID: req, Event: EventCommitted, Bundle: sha, Version: "1.1.0",
		Running: Running{Slot: "b", Version: "1.1.0", Bundle: sha}}
}

func TestSignAndVerify(t *testing.T) {
	k, s := enrolled(t, "cam1", "cam2")
	if got := k.Devices(); len(got) != 2 || got[0] != "cam1" {
		t.Fatalf("devices %v", got)
	}
	e, err := s["cam1"].Sign(committed("fleet-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as on the wire.
	wire, _ := json.Marshal(e)
	var back Envelope
	if err := json.Unmarshal(wire, &back); err != nil {
		t.Fatal(err)
	}
	r, err := k.Verify("cam1", &back)
	if err != nil {
		t.Fatal(err)
	}
	if r.Device != "cam1" || !r.Succeeded("fleet-1", sha) || r.Succeeded("fleet-2", sha) || r.Succeeded("fleet-1", strings.Repeat("0", 64)) {
		t.Fatalf("report %+v", r)
	}
}

// Each way a broker client could fake a device's report.
func TestForgeries(t *testing.T) {
	k, s := enrolled(t, "cam1", "cam2")
	_, strangerKey, _ := ed25519.GenerateKey(nil)
	stranger, _ := NewSigner("cam1", strangerKey)
	good, _ := s["cam1"].Sign(committed("fleet-1"))
	fromCam2, _ := s["cam2"].Sign(committed("fleet-1"))
	// A payload edited after signing (a failure turned into a success).
	failed, _ := s["cam1"].Sign(Report{RequestID: "fleet-1", Event: EventRolledBack, Bundle: sha, Running: Running{Slot: "a"}})
	edited := *failed
	edited.Payload = bytes.Replace(failed.Payload, []byte(EventRolledBack), []byte(EventCommitted), 1)
	// A stranger's key claiming cam1's key id.
	forged, _ := stranger.Sign(committed("fleet-1"))
	forged.KeyID = good.KeyID
	// A signature over the report without the signing context.
	noContext := *good
	noContext.Sig = ed25519.Sign(strangerKey, good.Payload)

	for _, tc := range []struct {
		name   string
		device string
		env    *Envelope
		want   error
	}{
		{"no report", "cam1", nil, ErrSignature},
		{"unsigned", "cam1", &Envelope{Payload: good.Payload}, ErrSignature},
		{"edited payload", "cam1", &edited, ErrSignature},
		{"a stranger's key", "cam1", forged, ErrSignature},
		{"another camera's report", "cam1", fromCam2, ErrSignature},
		{"a report signed without the context", "cam1", &noContext, ErrSignature},
		{"not enrolled", "cam9", good, ErrNotEnrolled},
		{"oversized", "cam1", &Envelope{Payload: make([]byte, MaxPayload+1), KeyID: good.KeyID, Sig: good.Sig}, ErrMalformed},
	} {
		if r, err := k.Verify(tc.device, tc.env); !errors.Is(err, tc.want) {
			t.Errorf("%s: %+v %v, want %v", tc.name, r, err, tc.want)
		}
	}
	// A genuine report of cam2 republished under cam1 with cam2's key
	// enrolled for cam1 too is caught by the device named inside.
	k2 := Keyring{"cam1": s["cam2"].Public()}
	if _, err := k2.Verify("cam1", fromCam2); !errors.Is(err, ErrSignature) {
		t.Errorf("cam2's report for cam1: %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateDeviceKey(filepath.Join(dir, "a.key"), filepath.Join(dir, "a.pub"), "cam/1"); err == nil {
		t.Fatal("a device id with a slash")
	}
	if _, err := GenerateDeviceKey(filepath.Join(dir, "cam1.key"), filepath.Join(dir, "cam1.pub"), "cam1"); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateDeviceKey(filepath.Join(dir, "cam1.key"), filepath.Join(dir, "x.pub"), "cam1"); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Fatalf("overwrote a key: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "cam1.key")); st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", st.Mode())
	}
	// A key enrolled under another device's name is refused.
	keys := t.TempDir()
	data, _ := os.ReadFile(filepath.Join(dir, "cam1.pub"))
	os.WriteFile(filepath.Join(keys, "cam2.pub"), data, 0o644)
	if _, err := LoadKeyring(keys); err == nil || !strings.Contains(err.Error(), "cam1") {
		t.Fatalf("misnamed key: %v", err)
	}
	// And one key for two devices.
	os.Remove(filepath.Join(keys, "cam2.pub"))
	os.WriteFile(filepath.Join(keys, "cam1.pub"), data, 0o644)
	other := strings.Replace(string(data), "Device: cam1", "Device: cam3", 1)
	os.WriteFile(filepath.Join(keys, "cam3.pub"), []byte(other), 0o644)
	if _, err := LoadKeyring(keys); err == nil || !strings.Contains(err.Error(), "its own") {
		t.Fatalf("shared key: %v", err)
	}
	if _, err := LoadKeyring(t.TempDir()); err == nil {
		t.Fatal("an empty keyring")
	}
	// Not a key file: a FIFO is not opened for reading forever, /dev/zero
	// is not read.
	if _, err := LoadSigner("/dev/zero"); err == nil {
		t.Fatal("/dev/zero as a key")
	}
	fifo := filepath.Join(dir, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(fifo); err == nil || !strings.Contains(err.Error(), "not a key file") {
		t.Fatalf("FIFO as a key: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	k, s := enrolled(f, "cam1")
	good, _ := s["cam1"].Sign(committed("fleet-1"))
	wire, _ := json.Marshal(good)
	f.Add(wire)
	f.Add([]byte(`{"payload":"e30=","key_id":"","sig":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Envelope
		if json.Unmarshal(data, &e) != nil {
			return
		}
		r, err := k.Verify("cam1", &e)
		if err == nil && (r.Device != "cam1" || r.validate() != nil) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func TestSignMessageKeepsContextsApart(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	s, err := NewSigner("kitchen", priv)
	if err != nil {
		t.Fatal(err)
	}
	k := Keyring{"kitchen": s.Public()}
	msg := []byte("whisker shared sample v1\x00digest")
	id, sig, err := s.SignMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyMessage("kitchen", id, msg, sig); err != nil {
		t.Fatalf("own message: %v", err)
	}
	for name, err := range map[string]error{
		"changed":      k.VerifyMessage("kitchen", id, append(msg, 'x'), sig),
		"other device": k.VerifyMessage("garden", id, msg, sig),
		"other key id": k.VerifyMessage("kitchen", "0000000000000000", msg, sig),
		"short sig":    k.VerifyMessage("kitchen", id, msg, sig[:10]),
	} {
		if err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	for _, bad := range [][]byte{
		[]byte("no context at all"),
		[]byte(signingContext + "{}"), // an update report's context
		[]byte("short\x00x"),
		[]byte("bad\x01context\x00x"),
	} {
		if _, _, err := s.SignMessage(bad); err == nil {
			t.Errorf("signed %q", bad)
		}
	}
	// A report's signature is not a message's, and the other way round.
	env, err := s.Sign(Report{Event: EventCommitted, RequestID: "r", Bundle: strings.Repeat("a", 64), Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if k.VerifyMessage("kitchen", env.KeyID, env.Payload, env.Sig) == nil {
		t.Error("a report signature verified as a message")
	}
	if _, err := k.Verify("kitchen", &Envelope{Payload: msg, KeyID: id, Sig: sig}); err == nil {
		t.Error("a message signature verified as a report")
	}
}
