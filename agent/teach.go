package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/whiskercam/whisker/agent/inbox"
	"github.com/whiskercam/whisker/agent/pipeline"
	"github.com/whiskercam/whisker/agent/protocol"
	"github.com/whiskercam/whisker/learner"
)

// What the agent keeps so that a label changes what was already seen: the
// inbox (recent sightings on disk, agent/inbox), and the last frames'
// sightings in memory, which are named again and replayed to Home
// Assistant's announcers whenever the head changes.

// ringFrames is how many of the last frames are kept in memory.
const ringFrames = 32

// revisedMaxAge and revisedMax bound the sightings published on
// sighting/revised after one re-classification: only recent ones, and not
// a flood.
const (
	revisedMaxAge = 10 * time.Minute
	revisedMax    = 100
)

// ringFrame is the sightings of one classified frame, with their
// features.
type ringFrame struct {
	at        time.Time
	sightings []protocol.Sighting
	features  [][]float32
}

// remember keeps a frame's sightings in the ring and files them in the
// inbox. a.obsMu is held.
func (a *Agent) remember(obs []pipeline.Observation, sightings []protocol.Sighting) {
	f := ringFrame{at: obs[0].At, sightings: slices.Clone(sightings), features: make([][]float32, len(obs))}
	for i, o := range obs {
		f.features[i] = o.Features
	}
	if len(a.ring) == ringFrames {
		copy(a.ring, a.ring[1:])
		a.ring = a.ring[:ringFrames-1]
	}
	a.ring = append(a.ring, f)

	in := make([]inbox.Observed, len(obs))
	for i, o := range obs {
		s := sightings[i]
		in[i] = inbox.Observed{ID: s.ID, At: o.At, Frame: s.Frame, Label: s.Label, Confidence: s.Confidence, Scores: s.Scores,
			Box: s.Box, Features: o.Features, Backbone: a.identity, Crop: o.JPEG}
		if img, _, ok := a.pipe.Snapshot(s.ID); ok {
			in[i].FrameJPEG = img
		}
	}
	a.inbox.Add(in)
}

// kickReclassify asks for the recent sightings to be named again with the
// current head, soon.
func (a *Agent) kickReclassify() {
	select {
	case a.reclass <- struct{}{}:
	default:
	}
}

// inboxEvery is how often, at most, the whole inbox is named again: a
// burst of labels names the last frames again after each label, the inbox
// once a second.
const inboxEvery = time.Second

// reclassifier names the recent sightings again after every change of the
// head, until ctx ends.
func (a *Agent) reclassifier(ctx context.Context) error {
	a.kickReclassify() // the inbox of the last run, with the loaded head
	later := time.NewTimer(time.Hour)
	later.Stop()
	var lastInbox time.Time
	waiting := false
	published := map[string]bool{} // on sighting/revised since the last inbox pass
	inbox := func() {
		if err := a.reclassifyInbox(published); err != nil {
			a.log.Warn("the inbox's sightings were not named again", "err", err)
		}
		clear(published)
		lastInbox, waiting = time.Now(), false
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-later.C:
			inbox()
		case <-a.reclass:
			a.reclassifyRecent(published)
			switch since := time.Since(lastInbox); {
			case since >= inboxEvery:
				inbox()
			case !waiting:
				later.Reset(inboxEvery - since)
				waiting = true
			}
		}
	}
}

// classifier names feature vectors with a head, as the pipeline does.
func (a *Agent) classifier(h *learner.Head) inbox.Classifier {
	return func(f []float32, boxed bool) (string, float64, map[string]float64, bool) {
		var s protocol.Sighting
		if h == nil || len(f) != h.Dim || !a.pipe.Name(h, &s, f, boxed) {
			return "", 0, nil, false
		}
		return s.Label, s.Confidence, s.Scores, true
	}
}

// reclassifyRecent names the last frames' sightings again with the current
// head. The frames of the announcement window are replayed to Home
// Assistant when any name changed (so that a pet named by a label is
// announced without waiting for new frames), and the sightings whose name
// changed are published on sighting/revised (and noted in published).
func (a *Agent) reclassifyRecent(published map[string]bool) {
	h := a.trainer.Head()
	if h == nil {
		return
	}
	now := time.Now()
	ts := protocol.Timestamp(now)
	var revised []protocol.Sighting
	a.obsMu.Lock()
	changed := false
	for fi := range a.ring {
		f := &a.ring[fi]
		for i := range f.sightings {
			s := &f.sightings[i]
			var n protocol.Sighting
			if len(f.features[i]) != h.Dim || !a.pipe.Name(h, &n, f.features[i], s.Box != nil) {
				continue
			}
			prev := s.Label
			s.Label, s.Confidence, s.Scores, s.Why, s.Nearest = n.Label, n.Confidence, n.Scores, n.Why, n.Nearest
			if prev != n.Label {
				changed = true
				r := *s
				r.Previous, r.Revised = prev, ts
				revised = append(revised, r)
				published[s.ID] = true
			}
		}
	}
	if changed {
		// The announcers hold the last announce_window frames: replaying
		// those (within the gap that ends a stay) replaces what they saw.
		from := max(0, len(a.ring)-a.cfg.Learner.AnnounceWindow)
		for fi := from; fi < len(a.ring); fi++ {
			f := a.ring[fi]
			if now.Sub(f.at) > a.cfg.Learner.AnnounceGap {
				continue
			}
			a.ha.Observe(f.at, f.sightings, func(i int) (frame, crop []byte) {
				img, crop, _ := a.pipe.Snapshot(f.sightings[i].ID)
				return img, crop
			})
		}
	}
	a.obsMu.Unlock()
	a.publishRevised(revised)
}

// reclassifyInbox names every sighting of the inbox again with the current
// head, and publishes the recent ones whose name changed (but not those
// published already).
func (a *Agent) reclassifyInbox(published map[string]bool) error {
	h := a.trainer.Head()
	if h == nil {
		return nil
	}
	start := time.Now()
	ts := protocol.Timestamp(start)
	changes, err := a.inbox.Reclassify(a.identity, a.classifier(h))
	if err != nil {
		return err
	}
	var revised []protocol.Sighting
	for _, c := range changes {
		if published[c.ID] || start.Sub(c.At) > revisedMaxAge {
			continue
		}
		revised = append(revised, protocol.Sighting{ID: c.ID, Label: c.Label, Confidence: c.Confidence, Scores: c.Scores,
			TS: protocol.Timestamp(c.At), Frame: c.Frame, Box: c.Box, Previous: c.Previous, Revised: ts})
	}
	a.publishRevised(revised)
	if len(changes) > 0 {
		a.log.Debug("inbox named again", "changed", len(changes), "took", time.Since(start).Round(time.Microsecond))
	}
	return nil
}

// publishRevised publishes sightings named again (the newest ones when
// there are too many), in the background.
func (a *Agent) publishRevised(ss []protocol.Sighting) {
	b := a.bus.Load()
	if len(ss) == 0 || b == nil || !b.Connected() {
		return
	}
	if len(ss) > revisedMax {
		ss = ss[len(ss)-revisedMax:]
	}
	go func() {
		for _, s := range ss {
			payload, err := json.Marshal(s)
			if err != nil {
				continue
			}
			if err := b.PublishRaw(b.Topic(protocol.TopicRevised), payload, false); err != nil {
				a.log.Debug("publish revised sighting", "err", err)
				return
			}
		}
	}()
}

// sighting finds a sighting to label: among the last learner.recent ones
// in memory, else in the inbox.
func (a *Agent) sighting(id string) (pipeline.Seen, error) {
	if r, ok := a.pipe.Recent(id); ok {
		return r, nil
	}
	e, ok := a.inbox.Get(id)
	if !ok {
		return pipeline.Seen{}, fmt.Errorf("unknown sighting id %q: it is neither among the last %d sightings (learner.recent) nor in the inbox (inbox.max_count, max_age, max_bytes)",
			id, a.cfg.Learner.Recent)
	}
	feats, backbone, err := a.inbox.Features(id)
	if err != nil {
		return pipeline.Seen{}, fmt.Errorf("sighting %q: %w", id, err)
	}
	if backbone != a.identity {
		return pipeline.Seen{}, fmt.Errorf("sighting %q was seen by another backbone (%s); label a newer one", id, backbone)
	}
	jpeg, err := a.inbox.Crop(id)
	if err != nil && !errors.Is(err, inbox.ErrNotFound) {
		return pipeline.Seen{}, fmt.Errorf("sighting %q: %w", id, err)
	}
	return pipeline.Seen{ID: id, Features: feats, JPEG: jpeg, At: e.At}, nil
}

// batchSep joins a request id and an index into the request id of one
// sample of a batch; it is not a printable character, so no request id
// can collide with it.
const batchSep = "\x1f"

// labelSightings stores one sample per sighting of a label request with
// sighting_ids, all in one transaction; a retry of the same request is
// answered with the samples of the first.
func (a *Agent) labelSightings(req *protocol.LabelRequest, res protocol.Result) protocol.Result {
	ids := req.SightingIDs
	if first, ok, err := a.store.Request(req.RequestID + batchSep + "0"); err != nil {
		res.Error = err.Error()
		return res
	} else if ok {
		res.SampleIDs = []uint64{first}
		for i := 1; i < len(ids); i++ {
			if id, ok, _ := a.store.Request(fmt.Sprintf("%s%s%d", req.RequestID, batchSep, i)); ok {
				res.SampleIDs = append(res.SampleIDs, id)
			}
		}
		res.Ok, res.Duplicate, res.SampleID = true, true, first
		if counts, err := a.store.Counts(a.identity); err == nil {
			res.Labels = labelCounts(counts)
		}
		return res
	}
	smps := make([]learner.Sample, len(ids))
	now := time.Now()
	for i, id := range ids {
		seen, err := a.sighting(id)
		if err != nil {
			res.Error = err.Error() + " (nothing was stored)"
			return res
		}
		smps[i] = learner.Sample{Label: req.Label, Backbone: a.identity, Time: now, Features: seen.Features, JPEG: seen.JPEG,
			Source: "sighting:" + id, RequestID: fmt.Sprintf("%s%s%d", req.RequestID, batchSep, i)}
	}
	before, err := a.store.Counts(a.identity)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	sampleIDs, dups, err := a.store.AddMany(smps)
	if err != nil {
		a.log.Error("store labels", "err", err)
		res.Error = fmt.Sprintf("labels not stored: %v", err)
		return res
	}
	res.Ok, res.SampleIDs, res.SampleID = true, sampleIDs, sampleIDs[0]
	res.Duplicate = !slices.Contains(dups, false)
	counts, err := a.store.Counts(a.identity)
	if err == nil {
		res.Labels = labelCounts(counts)
	}
	a.log.Info("labels stored", "label", req.Label, "samples", len(sampleIDs), "request_id", req.RequestID)
	for i, smp := range smps {
		if dups[i] {
			continue
		}
		smp.ID = sampleIDs[i]
		a.trainer.Added(smp)
		a.shareSample(smp.ID, smp)
	}
	if !slices.ContainsFunc(before, func(c learner.LabelCount) bool { return c.Label == req.Label }) {
		a.labelsChanged() // a new label: its entities appear
	}
	a.inbox.MarkLabelled(ids, req.Label, sampleIDs, 0)
	a.kickReclassify()
	return res
}
