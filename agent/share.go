package agent

import (
	"fmt"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
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

// shareSample publishes a sample taught on this camera.
func (a *Agent) shareSample(id uint64, smp learner.Sample) {
	b := a.bus.Load()
	if a.cfg.Fleet.Household == "" || b == nil {
		return
	}
	payload, err := protocol.EncodeShared(a.cfg.Device, id, smp.Label, smp.Backbone, smp.Time, smp.Features, smp.JPEG, "", nil)
	if err != nil {
		return
	}
	go func() {
		if err := b.PublishRaw(protocol.SharedTopic(a.cfg.MQTT.TopicPrefix, a.cfg.Fleet.Household), payload, false); err != nil {
			a.log.Warn("share sample with the household", "err", err)
		}
	}()
}

// storeShared keeps a sample another camera of the household was taught,
// when it was computed with this camera's backbone.
func (a *Agent) storeShared(payload []byte) {
	s, feats, jpeg, err := protocol.DecodeShared(payload, a.cfg.MQTT.MaxPayload)
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
		a.log.Debug("shared sample already stored", "origin", s.Origin, "sample", id)
		return
	}
	a.log.Info("sample shared by the household stored", "label", s.Label, "origin", s.Origin, "sample", id)
	a.trainer.Added(learner.Sample{ID: id, Label: s.Label, Backbone: s.Backbone, Features: feats})
	a.labelsChanged()
}
