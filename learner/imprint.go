package learner

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// imprintMargin is the least log-odds by which an imprinted class beats
// the head's best other class on its own samples: ln 2, that is 2:1.
const imprintMargin = 0.6931471805599453

// Imprint returns a copy of h that also knows label, without training: the
// new class's row of W points along the mean of its samples' standardised
// vectors with the typical length of the other rows (a hidden head's
// hidden units get no weight for it yet). Its bias puts the boundary with
// the best other class halfway between the centre of the data the head was
// trained on (the origin of the standardised space) and the new samples'
// mean, and makes the class win on its own samples by at least 2:1. It is
// a usable head at once; training then refines it. A label the head already
// has is re-imprinted only if it was imprinted.
func (h *Head) Imprint(label string, xs [][]float32) (*Head, error) {
	if label == "" || label == Unknown || label == Background {
		return nil, fmt.Errorf("imprint: invalid label %q", label)
	}
	if len(xs) == 0 {
		return nil, errors.New("imprint: no samples")
	}
	for _, x := range xs {
		if len(x) != h.Dim {
			return nil, fmt.Errorf("imprint: feature vector has %d values, the head takes %d", len(x), h.Dim)
		}
	}
	out := h.clone()
	if i := out.ClassIndex(label); i >= 0 {
		if !slices.Contains(out.Imprinted, label) {
			return out, nil
		}
		out = out.drop(i)
	}
	zs := make([][]float64, len(xs))
	mu := make([]float64, out.Dim)
	for i, x := range xs {
		zs[i] = make([]float64, out.Dim)
		out.standardise(x, zs[i])
		for j, v := range zs[i] {
			mu[j] += v / float64(len(xs))
		}
	}
	norm := 0.0
	for _, v := range mu {
		norm += v * v
	}
	norm = math.Sqrt(norm)
	if norm == 0 || math.IsNaN(norm) || math.IsInf(norm, 0) {
		return nil, errors.New("imprint: the samples' mean vector is zero or not finite")
	}
	k := len(out.Classes)
	alpha := 0.0
	for c := range k {
		var s float64
		for _, v := range out.W[c*out.Dim : (c+1)*out.Dim] {
			s += v * v
		}
		alpha += math.Sqrt(s) / float64(k)
	}
	if alpha == 0 {
		alpha = 1
	}
	row := make([]float64, out.Dim)
	for j, v := range mu {
		row[j] = alpha * v / norm
	}
	// Bias: a tie with the best other class halfway to the new mean...
	bestLogit := func(z []float64) (best, dot float64) {
		best = math.Inf(-1)
		for _, l := range out.logits(z) {
			best = math.Max(best, l)
		}
		for j, v := range z {
			dot += row[j] * v
		}
		return best, dot
	}
	half := make([]float64, len(mu))
	for j, v := range mu {
		half[j] = v / 2
	}
	best, dot := bestLogit(half)
	bias := best - dot
	// ... but at least the margin on every own sample.
	for _, z := range zs {
		best, dot := bestLogit(z)
		bias = math.Max(bias, best-dot+imprintMargin)
	}
	out.Classes = append(out.Classes, label)
	out.W = append(out.W, row...)
	out.B = append(out.B, bias)
	if out.Kind == KindHidden {
		out.W2 = append(out.W2, make([]float64, out.Hidden)...)
	}
	if len(out.Centroids) > 0 {
		out.Centroids = append(out.Centroids, mu...)
	}
	out.Imprinted = append(out.Imprinted, label)
	return out, nil
}

// drop returns the head without class i (the caller checks that two
// classes remain).
func (h *Head) drop(i int) *Head {
	out := h.clone()
	name := out.Classes[i]
	out.Classes = slices.Delete(out.Classes, i, i+1)
	out.W = slices.Delete(out.W, i*out.Dim, (i+1)*out.Dim)
	out.B = slices.Delete(out.B, i, i+1)
	if out.Kind == KindHidden {
		out.W2 = slices.Delete(out.W2, i*out.Hidden, (i+1)*out.Hidden)
	}
	if len(out.Centroids) > 0 {
		out.Centroids = slices.Delete(out.Centroids, i*out.Dim, (i+1)*out.Dim)
	}
	if j := slices.Index(out.Imprinted, name); j >= 0 {
		out.Imprinted = slices.Delete(out.Imprinted, j, j+1)
	}
	if len(out.Imprinted) == 0 {
		out.Imprinted = nil
	}
	return out
}

// WithoutClass returns a copy of h that no longer predicts label (its
// probability mass goes to the others), or nil when fewer than two classes
// would remain. A head without the label is returned unchanged.
func (h *Head) WithoutClass(label string) *Head {
	i := h.ClassIndex(label)
	switch {
	case i < 0:
		return h
	case len(h.Classes) <= 2:
		return nil
	}
	return h.drop(i)
}

// Renamed returns a copy of h in which class from is called to: the same
// function under another name. When the head already has a class to, the
// two are merged by dropping from's row until a retrain learns the merged
// class (nil when fewer than two classes would remain).
func (h *Head) Renamed(from, to string) *Head {
	i := h.ClassIndex(from)
	if i < 0 || from == to {
		return h
	}
	if h.ClassIndex(to) >= 0 {
		return h.WithoutClass(from)
	}
	out := h.clone()
	out.Classes[i] = to
	if j := slices.Index(out.Imprinted, from); j >= 0 {
		out.Imprinted[j] = to
	}
	return out
}
