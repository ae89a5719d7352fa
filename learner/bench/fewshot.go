package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// Methods compared on few-shot splits.
const (
	MethodLinear      = "linear head"
	MethodHidden      = "hidden-layer head"
	MethodNearestMean = "nearest class mean"
	MethodKNN         = "k-nearest neighbours"
)

// Methods lists the Go methods in table order.
func Methods() []string {
	return []string{MethodLinear, MethodHidden, MethodNearestMean, MethodKNN}
}

// Split is one few-shot draw: Shots training samples per class, the rest
// for testing.
type Split struct {
	Shots int   `json:"shots"`
	Train []int `json:"train"`
	Test  []int `json:"test"`
}

// MakeSplits draws splits random splits for each shot count.
func MakeSplits(labels []string, shots []int, splits int, seed uint64) []Split {
	var out []Split
	for _, s := range shots {
		rng := rand.New(rand.NewPCG(seed, uint64(s)))
		for range splits {
			tr, te := learner.ShotSplit(labels, s, rng)
			out = append(out, Split{Shots: s, Train: tr, Test: te})
		}
	}
	return out
}

// Outcome is one method's result on one split.
type Outcome struct {
	Accuracy float64
	Fit      time.Duration
}

// FewShotConfig tunes the Go side of the comparison.
type FewShotConfig struct {
	// Train configures both heads (Kind is set per method).
	Train learner.TrainConfig
	// K is the number of neighbours (default 5, fewer when the training
	// set is smaller).
	K int
}

// RunMethod fits method on each split's training samples and measures its
// accuracy on the split's test samples.
func RunMethod(ctx context.Context, d *learner.Dataset, splits []Split, method string, cfg FewShotConfig) ([]Outcome, error) {
	out := make([]Outcome, len(splits))
	for i, sp := range splits {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		train, test := d.Subset(sp.Train), d.Subset(sp.Test)
		start := time.Now()
		pred, err := fit(method, train, cfg, uint64(i))
		fitTime := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("%s, %d shots, split %d: %w", method, sp.Shots, i, err)
		}
		ok := 0
		for j, x := range test.X {
			if pred(x) == test.Labels[j] {
				ok++
			}
		}
		out[i] = Outcome{Accuracy: float64(ok) / float64(len(test.X)), Fit: fitTime}
	}
	return out, nil
}

// fit trains a method and returns its predictor.
func fit(method string, train *learner.Dataset, cfg FewShotConfig, seed uint64) (func([]float32) string, error) {
	switch method {
	case MethodLinear, MethodHidden:
		tc := cfg.Train
		tc.Kind = learner.KindLinear
		if method == MethodHidden {
			tc.Kind = learner.KindHidden
			tc.Seed = seed
		}
		h, err := learner.Train(train, "bench", tc, nil)
		if err != nil {
			return nil, err
		}
		return func(x []float32) string {
			p, _ := h.Predict(x)
			best, _ := h.Best(p)
			return best
		}, nil
	case MethodNearestMean:
		return nearestMean(train), nil
	case MethodKNN:
		k := cfg.K
		if k <= 0 {
			k = 5
		}
		return knn(train, min(k, len(train.X))), nil
	}
	return nil, fmt.Errorf("unknown method %q", method)
}

// standardiser holds per-dimension statistics of a training set.
type standardiser struct{ mean, scale []float64 }

func newStandardiser(d *learner.Dataset) standardiser {
	dim := len(d.X[0])
	s := standardiser{make([]float64, dim), make([]float64, dim)}
	n := float64(len(d.X))
	for _, x := range d.X {
		for j, v := range x {
			s.mean[j] += float64(v) / n
		}
	}
	for _, x := range d.X {
		for j, v := range x {
			dv := float64(v) - s.mean[j]
			s.scale[j] += dv * dv / n
		}
	}
	for j, v := range s.scale {
		if sd := math.Sqrt(v); sd < 1e-8 {
			s.scale[j] = 1
		} else {
			s.scale[j] = 1 / sd
		}
	}
	return s
}

// unit standardises x and scales it to unit length.
func (s standardiser) unit(x []float32) []float64 {
	z := make([]float64, len(x))
	var n float64
	for j, v := range x {
		z[j] = (float64(v) - s.mean[j]) * s.scale[j]
		n += z[j] * z[j]
	}
	if n = math.Sqrt(n); n > 0 {
		for j := range z {
			z[j] /= n
		}
	}
	return z
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// nearestMean is weight imprinting used on its own: each class is the
// normalised mean of its standardised, normalised vectors, and a vector
// goes to the class of highest cosine similarity.
func nearestMean(train *learner.Dataset) func([]float32) string {
	st := newStandardiser(train)
	classes := train.Classes()
	means := make([][]float64, len(classes))
	for c := range means {
		means[c] = make([]float64, len(train.X[0]))
	}
	for i, x := range train.X {
		c := slices.Index(classes, train.Labels[i])
		for j, v := range st.unit(x) {
			means[c][j] += v
		}
	}
	for _, m := range means {
		if n := math.Sqrt(dot(m, m)); n > 0 {
			for j := range m {
				m[j] /= n
			}
		}
	}
	return func(x []float32) string {
		z := st.unit(x)
		best, bestS := 0, math.Inf(-1)
		for c, m := range means {
			if s := dot(z, m); s > bestS {
				best, bestS = c, s
			}
		}
		return classes[best]
	}
}

// knn votes among the k most cosine-similar training vectors
// (standardised); ties go to the larger summed similarity.
func knn(train *learner.Dataset, k int) func([]float32) string {
	st := newStandardiser(train)
	zs := make([][]float64, len(train.X))
	for i, x := range train.X {
		zs[i] = st.unit(x)
	}
	type nb struct {
		i int
		s float64
	}
	return func(x []float32) string {
		z := st.unit(x)
		nbs := make([]nb, len(zs))
		for i, t := range zs {
			nbs[i] = nb{i, dot(z, t)}
		}
		sort.Slice(nbs, func(a, b int) bool { return nbs[a].s > nbs[b].s })
		votes := map[string]int{}
		sims := map[string]float64{}
		for _, n := range nbs[:k] {
			l := train.Labels[n.i]
			votes[l]++
			sims[l] += n.s
		}
		best := ""
		for l := range votes {
			if best == "" || votes[l] > votes[best] || (votes[l] == votes[best] && (sims[l] > sims[best] || (sims[l] == sims[best] && l < best))) {
				best = l
			}
		}
		return best
	}
}
