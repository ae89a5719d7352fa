package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"

	"github.com/whiskercam/whisker/learner"
)

// The block head is an experiment: "with more data, train more layers".
// Each sample keeps, beside its pooled feature vector, the feature map
// that the backbone's last block (a 1x1 convolution, ReLU6 and average
// pooling) turns into it. The block head trains new units of that block
// on the household's own samples, beside the frozen pretrained ones:
//
//	u_j = mean over cells p of relu6(A_j . m_p + c_j)
//	p   = softmax(W z + V u + b)
//
// where z is the standardised pooled vector (what the linear head sees)
// and m_p the standardised map at cell p. It starts as the linear head
// trained on the same samples (V small), so it can only add to it.

// BlockConfig shapes the block head.
type BlockConfig struct {
	// Grid and Channels describe the stored map ([Grid][Grid][Channels]);
	// Pool averages Pool x Pool cells before training (1: none).
	Grid, Channels, Pool int
	// Units is the number of trained units (default 32).
	Units int
	// C is the inverse L2 strength on W, V and A (default 1), as the
	// linear head's.
	C float64
	// MaxIter bounds L-BFGS (default 150); Validation is the share held
	// out for early stopping (default 0.15), Patience its iterations
	// without improvement (default 10).
	MaxIter    int
	Validation float64
	Patience   int
	Seed       uint64
}

func (c BlockConfig) WithDefaults() BlockConfig {
	if c.Pool <= 0 {
		c.Pool = 1
	}
	if c.Units <= 0 {
		c.Units = 32
	}
	if c.C <= 0 {
		c.C = 1
	}
	if c.MaxIter <= 0 {
		c.MaxIter = 150
	}
	if c.Validation <= 0 || c.Validation >= 0.5 {
		c.Validation = 0.15
	}
	if c.Patience <= 0 {
		c.Patience = 10
	}
	return c
}

// cells is the number of map cells after pooling.
func (c BlockConfig) cells() int {
	g := (c.Grid + c.Pool - 1) / c.Pool
	return g * g
}

// poolMap averages Pool x Pool cells of a [Grid][Grid][Channels] map into
// dst ([cells][Channels]).
func (c BlockConfig) poolMap(m []float32, dst []float64) {
	g := (c.Grid + c.Pool - 1) / c.Pool
	for i := range dst {
		dst[i] = 0
	}
	for y := range c.Grid {
		for x := range c.Grid {
			cell := (y/c.Pool)*g + x/c.Pool
			src := m[(y*c.Grid+x)*c.Channels : (y*c.Grid+x+1)*c.Channels]
			row := dst[cell*c.Channels : (cell+1)*c.Channels]
			for i, v := range src {
				row[i] += float64(v)
			}
		}
	}
	for cell := range g * g {
		cy, cx := cell/g, cell%g
		n := (min(c.Grid, (cy+1)*c.Pool) - cy*c.Pool) * (min(c.Grid, (cx+1)*c.Pool) - cx*c.Pool)
		floats.Scale(1/float64(n), dst[cell*c.Channels:(cell+1)*c.Channels])
	}
}

// BlockHead is a trained block head.
type BlockHead struct {
	cfg      BlockConfig
	lin      *learner.Head // its standardisation of z and its classes
	mapMean  []float64     // per channel
	mapScale []float64
	W        *mat.Dense // k x dim
	B        []float64
	A        *mat.Dense // units x channels
	Cb       []float64
	V        *mat.Dense // k x units
	Iters    int
}

// Classes are the head's classes (the linear head's, Background included).
func (h *BlockHead) Classes() []string { return h.lin.Classes }

// blockData is a training set made ready: standardised z, pooled and
// standardised maps (n*cells x channels), class indices and weights.
type blockData struct {
	Z  *mat.Dense
	M  *mat.Dense
	y  []int
	sw []float64
}

// TrainBlock trains a block head on pooled vectors z and maps (one per
// sample, same order as labels), starting from lin, a linear head trained
// on the same samples (its standardisation and classes are kept).
func TrainBlock(z, maps [][]float32, labels []string, lin *learner.Head, cfg BlockConfig) (*BlockHead, error) {
	cfg = cfg.WithDefaults()
	if lin == nil || lin.Kind != learner.KindLinear {
		return nil, errors.New("block head: needs a linear head to start from")
	}
	if len(z) != len(labels) || len(maps) != len(labels) || len(z) == 0 {
		return nil, fmt.Errorf("block head: %d vectors, %d maps, %d labels", len(z), len(maps), len(labels))
	}
	if len(maps[0]) != cfg.Grid*cfg.Grid*cfg.Channels {
		return nil, fmt.Errorf("block head: maps of %d values, want %dx%dx%d", len(maps[0]), cfg.Grid, cfg.Grid, cfg.Channels)
	}
	h := &BlockHead{cfg: cfg, lin: lin}
	k, dim, units, ch := len(lin.Classes), lin.Dim, cfg.Units, cfg.Channels
	y := make([]int, len(labels))
	counts := make([]int, k)
	for i, l := range labels {
		if y[i] = lin.ClassIndex(l); y[i] < 0 {
			return nil, fmt.Errorf("block head: label %q is not a class of the linear head", l)
		}
		counts[y[i]]++
	}
	// Map standardisation, per channel over samples and cells.
	cells := cfg.cells()
	pooled := make([]float64, cells*ch)
	h.mapMean, h.mapScale = make([]float64, ch), make([]float64, ch)
	all := mat.NewDense(len(maps)*cells, ch, nil)
	for i, m := range maps {
		cfg.poolMap(m, pooled)
		for c := range cells {
			all.SetRow(i*cells+c, pooled[c*ch:(c+1)*ch])
		}
	}
	rows, _ := all.Dims()
	for j := range ch {
		col := mat.Col(nil, j, all)
		mean := floats.Sum(col) / float64(rows)
		var ss float64
		for _, v := range col {
			ss += (v - mean) * (v - mean)
		}
		sd := math.Sqrt(ss / float64(rows))
		h.mapMean[j], h.mapScale[j] = mean, 1
		if sd > 1e-8 {
			h.mapScale[j] = 1 / sd
		}
	}
	raw := all.RawMatrix()
	for r := range rows {
		row := raw.Data[r*raw.Stride : r*raw.Stride+ch]
		for j := range row {
			row[j] = (row[j] - h.mapMean[j]) * h.mapScale[j]
		}
	}
	Z := mat.NewDense(len(z), dim, nil)
	for i, x := range z {
		row := Z.RawRowView(i)
		for j, v := range x {
			row[j] = (float64(v) - lin.Mean[j]) * lin.Scale[j]
		}
	}
	// Balanced weights, as the agent's heads.
	sw := make([]float64, len(y))
	present := 0
	for _, n := range counts {
		if n > 0 {
			present++
		}
	}
	for i, c := range y {
		sw[i] = float64(len(y)) / (float64(present) * float64(counts[c]))
	}
	data := blockData{Z: Z, M: all, y: y, sw: sw}

	// Validation split, stratified, for early stopping.
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xb10c))
	byClass := make([][]int, k)
	for i, c := range y {
		byClass[c] = append(byClass[c], i)
	}
	var tr, va []int
	for _, idx := range byClass {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		nv := 0
		if len(idx) >= 2 {
			nv = max(1, int(math.Round(cfg.Validation*float64(len(idx)))))
		}
		va, tr = append(va, idx[:nv]...), append(tr, idx[nv:]...)
	}
	slices.Sort(tr)
	slices.Sort(va)
	train := data.rows(tr, cells)
	obj := newBlockObjective(train, k, dim, units, ch, cells, 1/(cfg.C*floats.Sum(train.sw)))
	x0 := make([]float64, obj.size())
	W, b, A, cb, V := obj.split(x0)
	copy(W.RawMatrix().Data, lin.W)
	copy(b, lin.B)
	a := A.RawMatrix().Data
	s := math.Sqrt(1 / float64(ch))
	for i := range a {
		a[i] = rng.NormFloat64() * s
	}
	for j := range cb {
		cb[j] = 0
	}
	v := V.RawMatrix().Data
	for i := range v {
		v[i] = rng.NormFloat64() * 0.01
	}
	var conv optimize.Converger = &optimize.FunctionConverge{Absolute: 1e-12, Relative: 1e-12, Iterations: 50}
	var stop *earlyStopper
	if len(va) > 0 {
		vobj := newBlockObjective(data.rows(va, cells), k, dim, units, ch, cells, 0)
		stop = &earlyStopper{val: vobj.value, patience: cfg.Patience, inner: conv}
		conv = stop
	}
	res, err := optimize.Minimize(optimize.Problem{Func: obj.value, Grad: obj.grad}, x0,
		&optimize.Settings{GradientThreshold: 1e-4, MajorIterations: cfg.MaxIter, Converger: conv}, &optimize.LBFGS{Store: 20})
	if err != nil && res == nil {
		return nil, fmt.Errorf("block head: %w", err)
	}
	x := res.X
	if stop != nil && stop.bestX != nil {
		x = stop.bestX
	}
	for _, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errors.New("block head: training diverged")
		}
	}
	x = slices.Clone(x)
	W, b, A, cb, V = obj.split(x)
	h.W, h.B, h.A, h.Cb, h.V, h.Iters = W, b, A, cb, V, res.Stats.MajorIterations
	return h, nil
}

func (d blockData) rows(idx []int, cells int) blockData {
	_, dim := d.Z.Dims()
	_, ch := d.M.Dims()
	out := blockData{Z: mat.NewDense(len(idx), dim, nil), M: mat.NewDense(len(idx)*cells, ch, nil),
		y: make([]int, len(idx)), sw: make([]float64, len(idx))}
	for i, j := range idx {
		out.Z.SetRow(i, d.Z.RawRowView(j))
		for c := range cells {
			out.M.SetRow(i*cells+c, d.M.RawRowView(j*cells+c))
		}
		out.y[i], out.sw[i] = d.y[j], d.sw[j]
	}
	return out
}

// Probs returns the class probabilities of one sample: its pooled vector
// and its map.
func (h *BlockHead) Probs(z, m []float32) ([]float64, error) {
	cfg := h.cfg
	if len(z) != h.lin.Dim || len(m) != cfg.Grid*cfg.Grid*cfg.Channels {
		return nil, fmt.Errorf("block head: a vector of %d and a map of %d values", len(z), len(m))
	}
	cells, ch := cfg.cells(), cfg.Channels
	pooled := make([]float64, cells*ch)
	cfg.poolMap(m, pooled)
	for c := range cells {
		for j := range ch {
			pooled[c*ch+j] = (pooled[c*ch+j] - h.mapMean[j]) * h.mapScale[j]
		}
	}
	zs := make([]float64, len(z))
	for j, v := range z {
		zs[j] = (float64(v) - h.lin.Mean[j]) * h.lin.Scale[j]
	}
	units, _ := h.A.Dims()
	u := make([]float64, units)
	for c := range cells {
		row := pooled[c*ch : (c+1)*ch]
		for j := range units {
			u[j] += relu6(floats.Dot(h.A.RawRowView(j), row)+h.Cb[j]) / float64(cells)
		}
	}
	k := len(h.lin.Classes)
	p := make([]float64, k)
	for c := range k {
		p[c] = floats.Dot(h.W.RawRowView(c), zs) + floats.Dot(h.V.RawRowView(c), u) + h.B[c]
	}
	softmax(p)
	return p, nil
}

func relu6(v float64) float64 { return min(max(v, 0), 6) }

func softmax(z []float64) {
	m := floats.Max(z)
	var s float64
	for i, v := range z {
		z[i] = math.Exp(v - m)
		s += z[i]
	}
	floats.Scale(1/s, z)
}

// blockObjective is the block head's weighted log loss plus L2 on W, V
// and A, divided by the sample weight sum. Parameters: W (k x dim), b
// (k), A (units x channels), c (units), V (k x units).
type blockObjective struct {
	d                        blockData
	k, dim, units, ch, cells int
	swSum, lambda            float64

	lastX []float64
	loss  float64
	g     []float64
}

func newBlockObjective(d blockData, k, dim, units, ch, cells int, lambda float64) *blockObjective {
	return &blockObjective{d: d, k: k, dim: dim, units: units, ch: ch, cells: cells, swSum: floats.Sum(d.sw), lambda: lambda}
}

func (o *blockObjective) size() int {
	return o.k*o.dim + o.k + o.units*o.ch + o.units + o.k*o.units
}

func (o *blockObjective) split(x []float64) (W *mat.Dense, b []float64, A *mat.Dense, c []float64, V *mat.Dense) {
	i := 0
	next := func(n int) []float64 { s := x[i : i+n]; i += n; return s }
	W = mat.NewDense(o.k, o.dim, next(o.k*o.dim))
	b = next(o.k)
	A = mat.NewDense(o.units, o.ch, next(o.units*o.ch))
	c = next(o.units)
	V = mat.NewDense(o.k, o.units, next(o.k*o.units))
	return
}

func (o *blockObjective) eval(x []float64) {
	if o.lastX != nil && floats.Equal(o.lastX, x) {
		return
	}
	o.lastX = append(o.lastX[:0], x...)
	W, b, A, cb, V := o.split(x)
	n := len(o.d.y)
	rows := n * o.cells
	// Pre-activations of every cell, then the units' pooled activations.
	pre := mat.NewDense(rows, o.units, nil)
	pre.Mul(o.d.M, A.T())
	U := mat.NewDense(n, o.units, nil)
	praw := pre.RawMatrix()
	for r := range rows {
		row := praw.Data[r*praw.Stride : r*praw.Stride+o.units]
		urow := U.RawRowView(r / o.cells)
		for j := range row {
			row[j] += cb[j]
			urow[j] += relu6(row[j]) / float64(o.cells)
		}
	}
	logits := mat.NewDense(n, o.k, nil)
	logits.Mul(o.d.Z, W.T())
	var lu mat.Dense
	lu.Mul(U, V.T())
	logits.Add(logits, &lu)
	R := mat.NewDense(n, o.k, nil)
	var loss float64
	for i := range n {
		z := logits.RawRowView(i)
		floats.Add(z, b)
		m := floats.Max(z)
		var s float64
		for _, v := range z {
			s += math.Exp(v - m)
		}
		yi := o.d.y[i]
		loss += o.d.sw[i] * (math.Log(s) + m - z[yi])
		r := R.RawRowView(i)
		w := o.d.sw[i] / o.swSum
		for c, v := range z {
			r[c] = math.Exp(v-m) / s * w
		}
		r[yi] -= w
	}
	o.g = slices.Grow(o.g[:0], o.size())[:o.size()]
	gW, gb, gA, gc, gV := o.split(o.g)
	gW.Mul(R.T(), o.d.Z)
	for c := range o.k {
		gb[c] = floats.Sum(mat.Col(nil, c, R))
	}
	gV.Mul(R.T(), U)
	var dU mat.Dense
	dU.Mul(R, V) // n x units
	// Back through the mean over cells and ReLU6.
	for r := range rows {
		row := praw.Data[r*praw.Stride : r*praw.Stride+o.units]
		du := dU.RawRowView(r / o.cells)
		for j, v := range row {
			if v > 0 && v < 6 {
				row[j] = du[j] / float64(o.cells)
			} else {
				row[j] = 0
			}
		}
	}
	gA.Mul(pre.T(), o.d.M)
	for j := range o.units {
		gc[j] = floats.Sum(mat.Col(nil, j, pre))
	}
	pen := 0.0
	for _, p := range [][2]*mat.Dense{{W, gW}, {A, gA}, {V, gV}} {
		w, g := p[0].RawMatrix().Data, p[1].RawMatrix().Data
		pen += floats.Dot(w, w)
		floats.AddScaled(g, o.lambda, w)
	}
	o.loss = loss/o.swSum + 0.5*o.lambda*pen
}

func (o *blockObjective) value(x []float64) float64 {
	o.eval(x)
	return o.loss
}

func (o *blockObjective) grad(g, x []float64) {
	o.eval(x)
	copy(g, o.g)
}

// earlyStopper ends an optimisation once the validation loss has not
// improved for patience iterations, keeping the best point.
type earlyStopper struct {
	val      func([]float64) float64
	patience int
	inner    optimize.Converger
	best     float64
	bestX    []float64
	since    int
}

func (e *earlyStopper) Init(dim int) {
	e.best, e.bestX, e.since = math.Inf(1), nil, 0
	e.inner.Init(dim)
}

func (e *earlyStopper) Converged(loc *optimize.Location) optimize.Status {
	if v := e.val(loc.X); v < e.best-1e-9 {
		e.best, e.since = v, 0
		e.bestX = append(e.bestX[:0], loc.X...)
	} else if e.since++; e.since >= e.patience {
		return optimize.FunctionConvergence
	}
	return e.inner.Converged(loc)
}
