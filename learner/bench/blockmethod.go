package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// ProjectMethod runs m on the first dim values of every vector (the pooled
// part of a vector that also carries a map).
func ProjectMethod(m OpenSetMethod, dim int) OpenSetMethod {
	return OpenSetMethod{Name: m.Name, Fit: func(train *learner.Dataset, seed uint64) (Classifier, error) {
		p := &learner.Dataset{Labels: train.Labels, X: make([][]float32, len(train.X))}
		for i, x := range train.X {
			p.X[i] = x[:dim]
		}
		c, err := m.Fit(p, seed)
		if err != nil {
			return nil, err
		}
		return func(x []float32, detected bool) string { return c(x[:dim], detected) }, nil
	}}
}

// ProjectReference is the reference set's first dim values of each vector,
// under the identity of those parts.
func ProjectReference(r *learner.Reference, dim int) *learner.Reference {
	out := &learner.Reference{Backbone: r.Backbone + "/parts=0", Dim: dim, Kinds: r.Kinds, X: make([][]float32, len(r.X))}
	for i, x := range r.X {
		out.X[i] = x[:dim]
	}
	return out
}

// BlockStats says what the block head's cross-validations found, per
// household (from 20 labels per pet on; below, the agent head is used as
// it is).
type BlockStats struct {
	mu         sync.Mutex
	Households []BlockHousehold
}

// BlockHousehold is one household's capacity decision.
type BlockHousehold struct {
	Shots                int
	LinearAcc, BlockAcc  float64
	Gain, GainSE         float64
	Chosen               bool
	Threshold            float64
	Fit                  time.Duration // cross-validations and the final head
	FinalFit             time.Duration // the final block head alone
	Iters                int
	LinearCV, BlockCVFit time.Duration
}

type blockFit struct {
	lin       *learner.Head
	block     *BlockHead
	threshold float64
	chosen    bool
	took      time.Duration
}

// BlockMethods are the agent head with a block head trained beside the
// frozen last block when cross-validation shows it helps ("chosen"), and
// whenever it may be tried ("forced"). Vectors are dim pooled values
// followed by a map (cfg.Grid x cfg.Grid x cfg.Channels); ref is the
// reference set of such vectors. The forced method reuses the chosen
// one's fits (run it second): its training time is the chosen one's.
func BlockMethods(chosenName, forcedName string, fc learner.FitConfig, ref *learner.Reference, dim int, cfg BlockConfig, stats *BlockStats) (chosen, forced OpenSetMethod) {
	ref0 := ProjectReference(ref, dim)
	fc.Background.Reference = ref0
	sel := fc.Select
	minHidden := sel.MinPerClassHidden
	if minHidden <= 0 {
		minHidden = 20
	}
	var mu sync.Mutex
	memo := map[uint64]*blockFit{}
	fit := func(train *learner.Dataset, seed uint64) (*blockFit, error) {
		mu.Lock()
		if f, ok := memo[seed]; ok {
			mu.Unlock()
			return f, nil
		}
		mu.Unlock()
		start := time.Now()
		z := &learner.Dataset{Labels: train.Labels, X: make([][]float32, len(train.X))}
		for i, x := range train.X {
			z.X[i] = x[:dim]
		}
		c := fc
		c.Select.Seed, c.Background.Seed = seed, seed
		lin, _, err := learner.Fit(z, ref0.Backbone, c, nil)
		if err != nil {
			return nil, err
		}
		f := &blockFit{lin: lin}
		minPer := math.MaxInt
		for _, lc := range train.Counts() {
			minPer = min(minPer, lc.Samples)
		}
		if minPer < minHidden {
			f.took = time.Since(start)
			mu.Lock()
			memo[seed] = f
			mu.Unlock()
			return f, nil
		}
		// The reference vectors the agent's Fit draws: the first 300 train
		// the head, the first 100 each cross-validation fold.
		perm := rand.New(rand.NewPCG(seed, 0xb6)).Perm(len(ref.X))
		bg := func(n int) (zs, maps [][]float32, labels []string) {
			for _, i := range perm[:min(n, len(perm))] {
				zs, maps = append(zs, ref.X[i][:dim]), append(maps, ref.X[i][dim:])
				labels = append(labels, learner.Background)
			}
			return
		}
		plan := learner.Folds(train.Labels, 5, seed)
		bz, bm, bl := bg(100)
		var linAcc, blockAcc []float64
		var correctConf []float64
		h := BlockHousehold{}
		for fold := range plan.K {
			var tz, tm [][]float32
			var tl []string
			var test []int
			for i, fi := range plan.Fold {
				if fi == fold {
					test = append(test, i)
					continue
				}
				tz, tm, tl = append(tz, train.X[i][:dim]), append(tm, train.X[i][dim:]), append(tl, train.Labels[i])
			}
			tz, tm, tl = append(tz, bz...), append(tm, bm...), append(tl, bl...)
			t0 := time.Now()
			lf, err := learner.Train(&learner.Dataset{X: tz, Labels: tl}, ref0.Backbone, c.Train, nil)
			if err != nil {
				return nil, err
			}
			h.LinearCV += time.Since(t0)
			t0 = time.Now()
			bc := cfg
			bc.Seed = seed + uint64(fold)
			bf, err := TrainBlock(tz, tm, tl, lf, bc)
			if err != nil {
				return nil, err
			}
			h.BlockCVFit += time.Since(t0)
			var lok, bok int
			for _, i := range test {
				x := train.X[i]
				p, err := lf.Classify(x[:dim], 1)
				if err != nil {
					return nil, err
				}
				if p.Nearest == train.Labels[i] {
					lok++
				}
				probs, err := bf.Probs(x[:dim], x[dim:])
				if err != nil {
					return nil, err
				}
				best := -1
				for k, name := range bf.Classes() {
					if name != learner.Background && (best < 0 || probs[k] > probs[best]) {
						best = k
					}
				}
				if bf.Classes()[best] == train.Labels[i] {
					bok++
					correctConf = append(correctConf, probs[best])
				}
			}
			linAcc = append(linAcc, float64(lok)/float64(len(test)))
			blockAcc = append(blockAcc, float64(bok)/float64(len(test)))
		}
		h.Shots = minPer
		h.LinearAcc, h.BlockAcc = mean(linAcc), mean(blockAcc)
		h.Gain, h.GainSE = pairedGainSE(blockAcc, linAcc)
		f.chosen = h.Gain >= 0.01 && h.Gain > 2*h.GainSE
		// The probability threshold from the block head's own out-of-fold
		// predictions, shrunk toward the default as the agent's is; the
		// distance test stays the linear head's.
		t := learner.DefaultThreshold
		if len(correctConf) > 0 {
			sort.Float64s(correctConf)
			cal := correctConf[int(math.Floor(0.05*float64(len(correctConf))))]
			n := float64(len(train.X))
			t = (n*cal + 20*learner.DefaultThreshold) / (n + 20)
		}
		f.threshold, h.Threshold, h.Chosen = t, t, f.chosen
		az, am, al := bg(300)
		for i, x := range train.X {
			az, am, al = append(az, x[:dim]), append(am, x[dim:]), append(al, train.Labels[i])
		}
		t0 := time.Now()
		bc := cfg
		bc.Seed = seed
		if f.block, err = TrainBlock(az, am, al, lin, bc); err != nil {
			return nil, err
		}
		h.FinalFit, h.Iters = time.Since(t0), f.block.Iters
		f.took = time.Since(start)
		h.Fit = f.took
		mu.Lock()
		memo[seed] = f
		mu.Unlock()
		if stats != nil {
			stats.mu.Lock()
			stats.Households = append(stats.Households, h)
			stats.mu.Unlock()
		}
		return f, nil
	}
	classify := func(f *blockFit, useBlock bool) Classifier {
		return func(x []float32, detected bool) string {
			p, err := f.lin.ClassifyWith(x[:dim], learner.ClassifyOptions{NoPet: !detected})
			if err != nil {
				return learner.Unknown
			}
			if !useBlock || f.block == nil || !detected || p.Why == learner.WhyFar {
				return p.Label
			}
			probs, err := f.block.Probs(x[:dim], x[dim:])
			if err != nil {
				return learner.Unknown
			}
			best := argmaxF(probs)
			if name := f.block.Classes()[best]; name != learner.Background && probs[best] >= f.threshold {
				return name
			}
			return learner.Unknown
		}
	}
	chosen = OpenSetMethod{Name: chosenName, Fit: func(train *learner.Dataset, seed uint64) (Classifier, error) {
		f, err := fit(train, seed)
		if err != nil {
			return nil, err
		}
		return classify(f, f.chosen), nil
	}}
	forced = OpenSetMethod{Name: forcedName, Fit: func(train *learner.Dataset, seed uint64) (Classifier, error) {
		f, err := fit(train, seed)
		if err != nil {
			return nil, err
		}
		return classify(f, true), nil
	}}
	return chosen, forced
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// pairedGainSE is the mean of a[i]-b[i] and its standard error.
func pairedGainSE(a, b []float64) (m, se float64) {
	d := make([]float64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	m = mean(d)
	if len(d) < 2 {
		return m, math.Inf(1)
	}
	var ss float64
	for _, v := range d {
		ss += (v - m) * (v - m)
	}
	return m, math.Sqrt(ss/float64(len(d)-1)) / math.Sqrt(float64(len(d)))
}

func argmaxF(p []float64) int {
	return slices.Index(p, slices.Max(p))
}

// Summary describes the cross-validations in words, for the report.
func (s *BlockStats) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.Households) == 0 {
		return "block head: no household had 20 labels per pet"
	}
	var chosen int
	var lin, blk, fit, final []float64
	for _, h := range s.Households {
		if h.Chosen {
			chosen++
		}
		lin, blk = append(lin, h.LinearAcc), append(blk, h.BlockAcc)
		fit, final = append(fit, h.Fit.Seconds()), append(final, h.FinalFit.Seconds())
	}
	return fmt.Sprintf("block head: chosen by cross-validation in %d of %d households; cross-validated accuracy %.3f (block) against %.3f (linear); a retrain with its cross-validations took %.1f s on average, the final block head alone %.1f s",
		chosen, len(s.Households), mean(blk), mean(lin), mean(fit), mean(final))
}
