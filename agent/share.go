package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// Cameras of one household (fleet.household) share the samples they are
// taught: each labelled sample is published on
// <prefix>/household/<household>/samples, and every other camera of the
// household with the same backbone stores it, so a pet taught on one
// camera is recognised by all. A sample is stored once per camera however
// often it arrives (its id names the camera and sample it came from).

// topicShared is the inbound topic name of shared samples.
const topicShared = "shared"

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

func (a *Agent) sharedTopic() string {
	return a.cfg.MQTT.TopicPrefix + "/household/" + a.cfg.Fleet.Household + "/samples"
}

// shareSample publishes a sample taught on this camera.
func (a *Agent) shareSample(id uint64, smp learner.Sample) {
	if a.cfg.Fleet.Household == "" || a.bus == nil {
		return
	}
	feats := make([]byte, 4*len(smp.Features))
	for i, f := range smp.Features {
		binary.LittleEndian.PutUint32(feats[4*i:], math.Float32bits(f))
	}
	msg := SharedSample{V: PayloadVersion, Origin: a.cfg.Device, SampleID: id, Label: smp.Label, Backbone: smp.Backbone,
		TS: timestamp(smp.Time), Features: base64.StdEncoding.EncodeToString(feats), JPEG: base64.StdEncoding.EncodeToString(smp.JPEG)}
	payload, err := json.Marshal(msg)
	if err != nil {
		return
	}
	go func() {
		if err := a.bus.PublishRaw(a.sharedTopic(), payload, false); err != nil {
			a.log.Warn("share sample with the household", "err", err)
		}
	}()
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
	if !idPattern.MatchString(s.Origin) || s.SampleID == 0 || s.Backbone == "" {
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

// storeShared keeps a sample another camera of the household was taught,
// when it was computed with this camera's backbone.
func (a *Agent) storeShared(payload []byte) {
	s, feats, jpeg, err := DecodeShared(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		a.log.Warn("shared sample ignored", "err", err)
		return
	}
	if s.Origin == a.cfg.Device {
		return
	}
	if s.Backbone != a.identity {
		a.log.Debug("shared sample of another backbone ignored", "origin", s.Origin, "backbone", s.Backbone)
		return
	}
	at, err := time.Parse(time.RFC3339Nano, s.TS)
	if err != nil {
		at = time.Now()
	}
	id, dup, err := a.store.Add(learner.Sample{
		Label: s.Label, Backbone: s.Backbone, Time: at, Features: feats, JPEG: jpeg,
		Source: fmt.Sprintf("shared:%s:%d", s.Origin, s.SampleID), RequestID: fmt.Sprintf("shared:%s:%d", s.Origin, s.SampleID),
	})
	if err != nil {
		a.log.Error("store shared sample", "err", err)
		return
	}
	if dup {
		return
	}
	a.log.Info("sample shared by the household stored", "label", s.Label, "origin", s.Origin, "sample", id)
	a.trainer.Added(learner.Sample{ID: id, Label: s.Label, Backbone: s.Backbone, Features: feats})
	a.labelsChanged([]string{s.Label})
}
