package learner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// xor makes two classes that no linear head separates: the sign of x0*x1
// decides the class; the other dimensions are noise.
func xor(rng *rand.Rand, n, dim int) *Dataset {
	d := &Dataset{}
	for range n {
		x := make([]float32, dim)
		for j := range x {
			x[j] = float32(rng.NormFloat64())
		}
		l := "same"
		if x[0]*x[1] < 0 {
			l = "opposite"
		}
		d.X = append(d.X, x)
		d.Labels = append(d.Labels, l)
	}
	return d
}

func TestHiddenHeadLearnsWhatLinearCannot(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	train, test := xor(rng, 300, 6), xor(rng, 300, 6)
	lin, err := Train(train, "bb", TrainConfig{Kind: KindLinear}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hid, err := Train(train, "bb", TrainConfig{Kind: KindHidden, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	la, _ := Accuracy(lin, test)
	ha, _ := Accuracy(hid, test)
	t.Logf("XOR: linear %.3f, hidden %.3f (%d iterations)", la, ha, hid.Iters)
	if la > 0.65 {
		t.Errorf("linear head reaches %.3f on XOR; the test data is not what it should be", la)
	}
	if ha < 0.85 {
		t.Errorf("hidden head reaches only %.3f on XOR", ha)
	}
}

func TestFitChoosesCapacityByCrossValidation(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	cases := []struct {
		name   string
		data   *Dataset
		want   string
		reason string
	}{
		// Few samples: linear, whatever the data, without trying.
		{"few samples of XOR", xor(rng, 24, 6), KindLinear, "tried from 20 per class"},
		// Enough samples and a non-linear problem: cross-validation picks
		// the hidden head.
		{"many samples of XOR", xor(rng, 240, 6), KindHidden, "hidden: cross-validated accuracy"},
		// Enough samples, but a linear problem: the hidden head is tried
		// and not measurably better, so the simpler head stays.
		{"many samples of blobs", blobs(rng, 3, 40, 8, 1.5), KindLinear, "is not better than linear"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, info, err := Fit(tc.data, "bb", FitConfig{Train: TrainConfig{Balanced: true}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !info.Selected {
				t.Error("a first fit did not select")
			}
			if h.Kind != tc.want || h.Capacity.Kind != tc.want {
				t.Fatalf("chose %s (%s), want %s", h.Kind, h.Capacity.Reason, tc.want)
			}
			if !strings.Contains(h.Capacity.Reason, tc.reason) {
				t.Errorf("reason %q does not say %q", h.Capacity.Reason, tc.reason)
			}
			if h.Calibration == nil {
				t.Fatal("no calibrated threshold")
			}
			t.Logf("%s; threshold %.3f", h.Capacity.Reason, h.Calibration.Threshold)
		})
	}
}

func TestFitKeepsChoicesWhileDataBarelyChanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	d := blobs(rng, 2, 30, 5, 1)
	h1, info, err := Fit(d, "bb", FitConfig{}, nil)
	if err != nil || !info.Selected {
		t.Fatalf("first fit: %v, selected %v", err, info.Selected)
	}
	more := blobs(rng, 2, 3, 5, 1) // 10% more, same classes
	d2 := &Dataset{X: append(append([][]float32{}, d.X...), more.X...), Labels: append(append([]string{}, d.Labels...), more.Labels...)}
	h2, info, err := Fit(d2, "bb", FitConfig{}, h1)
	if err != nil || info.Selected {
		t.Fatalf("second fit: %v, selected %v (want the first fit's choices kept)", err, info.Selected)
	}
	if *h2.Calibration != *h1.Calibration {
		t.Error("calibration changed without a selection")
	}
	// A new class always re-selects.
	extra := &Dataset{X: append(append([][]float32{}, d2.X...), d2.X[0], d2.X[1]), Labels: append(append([]string{}, d2.Labels...), "new", "new")}
	if _, info, err := Fit(extra, "bb", FitConfig{}, h2); err != nil || !info.Selected {
		t.Fatalf("fit with a new class: %v, selected %v", err, info.Selected)
	}
}

func TestFitWithoutEnoughForCrossValidation(t *testing.T) {
	d := &Dataset{X: [][]float32{{1, 0}, {0, 1}}, Labels: []string{"a", "b"}}
	h, _, err := Fit(d, "bb", FitConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Calibration != nil || h.ThresholdFor(0) != DefaultThreshold || h.ThresholdFor(0.8) != 0.8 {
		t.Fatalf("calibration %+v, threshold %v", h.Calibration, h.ThresholdFor(0))
	}
	// A single-sample class is left out of the cross-validation; the
	// others still calibrate.
	rng := rand.New(rand.NewPCG(37, 38))
	d = blobs(rng, 2, 10, 4, 1)
	d.X = append(d.X, []float32{9, 9, 9, 9})
	d.Labels = append(d.Labels, "newcomer")
	h, _, err = Fit(d, "bb", FitConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Calibration == nil || h.Calibration.Samples != 20 || !strings.Contains(h.Capacity.Reason, "left out") {
		t.Fatalf("calibration %+v, reason %q", h.Calibration, h.Capacity.Reason)
	}
}

func TestCalibrateAcceptsTheRequestedShare(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 40))
	for _, rate := range []float64{0.5, 0.9, 0.95, 1} {
		cv := &CVResult{Folds: 5}
		for i := range 400 {
			truth := i % 3
			pred := truth
			conf := 0.4 + 0.6*rng.Float64()
			if rng.Float64() < 0.2 {
				pred = (truth + 1) % 3
				conf *= 0.8
			}
			cv.True, cv.Pred, cv.Conf = append(cv.True, truth), append(cv.Pred, pred), append(cv.Conf, conf)
		}
		c := Calibrate(cv, rate)
		var correct []float64
		for i := range cv.Pred {
			if cv.Pred[i] == cv.True[i] {
				correct = append(correct, cv.Conf[i])
			}
		}
		sort.Float64s(correct)
		kept := 0
		for _, v := range correct {
			if v >= c.Threshold {
				kept++
			}
		}
		if float64(kept) < rate*float64(len(correct))-1e-9 {
			t.Errorf("rate %.2f: threshold %.3f keeps %d of %d correct", rate, c.Threshold, kept, len(correct))
		}
		// The next larger confidence would keep too few: the threshold is
		// the largest that works.
		for _, v := range correct {
			if v > c.Threshold {
				if above := countAtLeast(correct, v); float64(above) >= rate*float64(len(correct)) {
					t.Errorf("rate %.2f: threshold %.3f is not the largest (%.3f keeps %d)", rate, c.Threshold, v, above)
				}
				break
			}
		}
		if c.ErrorsRejected <= 0 && rate < 1 {
			t.Errorf("rate %.2f: no mistake rejected although mistakes have lower confidence", rate)
		}
	}
}

func countAtLeast(v []float64, t float64) int {
	n := 0
	for _, x := range v {
		if x >= t {
			n++
		}
	}
	return n
}

func TestFoldsAreStratifiedAndCover(t *testing.T) {
	var labels []string
	for i, n := range []int{7, 12, 30} {
		for range n {
			labels = append(labels, fmt.Sprintf("c%d", i))
		}
	}
	plan := Folds(labels, 5, 1)
	if plan.K != 5 {
		t.Fatalf("K = %d", plan.K)
	}
	per := map[string][]int{}
	for i, f := range plan.Fold {
		if per[labels[i]] == nil {
			per[labels[i]] = make([]int, plan.K)
		}
		per[labels[i]][f]++
	}
	for l, counts := range per {
		lo, hi := math.MaxInt, 0
		for _, c := range counts {
			lo, hi = min(lo, c), max(hi, c)
		}
		if hi-lo > 1 {
			t.Errorf("label %s spread over folds as %v", l, counts)
		}
	}
	if p := Folds([]string{"a", "a", "b", "b", "b"}, 5, 1); p.K != 2 {
		t.Errorf("K = %d with two samples of a label, want 2", p.K)
	}
}

func TestSelectionOnASubsetOfManySamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	d := blobs(rng, 3, 40, 5, 1)
	d.X = append(d.X, d.X[0], d.X[1]) // a small fourth class
	d.Labels = append(d.Labels, "rare", "rare")
	h, _, err := Fit(d, "bb", FitConfig{Select: SelectConfig{MaxSamples: 50}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Capacity.Subset == 0 || h.Capacity.Subset > 55 || h.Calibration.Samples != h.Capacity.Subset || h.Samples != 122 {
		t.Fatalf("subset %d, calibrated on %d, trained on %d", h.Capacity.Subset, h.Calibration.Samples, h.Samples)
	}
	idx := subsample(d.Labels, 50, 1)
	per := map[string]int{}
	for _, i := range idx {
		per[d.Labels[i]]++
	}
	if per["rare"] != 2 || per["pet0"] < 15 || per["pet0"] > 17 {
		t.Fatalf("subset per label %v", per)
	}
}
