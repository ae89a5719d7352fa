package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner"
)

// Cameras of one household (fleet.household) share the samples they are
// taught: each labelled sample is published on
// <prefix>/household/<household>/samples, signed by the camera's device
// key, and every other camera of the household that has enrolled that key
// (fleet.household_keys) and runs the same backbone stores it, so a pet
// taught on one camera is recognised by all. A sample is stored once per
// camera however often it arrives (its id names the camera and sample it
// came from), and each camera's samples are bounded
// (fleet.max_samples_per_camera).

// topicShared is the inbound topic name of shared samples.
const topicShared = "shared"

// shareSample publishes a sample taught on this camera.
func (a *Agent) shareSample(id uint64, smp learner.Sample) {
	b := a.bus.Load()
	if a.cfg.Fleet.Household == "" || b == nil || a.signer == nil {
		return
	}
	payload, err := protocol.EncodeShared(a.cfg.Device, id, smp.Label, smp.Backbone, smp.Time, smp.Features, smp.JPEG, a.signer.KeyID(),
		func(msg []byte) ([]byte, error) {
			_, sig, err := a.signer.SignMessage(msg)
			return sig, err
		})
	if err != nil {
		a.log.Warn("share sample with the household", "err", err)
		return
	}
	go func() {
		if err := b.PublishRaw(protocol.SharedTopic(a.cfg.MQTT.TopicPrefix, a.cfg.Fleet.Household), payload, false); err != nil {
			a.log.Warn("share sample with the household", "err", err)
		}
	}()
}

// storeShared keeps a sample another camera of the household was taught,
// when it is signed by that camera's enrolled key, was computed with this
// camera's backbone and passes the checks of a sample from outside. It
// says whether to acknowledge the message: every sample that is stored,
// or refused for good, is; one that could not be stored for lack of room
// (or a failed write) is not, so that the broker delivers it again.
func (a *Agent) storeShared(payload []byte) (ack bool) {
	s, feats, jpeg, err := protocol.DecodeShared(payload, a.cfg.MQTT.MaxPayload)
	if err != nil {
		a.log.Warn("shared sample refused", "err", err)
		return true
	}
	if s.Origin == a.cfg.Device {
		return true // our own, back from the broker
	}
	if err := a.verifyShared(s); err != nil {
		a.log.Warn("shared sample refused: not signed by an enrolled camera of the household", "origin", s.Origin, "err", err)
		return true
	}
	if s.Backbone != a.identity {
		a.log.Debug("shared sample of another backbone ignored", "origin", s.Origin, "backbone", s.Backbone)
		return true
	}
	if len(feats) != a.dim {
		a.log.Warn("shared sample refused: its feature vector does not fit this backbone", "origin", s.Origin, "values", len(feats), "want", a.dim)
		return true
	}
	if len(jpeg) > 0 {
		info, err := camera.SizeImage(jpeg, a.cfg.Images.Limits())
		if err == nil && info.Format != camera.FormatJPEG {
			err = fmt.Errorf("a %s image, not a JPEG", info.Format)
		}
		if err != nil {
			a.log.Warn("shared sample refused: its image", "origin", s.Origin, "err", err)
			return true
		}
	}
	at, err := time.Parse(time.RFC3339Nano, s.TS)
	if err != nil {
		at = time.Now()
	}
	label := a.canonicalLabel(s.Label)
	ref := fmt.Sprintf("shared:%s:%d", s.Origin, s.SampleID)
	id, dup, err := a.store.Add(learner.Sample{
		Label: label, Backbone: s.Backbone, Time: at, Features: feats, JPEG: jpeg, Source: ref, RequestID: ref,
	})
	switch {
	case errors.Is(err, learner.ErrInvalidSample), errors.Is(err, learner.ErrOriginFull), errors.Is(err, learner.ErrLabelFull):
		a.log.Warn("shared sample refused", "origin", s.Origin, "label", label, "err", err)
		return true
	case err != nil:
		a.log.Error("shared sample not stored; the broker keeps it", "origin", s.Origin, "label", label, "err", err)
		a.pauseHousehold()
		return false
	case dup:
		a.log.Debug("shared sample already stored", "origin", s.Origin, "sample", id)
		return true
	}
	a.log.Info("sample shared by the household stored", "label", label, "origin", s.Origin, "sample", id)
	a.trainer.Added(learner.Sample{ID: id, Label: label, Backbone: s.Backbone, Features: feats})
	a.labelsChanged()
	a.diskChanged()
	return true
}

// verifyShared checks a shared sample's signature against its origin's
// enrolled key.
func (a *Agent) verifyShared(s *protocol.SharedSample) error {
	if _, ok := a.household[s.Origin]; !ok {
		return fmt.Errorf("%s is not enrolled in fleet.household_keys", s.Origin)
	}
	sig, err := s.Signature()
	if err != nil {
		return err
	}
	return a.household.VerifyMessage(s.Origin, s.KeyID, s.SignedMessage(), sig)
}
