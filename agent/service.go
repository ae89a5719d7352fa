package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/whiskercam/whisker/learner"
)

type captureResult struct {
	sighting *Sighting
	err      error
}

// captureNow classifies the next frame at once and returns its sighting.
func (a *Agent) captureNow(ctx context.Context) (*Sighting, error) {
	reply := make(chan captureResult, 1)
	select {
	case a.captureReqs <- reply:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, errors.New("inference is busy")
	}
	select {
	case r := <-reply:
		return r.sighting, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// threshold is the probability below which a sighting is "unknown": the
// one set over MQTT if any, else the configured one.
func (a *Agent) threshold() float64 {
	if t, ok := a.settings.Threshold(); ok {
		return t
	}
	return a.cfg.Learner.Threshold
}

// isPet says whether a label names a pet (not "unknown", not a no-pet label).
func (a *Agent) isPet(label string) bool {
	return label != Unknown && !slices.Contains(a.cfg.Learner.NoPetLabels, label)
}

// onSighting runs after each sighting is published: metrics, and for a
// pet, its announcement (state, presence and latest snapshot).
func (a *Agent) onSighting(s *Sighting, jpeg []byte, took time.Duration) {
	a.metrics.inference.Observe(took.Seconds())
	a.metrics.sightings.WithLabelValues(s.Label).Inc()
	if !a.isPet(s.Label) {
		return
	}
	now := time.Now()
	a.haMu.Lock()
	last := a.lastAnnounce[s.Label]
	due := now.Sub(last) >= a.cfg.HomeAssistant.MinInterval
	if due {
		a.lastAnnounce[s.Label] = now
	}
	a.haMu.Unlock()
	if !due || a.bus == nil || !a.bus.Connected() {
		return
	}
	a.metrics.announced.WithLabelValues(s.Label).Inc()
	a.log.Info("pet seen", "label", s.Label, "confidence", s.Confidence, "sighting", s.ID)
	st := PetState{Label: s.Label, LastSeen: s.TS, Confidence: s.Confidence, Where: a.cfg.Device, Sighting: s.ID}
	go func() {
		if err := a.bus.PublishRaw(a.disc.PetTopic(s.Label), mustJSON(st), true); err != nil {
			a.log.Debug("publish pet state", "err", err)
		}
		if err := a.bus.PublishRaw(a.disc.PresentTopic(s.Label), []byte("ON"), false); err != nil {
			a.log.Debug("publish presence", "err", err)
		}
		if len(jpeg) > 0 {
			if err := a.bus.PublishRaw(a.disc.SnapshotTopic(), jpeg, true); err != nil {
				a.log.Debug("publish snapshot", "err", err)
			}
		}
	}()
}

// pets are the labels with samples that name pets, sorted.
func (a *Agent) pets() ([]string, error) {
	counts, err := a.store.Counts(a.identity)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range counts {
		if a.isPet(c.Label) {
			out = append(out, c.Label)
		}
	}
	return out, nil
}

// labelsChanged brings Home Assistant's entities and the status up to
// date after labels were added, renamed or forgotten.
func (a *Agent) labelsChanged(_ []string) {
	a.publishStatusAsync()
	if a.bus == nil || !a.bus.Connected() {
		return // published on the next connect
	}
	go func() {
		if err := a.syncDiscovery(); err != nil {
			a.log.Warn("Home Assistant discovery", "err", err)
		}
	}()
}

// syncDiscovery publishes discovery configs for every pet and removes the
// entities of pets that no longer have samples (including ones forgotten
// while the agent was offline: the published set is kept in settings).
func (a *Agent) syncDiscovery() error {
	if !a.cfg.HomeAssistant.Enabled {
		return nil
	}
	a.discMu.Lock()
	defer a.discMu.Unlock()
	pets, err := a.pets()
	if err != nil {
		return err
	}
	var msgs []Message
	msgs = append(msgs, a.disc.CameraConfig())
	for _, p := range pets {
		msgs = append(msgs, a.disc.PetConfigs(p)...)
	}
	for _, old := range a.settings.Published() {
		if !slices.Contains(pets, old) {
			a.log.Info("removing Home Assistant entities", "label", old)
			msgs = append(msgs, a.disc.RemovePet(old)...)
		}
	}
	for _, m := range msgs {
		if err := a.bus.PublishRaw(m.Topic, m.Payload, true); err != nil {
			return fmt.Errorf("publish %s: %w", m.Topic, err)
		}
	}
	return a.settings.SetPublished(pets)
}

// trained records a training run in the metrics and the status.
func (a *Agent) trained(_ *learner.Head, rep learner.TrainReport) {
	switch {
	case rep.Err == nil:
		a.metrics.trainRuns.WithLabelValues("ok").Inc()
		a.metrics.trainTime.Observe(rep.Duration.Seconds())
	case errors.Is(rep.Err, learner.ErrTooFewClasses):
		a.metrics.trainRuns.WithLabelValues("too_few_labels").Inc()
	default:
		a.metrics.trainRuns.WithLabelValues("error").Inc()
	}
	a.publishStatusAsync()
}
