package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// The open-set benchmark asks the real question: a household labels a
// few sightings of each of its pets; is each later sighting named right,
// and is every other animal and empty scene called unknown?

// OpenSetConfig draws the households.
type OpenSetConfig struct {
	// Shots are the labelled sightings per pet (default 1, 3, 6, 12, 24).
	Shots []int
	// Splits is the number of random households per shot count
	// (default 20).
	Splits int
	// Cats and Dogs are the household's pets of each kind (default 2
	// cats and 1 dog, the household that showed the problem).
	Cats, Dogs int
	Seed       uint64
}

func (c OpenSetConfig) withDefaults() OpenSetConfig {
	if len(c.Shots) == 0 {
		c.Shots = []int{1, 3, 6, 12, 24}
	}
	if c.Splits <= 0 {
		c.Splits = 20
	}
	if c.Cats == 0 && c.Dogs == 0 {
		c.Cats, c.Dogs = 2, 1
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Household is one split: which individuals are the pets and which of
// their sightings are labelled. Every other sighting is a test.
type Household struct {
	Shots int
	Pets  []string
	Train []int // indices into the sightings
}

// MakeHouseholds draws cfg.Splits households per shot count. A pet's
// labelled sightings are drawn from those the detector found it in.
func MakeHouseholds(s []Sighting, cfg OpenSetConfig) ([]Household, error) {
	cfg = cfg.withDefaults()
	byInd := map[string][]int{}
	kindOf := map[string]string{}
	for i, x := range s {
		if x.Individual != "" && x.Detected {
			byInd[x.Individual] = append(byInd[x.Individual], i)
			kindOf[x.Individual] = x.Kind
		}
	}
	var cats, dogs []string
	for name, k := range kindOf {
		if k == KindCat {
			cats = append(cats, name)
		} else {
			dogs = append(dogs, name)
		}
	}
	sort.Strings(cats)
	sort.Strings(dogs)
	if len(cats) <= cfg.Cats || len(dogs) <= cfg.Dogs {
		return nil, fmt.Errorf("%d cats and %d dogs: a household of %d cats and %d dogs leaves no stranger of each kind",
			len(cats), len(dogs), cfg.Cats, cfg.Dogs)
	}
	var out []Household
	for _, shots := range cfg.Shots {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(shots)))
		for range cfg.Splits {
			h := Household{Shots: shots}
			for _, pool := range []struct {
				names []string
				n     int
			}{{cats, cfg.Cats}, {dogs, cfg.Dogs}} {
				perm := rng.Perm(len(pool.names))
				for _, i := range perm[:pool.n] {
					h.Pets = append(h.Pets, pool.names[i])
				}
			}
			for _, pet := range h.Pets {
				idx := slices.Clone(byInd[pet])
				if len(idx) < shots+5 {
					return nil, fmt.Errorf("%s has %d sightings the detector found; %d shots need at least %d", pet, len(idx), shots, shots+5)
				}
				rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
				h.Train = append(h.Train, idx[:shots]...)
			}
			slices.Sort(h.Train)
			out = append(out, h)
		}
	}
	return out, nil
}

// Classifier names a sighting (a pet's name or learner.Unknown); detected
// says whether the detector found a pet (false: a whole frame).
type Classifier func(x []float32, detected bool) string

// OpenSetMethod fits a classifier on a household's labelled sightings.
type OpenSetMethod struct {
	Name string
	Fit  func(train *learner.Dataset, seed uint64) (Classifier, error)
}

// OpenSetOutcome is one method's result on one household.
type OpenSetOutcome struct {
	// Named is the fraction of the pets' other sightings named right.
	Named float64
	// Strangers is the fraction of other cats' and dogs' sightings (the
	// crops the detector found) called unknown.
	Strangers float64
	// Other is the fraction of other animals' sightings not named as a
	// pet, and Scenes the fraction of empty scenes' sightings named as a
	// pet, as the agent's pipeline sees them: a frame without a detected
	// pet is never named (the no-pet rule).
	Other, Scenes float64
	// OtherCrops and ScenesCrops are the same over the crops the detector
	// took for a cat or dog only (where the head alone decides);
	// OtherWhole and ScenesWhole over whole frames classified without the
	// no-pet rule.
	OtherCrops, ScenesCrops, OtherWhole, ScenesWhole float64
	Fit                                              time.Duration
}

// RunOpenSet fits method on every household and scores it.
func RunOpenSet(ctx context.Context, s []Sighting, hs []Household, m OpenSetMethod) ([]OpenSetOutcome, error) {
	out := make([]OpenSetOutcome, len(hs))
	for hi, h := range hs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		train := &learner.Dataset{}
		inTrain := map[int]bool{}
		for _, i := range h.Train {
			train.X = append(train.X, s[i].Features)
			train.Labels = append(train.Labels, s[i].Individual)
			inTrain[i] = true
		}
		start := time.Now()
		c, err := m.Fit(train, uint64(hi))
		fit := time.Since(start)
		if err != nil {
			return nil, fmt.Errorf("%s, %d shots, household %d: %w", m.Name, h.Shots, hi, err)
		}
		var t tally
		for i, x := range s {
			if inTrain[i] {
				continue
			}
			t.add(x, h.Pets, c)
		}
		out[hi] = t.outcome()
		out[hi].Fit = fit
	}
	return out, nil
}

// tally counts one household's test sightings.
type tally struct {
	named, pets                  int
	strangerUnknown, strangers   int
	otherOK, other, sceneNamed   int
	scenes                       int
	otherCropOK, otherCrops      int
	sceneCropNamed, sceneCrops   int
	otherWholeOK, otherWhole     int
	sceneWholeNamed, sceneWholes int
}

func (t *tally) add(x Sighting, pets []string, c Classifier) {
	isPet := func(l string) bool { return slices.Contains(pets, l) }
	switch {
	case x.Individual != "" && !x.Detected:
		// The detector missed the animal: nothing for the head to do.
	case slices.Contains(pets, x.Individual):
		t.pets++
		if c(x.Features, true) == x.Individual {
			t.named++
		}
	case x.Individual != "":
		t.strangers++
		if c(x.Features, true) == learner.Unknown {
			t.strangerUnknown++
		}
	case x.Kind == KindOther || x.Kind == KindScene:
		named := isPet(c(x.Features, x.Detected))
		var whole bool
		if !x.Detected {
			whole = isPet(c(x.Features, true)) // the head alone, no rule
		}
		if x.Kind == KindOther {
			t.other++
			if !named {
				t.otherOK++
			}
			if x.Detected {
				t.otherCrops++
				if !named {
					t.otherCropOK++
				}
			} else {
				t.otherWhole++
				if !whole {
					t.otherWholeOK++
				}
			}
			return
		}
		t.scenes++
		if named {
			t.sceneNamed++
		}
		if x.Detected {
			t.sceneCrops++
			if named {
				t.sceneCropNamed++
			}
		} else {
			t.sceneWholes++
			if whole {
				t.sceneWholeNamed++
			}
		}
	}
}

func frac(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func (t *tally) outcome() OpenSetOutcome {
	return OpenSetOutcome{
		Named: frac(t.named, t.pets), Strangers: frac(t.strangerUnknown, t.strangers),
		Other: frac(t.otherOK, t.other), Scenes: frac(t.sceneNamed, t.scenes),
		OtherCrops: frac(t.otherCropOK, t.otherCrops), ScenesCrops: frac(t.sceneCropNamed, t.sceneCrops),
		OtherWhole: frac(t.otherWholeOK, t.otherWhole), ScenesWhole: frac(t.sceneWholeNamed, t.sceneWholes),
	}
}

// HeadMethod is the agent's head as Fit trains it, classifying as the
// pipeline does (a whole frame without a detected pet is never named as a
// pet).
func HeadMethod(name string, cfg learner.FitConfig) OpenSetMethod {
	return OpenSetMethod{Name: name, Fit: func(train *learner.Dataset, seed uint64) (Classifier, error) {
		c := cfg
		c.Select.Seed, c.Background.Seed = seed, seed
		h, _, err := learner.Fit(train, benchBackbone(c), c, nil)
		if err != nil {
			return nil, err
		}
		return func(x []float32, detected bool) string {
			p, err := h.ClassifyWith(x, learner.ClassifyOptions{NoPet: !detected})
			if err != nil {
				return learner.Unknown
			}
			return p.Label
		}, nil
	}}
}

func benchBackbone(c learner.FitConfig) string {
	if r := c.Background.Reference; r != nil {
		return r.Backbone
	}
	return "bench"
}

// withNoPetRule applies the pipeline's rule to a closed-set classifier.
func withNoPetRule(f func([]float32) string) Classifier {
	return func(x []float32, detected bool) string {
		if !detected {
			return learner.Unknown
		}
		return f(x)
	}
}

// acceptQuantile is the share of leave-one-out training scores the
// baselines' thresholds keep, as the head's calibration does.
const acceptQuantile = 0.95

// looThreshold is the score below which 1-acceptQuantile of the
// leave-one-out scores fall; -Inf when there are none (every class has a
// single sample: no threshold).
func looThreshold(scores []float64) float64 {
	if len(scores) == 0 {
		return math.Inf(-1)
	}
	sort.Float64s(scores)
	return scores[int(math.Floor((1-acceptQuantile)*float64(len(scores))))]
}

// NearestMeanMethod is nearest class mean (cosine, standardised by the
// training samples) with a threshold on the similarity that keeps 95% of
// the leave-one-out training samples.
func NearestMeanMethod() OpenSetMethod {
	return OpenSetMethod{Name: "nearest class mean + threshold", Fit: func(train *learner.Dataset, _ uint64) (Classifier, error) {
		st := newStandardiser(train)
		classes := train.Classes()
		zs := make([][]float64, len(train.X))
		sums := make([][]float64, len(classes))
		counts := make([]int, len(classes))
		for c := range sums {
			sums[c] = make([]float64, len(train.X[0]))
		}
		for i, x := range train.X {
			zs[i] = st.unit(x)
			c := slices.Index(classes, train.Labels[i])
			counts[c]++
			for j, v := range zs[i] {
				sums[c][j] += v
			}
		}
		cos := func(z, sum []float64, minus []float64) float64 {
			var ab, bb float64
			for j, v := range sum {
				if minus != nil {
					v -= minus[j]
				}
				ab += z[j] * v
				bb += v * v
			}
			if bb == 0 {
				return 0
			}
			return ab / math.Sqrt(bb)
		}
		var loo []float64
		for i, z := range zs {
			c := slices.Index(classes, train.Labels[i])
			if counts[c] >= 2 {
				loo = append(loo, cos(z, sums[c], z))
			}
		}
		t := looThreshold(loo)
		return withNoPetRule(func(x []float32) string {
			z := st.unit(x)
			best, bs := 0, math.Inf(-1)
			for c := range classes {
				if s := cos(z, sums[c], nil); s > bs {
					best, bs = c, s
				}
			}
			if bs < t {
				return learner.Unknown
			}
			return classes[best]
		}), nil
	}}
}

// KNNMethod is the nearest neighbour (cosine, standardised) with a
// threshold on its similarity that keeps 95% of the leave-one-out
// training samples.
func KNNMethod() OpenSetMethod {
	return OpenSetMethod{Name: "nearest neighbour + threshold", Fit: func(train *learner.Dataset, _ uint64) (Classifier, error) {
		st := newStandardiser(train)
		zs := make([][]float64, len(train.X))
		for i, x := range train.X {
			zs[i] = st.unit(x)
		}
		var loo []float64
		for i, z := range zs {
			best := math.Inf(-1)
			for j, o := range zs {
				if j != i && train.Labels[j] == train.Labels[i] {
					best = max(best, dot(z, o))
				}
			}
			if !math.IsInf(best, -1) {
				loo = append(loo, best)
			}
		}
		t := looThreshold(loo)
		return withNoPetRule(func(x []float32) string {
			z := st.unit(x)
			best, bs := -1, math.Inf(-1)
			for j, o := range zs {
				if s := dot(z, o); s > bs {
					best, bs = j, s
				}
			}
			if bs < t {
				return learner.Unknown
			}
			return train.Labels[best]
		}), nil
	}}
}

// SklearnOpenSet fits scikit-learn's LogisticRegression on every
// household (one Python run) and returns its outcomes with the agent's
// default probability threshold and the no-pet rule.
func SklearnOpenSet(ctx context.Context, py SklearnConfig, s []Sighting, hs []Household, threshold float64) ([]OpenSetOutcome, *SklearnRun, error) {
	d := &learner.Dataset{}
	for _, x := range s {
		d.X = append(d.X, x.Features)
		l := x.Individual
		if l == "" {
			l = "~" + x.Kind
		}
		d.Labels = append(d.Labels, l)
	}
	classes := d.Classes()
	var splits []Split
	for _, h := range hs {
		in := map[int]bool{}
		for _, i := range h.Train {
			in[i] = true
		}
		sp := Split{Shots: h.Shots, Train: h.Train}
		for i := range s {
			if !in[i] {
				sp.Test = append(sp.Test, i)
			}
		}
		splits = append(splits, sp)
	}
	py.Probabilities = true
	run, err := RunSklearn(ctx, py, d, splits)
	if err != nil {
		return nil, nil, err
	}
	out := make([]OpenSetOutcome, len(hs))
	for hi, h := range hs {
		r := run.Results[hi]
		if len(r.Proba) != len(splits[hi].Test) {
			return nil, nil, errors.New("scikit-learn returned the wrong number of probabilities")
		}
		pred := map[int]string{}
		for k, i := range splits[hi].Test {
			p := r.Proba[k]
			b := 0
			for j := range p {
				if p[j] > p[b] {
					b = j
				}
			}
			if p[b] >= threshold {
				pred[i] = classes[r.Classes[b]]
			} else {
				pred[i] = learner.Unknown
			}
		}
		var t tally
		for _, i := range splits[hi].Test {
			label := pred[i]
			t.add(s[i], h.Pets, func(_ []float32, detected bool) string {
				if !detected {
					return learner.Unknown
				}
				return label
			})
		}
		out[hi] = t.outcome()
		out[hi].Fit = time.Duration(r.FitSeconds * float64(time.Second))
	}
	return out, run, nil
}
