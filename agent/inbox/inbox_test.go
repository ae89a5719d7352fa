package inbox

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/whiskercam/whisker/agent/protocol"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time for the age bound.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func open(t *testing.T, path string, cfg Config, c *clock) *Inbox {
	t.Helper()
	b, err := Open(path, cfg, slog.New(slog.DiscardHandler), c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vec is a feature vector pointing mostly along axis i.
func vec(i int) []float32 {
	v := make([]float32, 16)
	for k := range v {
		v[k] = 0.05
	}
	v[i] = 1
	return v
}

func box(x, y int) *protocol.SightingBox {
	return &protocol.SightingBox{X: x, Y: y, W: 100, H: 100, ImageW: 640, ImageH: 480, Class: "Cat", Score: 0.9}
}

func obs(id string, at time.Time, frame uint64, b *protocol.SightingBox, feat []float32) Observed {
	return Observed{ID: id, At: at, Frame: frame, Label: protocol.Unknown, Box: b, Features: feat, Backbone: "bb@1",
		Crop: []byte("crop-" + id), FrameJPEG: []byte(fmt.Sprintf("frame-%d", frame))}
}

func TestVisitsAndThinning(t *testing.T) {
	c := &clock{now: t0}
	cfg := Default()
	cfg.KeepEvery, cfg.VisitGap = 2*time.Second, 10*time.Second
	b := open(t, filepath.Join(t.TempDir(), "inbox.db"), cfg, c)
	defer b.Close()
	// A cat walking right at 2 frames a second for 10 s, with a dog
	// standing far away in the same frames from the fifth second.
	var frame uint64
	for i := range 20 {
		at := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		frame++
		frameObs := []Observed{obs(fmt.Sprintf("cat-%d", i), at, frame, box(10+5*i, 100), vec(0))}
		if i >= 10 {
			frameObs = append(frameObs, obs(fmt.Sprintf("dog-%d", i), at, frame, box(500, 300), vec(1)))
		}
		b.Add(frameObs)
	}
	// A new name is always kept, even within KeepEvery.
	o := obs("cat-20", t0.Add(10*time.Second), 200, box(110, 100), vec(0))
	o.Label, o.Confidence = "Tigger", 0.9
	b.Add([]Observed{o})
	// The empty lawn after a long gap: a visit of whole frames.
	b.Add([]Observed{obs("lawn-1", t0.Add(time.Minute), 299, nil, vec(2))})
	vs := b.Visits(0, 0.8)
	if len(vs) != 3 {
		t.Fatalf("%d visits, want 3 (cat, dog, lawn): %+v", len(vs), vs)
	}
	byFirst := map[string]VisitView{}
	for _, v := range vs {
		byFirst[v.Entries[0].ID] = v
	}
	cat, dog, lawn := byFirst["cat-0"], byFirst["dog-10"], byFirst["lawn-1"]
	if cat.Seen != 21 || dog.Seen != 10 || lawn.Seen != 1 || !lawn.Whole || cat.Whole {
		t.Errorf("seen: cat %d, dog %d, lawn %d (whole %v); want 21, 10, 1 (whole)", cat.Seen, dog.Seen, lawn.Seen, lawn.Whole)
	}
	// One kept every 2 s of 10 s: at 0, 2, 4, 6, 8 s.
	var ids []string
	for _, e := range cat.Entries {
		ids = append(ids, e.ID)
	}
	if want := []string{"cat-0", "cat-4", "cat-8", "cat-12", "cat-16", "cat-20"}; !slices.Equal(ids, want) {
		t.Errorf("kept of the cat's visit %v, want %v", ids, want)
	}
	if _, ok := b.Get("cat-1"); ok {
		t.Error("a thinned sighting was kept")
	}
}

func TestPersistsAcrossRestart(t *testing.T) {
	c := &clock{now: t0}
	path := filepath.Join(t.TempDir(), "inbox.db")
	b := open(t, path, Default(), c)
	b.Add([]Observed{obs("a-1", t0, 1, box(0, 0), vec(3)), obs("b-1", t0, 1, box(400, 300), vec(4))})
	b.Add([]Observed{obs("a-2", t0.Add(5*time.Second), 2, box(5, 0), vec(3))})
	b.MarkLabelled([]string{"a-1"}, "Tigger", []uint64{7}, 0)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	// Written after the flush: must be there after the restart too.
	b.MarkLabelled([]string{"a-2"}, "Tigger", []uint64{8}, mustGet(t, b, "a-2").Visit)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	before := b.Stats()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = open(t, path, Default(), c)
	defer b.Close()
	after := b.Stats()
	if after.Sightings != 3 || after.Visits != 2 || after.Bytes != before.Bytes {
		t.Fatalf("after a restart: %+v, before %+v", after, before)
	}
	e := mustGet(t, b, "a-1")
	if e.Labelled != "Tigger" || e.SampleID != 7 || e.Box == nil || e.Box.X != 0 {
		t.Errorf("a-1 after a restart: %+v", e)
	}
	f, bb, err := b.Features("a-1")
	if err != nil || bb != "bb@1" || !slices.Equal(f, vec(3)) {
		t.Errorf("features after a restart: %v %q %v", f, bb, err)
	}
	if crop, err := b.Crop("b-1"); err != nil || string(crop) != "crop-b-1" {
		t.Errorf("crop after a restart: %q %v", crop, err)
	}
	// The two sightings of frame 1 share its JPEG.
	for _, id := range []string{"a-1", "b-1"} {
		if fr, err := b.FrameJPEG(id); err != nil || string(fr) != "frame-1" {
			t.Errorf("frame of %s after a restart: %q %v", id, fr, err)
		}
	}
	vis, ok := b.VisitByID(mustGet(t, b, "a-2").Visit)
	if !ok || vis.Labelled != "Tigger" || vis.Todo || len(vis.Entries) != 2 {
		t.Errorf("visit of a after a restart: %+v", vis)
	}
	// New sightings get new sequence numbers, never reusing old ones.
	b.Add([]Observed{obs("c-1", t0.Add(time.Hour), 3, nil, vec(5))})
	if s := mustGet(t, b, "c-1").Seq; s <= mustGet(t, b, "a-2").Seq {
		t.Errorf("sequence %d after a restart reuses an old one", s)
	}
}

func mustGet(t *testing.T, b *Inbox, id string) Entry {
	t.Helper()
	e, ok := b.Get(id)
	if !ok {
		t.Fatalf("%s is not in the inbox", id)
	}
	return e
}

func TestBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		keep int
	}{
		{"count", func(c *Config) { c.MaxCount = 5 }, 5},
		{"age", func(c *Config) { c.MaxAge = time.Hour }, 5}, // sightings 2 min apart, the clock 52 min after the last
		{"bytes", func(c *Config) { c.MaxBytes = 1 << 20 }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.cfg(&cfg)
			c := &clock{now: t0}
			path := filepath.Join(t.TempDir(), "inbox.db")
			b := open(t, path, cfg, c)
			defer b.Close()
			big := bytes.Repeat([]byte{1}, 300<<10) // 300 KiB frames: three fit in 1 MiB
			for i := range 10 {
				o := obs(fmt.Sprintf("s-%d", i), t0.Add(time.Duration(i)*2*time.Minute), uint64(i+1), nil, vec(i%16))
				if tc.name == "bytes" {
					o.FrameJPEG = big
				}
				b.Add([]Observed{o})
			}
			c.Set(t0.Add(18*time.Minute + 52*time.Minute))
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			st := b.Stats()
			if st.Sightings != tc.keep {
				t.Fatalf("kept %d sightings, want %d", st.Sightings, tc.keep)
			}
			// The newest are kept.
			if _, ok := b.Get("s-9"); !ok {
				t.Error("the newest sighting was dropped")
			}
			if _, ok := b.Get(fmt.Sprintf("s-%d", 9-tc.keep)); ok {
				t.Error("an old sighting beyond the bound was kept")
			}
			if tc.name == "bytes" && st.Bytes > cfg.MaxBytes {
				t.Errorf("%d bytes kept, over %d", st.Bytes, cfg.MaxBytes)
			}
			// What was pruned is gone from the file too.
			b.Close()
			b = open(t, path, cfg, c)
			if got := b.Stats().Sightings; got != tc.keep {
				t.Errorf("after a restart %d sightings, want %d", got, tc.keep)
			}
			if _, err := b.FrameJPEG(fmt.Sprintf("s-%d", 9-tc.keep)); err == nil {
				t.Error("the frame of a pruned sighting is still readable")
			}
		})
	}
}

func TestReclassifyAndOrder(t *testing.T) {
	c := &clock{now: t0}
	b := open(t, filepath.Join(t.TempDir(), "inbox.db"), Default(), c)
	defer b.Close()
	b.Add([]Observed{obs("cat", t0, 1, box(0, 0), vec(0))})
	b.Add([]Observed{obs("dog", t0.Add(time.Minute), 2, box(0, 0), vec(1))})
	b.Add([]Observed{obs("fox", t0.Add(2*time.Minute), 3, box(0, 0), vec(2))})
	if err := b.Flush(); err != nil { // features come from the file
		t.Fatal(err)
	}
	// A head that knows the cat well and the dog a little.
	classify := func(f []float32, _ bool) (string, float64, map[string]float64, bool) {
		switch {
		case f[0] == 1:
			return "Tigger", 0.97, map[string]float64{"Tigger": 0.97, "Misty": 0.03}, true
		case f[1] == 1:
			return "Misty", 0.65, map[string]float64{"Tigger": 0.35, "Misty": 0.65}, true
		}
		return protocol.Unknown, 0.5, map[string]float64{"Tigger": 0.5, "Misty": 0.5}, true
	}
	changes, err := b.Reclassify("bb@1", classify)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range changes {
		got = append(got, ch.ID+":"+ch.Previous+">"+ch.Label)
	}
	if want := []string{"cat:unknown>Tigger", "dog:unknown>Misty"}; !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	// Unknown first, then unsure, then sure; named visits last.
	b.MarkLabelled([]string{"cat"}, "Tigger", []uint64{1}, mustGet(t, b, "cat").Visit)
	var order []string
	for _, v := range b.Visits(0, 0.8) {
		order = append(order, v.Entries[0].ID)
	}
	if want := []string{"fox", "dog", "cat"}; !slices.Equal(order, want) {
		t.Errorf("inbox order %v, want %v", order, want)
	}
	// Another backbone's sightings are left alone; no head changes nothing.
	if ch, err := b.Reclassify("bb@2", classify); err != nil || len(ch) != 0 {
		t.Errorf("another backbone: %v %v", ch, err)
	}
	none := func([]float32, bool) (string, float64, map[string]float64, bool) { return "", 0, nil, false }
	if ch, err := b.Reclassify("bb@1", none); err != nil || len(ch) != 0 || mustGet(t, b, "cat").Label != "Tigger" {
		t.Errorf("without a head: %v %v", ch, err)
	}
	c.Set(t0.Add(150 * time.Second)) // the dog left 90 s ago, the fox 30 s ago
	tl := b.Timeline(t0.Add(-time.Hour), func(l string) bool { return l == "Tigger" || l == "Misty" })
	if len(tl) != 2 || tl[0].Pet != "Misty" || tl[1].Pet != "Tigger" || tl[1].Sighting != "cat" || !tl[0].Left {
		t.Errorf("timeline %+v", tl)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := &clock{now: t0}
	b := open(t, filepath.Join(t.TempDir(), "inbox.db"), Default(), c)
	defer b.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			b.Add([]Observed{obs(fmt.Sprintf("s-%d", i), t0.Add(time.Duration(i)*time.Second), uint64(i), box(i, 0), vec(i%16))})
		}
	})
	wg.Go(func() {
		for range 20 {
			if err := b.Flush(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			b.Visits(10, 0.8)
			b.Reclassify("bb@1", func(f []float32, _ bool) (string, float64, map[string]float64, bool) { return "Tigger", 0.9, nil, true })
			b.Crop("s-3")
		}
	})
	wg.Wait()
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if b.Stats().Waiting != 0 {
		t.Errorf("%d sightings still wait for the disk after a flush", b.Stats().Waiting)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		key    string
	}{
		{func(c *Config) { c.MaxCount = 0 }, "inbox.max_count"},
		{func(c *Config) { c.MaxAge = time.Second }, "inbox.max_age"},
		{func(c *Config) { c.MaxBytes = 10 }, "inbox.max_bytes"},
		{func(c *Config) { c.KeepEvery = -1 }, "inbox.keep_every"},
		{func(c *Config) { c.VisitGap = 0 }, "inbox.visit_gap"},
	} {
		c := Default()
		tc.change(&c)
		if err := c.Validate(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.key)) {
			t.Errorf("%s: %v", tc.key, err)
		}
	}
	if c := Default(); c.Validate() != nil {
		t.Error("the default does not validate")
	}
	// A file of another schema is refused, not misread.
	path := filepath.Join(t.TempDir(), "inbox.db")
	os.WriteFile(path, []byte("not a database"), 0o600)
	if _, err := Open(path, Default(), slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("a file that is not an inbox was opened")
	}
}
