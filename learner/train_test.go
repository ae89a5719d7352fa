package learner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// blobs makes k Gaussian clusters in dim dimensions, n per class.
func blobs(rng *rand.Rand, k, n, dim int, spread float64) *Dataset {
	return blobsAround(rng, centres(rng, k, dim), n, spread)
}

func centres(rng *rand.Rand, k, dim int) [][]float64 {
	cs := make([][]float64, k)
	for c := range cs {
		cs[c] = make([]float64, dim)
		for j := range cs[c] {
			cs[c][j] = rng.NormFloat64()
		}
	}
	return cs
}

func blobsAround(rng *rand.Rand, centres [][]float64, n int, spread float64) *Dataset {
	d := &Dataset{}
	dim := len(centres[0])
	for c := range centres {
		for range n {
			x := make([]float32, dim)
			for j := range x {
				x[j] = float32(centres[c][j] + spread*rng.NormFloat64())
			}
			d.X = append(d.X, x)
			d.Labels = append(d.Labels, fmt.Sprintf("pet%d", c))
		}
	}
	return d
}

func TestGradientMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, dim, k = 30, 7, 4
	X := mat.NewDense(n, dim, nil)
	for i := range n {
		for j := range dim {
			X.Set(i, j, rng.NormFloat64())
		}
	}
	y := make([]int, n)
	sw := make([]float64, n)
	for i := range y {
		y[i] = rng.IntN(k)
		sw[i] = 0.5 + rng.Float64()
	}
	o := newObjective(X, y, sw, k, 0.3)
	x := make([]float64, k*dim+k)
	for i := range x {
		x[i] = rng.NormFloat64() * 0.5
	}
	g := make([]float64, len(x))
	o.grad(g, x)
	const h = 1e-6
	for i := range x {
		xp := append([]float64(nil), x...)
		xm := append([]float64(nil), x...)
		xp[i] += h
		xm[i] -= h
		fd := (o.value(xp) - o.value(xm)) / (2 * h)
		if math.Abs(fd-g[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
			t.Errorf("d/dx[%d]: analytic %.9g, finite difference %.9g", i, g[i], fd)
		}
	}
}

func TestHiddenGradientMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const n, dim, k, hidden = 25, 6, 3, 5
	X := mat.NewDense(n, dim, nil)
	for i := range n {
		for j := range dim {
			X.Set(i, j, rng.NormFloat64())
		}
	}
	y := make([]int, n)
	sw := make([]float64, n)
	for i := range y {
		y[i] = rng.IntN(k)
		sw[i] = 0.5 + rng.Float64()
	}
	o := newHiddenObjective(X, y, sw, k, hidden, 0.2)
	x := make([]float64, o.size())
	for i := range x {
		x[i] = rng.NormFloat64() * 0.7
	}
	g := make([]float64, len(x))
	o.grad(g, x)
	const h = 1e-6
	for i := range x {
		xp := append([]float64(nil), x...)
		xm := append([]float64(nil), x...)
		xp[i] += h
		xm[i] -= h
		fd := (o.value(xp) - o.value(xm)) / (2 * h)
		if math.Abs(fd-g[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
			t.Errorf("d/dx[%d]: analytic %.9g, finite difference %.9g", i, g[i], fd)
		}
	}
}

func TestTrainSeparatesClusters(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cs := centres(rng, 3, 50)
	train := blobsAround(rng, cs, 40, 0.8)
	h, err := Train(train, "bb@1", TrainConfig{Balanced: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Fresh points from the same clusters.
	test := blobsAround(rng, cs, 40, 0.8)
	correct := 0
	for i, x := range test.X {
		p, err := h.Predict(x)
		if err != nil {
			t.Fatal(err)
		}
		if best, _ := h.Best(p); best == test.Labels[i] {
			correct++
		}
	}
	if acc := float64(correct) / float64(len(test.X)); acc < 0.95 {
		t.Fatalf("accuracy %.2f on separable clusters", acc)
	}
	t.Logf("%d iterations, loss %.4g, %.1f ms", h.Iters, h.Loss, h.TrainTime*1000)
}

func TestTrainNeedsTwoClasses(t *testing.T) {
	d := &Dataset{X: [][]float32{{1, 2}, {2, 3}}, Labels: []string{"a", "a"}}
	if _, err := Train(d, "bb", TrainConfig{}, nil); err != ErrTooFewClasses {
		t.Fatalf("err = %v, want ErrTooFewClasses", err)
	}
}

// A warm head re-expressed on new standardisation statistics must be the
// same function before any optimisation.
func TestWarmStartKeepsFunction(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	d1 := blobs(rng, 2, 20, 6, 1)
	old, err := Train(d1, "bb", TrainConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d2 := blobs(rng, 2, 25, 6, 3) // other statistics
	n, dim := len(d2.X), 6
	// Re-derive the new statistics the way Train does and check initWeights.
	h := &Head{Mean: make([]float64, dim), Scale: make([]float64, dim)}
	for _, x := range d2.X {
		for j, v := range x {
			h.Mean[j] += float64(v) / float64(n)
		}
	}
	for _, x := range d2.X {
		for j, v := range x {
			dv := float64(v) - h.Mean[j]
			h.Scale[j] += dv * dv / float64(n)
		}
	}
	for j := range h.Scale {
		h.Scale[j] = 1 / math.Sqrt(h.Scale[j])
	}
	X := mat.NewDense(n, dim, nil)
	x0 := make([]float64, 2*dim+2)
	initWeights(x0, X, make([]int, n), old.Classes, []int{n, 0}, h.Mean, h.Scale, old, "bb")
	h.Format, h.Kind, h.Backbone, h.Dim, h.Classes = HeadFormat, KindLinear, "bb", dim, old.Classes
	h.W, h.B = x0[:2*dim], x0[2*dim:]
	for _, x := range d2.X[:10] {
		p1, _ := old.Predict(x)
		p2, _ := h.Predict(x)
		for c := range p1 {
			if math.Abs(p1[c]-p2[c]) > 1e-9 {
				t.Fatalf("warm start changed the function: %v vs %v", p1, p2)
			}
		}
	}
}

func TestHeadSaveLoad(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, kind := range []string{KindLinear, KindHidden} {
		h, _, err := Fit(blobs(rng, 2, 10, 8, 1), "bb@2", FitConfig{Select: SelectConfig{Force: kind}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "head.json")
		if err := h.Save(path); err != nil {
			t.Fatal(err)
		}
		got, err := LoadHead(path, "bb@2")
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != kind || got.Calibration == nil || *got.Calibration != *h.Calibration || got.Capacity.Reason != h.Capacity.Reason {
			t.Fatalf("%s: loaded %s head, calibration %+v", kind, got.Kind, got.Calibration)
		}
		x := make([]float32, 8)
		p1, _ := h.Predict(x)
		p2, _ := got.Predict(x)
		for c := range p1 {
			if p1[c] != p2[c] {
				t.Fatalf("%s: loaded head predicts %v, saved %v", kind, p2, p1)
			}
		}
		if _, err := LoadHead(path, "other@1"); err == nil {
			t.Fatal("head for another backbone loaded")
		}
	}
}

// formatOneHead is a head file as the first format wrote it.
const formatOneHead = `{"format":1,"kind":"linear","backbone":"bb","dim":2,"classes":["Misty","Tigger"],` +
	`"mean":[0.5,1],"scale":[2,1],"w":[1,-1,-1,1],"b":[0.1,-0.1],"samples":4,"c":1,` +
	`"trained":"2026-11-27T03:14:33Z","train_seconds":0.01,"iterations":7,"loss":0.3}`

func TestDecodeHeadReadsFormatOne(t *testing.T) {
	h, err := DecodeHead([]byte(formatOneHead))
	if err != nil {
		t.Fatal(err)
	}
	if h.Format != HeadFormat || h.Calibration != nil || h.ThresholdFor(0) != DefaultThreshold {
		t.Fatalf("format %d, calibration %v", h.Format, h.Calibration)
	}
	p, err := h.Classify([]float32{1, 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// z = ((1-0.5)*2, 0) = (1, 0): logits 1.1 and -1.1.
	if p.Best != "Misty" || math.Abs(p.Confidence-1/(1+math.Exp(-2.2))) > 1e-12 || p.Label != "Misty" {
		t.Fatalf("prediction %+v", p)
	}
	for name, bad := range map[string]string{
		"hidden in format 1":  strings.Replace(formatOneHead, `"kind":"linear"`, `"kind":"hidden"`, 1),
		"future format":       strings.Replace(formatOneHead, `"format":1`, `"format":4`, 1),
		"background in 2":     strings.Replace(strings.Replace(formatOneHead, `"format":1`, `"format":2`, 1), `"Tigger"`, `"`+Background+`"`, 1),
		"reserved class":      strings.Replace(formatOneHead, `"Tigger"`, `"unknown"`, 1),
		"short weights":       strings.Replace(formatOneHead, `"w":[1,-1,-1,1]`, `"w":[1,-1,-1]`, 1),
		"unknown field":       strings.Replace(formatOneHead, `"loss":0.3`, `"loss":0.3,"lose":1`, 1),
		"linear with w1":      strings.Replace(strings.Replace(formatOneHead, `"format":1`, `"format":2`, 1), `"loss":0.3`, `"loss":0.3,"w1":[1]`, 1),
		"threshold over one":  strings.Replace(strings.Replace(formatOneHead, `"format":1`, `"format":2`, 1), `"loss":0.3`, `"loss":0.3,"calibration":{"threshold":1.5}`, 1),
		"imprinted not class": strings.Replace(strings.Replace(formatOneHead, `"format":1`, `"format":2`, 1), `"loss":0.3`, `"loss":0.3,"imprinted":["Shadow"]`, 1),
	} {
		if _, err := DecodeHead([]byte(bad)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestClassifyThreshold(t *testing.T) {
	h, _ := DecodeHead([]byte(formatOneHead))
	h.Calibration = &Calibration{Threshold: 0.95}
	x := []float32{1, 1} // Misty at 0.900
	cases := []struct {
		setting float64
		want    string
	}{
		{0, Unknown},    // calibrated 0.95
		{0.5, "Misty"},  // a setting overrides it
		{0.95, Unknown}, // the setting too
		{2, Unknown},    // settings above 1 mean 1
	}
	for _, tc := range cases {
		p, err := h.Classify(x, tc.setting)
		if err != nil {
			t.Fatal(err)
		}
		if p.Label != tc.want || p.Best != "Misty" || p.Known() != (tc.want != Unknown) {
			t.Errorf("setting %v: %+v, want %s", tc.setting, p, tc.want)
		}
	}
}

func FuzzDecodeHead(f *testing.F) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, kind := range []string{KindLinear, KindHidden} {
		h, _, err := Fit(blobs(rng, 3, 4, 3, 1), "bb", FitConfig{Train: TrainConfig{Hidden: 2}, Select: SelectConfig{Force: kind}}, nil)
		if err != nil {
			f.Fatal(err)
		}
		if h, err = h.Imprint("new", [][]float32{{1, 2, 3}}); err != nil {
			f.Fatal(err)
		}
		path := filepath.Join(f.TempDir(), "h.json")
		if err := h.Save(path); err != nil {
			f.Fatal(err)
		}
		good, _ := readFile(path)
		f.Add(good)
	}
	f.Add([]byte(formatOneHead))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHead(data)
		if err != nil {
			return
		}
		// A head that decodes predicts without panicking, and survives a
		// save and a reload unchanged.
		x := make([]float32, h.Dim)
		p1, err := h.Predict(x)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "h.json")
		if err := h.Save(path); err != nil {
			t.Fatalf("a decoded head does not save: %v", err)
		}
		again, err := LoadHead(path, "")
		if err != nil {
			t.Fatalf("a saved head does not load: %v", err)
		}
		p2, _ := again.Predict(x)
		for i := range p1 {
			if !(p1[i] == p2[i] || (math.IsNaN(p1[i]) && math.IsNaN(p2[i]))) {
				t.Fatalf("reloaded head predicts %v, was %v", p2, p1)
			}
		}
	})
}

// BenchmarkTrain trains each kind of head from scratch on synthetic
// clusters (whisker bench learner times the full grid on real-feature
// statistics).
func BenchmarkTrain(b *testing.B) {
	for _, tc := range []struct {
		kind string
		n, k int
	}{
		{KindLinear, 500, 2}, {KindLinear, 2000, 2}, {KindLinear, 2000, 10}, {KindLinear, 2000, 50}, {KindLinear, 10000, 10},
		{KindHidden, 500, 2}, {KindHidden, 2000, 10},
	} {
		b.Run(fmt.Sprintf("%s/n=%d/d=1280/k=%d", tc.kind, tc.n, tc.k), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(11, 12))
			d := blobs(rng, tc.k, tc.n/tc.k, 1280, 3)
			b.ResetTimer()
			iters := 0
			for range b.N {
				h, err := Train(d, "bb", TrainConfig{Kind: tc.kind, Balanced: true}, nil)
				if err != nil {
					b.Fatal(err)
				}
				iters = h.Iters
			}
			b.ReportMetric(float64(iters), "iterations")
		})
	}
}

// BenchmarkNewLabel is the time from a label of a pet the head does not
// know yet to a head that names it, with 2,000 samples stored: the sample
// is stored (one fsync) and imprinted into the head, which is swapped in.
func BenchmarkNewLabel(b *testing.B) {
	rng := rand.New(rand.NewPCG(13, 14))
	d := blobs(rng, 10, 200, 1280, 3)
	s, err := OpenStore(filepath.Join(b.TempDir(), "samples.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	smps := make([]Sample, len(d.X))
	for i, x := range d.X {
		smps[i] = Sample{Label: d.Labels[i], Backbone: "bb", Features: x}
	}
	if _, _, err := s.AddMany(smps); err != nil {
		b.Fatal(err)
	}
	tr := NewTrainer(TrainerConfig{Train: TrainConfig{Balanced: true}}, s, "bb", quietLog())
	if rep := tr.Retrain(); rep.Err != nil {
		b.Fatal(rep.Err)
	}
	trained := tr.Head()
	newPet := blobs(rng, 1, b.N, 1280, 3)
	b.ResetTimer()
	for i := range b.N {
		smp := Sample{Label: "newpet", Backbone: "bb", Features: newPet.X[i]}
		if _, _, err := s.Add(smp); err != nil {
			b.Fatal(err)
		}
		tr.Added(smp)
		if tr.Head().ClassIndex("newpet") < 0 {
			b.Fatal("the new label is not in the head")
		}
		b.StopTimer()
		tr.head.Store(trained) // the next label is new again
		tr.mu.Lock()
		tr.pending = map[string][][]float32{}
		tr.mu.Unlock()
		b.StartTimer()
	}
}
