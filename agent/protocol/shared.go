package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Cameras of one household share the samples they are taught on
// <prefix>/household/<household>/samples (see docs/mqtt.md).

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
}

// EncodeShared makes the payload that shares a sample taught on origin.
func EncodeShared(origin string, sampleID uint64, label, backbone string, at time.Time, features []float32, jpeg []byte) ([]byte, error) {
	feats := make([]byte, 4*len(features))
	for i, f := range features {
		binary.LittleEndian.PutUint32(feats[4*i:], math.Float32bits(f))
	}
	return json.Marshal(SharedSample{V: PayloadVersion, Origin: origin, SampleID: sampleID, Label: label, Backbone: backbone,
		TS: Timestamp(at), Features: base64.StdEncoding.EncodeToString(feats), JPEG: base64.StdEncoding.EncodeToString(jpeg)})
}

// DecodeShared parses and checks a shared sample.
func DecodeShared(payload []byte, maxPayload int) (*SharedSample, []float32, []byte, error) {
	if len(payload) > maxPayload {
		return nil, nil, nil, fmt.Errorf("shared sample of %d bytes is over the limit", len(payload))
	}
	var s SharedSample
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, nil, nil, fmt.Errorf("shared sample: %w", err)
	}
	if s.V != PayloadVersion {
		return nil, nil, nil, fmt.Errorf("shared sample version %d", s.V)
	}
	if !ValidID(s.Origin) || s.SampleID == 0 || s.Backbone == "" {
		return nil, nil, nil, errors.New("shared sample has no origin, id or backbone")
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
