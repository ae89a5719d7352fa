// Package bundle makes and checks update bundles: a tar file holding some
// of {agent binary, backbone model with its manifest, head}, a manifest
// listing every file with its size and sha256, and an ed25519 signature of
// the manifest. A device installs a bundle only if the signature is made by
// a key it trusts, the bundle's target is its own OS and architecture, and
// every file matches the manifest.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Format is the bundle manifest format this package writes and reads.
const Format = 1

// File names inside a bundle.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
)

// Kinds of payload a bundle can carry, with their fixed file names.
const (
	KindAgent            = "agent"             // the whisker binary
	KindBackbone         = "backbone"          // backbone.tflite
	KindBackboneManifest = "backbone-manifest" // backbone.manifest.json
	// KindBackboneReference is the backbone's reference set of other
	// animals and scenes (learner.ReferencePath beside the manifest).
	KindBackboneReference = "backbone-reference" // backbone.reference
	KindHead              = "head"               // head.json
)

// FileNames maps each kind to its name in a bundle and on a device slot.
var FileNames = map[string]string{
	KindAgent:             "whisker",
	KindBackbone:          "backbone.tflite",
	KindBackboneManifest:  "backbone.manifest.json",
	KindBackboneReference: "backbone.reference",
	KindHead:              "head.json",
}

// Limits protect devices from hostile or broken bundles.
const (
	MaxBundleSize = 512 << 20
	maxManifest   = 1 << 20
)

// Errors a device reports when it refuses a bundle.
var (
	ErrSignature = errors.New("signature does not verify")
	ErrUntrusted = errors.New("signed by a key this device does not trust")
	ErrTarget    = errors.New("built for another platform")
	ErrCorrupt   = errors.New("bundle is damaged")
	ErrVersion   = errors.New("needs a newer agent")
)

// File is one payload file.
type File struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`
}

// Manifest describes a bundle.
type Manifest struct {
	Format  int    `json:"format"`
	Version string `json:"version"` // the version the device runs after installing
	Created string `json:"created"`
	Target  struct {
		OS   string `json:"os"`
		Arch string `json:"arch"`
	} `json:"target"`
	// MinAgentVersion is the oldest agent that may install the bundle.
	MinAgentVersion string `json:"min_agent_version,omitempty"`
	// Backbone is the identity of the backbone in the bundle, if any.
	Backbone string `json:"backbone,omitempty"`
	// DowngradeFrom makes the bundle a deliberate downgrade: a device
	// installs it, although its version is older, only while it runs
	// exactly this version. Without it a device installs only versions
	// newer than any it has committed, so an old bundle cannot be replayed.
	DowngradeFrom string `json:"downgrade_from,omitempty"`
	Files         []File `json:"files"`
	Notes         string `json:"notes,omitempty"`
	// BuildRecord is what the agent binary was built from
	// (scripts/build-record.sh), the same record its Debian package
	// carries: a JSON object, kept as given.
	BuildRecord json.RawMessage `json:"build_record,omitempty"`
}

// Has reports whether the bundle carries a kind of payload.
func (m *Manifest) Has(kind string) bool {
	return slices.ContainsFunc(m.Files, func(f File) bool { return f.Kind == kind })
}

// Sig is one ed25519 signature of the manifest, naming its key by id.
type Sig struct {
	KeyID     string `json:"key_id"`
	Algorithm string `json:"algorithm"`
	Signature []byte `json:"signature"`
}

// Signature is the content of manifest.sig: a signature, and optionally
// more of the same manifest by other keys (a bundle signed by an old and a
// new key while a fleet rotates keys). Devices that predate Also read only
// the first.
type Signature struct {
	Sig
	Also []Sig `json:"also,omitempty"`
}

// maxSignatures bounds the signatures a device looks at.
const maxSignatures = 8

// UntrustedError is a bundle or slot signed only by keys a device does not
// trust; it names them.
type UntrustedError struct {
	KeyIDs  []string // the keys that signed
	Trusted []string // the keys the device trusts
}

func (e *UntrustedError) Error() string {
	trusted := "none"
	if len(e.Trusted) > 0 {
		trusted = strings.Join(e.Trusted, ", ")
	}
	return fmt.Sprintf("%v (key %s; trusted: %s)", ErrUntrusted, strings.Join(e.KeyIDs, ", "), trusted)
}

func (e *UntrustedError) Unwrap() error { return ErrUntrusted }

func (m *Manifest) validate() error {
	if m.Format != Format {
		return fmt.Errorf("%w: manifest format %d, this build reads %d", ErrCorrupt, m.Format, Format)
	}
	if m.Version == "" {
		return fmt.Errorf("%w: manifest has no version", ErrCorrupt)
	}
	if _, err := ParseVersion(m.Version); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(m.Files) == 0 {
		return fmt.Errorf("%w: manifest lists no files", ErrCorrupt)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		name, ok := FileNames[f.Kind]
		switch {
		case !ok:
			return fmt.Errorf("%w: unknown file kind %q", ErrCorrupt, f.Kind)
		case f.Name != name:
			return fmt.Errorf("%w: a %s file must be named %q, not %q", ErrCorrupt, f.Kind, name, f.Name)
		case seen[f.Name]:
			return fmt.Errorf("%w: %s listed twice", ErrCorrupt, f.Name)
		case f.Size < 0 || f.Size > MaxBundleSize:
			return fmt.Errorf("%w: %s has size %d", ErrCorrupt, f.Name, f.Size)
		case len(f.SHA256) != 64:
			return fmt.Errorf("%w: %s has no sha256", ErrCorrupt, f.Name)
		}
		seen[f.Name] = true
	}
	if m.Has(KindBackbone) != m.Has(KindBackboneManifest) {
		return fmt.Errorf("%w: a backbone needs its manifest and the manifest its model", ErrCorrupt)
	}
	if m.Has(KindBackboneReference) && !m.Has(KindBackbone) {
		return fmt.Errorf("%w: a reference set comes only with the backbone it was computed with", ErrCorrupt)
	}
	if m.Has(KindAgent) && (m.Target.OS == "" || m.Target.Arch == "") {
		return fmt.Errorf("%w: a bundle with an agent binary must name its target OS and architecture", ErrCorrupt)
	}
	if m.DowngradeFrom != "" {
		from, err := ParseVersion(m.DowngradeFrom)
		if err != nil {
			return fmt.Errorf("%w: downgrade_from: %v", ErrCorrupt, err)
		}
		to, _ := ParseVersion(m.Version)
		if !to.Less(from) {
			return fmt.Errorf("%w: a downgrade from %s must have an older version, not %s", ErrCorrupt, m.DowngradeFrom, m.Version)
		}
	}
	return nil
}

// Input is a payload file to pack.
type Input struct {
	Kind string
	Path string
}

// CreateOptions are what `whisker bundle create` is told.
type CreateOptions struct {
	Version         string
	TargetOS        string // default runtime.GOOS when an agent is packed
	TargetArch      string
	MinAgentVersion string
	Backbone        string
	// DowngradeFrom marks a deliberate downgrade from that version.
	DowngradeFrom string
	Notes         string
	BuildRecord   []byte // a JSON object, or nil
	Key           ed25519.PrivateKey
	// AlsoKeys sign the manifest too (key rotation).
	AlsoKeys []ed25519.PrivateKey
}

// Create writes a signed bundle to w.
func Create(w io.Writer, inputs []Input, opt CreateOptions) (*Manifest, error) {
	m := &Manifest{Format: Format, Version: opt.Version, Created: time.Now().UTC().Format(time.RFC3339),
		MinAgentVersion: opt.MinAgentVersion, Backbone: opt.Backbone, DowngradeFrom: opt.DowngradeFrom, Notes: opt.Notes}
	datas := map[string][]byte{}
	for _, in := range inputs {
		name, ok := FileNames[in.Kind]
		if !ok {
			return nil, fmt.Errorf("unknown payload kind %q", in.Kind)
		}
		data, err := os.ReadFile(in.Path)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		mode := uint32(0o644)
		if in.Kind == KindAgent {
			mode = 0o755
		}
		m.Files = append(m.Files, File{Name: name, Kind: in.Kind, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Mode: mode})
		datas[name] = data
	}
	if m.Has(KindAgent) {
		m.Target.OS, m.Target.Arch = opt.TargetOS, opt.TargetArch
		if m.Target.OS == "" {
			m.Target.OS = runtime.GOOS
		}
		if m.Target.Arch == "" {
			m.Target.Arch = runtime.GOARCH
		}
	}
	if len(opt.BuildRecord) > 0 {
		var rec map[string]any
		if err := json.Unmarshal(opt.BuildRecord, &rec); err != nil || rec == nil {
			return nil, fmt.Errorf("build record: not a JSON object (%v)", err)
		}
		m.BuildRecord = json.RawMessage(opt.BuildRecord)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if len(opt.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("no signing key")
	}
	s := Signature{Sig: sign(opt.Key, manifest)}
	for _, k := range opt.AlsoKeys {
		if len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("a further signing key is not an ed25519 private key")
		}
		s.Also = append(s.Also, sign(k, manifest))
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	sig, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(w)
	add := func(name string, mode int64, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	// The manifest and its signature come first, so a device can refuse a
	// bundle before reading its payload.
	if err := add(ManifestName, 0o644, manifest); err != nil {
		return nil, err
	}
	if err := add(SignatureName, 0o644, sig); err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if err := add(f.Name, int64(f.Mode), datas[f.Name]); err != nil {
			return nil, err
		}
	}
	return m, tw.Close()
}

// CheckOptions are what a device checks a bundle against.
type CheckOptions struct {
	Trusted      []ed25519.PublicKey
	OS, Arch     string // default runtime's
	AgentVersion string // the running agent's version
	// AnyTarget skips the platform check (for checking a bundle on the
	// machine that made it).
	AnyTarget bool
}

// Verified is a bundle that passed every check.
type Verified struct {
	Manifest *Manifest
	KeyID    string   // the first trusted key whose signature verified
	KeyIDs   []string // every trusted key whose signature verified
	raw      []byte   // the manifest as signed
}

func sign(key ed25519.PrivateKey, manifest []byte) Sig {
	return Sig{KeyID: KeyID(key.Public().(ed25519.PublicKey)), Algorithm: "ed25519", Signature: ed25519.Sign(key, manifest)}
}

// all lists the signatures, first one first.
func (s *Signature) all() []Sig { return append([]Sig{s.Sig}, s.Also...) }

// check refuses a signature file a device would not read.
func (s *Signature) check() error {
	all := s.all()
	if len(all) > maxSignatures {
		return fmt.Errorf("%w: %d signatures, at most %d are read", ErrSignature, len(all), maxSignatures)
	}
	seen := map[string]bool{}
	for _, g := range all {
		if g.Algorithm != "ed25519" || len(g.Signature) != ed25519.SignatureSize {
			return fmt.Errorf("%w: signature algorithm %q with %d bytes", ErrSignature, g.Algorithm, len(g.Signature))
		}
		if seen[g.KeyID] {
			return fmt.Errorf("%w: key %s signs twice", ErrSignature, g.KeyID)
		}
		seen[g.KeyID] = true
	}
	return nil
}

// parseSignature reads manifest.sig strictly.
func parseSignature(sig []byte) (*Signature, error) {
	if len(sig) > maxManifest {
		return nil, fmt.Errorf("%w: signature file of %d bytes", ErrCorrupt, len(sig))
	}
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(sig))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: signature file: %v", ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: signature file: data after the signature", ErrCorrupt)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// SignatureKeyIDs lists the keys a manifest.sig names, without checking
// anything else (for tools that say which keys a slot depends on).
func SignatureKeyIDs(sig []byte) ([]string, error) {
	s, err := parseSignature(sig)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, g := range s.all() {
		ids = append(ids, g.KeyID)
	}
	return ids, nil
}

// VerifyManifest checks a manifest's signatures and what it claims; the
// payload is checked by Extract. At least one signature must be by a
// trusted key, and every signature by a trusted key must verify;
// signatures by other keys are ignored.
func VerifyManifest(manifest, sig []byte, opt CheckOptions) (*Verified, error) {
	if len(manifest) > maxManifest {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrCorrupt, len(manifest))
	}
	s, err := parseSignature(sig)
	if err != nil {
		return nil, err
	}
	trusted := map[string]ed25519.PublicKey{}
	for _, k := range opt.Trusted {
		trusted[KeyID(k)] = k
	}
	var verified, named []string
	for _, g := range s.all() {
		named = append(named, g.KeyID)
		key, ok := trusted[g.KeyID]
		if !ok {
			continue
		}
		if !ed25519.Verify(key, manifest, g.Signature) {
			return nil, fmt.Errorf("%w: the manifest was changed after signing, or signed by another key claiming id %s", ErrSignature, g.KeyID)
		}
		verified = append(verified, g.KeyID)
	}
	if len(verified) == 0 {
		return nil, &UntrustedError{KeyIDs: named, Trusted: keyIDList(opt.Trusted)}
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	goos, arch := opt.OS, opt.Arch
	if goos == "" {
		goos = runtime.GOOS
	}
	if arch == "" {
		arch = runtime.GOARCH
	}
	if m.Has(KindAgent) && !opt.AnyTarget && (m.Target.OS != goos || m.Target.Arch != arch) {
		return nil, fmt.Errorf("%w: the agent binary is for %s/%s, this device is %s/%s", ErrTarget, m.Target.OS, m.Target.Arch, goos, arch)
	}
	if m.MinAgentVersion != "" && opt.AgentVersion != "" {
		need, err := ParseVersion(m.MinAgentVersion)
		if err != nil {
			return nil, fmt.Errorf("%w: min_agent_version: %v", ErrCorrupt, err)
		}
		have, err := ParseVersion(opt.AgentVersion)
		if err == nil && have.Less(need) {
			return nil, fmt.Errorf("%w: it needs agent %s or newer, this one is %s", ErrVersion, m.MinAgentVersion, opt.AgentVersion)
		}
	}
	return &Verified{Manifest: &m, KeyID: verified[0], KeyIDs: verified, raw: manifest}, nil
}

func keyIDList(keys []ed25519.PublicKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = KeyID(k)
	}
	return ids
}

// Open reads and checks a bundle file's manifest and signature.
func Open(path string, opt CheckOptions) (*Verified, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readHead(f, opt)
}

func readHead(r io.Reader, opt CheckOptions) (*Verified, error) {
	v, _, _, err := readManifest(tar.NewReader(r), opt)
	return v, err
}

// readManifest reads the two leading entries and verifies them.
func readManifest(tr *tar.Reader, opt CheckOptions) (v *Verified, manifest, sig []byte, err error) {
	for _, want := range []string{ManifestName, SignatureName} {
		hdr, err := tr.Next()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: reading %s: %v", ErrCorrupt, want, err)
		}
		if hdr.Name != want || hdr.Typeflag != tar.TypeReg || hdr.Size > maxManifest {
			return nil, nil, nil, fmt.Errorf("%w: expected %s first, found %q", ErrCorrupt, want, hdr.Name)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxManifest))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, want, err)
		}
		if want == ManifestName {
			manifest = data
		} else {
			sig = data
		}
	}
	v, err = VerifyManifest(manifest, sig, opt)
	return v, manifest, sig, err
}

// Extract checks a bundle completely and writes its payload files, the
// manifest and the signature into dir (which must exist and be empty). Each
// file is written, synced and checked against its size and sha256; on any
// error the caller discards dir.
func Extract(path, dir string, opt CheckOptions) (*Verified, error) {
	v, manifest, sig, err := walk(path, opt, func(spec File, r io.Reader) error {
		return writeChecked(filepath.Join(dir, spec.Name), r, spec)
	})
	if err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{ManifestName: manifest, SignatureName: sig} {
		if err := writeSynced(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// VerifyFile checks a bundle completely, as Extract does, without writing
// anything.
func VerifyFile(path string, opt CheckOptions) (*Verified, error) {
	v, _, _, err := walk(path, opt, func(spec File, r io.Reader) error {
		return hashChecked(r, spec)
	})
	return v, err
}

// walk verifies a bundle's manifest, then hands each payload entry to
// payload, which must read and check it; every listed file must come once.
func walk(path string, opt CheckOptions, payload func(File, io.Reader) error) (v *Verified, manifest, sig []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, nil, nil, err
	} else if !st.Mode().IsRegular() {
		return nil, nil, nil, fmt.Errorf("%w: not a regular file", ErrCorrupt)
	} else if st.Size() > MaxBundleSize {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes is over the %d-byte limit", ErrCorrupt, st.Size(), MaxBundleSize)
	}
	tr := tar.NewReader(f)
	v, manifest, sig, err = readManifest(tr, opt)
	if err != nil {
		return nil, nil, nil, err
	}
	want := map[string]File{}
	for _, f := range v.Manifest.Files {
		want[f.Name] = f
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		spec, ok := want[hdr.Name]
		if !ok || hdr.Typeflag != tar.TypeReg {
			return nil, nil, nil, fmt.Errorf("%w: unexpected entry %q", ErrCorrupt, hdr.Name)
		}
		delete(want, hdr.Name)
		if hdr.Size != spec.Size {
			return nil, nil, nil, fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrCorrupt, hdr.Name, hdr.Size, spec.Size)
		}
		if err := payload(spec, tr); err != nil {
			return nil, nil, nil, err
		}
	}
	if len(want) > 0 {
		var missing []string
		for n := range want {
			missing = append(missing, n)
		}
		slices.Sort(missing)
		return nil, nil, nil, fmt.Errorf("%w: missing %s (truncated?)", ErrCorrupt, strings.Join(missing, ", "))
	}
	return v, manifest, sig, nil
}

// AddSignature writes to out a copy of the bundle at path whose manifest
// is signed by key as well. The bundle must first verify completely
// against opt: nobody signs what they have not checked.
func AddSignature(path string, out io.Writer, key ed25519.PrivateKey, opt CheckOptions) (*Verified, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("no signing key")
	}
	v, err := VerifyFile(path, opt)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	_, manifest, sigData, err := readManifest(tr, opt)
	if err != nil {
		return nil, err
	}
	s, err := parseSignature(sigData)
	if err != nil {
		return nil, err
	}
	id := KeyID(key.Public().(ed25519.PublicKey))
	for _, g := range s.all() {
		if g.KeyID == id {
			return nil, fmt.Errorf("the bundle is already signed by key %s", id)
		}
	}
	s.Also = append(s.Also, sign(key, manifest))
	if err := s.check(); err != nil {
		return nil, err
	}
	newSig, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(out)
	for _, e := range []struct {
		name string
		data []byte
	}{{ManifestName, manifest}, {SignatureName, newSig}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: hdr.Name, Mode: hdr.Mode, Size: hdr.Size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, io.LimitReader(tr, hdr.Size)); err != nil {
			return nil, err
		}
	}
	return v, tw.Close()
}

func hashChecked(r io.Reader, spec File) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(r, spec.Size))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, spec.Name, err)
	}
	if n != spec.Size || hex.EncodeToString(h.Sum(nil)) != spec.SHA256 {
		return fmt.Errorf("%w: %s does not match its sha256 in the manifest", ErrCorrupt, spec.Name)
	}
	return nil
}

func writeChecked(path string, r io.Reader, spec File) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(spec.Mode&0o777))
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(r, spec.Size))
	if err == nil && n != spec.Size {
		err = fmt.Errorf("%w: %s ends after %d of %d bytes", ErrCorrupt, spec.Name, n, spec.Size)
	}
	if err == nil && hex.EncodeToString(h.Sum(nil)) != spec.SHA256 {
		err = fmt.Errorf("%w: %s does not match its sha256 in the manifest", ErrCorrupt, spec.Name)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeSynced(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// VerifyDir checks an extracted slot: the signature of its manifest by a
// trusted key and every file's size and sha256. A device runs a slot only
// after this passes.
func VerifyDir(dir string, opt CheckOptions) (*Verified, error) {
	v, err := verifySigned(dir, opt)
	if err != nil {
		return nil, err
	}
	for _, f := range v.Manifest.Files {
		if err := checkFile(filepath.Join(dir, f.Name), f); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// verifySigned checks the manifest and signature kept in dir.
func verifySigned(dir string, opt CheckOptions) (*Verified, error) {
	manifest, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, err
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureName))
	if err != nil {
		return nil, err
	}
	return VerifyManifest(manifest, sig, opt)
}

func checkFile(path string, spec File) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, spec.Size+1))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, spec.Name, err)
	}
	if n != spec.Size || hex.EncodeToString(h.Sum(nil)) != spec.SHA256 {
		return fmt.Errorf("%w: %s does not match the manifest", ErrCorrupt, spec.Name)
	}
	return nil
}

// FileSHA256 is the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Parts group the kinds a device keeps together: a slot holds each part in
// its own directory with the signed manifest that vouches for it, so a
// bundle that brings only some parts carries the others forward unchanged.
var Parts = map[string][]string{
	"agent":    {KindAgent},
	"backbone": {KindBackbone, KindBackboneManifest, KindBackboneReference},
	"head":     {KindHead},
}

// PartOf returns the part a kind belongs to.
func PartOf(kind string) string {
	for p, kinds := range Parts {
		if slices.Contains(kinds, kind) {
			return p
		}
	}
	return ""
}

// VerifyPart checks one part directory of a slot: its manifest signature
// and the files of that part.
func VerifyPart(dir, part string, opt CheckOptions) (*Verified, error) {
	v, err := verifySigned(dir, opt)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, f := range v.Manifest.Files {
		if PartOf(f.Kind) != part {
			continue
		}
		n++
		if err := checkFile(filepath.Join(dir, f.Name), f); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s holds no %s files", ErrCorrupt, dir, part)
	}
	return v, nil
}

// Manifest returns the manifest as signed.
func (v *Verified) Raw() []byte { return v.raw }

// ReadUnverified returns a bundle's manifest without checking its
// signature, for tools on the machine that made it.
func ReadUnverified(path string) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != ManifestName {
		return nil, fmt.Errorf("%w: no manifest first", ErrCorrupt)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, maxManifest)).Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	return &m, m.validate()
}
