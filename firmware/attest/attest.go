// Package attest lets a camera prove what happened to an update: each
// camera holds its own ed25519 key, enrolled once at install, and signs a
// short report at every step of an update (switched to the new slot,
// committed it, rolled it back). A rollout believes that a device runs a
// new version only from such a report, signed by that device's enrolled
// key, for the request the rollout sent. Anyone on the broker can publish a
// status; only the camera can sign one.
//
// It is pure Go, so that the device side and the rollout side share it.
package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/whiskercam/whisker/firmware/bundle"
)

// Format is the version of Report.
const Format = 1

// signingContext is prepended to the payload before signing, so that a
// device key's signature over a report can never be taken for a signature
// over anything else the key may sign one day.
const signingContext = "whisker update report v1\x00"

// Limits on what a verifier reads.
const (
	MaxPayload   = 4 << 10
	maxRequestID = 128
	maxReason    = 1 << 10
)

// Events a report states.
const (
	// EventSwitching: the new slot is staged, marked pending and switched
	// to; the device restarts into it on probation.
	EventSwitching = "switching"
	// EventCommitted: the new slot proved healthy and is the known-good one.
	EventCommitted = "committed"
	// EventRolledBack: the new slot did not prove healthy (or did not
	// verify) and the device switched back.
	EventRolledBack = "rolled_back"
	// EventFailed: the update stopped before any switch.
	EventFailed = "failed"
	// EventCurrent: asked to install the bundle it already runs, committed.
	EventCurrent = "current"
)

var events = map[string]bool{EventSwitching: true, EventCommitted: true, EventRolledBack: true, EventFailed: true, EventCurrent: true}

// Running is what a device runs once the event took place.
type Running struct {
	Slot    string `json:"slot"` // "a", "b", or "" for the installed binary
	Version string `json:"version,omitempty"`
	Bundle  string `json:"bundle,omitempty"` // sha256 of the bundle the slot came from
}

// Report is what a device signs.
type Report struct {
	V         int     `json:"v"`
	Device    string  `json:"device"`
	RequestID string  `json:"request_id"` // the update request this answers
	Event     string  `json:"event"`
	Bundle    string  `json:"bundle"` // sha256 of the bundle the update is about
	Version   string  `json:"version,omitempty"`
	Running   Running `json:"running"`
	Reason    string  `json:"reason,omitempty"`
	At        string  `json:"at"` // RFC 3339, the device's clock (not trusted for freshness)
}

// Succeeded says whether the report proves that the device runs bundle sha,
// committed, in answer to request id.
func (r *Report) Succeeded(id, sha string) bool {
	return r.RequestID == id && r.Bundle == sha && r.Running.Bundle == sha &&
		(r.Event == EventCommitted || r.Event == EventCurrent)
}

// Envelope carries a signed report: the payload is the report's JSON
// exactly as signed (base64 on the wire).
type Envelope struct {
	Payload []byte `json:"payload"`
	KeyID   string `json:"key_id"`
	Sig     []byte `json:"sig"`
}

// Errors of verification.
var (
	ErrNotEnrolled = errors.New("device has no enrolled key")
	ErrSignature   = errors.New("report signature does not verify")
	ErrMalformed   = errors.New("malformed report")
)

var (
	devicePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	shaPattern    = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidDevice says whether s can be a device id.
func ValidDevice(s string) bool { return devicePattern.MatchString(s) }

func (r *Report) validate() error {
	switch {
	case r.V != Format:
		return fmt.Errorf("%w: format %d, this build reads %d", ErrMalformed, r.V, Format)
	case !ValidDevice(r.Device):
		return fmt.Errorf("%w: device %q", ErrMalformed, r.Device)
	case !events[r.Event]:
		return fmt.Errorf("%w: event %q", ErrMalformed, r.Event)
	case len(r.RequestID) > maxRequestID:
		return fmt.Errorf("%w: request id of %d bytes", ErrMalformed, len(r.RequestID))
	case r.Bundle != "" && !shaPattern.MatchString(r.Bundle):
		return fmt.Errorf("%w: bundle %q is not a sha256", ErrMalformed, r.Bundle)
	case r.Running.Bundle != "" && !shaPattern.MatchString(r.Running.Bundle):
		return fmt.Errorf("%w: running bundle %q is not a sha256", ErrMalformed, r.Running.Bundle)
	case len(r.Reason) > maxReason:
		return fmt.Errorf("%w: reason of %d bytes", ErrMalformed, len(r.Reason))
	}
	return nil
}

// Signer signs a device's reports.
type Signer struct {
	Device string
	key    ed25519.PrivateKey
}

// NewSigner makes a signer from a key (for tests and tools).
func NewSigner(device string, key ed25519.PrivateKey) (*Signer, error) {
	if !ValidDevice(device) {
		return nil, fmt.Errorf("device id %q: must be 1-64 letters, digits, '-' or '_'", device)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("not an ed25519 private key")
	}
	return &Signer{Device: device, key: key}, nil
}

// Public is the key a rollout enrols for this device.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// KeyID names the key, as signatures carry it.
func (s *Signer) KeyID() string { return bundle.KeyID(s.Public()) }

// Sign fills in the format, the device and (if empty) the time, and signs.
func (s *Signer) Sign(r Report) (*Envelope, error) {
	r.V = Format
	r.Device = s.Device
	if r.At == "" {
		r.At = time.Now().UTC().Format(time.RFC3339)
	}
	if len(r.Reason) > maxReason {
		r.Reason = r.Reason[:maxReason]
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(payload))
	}
	return &Envelope{Payload: payload, KeyID: bundle.KeyID(s.Public()), Sig: ed25519.Sign(s.key, signed(payload))}, nil
}

func signed(payload []byte) []byte {
	return append([]byte(signingContext), payload...)
}

// checkContext refuses a message to sign or verify that does not start
// with a context of its own: a printable name ending in a zero byte, not
// the update reports'.
func checkContext(msg []byte) error {
	i := bytes.IndexByte(msg, 0)
	if i < 8 || i > 64 || bytes.HasPrefix(msg, []byte(signingContext)) {
		return fmt.Errorf("%w: a message to sign must start with its own context, a name ending in a zero byte", ErrMalformed)
	}
	for _, c := range msg[:i] {
		if c < ' ' || c > '~' {
			return fmt.Errorf("%w: the context of a message to sign is not printable", ErrMalformed)
		}
	}
	return nil
}

// SignMessage signs a message for another use than update reports (a
// sample shared with the household, say). The message must start with a
// context naming that use and ending in a zero byte, so that the device
// key's signature over one kind of message can never be taken for
// another kind. It returns the key's id and the signature.
func (s *Signer) SignMessage(msg []byte) (keyID string, sig []byte, err error) {
	if err := checkContext(msg); err != nil {
		return "", nil, err
	}
	return s.KeyID(), ed25519.Sign(s.key, msg), nil
}

// VerifyMessage checks a signature that SignMessage made with device's
// enrolled key, whose id is keyID.
func (k Keyring) VerifyMessage(device, keyID string, msg, sig []byte) error {
	pub, ok := k[device]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s", ErrNotEnrolled, device)
	case checkContext(msg) != nil:
		return checkContext(msg)
	case len(sig) != ed25519.SignatureSize:
		return fmt.Errorf("%w: signature of %d bytes", ErrSignature, len(sig))
	case keyID != bundle.KeyID(pub):
		return fmt.Errorf("%w: signed by key %.16s, %s's enrolled key is %s", ErrSignature, keyID, device, bundle.KeyID(pub))
	case !ed25519.Verify(pub, msg, sig):
		return fmt.Errorf("%w: not made by %s's key, or changed after signing", ErrSignature, device)
	}
	return nil
}

// Keyring holds the enrolled public key of each device.
type Keyring map[string]ed25519.PublicKey

// Verify checks an envelope published for device: signed by that device's
// enrolled key, a well-formed report, and about that device.
func (k Keyring) Verify(device string, e *Envelope) (*Report, error) {
	if e == nil {
		return nil, fmt.Errorf("%w: no signed report", ErrSignature)
	}
	pub, ok := k[device]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotEnrolled, device)
	}
	switch {
	case len(e.Payload) == 0 || len(e.Payload) > MaxPayload:
		return nil, fmt.Errorf("%w: payload of %d bytes", ErrMalformed, len(e.Payload))
	case len(e.Sig) != ed25519.SignatureSize:
		return nil, fmt.Errorf("%w: signature of %d bytes", ErrSignature, len(e.Sig))
	case e.KeyID != bundle.KeyID(pub):
		return nil, fmt.Errorf("%w: signed by key %.16s, %s's enrolled key is %s", ErrSignature, e.KeyID, device, bundle.KeyID(pub))
	case !ed25519.Verify(pub, signed(e.Payload), e.Sig):
		return nil, fmt.Errorf("%w: not made by %s's key, or changed after signing", ErrSignature, device)
	}
	var r Report
	if err := json.NewDecoder(bytes.NewReader(e.Payload)).Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	if r.Device != device {
		return nil, fmt.Errorf("%w: a report of %s published for %s", ErrSignature, r.Device, device)
	}
	return &r, nil
}

// Devices lists the enrolled devices, sorted.
func (k Keyring) Devices() []string {
	ids := make([]string, 0, len(k))
	for id := range k {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// deviceHeader names the device in its key files.
const deviceHeader = "Device"

// GenerateDeviceKey writes a device's key pair: the private key (PKCS#8
// PEM, mode 0600) and the public key to enrol (PKIX PEM), both naming the
// device. It refuses to overwrite either.
func GenerateDeviceKey(privPath, pubPath, device string) (ed25519.PublicKey, error) {
	if !ValidDevice(device) {
		return nil, fmt.Errorf("device id %q: must be 1-64 letters, digits, '-' or '_'", device)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	h := map[string]string{deviceHeader: device}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: h, Bytes: privDER}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: h, Bytes: pubDER}), 0o644); err != nil {
		os.Remove(privPath)
		return nil, err
	}
	return pub, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting a key", path)
	}
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

// maxKeyFile bounds a key file read.
const maxKeyFile = 16 << 10

func readPEM(path, typ string) (*pem.Block, error) {
	// Non-blocking, so that a FIFO in place of a key fails instead of
	// waiting for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > maxKeyFile {
		return nil, fmt.Errorf("%s: not a key file", path)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%s: not a PEM %s", path, strings.ToLower(typ))
	}
	if !ValidDevice(block.Headers[deviceHeader]) {
		return nil, fmt.Errorf("%s: no device key (it names no device; make one with whisker keys gen --device)", path)
	}
	return block, nil
}

// LoadSigner reads a device's private key written by GenerateDeviceKey.
func LoadSigner(path string) (*Signer, error) {
	block, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an ed25519 key", path)
	}
	return NewSigner(block.Headers[deviceHeader], priv)
}

// LoadPublic reads a device's public key and the device it names.
func LoadPublic(path string) (string, ed25519.PublicKey, error) {
	block, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return "", nil, err
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return "", nil, fmt.Errorf("%s: not an ed25519 key", path)
	}
	return block.Headers[deviceHeader], pub, nil
}

// LoadKeyring reads every DEVICE.pub in dir. The device a file names must
// match its file name, and no key may be enrolled for two devices.
func LoadKeyring(dir string) (Keyring, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.pub"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s holds no enrolled device keys (DEVICE.pub, from whisker keys gen --device)", dir)
	}
	k := Keyring{}
	owner := map[string]string{}
	for _, p := range paths {
		device, pub, err := LoadPublic(p)
		if err != nil {
			return nil, err
		}
		if name := strings.TrimSuffix(filepath.Base(p), ".pub"); name != device {
			return nil, fmt.Errorf("%s names device %q: enrol it as %s.pub", p, device, device)
		}
		id := bundle.KeyID(pub)
		if other, ok := owner[id]; ok {
			return nil, fmt.Errorf("%s: key %s is enrolled for %s too; every camera needs its own", p, id, other)
		}
		owner[id] = device
		k[device] = pub
	}
	return k, nil
}
