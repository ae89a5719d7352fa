package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// Synthetic makes n vectors in k classes for timing. With real vectors in
// base, each class is centred on a random real vector and each sample is
// the mean of its centre and another random real vector (so the data has
// the statistics of real features and overlapping classes); without, the
// classes are unit Gaussian blobs in dim dimensions.
func Synthetic(base *learner.Dataset, n, k, dim int, seed uint64) *learner.Dataset {
	rng := rand.New(rand.NewPCG(seed, uint64(n*1000+k)))
	d := &learner.Dataset{X: make([][]float32, n), Labels: make([]string, n)}
	if base != nil && len(base.X) > 0 {
		dim = len(base.X[0])
	}
	centres := make([][]float32, k)
	for c := range centres {
		if base != nil && len(base.X) > 0 {
			centres[c] = base.X[rng.IntN(len(base.X))]
			continue
		}
		centres[c] = make([]float32, dim)
		for j := range centres[c] {
			centres[c][j] = float32(rng.NormFloat64())
		}
	}
	for i := range n {
		c := i % k
		x := make([]float32, dim)
		for j := range x {
			var other float32
			if base != nil && len(base.X) > 0 {
				other = base.X[rng.IntN(len(base.X))][j]
			} else {
				other = float32(rng.NormFloat64() * 2)
			}
			x[j] = 0.5*centres[c][j] + 0.5*other
		}
		d.X[i] = x
		d.Labels[i] = fmt.Sprintf("class%02d", c)
	}
	return d
}

// TrainTime is the time one kind of head takes to train from scratch.
type TrainTime struct {
	N, K, Dim int
	Kind      string
	Took      time.Duration // median over Reps runs
	Iters     int
	Reps      int
}

// TrainTimes trains each kind on synthetic data of every size and class
// count (see Synthetic), reps times each (fewer for long runs).
func TrainTimes(ctx context.Context, base *learner.Dataset, sizes, classes []int, kinds []string, reps int, tc learner.TrainConfig) ([]TrainTime, error) {
	var out []TrainTime
	for _, n := range sizes {
		for _, k := range classes {
			d := Synthetic(base, n, k, 1280, 7)
			for _, kind := range kinds {
				tt := TrainTime{N: n, K: k, Dim: len(d.X[0]), Kind: kind}
				var runs []time.Duration
				for r := range max(reps, 1) {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					c := tc
					c.Kind, c.Seed = kind, uint64(r)
					start := time.Now()
					h, err := learner.Train(d, "bench", c, nil)
					if err != nil {
						return nil, fmt.Errorf("train %s on %d x %d, %d classes: %w", kind, n, tt.Dim, k, err)
					}
					runs = append(runs, time.Since(start))
					tt.Iters = h.Iters
					// Runs over a few seconds are not repeated.
					if runs[len(runs)-1] > 3*time.Second {
						break
					}
				}
				slices.Sort(runs)
				tt.Took, tt.Reps = runs[len(runs)/2], len(runs)
				out = append(out, tt)
			}
		}
	}
	return out, nil
}

// Latency is the time from one new label to a head that names it.
type Latency struct {
	Stored int
	// Imprinted: from storing the sample (fsync included) to the
	// imprinted head being in use.
	Imprinted []time.Duration
	// Retrained: from storing the sample to the fully retrained head
	// (capacity and threshold re-chosen by cross-validation, since the
	// classes changed) being in use, without the coalescing delay.
	Retrained []time.Duration
	// FullRetrain is the time of the head's own training (Train) within
	// a retrain.
	FullRetrain []time.Duration
}

// NewLabelLatency stores d in a fresh store in dir, trains a head on it,
// then reps times adds one sample of a label new to the head and measures
// how long until a head names it: at once by imprinting, and after a
// retrain. Each new label is forgotten again before the next.
func NewLabelLatency(ctx context.Context, d *learner.Dataset, dir string, reps int, tc learner.TrainConfig) (*Latency, error) {
	store, err := learner.OpenStore(filepath.Join(dir, "samples.db"))
	if err != nil {
		return nil, err
	}
	defer store.Close()
	const backbone = "bench"
	smps := make([]learner.Sample, len(d.X))
	for i, x := range d.X {
		smps[i] = learner.Sample{Label: d.Labels[i], Backbone: backbone, Features: x, Source: "bench"}
	}
	if _, _, err := store.AddMany(smps); err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := learner.NewTrainer(learner.TrainerConfig{HeadPath: filepath.Join(dir, "head.json"), Train: tc}, store, backbone, log)
	if rep := tr.Retrain(); rep.Err != nil {
		return nil, rep.Err
	}
	lat := &Latency{Stored: len(d.X)}
	rng := rand.New(rand.NewPCG(3, 4))
	for r := range reps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		label := fmt.Sprintf("newpet%d", r)
		// A vector unlike the stored ones: a stored vector with its
		// dimensions shuffled.
		x := slices.Clone(d.X[rng.IntN(len(d.X))])
		rng.Shuffle(len(x), func(i, j int) { x[i], x[j] = x[j], x[i] })
		smp := learner.Sample{Label: label, Backbone: backbone, Features: x, Source: "bench"}

		start := time.Now()
		if _, _, err := store.Add(smp); err != nil {
			return nil, err
		}
		tr.Added(smp)
		h := tr.Head()
		imprinted := time.Since(start)
		if h == nil || h.ClassIndex(label) < 0 {
			return nil, fmt.Errorf("the head does not name the new label %q after imprinting", label)
		}
		p, err := h.Classify(x, 0)
		if err != nil {
			return nil, err
		}
		if p.Best != label {
			return nil, fmt.Errorf("the imprinted head names the new label's own sample %q", p.Best)
		}
		rep := tr.Retrain()
		retrained := time.Since(start)
		if rep.Err != nil {
			return nil, rep.Err
		}
		if h := tr.Head(); h == nil || h.ClassIndex(label) < 0 || slices.Contains(h.Imprinted, label) {
			return nil, fmt.Errorf("the retrained head does not name %q", label)
		}
		lat.Imprinted = append(lat.Imprinted, imprinted)
		lat.Retrained = append(lat.Retrained, retrained)
		lat.FullRetrain = append(lat.FullRetrain, time.Duration(tr.Head().TrainTime*float64(time.Second)))
		if _, err := tr.Forget(label); err != nil {
			return nil, err
		}
		if rep := tr.Retrain(); rep.Err != nil {
			return nil, rep.Err
		}
	}
	return lat, nil
}
