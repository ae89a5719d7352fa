package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/whiskercam/whisker/learner"
)

// fixedSet is a small deterministic three-class problem with overlap.
func fixedSet() *learner.Dataset {
	rng := rand.New(rand.NewPCG(2026, 11))
	d := &learner.Dataset{}
	for c := range 3 {
		centre := make([]float64, 12)
		for j := range centre {
			centre[j] = rng.NormFloat64()
		}
		for range 40 {
			x := make([]float32, 12)
			for j := range x {
				x[j] = float32(3 + centre[j] + 1.3*rng.NormFloat64()*(1+float64(j)/6))
			}
			d.X = append(d.X, x)
			d.Labels = append(d.Labels, fmt.Sprintf("pet%d", c))
		}
	}
	return d
}

// TestLinearHeadAgreesWithScikitLearn trains the linear head and
// scikit-learn's LogisticRegression (same objective, tight tolerances) on
// the same training samples and compares their probabilities on the same
// test samples: a fixed synthetic three-class set and real cat and dog
// feature vectors.
func TestLinearHeadAgreesWithScikitLearn(t *testing.T) {
	if _, err := CheckSklearn(context.Background(), DefaultPython); err != nil {
		t.Fatal(err) // never skipped: make deps installs it
	}
	pets := testPets(t, 40)
	for _, tc := range []struct {
		name string
		d    *learner.Dataset
	}{{"synthetic, 3 classes", fixedSet()}, {"cats and dogs, 1280-d", pets}} {
		t.Run(tc.name, func(t *testing.T) {
			split := MakeSplits(tc.d.Labels, []int{len(tc.d.X) / len(tc.d.Classes()) / 2}, 1, 7)
			sk, err := RunSklearn(context.Background(), SklearnConfig{C: 1, Tol: 1e-10, MaxIter: 100000, Probabilities: true}, tc.d, split)
			if err != nil {
				t.Fatal(err)
			}
			if !sk.Converged {
				t.Fatal("scikit-learn did not converge")
			}
			h, err := learner.Train(tc.d.Subset(split[0].Train), "bb", learner.TrainConfig{C: 1, Tol: 1e-9, MaxIter: 5000}, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := sk.Results[0]
			test := tc.d.Subset(split[0].Test)
			maxDiff, disagree := 0.0, 0
			for i, x := range test.X {
				p, err := h.Predict(x)
				if err != nil {
					t.Fatal(err)
				}
				for c := range p {
					// scikit-learn's columns are class indices in sorted
					// label order, as are the head's classes.
					maxDiff = math.Max(maxDiff, math.Abs(p[c]-res.Proba[i][res.Classes[c]]))
				}
				if argmax(p) != argmax(res.Proba[i]) {
					disagree++
				}
			}
			t.Logf("scikit-learn %s: %d test samples, %d predictions differ, largest probability difference %.2g (head: %d iterations)",
				sk.Version, len(test.X), disagree, maxDiff, h.Iters)
			if disagree != 0 || maxDiff > 1e-3 {
				t.Fatalf("%d of %d predictions differ from scikit-learn's; probabilities differ by up to %.3g", disagree, len(test.X), maxDiff)
			}
		})
	}
}

func argmax(p []float64) int {
	b := 0
	for i := range p {
		if p[i] > p[b] {
			b = i
		}
	}
	return b
}
