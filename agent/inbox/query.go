package inbox

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/whiskercam/whisker/agent/protocol"
)

// Get returns a copy of a kept sighting.
func (b *Inbox) Get(id string) (Entry, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.byID[id]
	if !ok {
		return Entry{}, false
	}
	return copyEntry(e), true
}

func copyEntry(e *Entry) Entry {
	c := *e
	c.Scores = maps.Clone(e.Scores)
	return c
}

// blob reads one value of a bucket, or the pending copy.
func (b *Inbox) blob(bucket []byte, k uint64, pending func() ([]byte, bool)) ([]byte, error) {
	b.mu.Lock()
	if v, ok := pending(); ok {
		b.mu.Unlock()
		return v, nil
	}
	b.mu.Unlock()
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucket).Get(key(k)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	if err == nil && out == nil {
		err = ErrNotFound
	}
	return out, err
}

// Crop returns the JPEG kept with a sighting (the pet's crop, or the
// frame): what a label stores with the sample.
func (b *Inbox) Crop(id string) ([]byte, error) {
	e, ok := b.Get(id)
	if !ok {
		return nil, ErrNotFound
	}
	return b.blob(bucketCrops, e.Seq, func() ([]byte, bool) {
		p, ok := b.pending[e.Seq]
		return p.crop, ok
	})
}

// FrameJPEG returns the frame of a sighting with the pets' boxes.
func (b *Inbox) FrameJPEG(id string) ([]byte, error) {
	e, ok := b.Get(id)
	if !ok || e.FrameKey == 0 {
		return nil, ErrNotFound
	}
	return b.blob(bucketFrames, e.FrameKey, func() ([]byte, bool) {
		f, ok := b.pendingFrames[e.FrameKey]
		return f, ok
	})
}

// Features returns the feature vector of a sighting and the identity of
// the backbone that computed it.
func (b *Inbox) Features(id string) ([]float32, string, error) {
	e, ok := b.Get(id)
	if !ok {
		return nil, "", ErrNotFound
	}
	raw, err := b.blob(bucketFeatures, e.Seq, func() ([]byte, bool) {
		p, ok := b.pending[e.Seq]
		if !ok {
			return nil, false
		}
		return encodeFeatures(p.features), true
	})
	if err != nil {
		return nil, "", err
	}
	if len(raw) != 4*e.Dim {
		return nil, "", fmt.Errorf("sighting %s: features of %d bytes, want %d", id, len(raw), 4*e.Dim)
	}
	return decodeFeatures(raw), e.Backbone, nil
}

// MarkLabelled records that a person named sightings (ids[i] stored as
// sampleIDs[i]), and their visit when visit is not 0.
func (b *Inbox) MarkLabelled(ids []string, label string, sampleIDs []uint64, visit uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, id := range ids {
		e, ok := b.byID[id]
		if !ok {
			continue
		}
		e.Labelled = label
		if i < len(sampleIDs) {
			e.SampleID = sampleIDs[i]
		}
		b.dirty[e.Seq] = true
	}
	if vis := b.visits[visit]; vis != nil {
		vis.Labelled = label
		b.dirtyVisits[visit] = true
	}
	b.touchLocked()
}

// Classifier names a feature vector with the current head (boxed: the
// detector found the pet the features are of); ok is false when there is
// no head (the sighting keeps its name).
type Classifier func(features []float32, boxed bool) (label string, confidence float64, scores map[string]float64, ok bool)

// Change is a sighting whose name changed.
type Change struct {
	Entry
	Previous string
}

// Reclassify names every kept sighting of backbone again with classify,
// and returns those whose name changed, oldest first.
func (b *Inbox) Reclassify(backbone string, classify Classifier) ([]Change, error) {
	b.mu.Lock()
	type item struct {
		seq   uint64
		feat  []float32
		boxed bool
	}
	var items []item
	for _, e := range b.entries {
		if e.Backbone != backbone {
			continue
		}
		it := item{seq: e.Seq, boxed: e.Box != nil}
		if p, ok := b.pending[e.Seq]; ok {
			it.feat = p.features
		}
		items = append(items, it)
	}
	b.mu.Unlock()
	err := b.db.View(func(tx *bolt.Tx) error {
		fb := tx.Bucket(bucketFeatures)
		for i := range items {
			if items[i].feat == nil {
				if v := fb.Get(key(items[i].seq)); v != nil {
					items[i].feat = decodeFeatures(v)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read inbox features: %w", err)
	}
	type named struct {
		label  string
		conf   float64
		scores map[string]float64
	}
	out := make(map[uint64]named, len(items))
	for _, it := range items {
		if it.feat == nil {
			continue
		}
		l, c, s, ok := classify(it.feat, it.boxed)
		if !ok {
			return nil, nil
		}
		out[it.seq] = named{l, c, s}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var changes []Change
	for _, e := range b.entries {
		n, ok := out[e.Seq]
		if !ok {
			continue
		}
		prev := e.Label
		e.Label, e.Confidence, e.Scores = n.label, n.conf, n.scores
		if prev != n.label {
			changes = append(changes, Change{Entry: copyEntry(e), Previous: prev})
		}
	}
	b.touchLocked()
	return changes, nil
}

// VisitView is a visit with its kept sightings and what they are called
// now.
type VisitView struct {
	Visit
	// Label is the name most of its sightings have now, Confidence their
	// mean confidence.
	Label      string
	Confidence float64
	// Todo is true while no person named the visit or any of its
	// sightings.
	Todo    bool
	Entries []Entry // oldest first
}

// Unknown says whether no head names the visit.
func (v VisitView) Unknown() bool { return v.Label == protocol.Unknown || v.Label == "" }

func (b *Inbox) viewLocked(vis *Visit) VisitView {
	vv := VisitView{Visit: *vis, Todo: vis.Labelled == ""}
	vv.entries, vv.lastFeat, vv.lastBox = nil, nil, nil
	count := map[string]int{}
	sum := map[string]float64{}
	given := map[string]int{}
	for _, s := range vis.entries {
		e := b.bySeq[s]
		if e == nil {
			continue
		}
		vv.Entries = append(vv.Entries, copyEntry(e))
		count[e.Label]++
		sum[e.Label] += e.Confidence
		if e.Labelled != "" {
			vv.Todo = false
			given[e.Labelled]++
		}
	}
	if vv.Labelled == "" { // what a person named most of its sightings
		for l, n := range given {
			if n > given[vv.Labelled] || (n == given[vv.Labelled] && l < vv.Labelled) {
				vv.Labelled = l
			}
		}
	}
	for l, n := range count {
		if n > count[vv.Label] || (n == count[vv.Label] && l < vv.Label) {
			vv.Label = l
		}
	}
	if n := count[vv.Label]; n > 0 {
		vv.Confidence = sum[vv.Label] / float64(n)
	}
	return vv
}

// Visits returns up to limit visits: first those nobody named yet (the
// unknown ones, then those named with a confidence below unsure, then the
// rest, each newest first), then the named ones, newest first.
func (b *Inbox) Visits(limit int, unsure float64) []VisitView {
	b.mu.Lock()
	all := make([]VisitView, 0, len(b.visits))
	for _, vis := range b.visits {
		all = append(all, b.viewLocked(vis))
	}
	b.mu.Unlock()
	rank := func(v *VisitView) int {
		switch {
		case !v.Todo:
			return 3
		case v.Unknown():
			return 0
		case v.Confidence < unsure:
			return 1
		}
		return 2
	}
	sort.Slice(all, func(i, j int) bool {
		ri, rj := rank(&all[i]), rank(&all[j])
		if ri != rj {
			return ri < rj
		}
		return all[i].End.After(all[j].End)
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	return all
}

// VisitByID returns one visit.
func (b *Inbox) VisitByID(id uint64) (VisitView, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	vis := b.visits[id]
	if vis == nil {
		return VisitView{}, false
	}
	return b.viewLocked(vis), true
}

// Latest returns the newest kept sightings, newest first.
func (b *Inbox) Latest(n int) []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Entry
	for i := len(b.entries) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, copyEntry(b.entries[i]))
	}
	return out
}

// Timeline returns the visits that ended after since and are named (by
// the head or a person) by one of pets, newest first; Left says whether
// the pet has gone (no sighting for the visit gap).
func (b *Inbox) Timeline(since time.Time, pets func(label string) bool) []Stay {
	now := b.now()
	b.mu.Lock()
	var out []Stay
	for _, vis := range b.visits {
		if vis.End.Before(since) {
			continue
		}
		vv := b.viewLocked(vis)
		name := vv.Label
		if vis.Labelled != "" {
			name = vis.Labelled
		}
		if !pets(name) {
			continue
		}
		st := Stay{Pet: name, Visit: vis.ID, Arrived: vis.Start, Departed: vis.End, Left: now.Sub(vis.End) > b.cfg.VisitGap, Seen: vis.Seen}
		best := -1.0
		for _, e := range vv.Entries {
			if e.Label == name && e.Confidence > best {
				st.Sighting, best = e.ID, e.Confidence
			}
		}
		if st.Sighting == "" && len(vv.Entries) > 0 {
			st.Sighting = vv.Entries[0].ID
		}
		out = append(out, st)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Arrived.After(out[j].Arrived) })
	return out
}

// Stay is one visit of a pet on the timeline.
type Stay struct {
	Pet      string
	Visit    uint64
	Arrived  time.Time
	Departed time.Time // the last sighting
	Left     bool
	Seen     int
	Sighting string // the sighting that shows the pet best
}

// Stats describes the inbox.
type Stats struct {
	Sightings int       `json:"sightings"`
	Visits    int       `json:"visits"`
	Bytes     int64     `json:"bytes"`
	Oldest    time.Time `json:"oldest"`
	Waiting   int       `json:"waiting"` // not yet on disk
	Dropped   uint64    `json:"dropped"`
	Failed    uint64    `json:"write_failures"`
	// Unknown is the share of the sightings of the last hour that no head
	// names, or -1 without any.
	Unknown float64 `json:"unknown"`
}

// Stats returns the inbox's counts.
func (b *Inbox) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := Stats{Sightings: len(b.entries), Visits: len(b.visits), Bytes: b.bytes, Waiting: len(b.pending),
		Dropped: b.dropped.Load(), Failed: b.failed.Load(), Unknown: -1}
	if len(b.entries) > 0 {
		st.Oldest = b.entries[0].At
	}
	cut := b.now().Add(-time.Hour)
	n, unknown := 0, 0
	for i := len(b.entries) - 1; i >= 0 && b.entries[i].At.After(cut); i-- {
		n++
		if !named(b.entries[i].Label) {
			unknown++
		}
	}
	if n > 0 {
		st.Unknown = float64(unknown) / float64(n)
	}
	return st
}

// IDs returns the ids of the kept sightings of a visit, oldest first.
func (b *Inbox) IDs(visit uint64) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	vis := b.visits[visit]
	if vis == nil {
		return nil
	}
	out := make([]string, 0, len(vis.entries))
	for _, s := range vis.entries {
		if e := b.bySeq[s]; e != nil {
			out = append(out, e.ID)
		}
	}
	return slices.Clip(out)
}

// Relabelled follows a rename (to the new name) or a forgotten label (to
// ""): the sightings and visits a person named from are named to now.
func (b *Inbox) Relabelled(from, to string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.entries {
		if e.Labelled == from {
			e.Labelled = to
			if to == "" {
				e.SampleID = 0
			}
			b.dirty[e.Seq] = true
		}
	}
	for id, vis := range b.visits {
		if vis.Labelled == from {
			vis.Labelled = to
			b.dirtyVisits[id] = true
		}
	}
	b.touchLocked()
}

// SampleRelabelled follows a sample moved to another label (to) or
// forgotten (""): the sighting it was made from is named so now.
func (b *Inbox) SampleRelabelled(sample uint64, to string) {
	if sample == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.entries {
		if e.SampleID == sample {
			e.Labelled = to
			if to == "" {
				e.SampleID = 0
			}
			b.dirty[e.Seq] = true
		}
	}
	b.touchLocked()
}
