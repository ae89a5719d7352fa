package learner

import (
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// trainHidden fits a head with one tanh hidden layer beside the linear
// part: L2 on all weight matrices (same C convention as the linear head)
// and early stopping on a stratified validation split, keeping the
// weights of the best validation loss.
func trainHidden(pr *problem, backbone string, cfg TrainConfig, warm *Head) (*Head, error) {
	_, dim := pr.X.Dims()
	k, H := len(pr.classes), cfg.Hidden
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))

	trainIdx, valIdx := validationSplit(pr.y, k, cfg.Validation, rng)
	tr := pr.rows(trainIdx)
	obj := newHiddenObjective(tr.X, tr.y, tr.sw, k, H, 1/(cfg.C*floats.Sum(tr.sw)))

	x0 := make([]float64, obj.size())
	if warm != nil && (warm.Backbone != backbone || warm.Dim != dim) {
		warm = nil
	}
	initHidden(x0, tr, H, warm, backbone, rng)

	var conv optimize.Converger = &optimize.FunctionConverge{Absolute: 1e-12, Relative: 1e-12, Iterations: 50}
	var stop *earlyStop
	if len(valIdx) > 0 {
		va := pr.rows(valIdx)
		vobj := newHiddenObjective(va.X, va.y, va.sw, k, H, 0)
		stop = &earlyStop{val: vobj.value, patience: cfg.Patience, inner: conv}
		conv = stop
	}
	res, err := optimize.Minimize(
		optimize.Problem{Func: obj.value, Grad: obj.grad},
		x0,
		&optimize.Settings{GradientThreshold: cfg.Tol, MajorIterations: cfg.MaxIter, Converger: conv},
		&optimize.LBFGS{Store: 20},
	)
	if err := finite(res, err); err != nil {
		return nil, err
	}
	x := res.X
	if stop != nil && stop.bestX != nil {
		x = stop.bestX
	}
	W, b, W1, b1, W2 := obj.split(x)
	return &Head{
		Format:   HeadFormat,
		Kind:     KindHidden,
		Backbone: backbone,
		Dim:      dim,
		Classes:  pr.classes,
		Mean:     pr.mean,
		Scale:    pr.scale,
		W:        slices.Clone(W.RawMatrix().Data),
		B:        slices.Clone(b),
		Hidden:   H,
		W1:       slices.Clone(W1.RawMatrix().Data),
		B1:       slices.Clone(b1),
		W2:       slices.Clone(W2.RawMatrix().Data),
		Iters:    res.Stats.MajorIterations,
		Loss:     obj.value(x),
	}, nil
}

// validationSplit holds out about frac of each class that has at least two
// samples (at least one of them), at random.
func validationSplit(y []int, k int, frac float64, rng *rand.Rand) (train, val []int) {
	byClass := make([][]int, k)
	for i, c := range y {
		byClass[c] = append(byClass[c], i)
	}
	for _, idx := range byClass {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		nv := 0
		if len(idx) >= 2 {
			nv = max(1, int(math.Round(frac*float64(len(idx)))))
		}
		val = append(val, idx[:nv]...)
		train = append(train, idx[nv:]...)
	}
	slices.Sort(train)
	slices.Sort(val)
	return train, val
}

// rows returns the problem restricted to some samples (at least one):
// same standardisation and classes, balanced weights recomputed on the
// subset.
func (pr *problem) rows(idx []int) *problem {
	_, dim := pr.X.Dims()
	sub := &problem{classes: pr.classes, mean: pr.mean, scale: pr.scale, balanced: pr.balanced,
		X: mat.NewDense(len(idx), dim, nil), y: make([]int, len(idx)), sw: make([]float64, len(idx)),
		counts: make([]int, len(pr.classes))}
	for i, j := range idx {
		sub.X.SetRow(i, pr.X.RawRowView(j))
		sub.y[i] = pr.y[j]
		sub.counts[pr.y[j]]++
	}
	k := 0
	for _, c := range sub.counts {
		if c > 0 {
			k++
		}
	}
	for i := range sub.sw {
		sub.sw[i] = 1
		if pr.balanced {
			sub.sw[i] = float64(len(idx)) / (float64(k) * float64(sub.counts[sub.y[i]]))
		}
	}
	return sub
}

// initHidden fills the starting point of a hidden head. The linear part
// starts as a linear head would (a compatible warm head's rows, of either
// kind, else imprinting); the hidden layer from a warm hidden head of the
// same size, re-expressed on the new standardisation, else from small
// random weights (Glorot scale) with small output weights, so that the
// head starts close to its linear part.
func initHidden(x0 []float64, pr *problem, H int, warm *Head, backbone string, rng *rand.Rand) {
	_, dim := pr.X.Dims()
	k := len(pr.classes)
	o := hiddenObjective{k: k, dim: dim, h: H}
	W, b, W1, b1, W2 := o.split(x0)
	lin := make([]float64, k*dim+k)
	var linWarm *Head
	if warm != nil {
		lw := *warm
		lw.Kind = KindLinear // initWeights reads only W, B, Mean and Scale
		linWarm = &lw
	}
	initWeights(lin, pr.X, pr.y, pr.classes, pr.counts, pr.mean, pr.scale, linWarm, backbone)
	copy(W.RawMatrix().Data, lin[:k*dim])
	copy(b, lin[k*dim:])

	w1 := W1.RawMatrix().Data
	if warm != nil && warm.Kind == KindHidden && warm.Hidden == H {
		for u := range H {
			b1[u] = reexpress(w1[u*dim:(u+1)*dim], warm.W1[u*dim:(u+1)*dim], warm.B1[u], warm.Mean, warm.Scale, pr.mean, pr.scale)
		}
	} else {
		warm = nil
		s := math.Sqrt(1 / float64(dim))
		for i := range w1 {
			w1[i] = rng.NormFloat64() * s
		}
	}
	w2 := W2.RawMatrix().Data
	for c := range k {
		row := w2[c*H : (c+1)*H]
		if warm != nil && !slices.Contains(warm.Imprinted, pr.classes[c]) {
			if wi := warm.ClassIndex(pr.classes[c]); wi >= 0 {
				copy(row, warm.W2[wi*H:(wi+1)*H])
				continue
			}
		}
		for j := range row {
			row[j] = rng.NormFloat64() * 0.01
		}
	}
}

// earlyStop ends the optimisation once the validation loss has not
// improved for patience major iterations, remembering the best point.
type earlyStop struct {
	val      func([]float64) float64
	patience int
	inner    optimize.Converger

	best  float64
	bestX []float64
	since int
}

func (e *earlyStop) Init(dim int) {
	e.best, e.bestX, e.since = math.Inf(1), nil, 0
	e.inner.Init(dim)
}

func (e *earlyStop) Converged(loc *optimize.Location) optimize.Status {
	if v := e.val(loc.X); v < e.best-1e-9 {
		e.best, e.since = v, 0
		e.bestX = append(e.bestX[:0], loc.X...)
	} else if e.since++; e.since >= e.patience {
		return optimize.FunctionConvergence
	}
	return e.inner.Converged(loc)
}

// hiddenObjective is the weighted log loss of the hidden head, with L2 on
// W, W1 and W2, divided by the sample weight sum. The parameters are laid
// out as W (k x dim), b (k), W1 (H x dim), b1 (H), W2 (k x H).
type hiddenObjective struct {
	X         *mat.Dense
	y         []int
	sw        []float64
	swSum     float64
	k, dim, h int
	lambda    float64

	lastX []float64
	loss  float64
	act   *mat.Dense // n x H: tanh(X W1^T + b1)
	probs *mat.Dense // n x k
	tmp   *mat.Dense // n x k
	resid *mat.Dense // n x k: weighted (P - Y) / swSum
	dact  *mat.Dense // n x H
}

func newHiddenObjective(X *mat.Dense, y []int, sw []float64, k, h int, lambda float64) *hiddenObjective {
	n, dim := X.Dims()
	return &hiddenObjective{
		X: X, y: y, sw: sw, swSum: floats.Sum(sw), k: k, dim: dim, h: h, lambda: lambda,
		act:   mat.NewDense(n, h, nil),
		probs: mat.NewDense(n, k, nil),
		tmp:   mat.NewDense(n, k, nil),
		resid: mat.NewDense(n, k, nil),
		dact:  mat.NewDense(n, h, nil),
	}
}

func (o *hiddenObjective) size() int { return o.k*o.dim + o.k + o.h*o.dim + o.h + o.k*o.h }

// split views the parameter vector as its matrices (sharing memory).
func (o *hiddenObjective) split(x []float64) (W *mat.Dense, b []float64, W1 *mat.Dense, b1 []float64, W2 *mat.Dense) {
	i := 0
	next := func(n int) []float64 { s := x[i : i+n]; i += n; return s }
	W = mat.NewDense(o.k, o.dim, next(o.k*o.dim))
	b = next(o.k)
	W1 = mat.NewDense(o.h, o.dim, next(o.h*o.dim))
	b1 = next(o.h)
	W2 = mat.NewDense(o.k, o.h, next(o.k*o.h))
	return
}

// penalised lists the weight matrices' ranges of the parameter vector.
func (o *hiddenObjective) penalised(x []float64) [][]float64 {
	a := o.k * o.dim
	c := a + o.k
	e := c + o.h*o.dim + o.h
	return [][]float64{x[:a], x[c : c+o.h*o.dim], x[e : e+o.k*o.h]}
}

func (o *hiddenObjective) eval(x []float64) {
	if o.lastX != nil && floats.Equal(o.lastX, x) {
		return
	}
	o.lastX = append(o.lastX[:0], x...)
	W, b, W1, b1, W2 := o.split(x)
	o.act.Mul(o.X, W1.T())
	ar := o.act.RawMatrix()
	n, _ := o.X.Dims()
	for i := range n {
		row := ar.Data[i*ar.Stride : i*ar.Stride+o.h]
		for u := range row {
			row[u] = math.Tanh(row[u] + b1[u])
		}
	}
	o.probs.Mul(o.X, W.T())
	o.tmp.Mul(o.act, W2.T())
	o.probs.Add(o.probs, o.tmp)
	pr := o.probs.RawMatrix()
	var loss float64
	for i := range n {
		p := pr.Data[i*pr.Stride : i*pr.Stride+o.k]
		m := math.Inf(-1)
		for c := range p {
			p[c] += b[c]
			m = math.Max(m, p[c])
		}
		zy := p[o.y[i]]
		var sum float64
		for c := range p {
			p[c] = math.Exp(p[c] - m)
			sum += p[c]
		}
		for c := range p {
			p[c] /= sum
		}
		loss += o.sw[i] * (math.Log(sum) + m - zy)
	}
	var pen float64
	for _, w := range o.penalised(x) {
		pen += floats.Dot(w, w)
	}
	o.loss = loss/o.swSum + 0.5*o.lambda*pen
}

func (o *hiddenObjective) value(x []float64) float64 {
	o.eval(x)
	return o.loss
}

func (o *hiddenObjective) grad(g, x []float64) {
	o.eval(x)
	n, _ := o.X.Dims()
	_, _, _, _, W2 := o.split(x)
	gW, gb, gW1, gb1, gW2 := o.split(g)
	pr, rr := o.probs.RawMatrix(), o.resid.RawMatrix()
	for c := range gb {
		gb[c] = 0
	}
	for i := range n {
		p := pr.Data[i*pr.Stride : i*pr.Stride+o.k]
		r := rr.Data[i*rr.Stride : i*rr.Stride+o.k]
		w := o.sw[i] / o.swSum
		for c := range p {
			r[c] = p[c] * w
		}
		r[o.y[i]] -= w
		for c := range r {
			gb[c] += r[c]
		}
	}
	gW.Mul(o.resid.T(), o.X)
	gW2.Mul(o.resid.T(), o.act)
	// Back through tanh: dZ = (R W2) .* (1 - A^2).
	o.dact.Mul(o.resid, W2)
	dr, ar := o.dact.RawMatrix(), o.act.RawMatrix()
	for u := range gb1 {
		gb1[u] = 0
	}
	for i := range n {
		d := dr.Data[i*dr.Stride : i*dr.Stride+o.h]
		a := ar.Data[i*ar.Stride : i*ar.Stride+o.h]
		for u := range d {
			d[u] *= 1 - a[u]*a[u]
			gb1[u] += d[u]
		}
	}
	gW1.Mul(o.dact.T(), o.X)
	gp, xp := o.penalised(g), o.penalised(x)
	for i := range gp {
		floats.AddScaled(gp[i], o.lambda, xp[i])
	}
}
