package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type fixture struct {
	dir      string
	key      ed25519.PrivateKey
	pub      ed25519.PublicKey
	inputs   []Input
	bundle   string
	manifest *Manifest
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	pub, err := GenerateKeys(filepath.Join(f.dir, "k.key"), filepath.Join(f.dir, "k.pub"))
	if err != nil {
		t.Fatal(err)
	}
	f.pub = pub
	if f.key, err = LoadPrivateKey(filepath.Join(f.dir, "k.key")); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data string) string {
		p := filepath.Join(f.dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	f.inputs = []Input{
		{KindAgent, write("whisker", "#!/bin/sh\necho agent\n")},
		{KindBackbone, write("bb.tflite", strings.Repeat("model", 1000))},
		{KindBackboneManifest, write("bb.json", `{"identity":"x"}`)},
	}
	f.bundle = filepath.Join(f.dir, "update.wsk")
	out, _ := os.Create(f.bundle)
	f.manifest, err = Create(out, f.inputs, CreateOptions{Version: "1.2.0", TargetOS: "linux", TargetArch: "arm64", MinAgentVersion: "1.0.0", Key: f.key})
	out.Close()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) opts() CheckOptions {
	return CheckOptions{Trusted: []ed25519.PublicKey{f.pub}, OS: "linux", Arch: "arm64", AgentVersion: "1.1.0"}
}

func TestCreateAndExtract(t *testing.T) {
	f := newFixture(t)
	out := t.TempDir()
	v, err := Extract(f.bundle, out, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if v.Manifest.Version != "1.2.0" || len(v.Manifest.Files) != 3 || v.KeyID != KeyID(f.pub) {
		t.Fatalf("manifest %+v", v.Manifest)
	}
	got, _ := os.ReadFile(filepath.Join(out, "whisker"))
	if string(got) != "#!/bin/sh\necho agent\n" {
		t.Fatalf("extracted agent %q", got)
	}
	if st, _ := os.Stat(filepath.Join(out, "whisker")); st.Mode().Perm() != 0o755 {
		t.Errorf("agent mode %v", st.Mode())
	}
	if _, err := VerifyDir(out, f.opts()); err != nil {
		t.Fatalf("verify extracted slot: %v", err)
	}
	// A changed file in an extracted slot is caught.
	os.WriteFile(filepath.Join(out, "backbone.tflite"), []byte("swapped"), 0o644)
	if _, err := VerifyDir(out, f.opts()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered slot: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	data, _ := os.ReadFile(f.bundle)
	otherPub, otherKey, _ := ed25519.GenerateKey(nil)

	variant := func(name string, b []byte) string {
		p := filepath.Join(f.dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	tamperedPayload := bytes.Replace(data, []byte("modelmodel"), []byte("modelMODEL"), 1)
	tamperedManifest := bytes.Replace(data, []byte(`"1.2.0"`), []byte(`"9.9.9"`), 1)
	// Signed by an unknown key.
	var unknown bytes.Buffer
	Create(&unknown, f.inputs, CreateOptions{Version: "1.2.0", TargetOS: "linux", TargetArch: "arm64", Key: otherKey})
	// A signature by the trusted key id, but made with another key.
	var forged bytes.Buffer
	Create(&forged, f.inputs, CreateOptions{Version: "1.2.0", TargetOS: "linux", TargetArch: "arm64", Key: otherKey})
	forgedBytes := bytes.Replace(forged.Bytes(), []byte(KeyID(otherPub)), []byte(KeyID(f.pub)), 1)

	for _, tc := range []struct {
		name string
		path string
		opt  func(*CheckOptions)
		want error
		text string
	}{
		{"tampered payload", variant("t1", tamperedPayload), nil, ErrCorrupt, "sha256"},
		{"tampered manifest", variant("t2", tamperedManifest), nil, ErrSignature, "changed after signing"},
		{"unknown key", variant("t3", unknown.Bytes()), nil, ErrUntrusted, KeyID(otherPub)},
		{"wrong signature", variant("t4", forgedBytes), nil, ErrSignature, ""},
		{"wrong architecture", f.bundle, func(o *CheckOptions) { o.Arch = "amd64" }, ErrTarget, "linux/arm64"},
		{"agent too old", f.bundle, func(o *CheckOptions) { o.AgentVersion = "0.9.0" }, ErrVersion, "1.0.0"},
		{"truncated", variant("t5", data[:len(data)-2048]), nil, ErrCorrupt, ""},
		{"not a bundle", variant("t6", []byte("hello")), nil, ErrCorrupt, ""},
	} {
		opt := f.opts()
		if tc.opt != nil {
			tc.opt(&opt)
		}
		_, err := Extract(tc.path, t.TempDir(), opt)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v, want %v mentioning %q", tc.name, err, tc.want, tc.text)
		}
	}
}

func TestVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"1.2.3", "1.2.4", true}, {"1.10.0", "1.9.9", false}, {"v2.0.0", "2.0.0", false},
		{"1.0.0-rc1", "1.0.0", true}, {"1.0.0", "1.0.0-rc1", false}, {"0.1.0-dev.abc", "0.1.0", true},
	} {
		a, err1 := ParseVersion(tc.a)
		b, err2 := ParseVersion(tc.b)
		if err1 != nil || err2 != nil || a.Less(b) != tc.less {
			t.Errorf("%s < %s = %v (%v %v)", tc.a, tc.b, a.Less(b), err1, err2)
		}
	}
	if _, err := ParseVersion("abc123-dirty"); err == nil {
		t.Error("a commit hash parsed as a version")
	}
}

func FuzzVerifyManifest(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	m := []byte(`{"format":1,"version":"1.0.0","created":"x","target":{"os":"linux","arch":"amd64"},"files":[{"name":"head.json","kind":"head","size":3,"sha256":"` + strings.Repeat("a", 64) + `","mode":420}]}`)
	sig := []byte(`{"key_id":"` + KeyID(pub) + `","algorithm":"ed25519","signature":"` + base64.StdEncoding.EncodeToString(ed25519.Sign(priv, m)) + `"}`)
	f.Add(m, sig)
	f.Fuzz(func(t *testing.T, manifest, sig []byte) {
		v, err := VerifyManifest(manifest, sig, CheckOptions{Trusted: []ed25519.PublicKey{pub}, OS: "linux", Arch: "amd64"})
		if err == nil && (v.Manifest == nil || v.Manifest.validate() != nil) {
			t.Fatal("accepted an invalid manifest")
		}
	})
}

func FuzzExtract(f *testing.F) {
	fx := newFixture(f)
	good, _ := os.ReadFile(fx.bundle)
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "b.wsk")
		os.WriteFile(path, data, 0o644)
		out := t.TempDir()
		v, err := Extract(path, out, fx.opts())
		if err != nil {
			return
		}
		// Whatever extracts also verifies as a slot.
		if _, err := VerifyDir(out, fx.opts()); err != nil {
			t.Fatalf("extracted but does not verify: %v (%+v)", err, v.Manifest)
		}
	})
}

// A bundle signed by an old and a new key installs on devices that trust
// either; a device that trusts neither names both keys.
func TestSignedByTwoKeys(t *testing.T) {
	f := newFixture(t)
	newPub, newKey, _ := ed25519.GenerateKey(nil)
	path := filepath.Join(f.dir, "both.wsk")
	out, _ := os.Create(path)
	if _, err := Create(out, f.inputs, CreateOptions{Version: "1.3.0", TargetOS: "linux", TargetArch: "arm64", Key: f.key, AlsoKeys: []ed25519.PrivateKey{newKey}}); err != nil {
		t.Fatal(err)
	}
	out.Close()
	for _, tc := range []struct {
		name    string
		trusted []ed25519.PublicKey
		ids     []string
	}{
		{"old key only", []ed25519.PublicKey{f.pub}, []string{KeyID(f.pub)}},
		{"new key only", []ed25519.PublicKey{newPub}, []string{KeyID(newPub)}},
		{"both", []ed25519.PublicKey{newPub, f.pub}, []string{KeyID(f.pub), KeyID(newPub)}},
	} {
		opt := f.opts()
		opt.Trusted = tc.trusted
		v, err := Extract(path, t.TempDir(), opt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if strings.Join(v.KeyIDs, ",") != strings.Join(tc.ids, ",") {
			t.Errorf("%s: verified by %v, want %v", tc.name, v.KeyIDs, tc.ids)
		}
	}
	strangerPub, _, _ := ed25519.GenerateKey(nil)
	opt := f.opts()
	opt.Trusted = []ed25519.PublicKey{strangerPub}
	_, err := Extract(path, t.TempDir(), opt)
	var ue *UntrustedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUntrusted) || len(ue.KeyIDs) != 2 || !strings.Contains(err.Error(), KeyID(newPub)) {
		t.Fatalf("trusting neither: %v", err)
	}
}

// A signature by a trusted key that does not verify is refused even when
// another trusted signature does: the file was tampered with.
func TestSignatureRefusals(t *testing.T) {
	f := newFixture(t)
	manifest := []byte(`{"format":1,"version":"1.0.0","created":"x","target":{"os":"linux","arch":"arm64"},"files":[{"name":"head.json","kind":"head","size":3,"sha256":"` + strings.Repeat("a", 64) + `","mode":420}]}`)
	newPub, newKey, _ := ed25519.GenerateKey(nil)
	good := sign(f.key, manifest)
	other := sign(newKey, manifest)
	bad := other
	bad.Signature = bytes.Clone(other.Signature)
	bad.Signature[0] ^= 1
	enc := func(s Signature) []byte {
		b, _ := json.Marshal(s)
		return b
	}
	opt := f.opts()
	opt.Trusted = []ed25519.PublicKey{f.pub, newPub}
	many := Signature{Sig: good}
	for range maxSignatures {
		_, k, _ := ed25519.GenerateKey(nil)
		many.Also = append(many.Also, sign(k, manifest))
	}
	for _, tc := range []struct {
		name string
		sig  []byte
		want error
	}{
		{"a trusted signature that fails", enc(Signature{Sig: good, Also: []Sig{bad}}), ErrSignature},
		{"the same key twice", enc(Signature{Sig: good, Also: []Sig{good}}), ErrSignature},
		{"too many signatures", enc(many), ErrSignature},
		{"unknown field", []byte(`{"key_id":"x","algorithm":"ed25519","signature":"","extra":1}`), ErrCorrupt},
		{"trailing data", append(enc(Signature{Sig: good}), []byte(`{}`)...), ErrCorrupt},
	} {
		if _, err := VerifyManifest(manifest, tc.sig, opt); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The single-signature file of earlier bundles still verifies.
	old, _ := json.Marshal(map[string]any{"key_id": good.KeyID, "algorithm": "ed25519", "signature": good.Signature})
	if _, err := VerifyManifest(manifest, old, opt); err != nil {
		t.Fatalf("single signature: %v", err)
	}
}

func TestAddSignature(t *testing.T) {
	f := newFixture(t)
	newPub, newKey, _ := ed25519.GenerateKey(nil)
	var out bytes.Buffer
	// Only a bundle that verifies gets a further signature.
	strangerPub, _, _ := ed25519.GenerateKey(nil)
	opt := f.opts()
	opt.Trusted = []ed25519.PublicKey{strangerPub}
	if _, err := AddSignature(f.bundle, &out, newKey, opt); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("signing an unverified bundle: %v", err)
	}
	if _, err := AddSignature(f.bundle, &out, newKey, f.opts()); err != nil {
		t.Fatal(err)
	}
	resigned := filepath.Join(f.dir, "resigned.wsk")
	os.WriteFile(resigned, out.Bytes(), 0o644)
	opt = f.opts()
	opt.Trusted = []ed25519.PublicKey{newPub}
	v, err := Extract(resigned, t.TempDir(), opt)
	if err != nil || v.Manifest.Version != "1.2.0" {
		t.Fatalf("re-signed bundle with the new key: %v", err)
	}
	if _, err := VerifyFile(resigned, f.opts()); err != nil {
		t.Fatalf("re-signed bundle with the old key: %v", err)
	}
	out.Reset()
	if _, err := AddSignature(resigned, &out, newKey, f.opts()); err == nil {
		t.Fatal("signed twice by the same key")
	}
}

func TestDowngradeFlag(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		version, from string
		ok            bool
	}{
		{"1.0.0", "1.1.0", true},
		{"1.1.0", "1.1.0", false},
		{"1.2.0", "1.1.0", false},
		{"1.0.0", "soon", false},
	} {
		var b bytes.Buffer
		_, err := Create(&b, f.inputs, CreateOptions{Version: tc.version, DowngradeFrom: tc.from, TargetOS: "linux", TargetArch: "arm64", Key: f.key})
		if (err == nil) != tc.ok {
			t.Errorf("version %s downgrading from %s: %v", tc.version, tc.from, err)
		}
	}
}

// VerifyFile refuses what Extract refuses, and a FIFO or device without
// reading it.
func TestVerifyFile(t *testing.T) {
	f := newFixture(t)
	if v, err := VerifyFile(f.bundle, f.opts()); err != nil || v.Manifest.Version != "1.2.0" {
		t.Fatalf("good bundle: %v", err)
	}
	data, _ := os.ReadFile(f.bundle)
	tampered := filepath.Join(f.dir, "t.wsk")
	os.WriteFile(tampered, bytes.Replace(data, []byte("modelmodel"), []byte("modelMODEL"), 1), 0o644)
	if _, err := VerifyFile(tampered, f.opts()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := VerifyFile("/dev/zero", f.opts()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("/dev/zero: %v", err)
	}
}

// A backbone's reference set travels with the backbone, never alone.
func TestReferenceSetComesWithItsBackbone(t *testing.T) {
	f := newFixture(t)
	ref := filepath.Join(f.dir, "bb.reference")
	if err := os.WriteFile(ref, []byte("vectors"), 0o644); err != nil {
		t.Fatal(err)
	}
	create := func(inputs []Input) (*Manifest, error) {
		out, err := os.Create(filepath.Join(t.TempDir(), "b.wsk"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		return Create(out, inputs, CreateOptions{Version: "1.3.0", TargetOS: "linux", TargetArch: "arm64", Key: f.key})
	}
	m, err := create(append(f.inputs[1:3:3], Input{KindBackboneReference, ref}))
	if err != nil || !m.Has(KindBackboneReference) || PartOf(KindBackboneReference) != "backbone" {
		t.Fatalf("backbone with its reference set: %v", err)
	}
	if _, err := create([]Input{f.inputs[0], {KindBackboneReference, ref}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a reference set without its backbone: %v, want ErrCorrupt", err)
	}
}

// A build record travels in the signed manifest unchanged in content, and
// anything but a JSON object is refused.
func TestBuildRecord(t *testing.T) {
	f := newFixture(t)
	rec := []byte(`{"format": 1, "version": "1.2.0", "packages": ["bookworm libc6 2.36-9 arm64"]}`)
	var buf bytes.Buffer
	m, err := Create(&buf, f.inputs, CreateOptions{Version: "1.2.0", TargetOS: "linux", TargetArch: "arm64", BuildRecord: rec, Key: f.key})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, "rec.wsk")
	os.WriteFile(p, buf.Bytes(), 0o644)
	v, err := Extract(p, t.TempDir(), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	var want, made, got bytes.Buffer
	json.Compact(&want, rec)
	json.Compact(&made, m.BuildRecord)
	json.Compact(&got, v.Manifest.BuildRecord)
	if got.String() != want.String() || made.String() != want.String() {
		t.Fatalf("build record %s (made %s), want %s", got.String(), made.String(), want.String())
	}
	for _, bad := range []string{`[1, 2]`, `"text"`, `{"a":`, `null`} {
		if _, err := Create(io.Discard, f.inputs, CreateOptions{Version: "1.2.0", BuildRecord: []byte(bad), Key: f.key}); err == nil {
			t.Errorf("build record %s accepted", bad)
		}
	}
}
