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

// announcerConfig is the agreement a pet needs before it is announced.
func announcerConfig(c LearnerConfig) learner.AnnouncerConfig {
	return learner.AnnouncerConfig{N: c.AnnounceAgree, M: c.AnnounceWindow, MaxGap: c.AnnounceGap}
}

// captureNow classifies the next frame at once and returns its sighting.
func (a *Agent) captureNow(ctx context.Context) (*Sighting, error) {
	return a.pipe.Capture(ctx)
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

// announce feeds each pet's announcer with a frame's sightings (a pet
// not in the frame counts as a frame without it) and announces the pets
// that enough recent frames agree on: their state, "here" and the latest
// snapshot for Home Assistant. A pet whose frames stop agreeing is
// announced gone.
func (a *Agent) announce(obs []Observation) {
	at := obs[0].At
	inFrame := map[string]*Observation{}
	for i := range obs {
		l := obs[i].Sighting.Label
		if a.isPet(l) {
			if o, ok := inFrame[l]; !ok || obs[i].Sighting.Confidence > o.Sighting.Confidence {
				inFrame[l] = &obs[i]
			}
		}
	}
	a.haMu.Lock()
	for l := range inFrame {
		if a.announcers[l] == nil {
			ann, err := learner.NewAnnouncer(a.annCfg)
			if err != nil {
				a.haMu.Unlock()
				a.log.Error("announcer", "err", err)
				return
			}
			a.announcers[l] = ann
		}
	}
	type due struct {
		label string
		o     *Observation
		left  bool
	}
	var todo []due
	now := time.Now()
	for l, ann := range a.announcers {
		o := inFrame[l]
		label, conf := Unknown, 0.0
		if o != nil {
			label, conf = l, o.Sighting.Confidence
		}
		for _, ev := range ann.Observe(at, label, conf) {
			switch ev.Kind {
			case learner.Arrived:
				a.log.Info("pet arrived", "label", ev.Label, "frames", ev.Frames, "confidence", round4(ev.Confidence))
			case learner.Left:
				a.log.Info("pet left", "label", ev.Label)
				todo = append(todo, due{label: l, left: true})
			}
		}
		if ann.Current() == l && o != nil && now.Sub(a.lastAnnounce[l]) >= a.cfg.HomeAssistant.MinInterval {
			a.lastAnnounce[l] = now
			todo = append(todo, due{label: l, o: o})
		}
	}
	a.haMu.Unlock()
	if a.bus == nil || !a.bus.Connected() {
		return
	}
	for _, d := range todo {
		if d.left {
			go a.publishQuiet(a.disc.PresentTopic(d.label), []byte("OFF"), false)
			continue
		}
		s := d.o.Sighting
		a.metrics.announced.WithLabelValues(s.Label).Inc()
		st := PetState{Label: s.Label, LastSeen: s.TS, Confidence: s.Confidence, Where: a.cfg.Device, Sighting: s.ID}
		snapshot := d.o.JPEG
		if frame, _, ok := a.pipe.Snapshot(s.ID); ok {
			snapshot = frame // with the pets' boxes drawn
		}
		go func() {
			a.publishQuiet(a.disc.PetTopic(s.Label), mustJSON(st), true)
			a.publishQuiet(a.disc.PresentTopic(s.Label), []byte("ON"), false)
			if len(snapshot) > 0 {
				a.publishQuiet(a.disc.SnapshotTopic(), snapshot, true)
			}
		}()
	}
}

func (a *Agent) publishQuiet(topic string, payload []byte, retained bool) {
	if err := a.bus.PublishRaw(topic, payload, retained); err != nil {
		a.log.Debug("publish", "topic", topic, "err", err)
	}
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
