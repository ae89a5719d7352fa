package learner

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// TrainConfig tunes head training.
type TrainConfig struct {
	// Kind is the head to train: KindLinear (default) or KindHidden.
	Kind string
	// C is the inverse L2 strength, as in scikit-learn: the objective is
	// sum_i w_i * logloss_i + ||W||^2 / (2C) (biases are not penalised).
	// Default 1.
	C float64
	// Balanced weighs each class by N / (K * n_class), so a pet with few
	// labels counts as much as one with many.
	Balanced bool
	// MaxIter bounds the optimiser's iterations. Default 500 (linear),
	// 300 (hidden).
	MaxIter int
	// Tol stops when the largest gradient component falls below it
	// (on the objective divided by the sample weight sum). Default 1e-4,
	// scikit-learn's tolerance for the same objective.
	Tol float64
	// Hidden is the number of hidden units of a hidden head. Default 32.
	Hidden int
	// Validation is the fraction of samples a hidden head holds out for
	// early stopping. Default 0.15.
	Validation float64
	// Patience stops a hidden head's training after this many iterations
	// without a better validation loss; the best weights are kept.
	// Default 10.
	Patience int
	// Seed makes the hidden head's initial weights and validation split
	// reproducible.
	Seed uint64
}

func (c TrainConfig) withDefaults() TrainConfig {
	if c.Kind == "" {
		c.Kind = KindLinear
	}
	if c.C <= 0 {
		c.C = 1
	}
	if c.MaxIter <= 0 {
		c.MaxIter = 500
		if c.Kind == KindHidden {
			c.MaxIter = 300
		}
	}
	if c.Tol <= 0 {
		c.Tol = 1e-4
	}
	if c.Hidden <= 0 {
		c.Hidden = 32
	}
	if c.Validation <= 0 || c.Validation >= 0.5 {
		c.Validation = 0.15
	}
	if c.Patience <= 0 {
		c.Patience = 10
	}
	return c
}

// Dataset is a set of feature vectors with labels.
type Dataset struct {
	X      [][]float32
	Labels []string
	IDs    []uint64 // store ids, when loaded from a store
}

// ErrTooFewClasses is returned when fewer than two labels have samples.
var ErrTooFewClasses = errors.New("need samples of at least two labels to train (two pets, or a pet and 'neither')")

// Classes returns the dataset's distinct labels, sorted.
func (d *Dataset) Classes() []string {
	set := map[string]bool{}
	for _, l := range d.Labels {
		set[l] = true
	}
	out := make([]string, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Counts returns the number of samples of each label, sorted by label.
func (d *Dataset) Counts() []LabelCount {
	m := map[string]int{}
	for _, l := range d.Labels {
		m[l]++
	}
	out := make([]LabelCount, 0, len(m))
	for l, n := range m {
		out = append(out, LabelCount{l, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}

// Subset returns the samples at the given indices (sharing the vectors).
func (d *Dataset) Subset(idx []int) *Dataset {
	s := &Dataset{X: make([][]float32, len(idx)), Labels: make([]string, len(idx))}
	if len(d.IDs) == len(d.X) {
		s.IDs = make([]uint64, len(idx))
	}
	for i, j := range idx {
		s.X[i], s.Labels[i] = d.X[j], d.Labels[j]
		if s.IDs != nil {
			s.IDs[i] = d.IDs[j]
		}
	}
	return s
}

// check verifies that every vector has the same dimension.
func (d *Dataset) check() (dim int, err error) {
	if len(d.X) != len(d.Labels) {
		return 0, fmt.Errorf("dataset has %d vectors and %d labels", len(d.X), len(d.Labels))
	}
	if len(d.X) == 0 {
		return 0, ErrTooFewClasses
	}
	dim = len(d.X[0])
	if dim == 0 {
		return 0, errors.New("dataset has empty feature vectors")
	}
	for i, x := range d.X {
		if len(x) != dim {
			return 0, fmt.Errorf("sample %d has %d values, others %d", i, len(x), dim)
		}
	}
	return dim, nil
}

// problem is a dataset made ready for the optimiser: standardised
// features, class indices and sample weights.
type problem struct {
	classes     []string
	mean, scale []float64
	X           *mat.Dense // n x dim, standardised
	y           []int
	sw          []float64
	counts      []int
	balanced    bool
}

func newProblem(d *Dataset, balanced bool) (*problem, error) {
	dim, err := d.check()
	if err != nil {
		return nil, err
	}
	classes := d.Classes()
	if len(classes) < 2 {
		return nil, ErrTooFewClasses
	}
	n, k := len(d.X), len(classes)
	index := make(map[string]int, k)
	for i, c := range classes {
		index[c] = i
	}
	// Standardise: z = (x - mean) * scale, scale = 1/std (1 where std is 0).
	mean := make([]float64, dim)
	scale := make([]float64, dim)
	for _, x := range d.X {
		for j, v := range x {
			mean[j] += float64(v)
		}
	}
	floats.Scale(1/float64(n), mean)
	for _, x := range d.X {
		for j, v := range x {
			dv := float64(v) - mean[j]
			scale[j] += dv * dv
		}
	}
	for j := range scale {
		sd := math.Sqrt(scale[j] / float64(n))
		if sd < 1e-8 {
			scale[j] = 1
		} else {
			scale[j] = 1 / sd
		}
	}
	X := mat.NewDense(n, dim, nil)
	raw := X.RawMatrix()
	for i, x := range d.X {
		row := raw.Data[i*raw.Stride : i*raw.Stride+dim]
		for j, v := range x {
			row[j] = (float64(v) - mean[j]) * scale[j]
		}
	}
	y := make([]int, n)
	counts := make([]int, k)
	for i, l := range d.Labels {
		y[i] = index[l]
		counts[y[i]]++
	}
	sw := make([]float64, n)
	for i := range sw {
		sw[i] = 1
		if balanced {
			sw[i] = float64(n) / (float64(k) * float64(counts[y[i]]))
		}
	}
	return &problem{classes: classes, mean: mean, scale: scale, X: X, y: y, sw: sw, counts: counts, balanced: balanced}, nil
}

// centroids are the classes' mean standardised vectors.
func (pr *problem) centroids() []float64 {
	_, dim := pr.X.Dims()
	out := make([]float64, len(pr.classes)*dim)
	raw := pr.X.RawMatrix()
	for i, c := range pr.y {
		floats.AddScaled(out[c*dim:(c+1)*dim], 1/float64(pr.counts[c]), raw.Data[i*raw.Stride:i*raw.Stride+dim])
	}
	return out
}

// Train fits a head of cfg.Kind on standardised features with L-BFGS.
// When warm is a head of the same kind on the same backbone and
// dimension, its weights for classes that still exist start the
// optimisation; a class new to the head starts from its mean standardised
// feature vector (weight imprinting). Train neither chooses the kind nor
// calibrates the threshold: Fit does.
func Train(d *Dataset, backbone string, cfg TrainConfig, warm *Head) (*Head, error) {
	start := time.Now()
	cfg = cfg.withDefaults()
	pr, err := newProblem(d, cfg.Balanced)
	if err != nil {
		return nil, err
	}
	var h *Head
	switch cfg.Kind {
	case KindLinear:
		h, err = trainLinear(pr, backbone, cfg, warm)
	case KindHidden:
		h, err = trainHidden(pr, backbone, cfg, warm)
	default:
		return nil, fmt.Errorf("train: unknown head kind %q", cfg.Kind)
	}
	if err != nil {
		return nil, err
	}
	h.Centroids = pr.centroids()
	h.Samples = len(d.X)
	h.C = cfg.C
	h.Trained = time.Now().UTC()
	h.TrainTime = time.Since(start).Seconds()
	return h, nil
}

func trainLinear(pr *problem, backbone string, cfg TrainConfig, warm *Head) (*Head, error) {
	_, dim := pr.X.Dims()
	k := len(pr.classes)
	obj := newObjective(pr.X, pr.y, pr.sw, k, 1/(cfg.C*floats.Sum(pr.sw)))
	x0 := make([]float64, k*dim+k)
	if warm != nil && (warm.Kind != KindLinear || warm.Backbone != backbone || warm.Dim != dim) {
		warm = nil
	}
	initWeights(x0, pr.X, pr.y, pr.classes, pr.counts, pr.mean, pr.scale, warm, backbone)

	res, err := optimize.Minimize(
		optimize.Problem{Func: obj.value, Grad: obj.grad},
		x0,
		&optimize.Settings{
			GradientThreshold: cfg.Tol,
			MajorIterations:   cfg.MaxIter,
			Converger:         &optimize.FunctionConverge{Absolute: 1e-12, Relative: 1e-12, Iterations: 50},
		},
		&optimize.LBFGS{Store: 20},
	)
	if err := finite(res, err); err != nil {
		return nil, err
	}
	return &Head{
		Format:   HeadFormat,
		Kind:     KindLinear,
		Backbone: backbone,
		Dim:      dim,
		Classes:  pr.classes,
		Mean:     pr.mean,
		Scale:    pr.scale,
		W:        slices.Clone(res.X[:k*dim]),
		B:        slices.Clone(res.X[k*dim:]),
		Iters:    res.Stats.MajorIterations,
		Loss:     res.F,
	}, nil
}

// finite checks an optimiser's result. Iteration limits end training with
// a usable (if not fully converged) head; anything else that leaves
// non-finite weights is an error.
func finite(res *optimize.Result, err error) error {
	if err != nil && res == nil {
		return fmt.Errorf("train: %w", err)
	}
	for _, v := range res.X {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("train: diverged (%v)", err)
		}
	}
	if math.IsNaN(res.F) || math.IsInf(res.F, 0) {
		return fmt.Errorf("train: diverged (%v)", err)
	}
	return nil
}

// initWeights fills the starting point: rows of a compatible warm head
// where the class is known to it, else the class's mean standardised
// vector scaled down (imprinting).
func initWeights(x0 []float64, X *mat.Dense, y []int, classes []string, counts []int, mean, scale []float64, warm *Head, backbone string) {
	k, dim := len(classes), len(mean)
	var warmIdx map[string]int
	if warm != nil && warm.Backbone == backbone && warm.Dim == dim && warm.Kind == KindLinear {
		warmIdx = make(map[string]int, len(warm.Classes))
		for i, c := range warm.Classes {
			if !slices.Contains(warm.Imprinted, c) {
				warmIdx[c] = i
			}
		}
	}
	raw := X.RawMatrix()
	for c := range k {
		row := x0[c*dim : (c+1)*dim]
		if wi, ok := warmIdx[classes[c]]; ok {
			x0[k*dim+c] = reexpress(row, warm.W[wi*dim:(wi+1)*dim], warm.B[wi], warm.Mean, warm.Scale, mean, scale)
			continue
		}
		for i, yi := range y {
			if yi == c {
				floats.Add(row, raw.Data[i*raw.Stride:i*raw.Stride+dim])
			}
		}
		// A small multiple of the class mean: a direction, not a scale.
		floats.Scale(1/(float64(counts[c])*math.Sqrt(float64(dim))), row)
	}
}

// reexpress writes into dst the weights that compute, on features
// standardised with (mean, scale), the same affine function that (src,
// bias) computes on features standardised with (oldMean, oldScale), and
// returns the new bias: weights w*s_old/s_new, bias
// b + sum w*s_old*(mean_new-mean_old).
func reexpress(dst, src []float64, bias float64, oldMean, oldScale, mean, scale []float64) float64 {
	for j := range dst {
		ws := src[j] * oldScale[j]
		dst[j] = ws / scale[j]
		bias += ws * (mean[j] - oldMean[j])
	}
	return bias
}

// objective is the weighted multinomial log loss with L2 on the weights
// (not the biases), divided by the sample weight sum. It caches the
// probabilities of the last point so that the gradient at that point costs
// one matrix product.
type objective struct {
	X      *mat.Dense
	y      []int
	sw     []float64
	swSum  float64
	k, dim int
	lambda float64

	lastX []float64
	loss  float64
	g     []float64 // gradient at lastX
	parts []objPart // one per worker
}

// objPart is one worker's share of a pass over the rows.
type objPart struct {
	loss float64
	g    []float64
	z    []float64
}

func newObjective(X *mat.Dense, y []int, sw []float64, k int, lambda float64) *objective {
	n, dim := X.Dims()
	workers := max(1, min(runtime.GOMAXPROCS(0), 8, n/256))
	o := &objective{
		X: X, y: y, sw: sw, swSum: floats.Sum(sw), k: k, dim: dim, lambda: lambda,
		g: make([]float64, k*dim+k), parts: make([]objPart, workers),
	}
	for i := range o.parts {
		o.parts[i] = objPart{g: make([]float64, k*dim+k), z: make([]float64, k)}
	}
	return o
}

// eval computes the loss and its gradient in one pass over the rows (each
// row is read once, while it is in cache), split between workers.
func (o *objective) eval(x []float64) {
	if o.lastX != nil && floats.Equal(o.lastX, x) {
		return
	}
	o.lastX = append(o.lastX[:0], x...)
	n, _ := o.X.Dims()
	chunk := (n + len(o.parts) - 1) / len(o.parts)
	var wg sync.WaitGroup
	for w := range o.parts {
		lo, hi := w*chunk, min(n, (w+1)*chunk)
		wg.Add(1)
		go func(part *objPart, lo, hi int) {
			defer wg.Done()
			o.pass(part, x, lo, hi)
		}(&o.parts[w], lo, hi)
	}
	wg.Wait()
	kd := o.k * o.dim
	for i := range o.g {
		o.g[i] = 0
	}
	var loss float64
	for _, part := range o.parts {
		loss += part.loss
		floats.Add(o.g, part.g)
	}
	wv := x[:kd]
	o.loss = loss/o.swSum + 0.5*o.lambda*floats.Dot(wv, wv)
	floats.AddScaled(o.g[:kd], o.lambda, wv)
}

// pass accumulates rows lo..hi: the weighted log loss, and the gradient
// (p - y) x^T weighted by sw/swSum (biases last).
func (o *objective) pass(part *objPart, x []float64, lo, hi int) {
	k, dim := o.k, o.dim
	raw := o.X.RawMatrix()
	b := x[k*dim:]
	g := part.g
	for i := range g {
		g[i] = 0
	}
	z := part.z
	var loss float64
	for i := lo; i < hi; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+dim]
		m := math.Inf(-1)
		for c := range k {
			z[c] = floats.Dot(x[c*dim:(c+1)*dim], row) + b[c]
			m = math.Max(m, z[c])
		}
		yi := o.y[i]
		logitY := z[yi]
		var sum float64
		for c := range k {
			z[c] = math.Exp(z[c] - m) // now unnormalised probabilities
			sum += z[c]
		}
		// -log p_y = log(sum) + m - logit_y
		loss += o.sw[i] * (math.Log(sum) + m - logitY)
		w := o.sw[i] / o.swSum
		for c := range k {
			r := z[c] / sum * w
			if c == yi {
				r -= w
			}
			if r != 0 {
				floats.AddScaled(g[c*dim:(c+1)*dim], r, row)
			}
			g[k*dim+c] += r
		}
	}
	part.loss = loss
}

func (o *objective) value(x []float64) float64 {
	o.eval(x)
	return o.loss
}

func (o *objective) grad(g, x []float64) {
	o.eval(x)
	copy(g, o.g)
}
