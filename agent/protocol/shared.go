package protocol

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// Cameras of one household share the samples they are taught on
// <prefix>/household/<household>/samples (see docs/mqtt.md). Each sample
// is signed by the key of the camera that was taught (its device key), and
// a camera stores only samples signed by a camera it has enrolled.

// SharedSignContext is prepended to what a shared sample's signature
// covers, so that a device key's signature over a sample can never be
// taken for one over an update report, or anything else.
const SharedSignContext = "whisker shared sample v1\x00"

// SharedTopic is where the cameras of a household share their samples.
func SharedTopic(prefix, household string) string {
	return prefix + "/household/" + household + "/samples"
}

// SharedSample is the payload of a shared sample.
type SharedSample struct {
	V        int    `json:"v"`
	Origin   string `json:"origin"`    // the device that was taught
	SampleID uint64 `json:"sample_id"` // its id there
	Label    string `json:"label"`
	Backbone string `json:"backbone"`
	TS       string `json:"ts"`
	Features string `json:"features"` // base64 of little-endian float32
	JPEG     string `json:"jpeg"`     // base64
	// KeyID names the origin's device key, Sig is its ed25519 signature
	// (base64) over SignedMessage.
	KeyID string `json:"key_id,omitempty"`
	Sig   string `json:"sig,omitempty"`
}

// SignedMessage is what the origin signs: SharedSignContext, then the
// SHA-256 of every field but the signature's own, each as its length
// (uvarint) and its text exactly as sent.
func (s *SharedSample) SignedMessage() []byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{strconv.Itoa(s.V), s.Origin, strconv.FormatUint(s.SampleID, 10), s.Label, s.Backbone, s.TS, s.Features, s.JPEG, s.KeyID} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		io.WriteString(h, f)
	}
	return h.Sum([]byte(SharedSignContext))
}

// Signature returns the decoded signature.
func (s *SharedSample) Signature() ([]byte, error) {
	if s.Sig == "" {
		return nil, errors.New("shared sample is not signed")
	}
	sig, err := base64.StdEncoding.DecodeString(s.Sig)
	if err != nil || len(sig) != 64 {
		return nil, errors.New("shared sample signature is not 64 bytes of base64")
	}
	return sig, nil
}

// EncodeShared makes the payload that shares a sample taught on origin,
// signed by sign with the key keyID names (unsigned when sign is nil).
func EncodeShared(origin string, sampleID uint64, label, backbone string, at time.Time, features []float32, jpeg []byte, keyID string, sign func([]byte) ([]byte, error)) ([]byte, error) {
	feats := make([]byte, 4*len(features))
	for i, f := range features {
		binary.LittleEndian.PutUint32(feats[4*i:], math.Float32bits(f))
	}
	s := SharedSample{V: PayloadVersion, Origin: origin, SampleID: sampleID, Label: NormalizeLabel(label), Backbone: backbone,
		TS: Timestamp(at), Features: base64.StdEncoding.EncodeToString(feats), JPEG: base64.StdEncoding.EncodeToString(jpeg)}
	if sign != nil {
		s.KeyID = keyID
		sig, err := sign(s.SignedMessage())
		if err != nil {
			return nil, fmt.Errorf("sign shared sample: %w", err)
		}
		s.Sig = base64.StdEncoding.EncodeToString(sig)
	}
	return json.Marshal(s)
}

// DecodeShared parses and checks a shared sample: its size (before
// anything is parsed), its fields, a label name in normal form, and
// feature values that are all finite. The signature is the receiver's to
// check (SignedMessage, Signature).
func DecodeShared(payload []byte, maxPayload int) (*SharedSample, []float32, []byte, error) {
	if len(payload) > maxPayload {
		return nil, nil, nil, fmt.Errorf("shared sample of %d bytes is over the limit of %d (mqtt.max_payload)", len(payload), maxPayload)
	}
	var s SharedSample
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, nil, nil, fmt.Errorf("shared sample: %w", err)
	}
	if dec.More() {
		return nil, nil, nil, errors.New("shared sample has data after the JSON object")
	}
	if s.V != PayloadVersion {
		return nil, nil, nil, fmt.Errorf("shared sample version %d", s.V)
	}
	if !ValidID(s.Origin) || s.SampleID == 0 || s.Backbone == "" || len(s.Backbone) > 256 || len(s.TS) > 64 || len(s.KeyID) > 64 {
		return nil, nil, nil, errors.New("shared sample has no origin, id or backbone, or an oversized field")
	}
	if err := CheckLabelName(s.Label); err != nil {
		return nil, nil, nil, fmt.Errorf("shared sample: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(s.Features)
	if err != nil || len(raw) == 0 || len(raw)%4 != 0 {
		return nil, nil, nil, errors.New("shared sample features are not base64 float32")
	}
	feats := make([]float32, len(raw)/4)
	for i := range feats {
		feats[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if math.IsNaN(float64(feats[i])) || math.IsInf(float64(feats[i]), 0) {
			return nil, nil, nil, errors.New("shared sample features are not finite")
		}
	}
	jpeg, err := base64.StdEncoding.DecodeString(s.JPEG)
	if err != nil {
		return nil, nil, nil, errors.New("shared sample jpeg is not base64")
	}
	return &s, feats, jpeg, nil
}
