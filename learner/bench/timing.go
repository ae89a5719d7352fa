package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// Synthetic makes n vectors in k classes for timing, with the statistics
// of real feature vectors and overlapping classes: each class c has an
// offset o_c, a random real vector's difference from the mean of base
// scaled by 0.3, and each sample is a random real vector plus its class's
// offset. (Without base, the classes are unit Gaussian blobs in dim
// dimensions.)
func Synthetic(base *learner.Dataset, n, k, dim int, seed uint64) *learner.Dataset {
	rng := rand.New(rand.NewPCG(seed, uint64(n*1000+k)))
	d := &learner.Dataset{X: make([][]float32, n), Labels: make([]string, n)}
	real := base != nil && len(base.X) > 0
	var mean []float64
	if real {
		dim = len(base.X[0])
		mean = make([]float64, dim)
		for _, x := range base.X {
			for j, v := range x {
				mean[j] += float64(v) / float64(len(base.X))
			}
		}
	}
	offsets := make([][]float32, k)
	for c := range offsets {
		offsets[c] = make([]float32, dim)
		var r []float32
		if real {
			r = base.X[rng.IntN(len(base.X))]
		}
		for j := range offsets[c] {
			if real {
				offsets[c][j] = float32(0.3 * (float64(r[j]) - mean[j]))
			} else {
				offsets[c][j] = float32(rng.NormFloat64())
			}
		}
	}
	for i := range n {
		c := i % k
		x := make([]float32, dim)
		var r []float32
		if real {
			r = base.X[rng.IntN(len(base.X))]
		}
		for j := range x {
			if real {
				x[j] = r[j] + offsets[c][j]
			} else {
				x[j] = offsets[c][j] + float32(rng.NormFloat64())
			}
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

// Latency is the time from one label to a head that includes it.
type Latency struct {
	Name    string
	Stored  int
	Classes int
	// Imprinted: a label new to the head, from storing the sample (fsync
	// included) to the imprinted head being in use.
	Imprinted []time.Duration
	// Retrained: from storing that sample to the retrained head (capacity
	// and threshold re-chosen by cross-validation, since the classes
	// changed) being in use, without the coalescing delay.
	Retrained []time.Duration
	// Warm: a label of a known pet, from storing it to the retrained head
	// being in use (capacity and threshold kept, training warm-started
	// from the previous head).
	Warm []time.Duration
}

// NewLabelLatency stores d in a fresh store in dir and trains a head on it
// as the agent's trainer does. Then, reps times: one sample of a label new
// to the head is stored and imprinted, then retrained (and forgotten
// again); and one more sample of a known label is stored and retrained.
func NewLabelLatency(ctx context.Context, name string, d *learner.Dataset, dir string, reps int, tc learner.TrainConfig) (*Latency, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
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
	lat := &Latency{Name: name, Stored: len(d.X), Classes: len(d.Classes())}
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
		if p, _ := h.Classify(x, 0); p.Best != label {
			return nil, fmt.Errorf("the imprinted head calls the new label's own sample %q", p.Best)
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
		if _, _, err := tr.Apply("forget-"+label, learner.Change{Op: learner.OpForget, Label: label}, nil); err != nil {
			return nil, err
		}
		if rep := tr.Retrain(); rep.Err != nil {
			return nil, rep.Err
		}

		// One more sample of a known label.
		i := rng.IntN(len(d.X))
		known := learner.Sample{Label: d.Labels[i], Backbone: backbone, Features: d.X[i], Source: "bench"}
		start = time.Now()
		if _, _, err := store.Add(known); err != nil {
			return nil, err
		}
		tr.Added(known)
		rep = tr.Retrain()
		if rep.Err != nil {
			return nil, rep.Err
		}
		if rep.Selected {
			return nil, errors.New("one more sample of a known label re-ran the selection")
		}
		lat.Warm = append(lat.Warm, time.Since(start))
	}
	return lat, nil
}
