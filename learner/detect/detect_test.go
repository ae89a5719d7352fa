package detect

import (
	"encoding/binary"
	"math"
	"testing"
)

func near(a, b float32) bool { return math.Abs(float64(a-b)) < 1e-5 }

// Anchors worked out by hand from the layout's definition.
func TestAnchorsOfSSDMobileNetV2(t *testing.T) {
	cfg := SSDMobileNetV2()
	a, err := cfg.Anchors()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 1917 || cfg.Count() != 1917 {
		t.Fatalf("%d anchors (count %d), want 1917", len(a), cfg.Count())
	}
	s2 := float32(math.Sqrt2)
	for _, tc := range []struct {
		name string
		i    int
		want Anchor
	}{
		{"layer 0, cell 0, small square", 0, Anchor{0.5 / 19, 0.5 / 19, 0.1, 0.1}},
		{"layer 0, cell 0, wide", 1, Anchor{0.5 / 19, 0.5 / 19, 0.2 / s2, 0.2 * s2}},
		{"layer 0, cell 0, tall", 2, Anchor{0.5 / 19, 0.5 / 19, 0.2 * s2, 0.2 / s2}},
		{"layer 0, row 0, cell 1", 3, Anchor{0.5 / 19, 1.5 / 19, 0.1, 0.1}},
		{"layer 0, row 1, cell 0", 19 * 3, Anchor{1.5 / 19, 0.5 / 19, 0.1, 0.1}},
		{"layer 1 first box: scale 0.35", 1083, Anchor{0.05, 0.05, 0.35, 0.35}},
		{"layer 1 ratio 3", 1083 + 3, Anchor{0.05, 0.05, 0.35 / float32(math.Sqrt(3)), 0.35 * float32(math.Sqrt(3))}},
		{"layer 1 interpolated", 1083 + 5, Anchor{0.05, 0.05, float32(math.Sqrt(0.35 * 0.5)), float32(math.Sqrt(0.35 * 0.5))}},
		{"layer 2 first box: scale 0.5", 1083 + 600, Anchor{0.1, 0.1, 0.5, 0.5}},
		{"last layer, scale 0.95", 1911, Anchor{0.5, 0.5, 0.95, 0.95}},
		{"last anchor: between 0.95 and 1", 1916, Anchor{0.5, 0.5, float32(math.Sqrt(0.95)), float32(math.Sqrt(0.95))}},
	} {
		g := a[tc.i]
		if !near(g.CY, tc.want.CY) || !near(g.CX, tc.want.CX) || !near(g.H, tc.want.H) || !near(g.W, tc.want.W) {
			t.Errorf("%s (anchor %d): %+v, want %+v", tc.name, tc.i, g, tc.want)
		}
	}
}

func TestLayoutAndConfigErrors(t *testing.T) {
	if _, err := Layout("ssd_mobilenet_v2_300"); err != nil {
		t.Fatal(err)
	}
	if _, err := Layout("yolo"); err == nil {
		t.Error("unknown layout accepted")
	}
	good := Config{Anchors: SSDMobileNetV2(), Scales: StandardScales(), NumClasses: 3, MinScore: 0.5, IoU: 0.6}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"one class", func(c *Config) { c.NumClasses = 1 }},
		{"score 0", func(c *Config) { c.MinScore = 0 }},
		{"score 1", func(c *Config) { c.MinScore = 1 }},
		{"NaN IoU", func(c *Config) { c.IoU = float32(math.NaN()) }},
		{"zero scale", func(c *Config) { c.Scales[2] = 0 }},
		{"labels", func(c *Config) { c.Labels = []string{"a"} }},
		{"background class", func(c *Config) { c.Classes = []int{0} }},
		{"class out of range", func(c *Config) { c.Classes = []int{3} }},
		{"no maps", func(c *Config) { c.Anchors.FeatureMaps = nil }},
		{"bad ratio", func(c *Config) { c.Anchors.AspectRatios = []float64{-1} }},
	} {
		c := good
		c.Anchors.AspectRatios = append([]float64(nil), good.Anchors.AspectRatios...)
		tc.edit(&c)
		if _, err := NewDecoder(c); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if _, err := NewDecoder(good); err != nil {
		t.Fatal(err)
	}
}

// encode is the box coder's forward direction (TensorFlow's
// FasterRcnnBoxCoder._encode), written independently of decodeBox.
func encode(b Box, a Anchor, s [4]float32) [4]float32 {
	h, w := float64(b.YMax-b.YMin), float64(b.XMax-b.XMin)
	cy, cx := float64(b.YMin)+h/2, float64(b.XMin)+w/2
	return [4]float32{
		float32((cy - float64(a.CY)) / float64(a.H) * float64(s[0])),
		float32((cx - float64(a.CX)) / float64(a.W) * float64(s[1])),
		float32(math.Log(h/float64(a.H)) * float64(s[2])),
		float32(math.Log(w/float64(a.W)) * float64(s[3])),
	}
}

func logit(p float64) float32 { return float32(math.Log(p / (1 - p))) }

// outputs builds raw detector outputs with the given boxes and scores;
// every other anchor scores 0.01.
func outputs(d *Decoder, classes int, set map[int]struct {
	box    Box
	scores map[int]float64
}) (boxes, logits []float32) {
	n := len(d.Anchors())
	boxes = make([]float32, 4*n)
	logits = make([]float32, classes*n)
	for i := range logits {
		logits[i] = logit(0.01)
	}
	for a, v := range set {
		e := encode(v.box, d.Anchors()[a], StandardScales())
		copy(boxes[4*a:], e[:])
		for c, p := range v.scores {
			logits[a*classes+c] = logit(p)
		}
	}
	return boxes, logits
}

func TestDecodeSuppressesPerClassAndMerges(t *testing.T) {
	d, err := NewDecoder(Config{
		Anchors: SSDMobileNetV2(), Scales: StandardScales(), NumClasses: 3,
		Labels: []string{"bg", "cat", "dog"}, MinScore: 0.5, IoU: 0.6,
	})
	if err != nil {
		t.Fatal(err)
	}
	catBox := Box{0.2, 0.1, 0.6, 0.4}
	dogBox := Box{0.3, 0.55, 0.9, 0.95}
	boxes, logits := outputs(d, 3, map[int]struct {
		box    Box
		scores map[int]float64
	}{
		// The cat, seen by three anchors with slightly shifted boxes.
		1083 + 6*23: {catBox, map[int]float64{1: 0.9, 2: 0.55}},
		1083 + 6*24: {Box{0.21, 0.11, 0.6, 0.41}, map[int]float64{1: 0.8}},
		1083 + 6*33: {Box{0.19, 0.1, 0.59, 0.4}, map[int]float64{1: 0.7}},
		// The dog, and a weak box below the threshold.
		1683 + 5*17: {dogBox, map[int]float64{2: 0.95}},
		1683 + 5*3:  {Box{0.0, 0.0, 0.2, 0.2}, map[int]float64{2: 0.45}},
	})
	dets, err := d.Decode(boxes, logits)
	if err != nil {
		t.Fatal(err)
	}
	// Per class: one cat, and for the dog class the dog plus the cat's
	// box (scored 0.55 as a dog).
	if len(dets) != 3 {
		t.Fatalf("%d detections: %+v", len(dets), dets)
	}
	want := []struct {
		label string
		score float32
		box   Box
	}{{"dog", 0.95, dogBox}, {"cat", 0.9, catBox}, {"dog", 0.55, catBox}}
	for i, w := range want {
		g := dets[i]
		if g.Label != w.label || !near(g.Score, w.score) || !nearBox(g.Box, w.box) {
			t.Errorf("detection %d: %s %.3f %+v, want %s %.2f %+v", i, g.Label, g.Score, g.Box, w.label, w.score, w.box)
		}
	}
	merged := MergeAcrossClasses(dets, 0.6, 0)
	if len(merged) != 2 || merged[0].Label != "dog" || merged[1].Label != "cat" {
		t.Errorf("merged: %+v", merged)
	}
	// A box mostly inside a better one is the same animal; side by side
	// they are two.
	whole := Detection{Box: Box{0.2, 0.1, 0.6, 0.4}, Score: 0.9}
	wider := Detection{Box: Box{0.2, 0.1, 0.7, 0.7}, Score: 0.8} // the animal and what stands beside it
	beside := Detection{Box: Box{0.2, 0.45, 0.6, 0.75}, Score: 0.7}
	if got := MergeAcrossClasses([]Detection{whole, wider, beside}, 0.6, 0.8); len(got) != 2 || got[0] != whole || got[1] != beside {
		t.Errorf("nested: %+v", got)
	}
	if got := MergeAcrossClasses([]Detection{whole, wider}, 0.6, 0); len(got) != 2 {
		t.Errorf("nesting merged with inside 0: %+v", got)
	}
	// Only the dog class.
	d.classes = []int{2}
	dets, _ = d.Decode(boxes, logits)
	if len(dets) != 2 || dets[0].Class != 2 || dets[1].Class != 2 {
		t.Errorf("dog only: %+v", dets)
	}
	// Wrong sizes are errors.
	if _, err := d.Decode(boxes[:10], logits); err == nil {
		t.Error("short boxes accepted")
	}
	if _, err := d.Decode(boxes, logits[:10]); err == nil {
		t.Error("short logits accepted")
	}
}

func nearBox(a, b Box) bool {
	const eps = 1e-4
	return math.Abs(float64(a.YMin-b.YMin)) < eps && math.Abs(float64(a.XMin-b.XMin)) < eps &&
		math.Abs(float64(a.YMax-b.YMax)) < eps && math.Abs(float64(a.XMax-b.XMax)) < eps
}

func TestInside(t *testing.T) {
	if got := Inside(Box{0, 0, 1, 1}, Box{0.25, 0.25, 0.75, 0.75}); !near(got, 1) {
		t.Errorf("contained: %g", got)
	}
	if got := Inside(Box{0, 0, 1, 1}, Box{0.5, 0.5, 1.5, 1.5}); !near(got, 0.25) {
		t.Errorf("quarter: %g", got)
	}
	if got := Inside(Box{0, 0, 1, 1}, Box{2, 2, 3, 3}); got != 0 {
		t.Errorf("apart: %g", got)
	}
}

func TestIoU(t *testing.T) {
	for _, tc := range []struct {
		a, b Box
		want float32
	}{
		{Box{0, 0, 1, 1}, Box{0, 0, 1, 1}, 1},
		{Box{0, 0, 1, 1}, Box{0, 0.5, 1, 1.5}, 1.0 / 3},
		{Box{0, 0, 1, 1}, Box{2, 2, 3, 3}, 0},
		{Box{0, 0, 0, 1}, Box{0, 0, 1, 1}, 0},
		{Box{0, 0, 0.5, 0.5}, Box{0, 0, 1, 1}, 0.25},
	} {
		if got := IoU(tc.a, tc.b); !near(got, tc.want) {
			t.Errorf("IoU(%v, %v) = %g, want %g", tc.a, tc.b, got, tc.want)
		}
	}
}

// Any output values, NaN and infinities included, decode without a panic
// into boxes inside the image with scores above the threshold.
func FuzzDecode(f *testing.F) {
	cfg := Config{Anchors: AnchorConfig{FeatureMaps: []int{2, 1}, MinScale: 0.2, MaxScale: 0.9, AspectRatios: []float64{1, 2}, Interpolated: 1},
		Scales: StandardScales(), NumClasses: 3, MinScore: 0.5, IoU: 0.5}
	d, err := NewDecoder(cfg)
	if err != nil {
		f.Fatal(err)
	}
	n := len(d.Anchors())
	f.Add(make([]byte, 4*(4*n+3*n)))
	seed := make([]byte, 4*(4*n+3*n))
	for i := range 4*n + 3*n {
		binary.LittleEndian.PutUint32(seed[4*i:], math.Float32bits(float32(i%7)-2))
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, raw []byte) {
		vals := make([]float32, 4*n+3*n)
		for i := range vals {
			if 4*i+4 <= len(raw) {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
		dets, err := d.Decode(vals[:4*n], vals[4*n:])
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range dets {
			b := x.Box
			if !(b.YMin >= 0 && b.XMin >= 0 && b.YMax <= 1 && b.XMax <= 1 && b.YMax > b.YMin && b.XMax > b.XMin) {
				t.Fatalf("box %+v outside the image", b)
			}
			if !(x.Score >= 0.5 && x.Score <= 1) {
				t.Fatalf("score %g", x.Score)
			}
		}
	})
}

// BenchmarkDecode decodes outputs where a few anchors hold two pets and
// the rest are background, as in a camera frame.
func BenchmarkDecode(b *testing.B) {
	d, err := NewDecoder(Config{Anchors: SSDMobileNetV2(), Scales: StandardScales(), NumClasses: 24, Classes: []int{8, 20}, MinScore: 0.5, IoU: 0.6})
	if err != nil {
		b.Fatal(err)
	}
	set := map[int]struct {
		box    Box
		scores map[int]float64
	}{}
	for i := range 6 {
		set[1083+6*(23+i)] = struct {
			box    Box
			scores map[int]float64
		}{Box{0.2, 0.1 + 0.01*float32(i), 0.6, 0.4}, map[int]float64{8: 0.6 + 0.05*float64(i)}}
		set[1683+6*(17+i%3)] = struct {
			box    Box
			scores map[int]float64
		}{Box{0.3, 0.55, 0.9, 0.95 - 0.01*float32(i)}, map[int]float64{20: 0.7}}
	}
	boxes, logits := outputs(d, 24, set)
	for b.Loop() {
		if _, err := d.Decode(boxes, logits); err != nil {
			b.Fatal(err)
		}
	}
}
