package learner

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// SelectConfig tunes the choices Fit makes by cross-validation: the head's
// capacity and its open-set threshold.
type SelectConfig struct {
	// Folds for cross-validation. Default 5 (fewer when a class has fewer
	// samples).
	Folds int
	// MinPerClassHidden is the fewest samples every class needs before the
	// hidden head is even tried; cross-validation then decides. Default 20.
	MinPerClassHidden int
	// MinGain is how much better (in accuracy) the hidden head must be, on
	// top of two standard errors of the fold-paired difference. Default 0.01.
	MinGain float64
	// Force skips the capacity choice: KindLinear or KindHidden.
	Force string
	// AcceptRate is the fraction of correctly classified out-of-fold
	// samples the calibrated threshold keeps. Default 0.95.
	AcceptRate float64
	// MinCalibrate is the fewest cross-validated samples from which the
	// open-set limits are calibrated (labels with a single sample are left
	// out of cross-validation). Below it the head uses DefaultThreshold
	// and no distance check. Default 20: a 95% quantile of fewer is mostly
	// noise (two photos of a pet say little about how far its next one may
	// lie).
	MinCalibrate int
	// MinCalibrateReference replaces MinCalibrate for a head trained with
	// a reference set (BackgroundConfig): its limits are then shrunk
	// toward priors learnt from the reference set (see PriorWeight), so
	// they can be calibrated from fewer samples. Default 6: two labelled
	// sightings of each of three pets.
	MinCalibrateReference int
	// PriorWeight is, for a head trained with a reference set, how many
	// samples the priors count for against the calibrated limits: each
	// limit in force is (n*calibrated + PriorWeight*prior) / (n +
	// PriorWeight) for n cross-validated samples. The threshold's prior is
	// DefaultThreshold; the distance's is the distance within which only
	// RefPass of held-out reference vectors (other animals and scenes) lie
	// from the nearest labelled class. A limit calibrated from a handful
	// of samples stays near its prior; one from hundreds is the calibrated
	// one. Default 20; negative: no shrinking.
	PriorWeight float64
	// RefPass is the share of held-out reference vectors the distance
	// prior lets through. Default 0.05.
	RefPass float64
	// Reselect: capacity and threshold are recomputed when the set of
	// classes changes or the number of samples has moved by this fraction
	// since they were; otherwise the warm head's are kept. Default 0.2; a
	// negative value recomputes them every time.
	Reselect float64
	// MaxSamples bounds the work of a selection: with more samples, the
	// cross-validations run on a stratified random subset of this many
	// (every class keeps at least two, when it has them). Default 1000.
	MaxSamples int
	// Seed makes folds and subsets reproducible.
	Seed uint64
}

func (c SelectConfig) withDefaults() SelectConfig {
	if c.Folds <= 1 {
		c.Folds = 5
	}
	if c.MinPerClassHidden <= 0 {
		c.MinPerClassHidden = 20
	}
	if c.MinGain <= 0 {
		c.MinGain = 0.01
	}
	if c.AcceptRate <= 0 || c.AcceptRate > 1 {
		c.AcceptRate = 0.95
	}
	if c.MinCalibrate <= 0 {
		c.MinCalibrate = 20
	}
	if c.MinCalibrateReference <= 0 {
		c.MinCalibrateReference = 6
	}
	if c.PriorWeight == 0 {
		c.PriorWeight = 20
	}
	if c.RefPass <= 0 || c.RefPass >= 1 {
		c.RefPass = 0.05
	}

	if c.Reselect == 0 {
		c.Reselect = 0.2
	}
	if c.MaxSamples <= 0 {
		c.MaxSamples = 1000
	}
	return c
}

// FitConfig is everything Fit needs.
type FitConfig struct {
	Train  TrainConfig
	Select SelectConfig
	// Background, when it has a reference set, teaches the head one more
	// class: other animals and scenes.
	Background BackgroundConfig
}

// BackgroundConfig says how a reference set of other animals and scenes
// is used: a random subset of it becomes the Background class, so that a
// stranger or an empty scene has a class to go to other than the nearest
// pet.
type BackgroundConfig struct {
	Reference *Reference
	// MaxTrain bounds the reference vectors the head is trained on
	// (default 300), and MaxCV those each cross-validation fold is trained
	// on (default 100): the cost of a retrain grows with them. MaxPrior
	// more, never trained on, set the distance prior (default 200).
	MaxTrain, MaxCV, MaxPrior int
	// Seed draws the subsets.
	Seed uint64
}

func (c BackgroundConfig) withDefaults() BackgroundConfig {
	if c.MaxTrain <= 0 {
		c.MaxTrain = 300
	}
	if c.MaxCV <= 0 {
		c.MaxCV = 100
	}
	if c.MaxPrior <= 0 {
		c.MaxPrior = 200
	}
	return c
}

// bgSets are the reference vectors a fit uses: the Background class's
// samples for the head and for cross-validation, and held-out vectors for
// the distance prior.
type bgSets struct {
	train, cv *Dataset
	prior     [][]float32
}

// background draws the reference vectors a fit uses (nil without a
// reference set).
func (c BackgroundConfig) background(backbone string, dim int) (*bgSets, error) {
	r := c.Reference
	if r == nil {
		return nil, nil
	}
	if r.Backbone != backbone || r.Dim != dim {
		return nil, fmt.Errorf("reference set of backbone %s (%d values) for samples of %s (%d values)", r.Backbone, r.Dim, backbone, dim)
	}
	idx := rand.New(rand.NewPCG(c.Seed, 0xb6)).Perm(len(r.X))
	b := &bgSets{train: &Dataset{}, cv: &Dataset{}}
	nTrain := min(len(idx), c.MaxTrain)
	for k, i := range idx[:nTrain] {
		b.train.X = append(b.train.X, r.X[i])
		b.train.Labels = append(b.train.Labels, Background)
		if k < c.MaxCV {
			b.cv.X = append(b.cv.X, r.X[i])
			b.cv.Labels = append(b.cv.Labels, Background)
		}
	}
	for _, i := range idx[nTrain:min(len(idx), nTrain+c.MaxPrior)] {
		b.prior = append(b.prior, r.X[i])
	}
	return b, nil
}

func (b *bgSets) trainSet() *Dataset {
	if b == nil {
		return nil
	}
	return b.train
}

// join returns d with extra's samples appended (d itself when extra is
// empty).
func join(d, extra *Dataset) *Dataset {
	if extra == nil || len(extra.X) == 0 {
		return d
	}
	out := &Dataset{X: append(slices.Clip(d.X), extra.X...), Labels: append(slices.Clip(d.Labels), extra.Labels...)}
	return out
}

// FitInfo says what Fit did besides training.
type FitInfo struct {
	// Selected is true when capacity and threshold were recomputed (false
	// when the warm head's were kept).
	Selected bool
	// SelectTime is the time the cross-validations took.
	SelectTime time.Duration
}

// Fit is the learner's recipe: choose the head's capacity by
// cross-validation (a linear head unless every class has
// MinPerClassHidden samples and the hidden head is measurably better),
// calibrate the open-set threshold on the same out-of-fold predictions,
// then train the chosen head on all samples, warm-started from warm. Both
// choices are kept from warm while the data has not changed much (see
// SelectConfig.Reselect).
func Fit(d *Dataset, backbone string, cfg FitConfig, warm *Head) (*Head, FitInfo, error) {
	var info FitInfo
	sel := cfg.Select.withDefaults()
	if _, err := d.check(); err != nil {
		return nil, info, err
	}
	counts := d.Counts()
	if slices.ContainsFunc(counts, func(c LabelCount) bool { return c.Label == Background }) {
		return nil, info, fmt.Errorf("%q is reserved for the reference set's class", Background)
	}
	bg, err := cfg.Background.withDefaults().background(backbone, len(d.X[0]))
	if err != nil {
		return nil, info, err
	}
	if len(counts) < 2 && (bg == nil || len(counts) < 1) {
		return nil, info, ErrTooFewClasses
	}
	var capacity *Capacity
	var calib *Calibration
	if keep(warm, backbone, d, counts, sel, bg != nil) {
		capacity, calib = warm.Capacity, warm.Calibration
	} else {
		start := time.Now()
		capacity, calib, _, err = choose(d, bg, backbone, counts, cfg.Train, sel, warm)
		if err != nil {
			return nil, info, err
		}
		info.Selected, info.SelectTime = true, time.Since(start)
	}
	tc := cfg.Train
	tc.Kind = capacity.Kind
	h, err := Train(join(d, bg.trainSet()), backbone, tc, warm)
	if err != nil {
		return nil, info, err
	}
	if calib != nil {
		c := *calib
		h.Calibration = &c
	}
	c := *capacity
	h.Capacity = &c
	return h, info, nil
}

// keep reports whether warm's capacity and calibration still describe d
// (and whether it was trained with a background class, as this one is).
func keep(warm *Head, backbone string, d *Dataset, counts []LabelCount, sel SelectConfig, background bool) bool {
	if warm == nil || warm.Capacity == nil || sel.Reselect < 0 || warm.Backbone != backbone || len(warm.Imprinted) > 0 {
		return false
	}
	if sel.Force != "" && warm.Capacity.Kind != sel.Force {
		return false
	}
	if slices.Contains(warm.Classes, Background) != background || len(warm.Labels()) != len(counts) {
		return false
	}
	for _, c := range counts {
		if warm.ClassIndex(c.Label) < 0 {
			return false
		}
	}
	was := warm.Capacity.Samples
	return math.Abs(float64(len(d.X)-was)) < sel.Reselect*float64(was)
}

// choose runs the cross-validations and makes the capacity and threshold
// decisions; it also returns the chosen kind's out-of-fold predictions
// (nil when there were too few samples to cross-validate).
// bg, when not nil, adds the Background class to every fold's training
// samples (only d's samples are predicted) and sets the priors the limits
// are shrunk toward.
func choose(d *Dataset, bg *bgSets, backbone string, counts []LabelCount, tc TrainConfig, sel SelectConfig, warm *Head) (*Capacity, *Calibration, *CVResult, error) {
	var bgCV *Dataset
	var prior [][]float32
	minCal := sel.MinCalibrate
	if bg != nil {
		bgCV, prior, minCal = bg.cv, bg.prior, sel.MinCalibrateReference
	}
	minPer := counts[0].Samples
	for _, c := range counts {
		minPer = min(minPer, c.Samples)
	}
	capacity := &Capacity{Kind: KindLinear, Samples: len(d.X), Classes: len(counts), MinPerClass: minPer}
	if sel.Force != "" && sel.Force != KindLinear && sel.Force != KindHidden {
		return nil, nil, nil, fmt.Errorf("unknown head kind %q", sel.Force)
	}
	// Classes with a single sample (typically a label just added) cannot
	// be cross-validated: they are left out of it.
	cvd := d
	if minPer < 2 {
		var keep []int
		for i, l := range d.Labels {
			if slices.ContainsFunc(counts, func(c LabelCount) bool { return c.Label == l && c.Samples >= 2 }) {
				keep = append(keep, i)
			}
		}
		cvd = d.Subset(keep)
	}
	if len(cvd.X) > sel.MaxSamples {
		cvd = cvd.Subset(subsample(cvd.Labels, sel.MaxSamples, sel.Seed))
		capacity.Subset = len(cvd.X)
	}
	if len(cvd.Classes()) < 2 && (bgCV == nil || len(cvd.Classes()) < 1 || len(cvd.X) < 2) {
		if sel.Force != "" {
			capacity.Kind = sel.Force
		}
		capacity.Reason = fmt.Sprintf("%s: too few samples to cross-validate (two classes need two samples each), so no threshold is calibrated yet", capacity.Kind)
		return capacity, nil, nil, nil
	}
	folds := Folds(cvd.Labels, sel.Folds, sel.Seed)
	capacity.Folds = folds.K
	lin, err := crossValidate(cvd, bgCV, prior, backbone, withKind(tc, KindLinear), folds, warm)
	if err != nil {
		return nil, nil, nil, err
	}
	capacity.LinearAcc = lin.Accuracy
	chosen := lin
	switch {
	case sel.Force == KindLinear:
		capacity.Reason = "linear: set by configuration"
	case sel.Force == "" && minPer < sel.MinPerClassHidden:
		capacity.Reason = fmt.Sprintf("linear: the smallest class has %d samples; the hidden head is tried from %d per class", minPer, sel.MinPerClassHidden)
	default:
		hid, err := crossValidate(cvd, bgCV, prior, backbone, withKind(tc, KindHidden), folds, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		capacity.HiddenAcc = hid.Accuracy
		capacity.Gain, capacity.GainSE = pairedGain(hid.FoldAcc, lin.FoldAcc)
		switch {
		case sel.Force == KindHidden:
			capacity.Kind, chosen = KindHidden, hid
			capacity.Reason = "hidden: set by configuration"
		case capacity.Gain >= sel.MinGain && capacity.Gain > 2*capacity.GainSE:
			capacity.Kind, chosen = KindHidden, hid
			capacity.Reason = fmt.Sprintf("hidden: cross-validated accuracy %.3f against %.3f for linear (gain %.3f ± %.3f)",
				hid.Accuracy, lin.Accuracy, capacity.Gain, capacity.GainSE)
		default:
			capacity.Reason = fmt.Sprintf("linear: the hidden head's cross-validated accuracy %.3f is not better than linear's %.3f by %.0f point and two standard errors (gain %.3f ± %.3f)",
				hid.Accuracy, lin.Accuracy, 100*sel.MinGain, capacity.Gain, capacity.GainSE)
		}
	}
	if cvd != d {
		capacity.Reason += "; classes with a single sample were left out of cross-validation"
	}
	if len(cvd.X) < minCal {
		capacity.Reason += fmt.Sprintf("; the open-set limits are calibrated from %d samples (now %d): until then the threshold is %.1f and there is no distance check",
			minCal, len(cvd.X), DefaultThreshold)
		return capacity, nil, chosen, nil
	}
	cal := Calibrate(chosen, sel.AcceptRate)
	if bg != nil && len(chosen.PriorDist) > 0 && sel.PriorWeight > 0 {
		dp := slices.Clone(chosen.PriorDist)
		sort.Float64s(dp)
		cal.shrink(sel.PriorWeight, dp[min(int(sel.RefPass*float64(len(dp))), len(dp)-1)])
		cal.tally(chosen)
	}
	return capacity, cal, chosen, nil
}

// subsample draws about n of the samples, each label in proportion but at
// least two of it (all, with fewer); the indices are sorted.
func subsample(labels []string, n int, seed uint64) []int {
	byLabel := map[string][]int{}
	var names []string
	for i, l := range labels {
		if _, ok := byLabel[l]; !ok {
			names = append(names, l)
		}
		byLabel[l] = append(byLabel[l], i)
	}
	sort.Strings(names)
	rng := rand.New(rand.NewPCG(seed, 0x5ab5e7))
	var out []int
	for _, l := range names {
		idx := byLabel[l]
		want := max(min(2, len(idx)), int(math.Round(float64(n)*float64(len(idx))/float64(len(labels)))))
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		out = append(out, idx[:min(want, len(idx))]...)
	}
	slices.Sort(out)
	return out
}

func withKind(tc TrainConfig, kind string) TrainConfig {
	tc.Kind = kind
	return tc
}

// pairedGain is the mean of a[i]-b[i] and its standard error.
func pairedGain(a, b []float64) (mean, se float64) {
	n := float64(len(a))
	for i := range a {
		mean += (a[i] - b[i]) / n
	}
	if len(a) < 2 {
		return mean, math.Inf(1)
	}
	var ss float64
	for i := range a {
		dv := a[i] - b[i] - mean
		ss += dv * dv
	}
	return mean, math.Sqrt(ss/(n-1)) / math.Sqrt(n)
}

// Calibrate picks the open-set thresholds from out-of-fold predictions:
// the distance within which acceptRate of the samples lie, and the largest
// probability threshold at which acceptRate of the correctly classified
// samples are still accepted. Samples the head gets wrong tend to have
// lower confidence; vectors of things it was never shown tend to have lower
// confidence or lie far from every class.
func Calibrate(cv *CVResult, acceptRate float64) *Calibration {
	c := &Calibration{AcceptRate: acceptRate, Folds: cv.Folds, Samples: len(cv.Pred), Accuracy: cv.Accuracy, Threshold: 1}
	if len(cv.Dist) == len(cv.Pred) && len(cv.Dist) > 0 {
		d := slices.Clone(cv.Dist)
		sort.Float64s(d)
		c.Distance = d[min(int(math.Ceil(acceptRate*float64(len(d))))-1, len(d)-1)]
		if c.Distance <= 0 {
			c.Distance = 0 // no centroids: no distance test
		}
	}
	var correct []float64
	for i, p := range cv.Pred {
		if p == cv.True[i] {
			correct = append(correct, cv.Conf[i])
		}
	}
	if len(correct) > 0 {
		sort.Float64s(correct)
		idx := int(math.Floor((1 - acceptRate) * float64(len(correct))))
		c.Threshold = correct[min(idx, len(correct)-1)]
	}
	c.tally(cv)
	return c
}

// tally computes what passes the thresholds among the out-of-fold
// predictions.
func (c *Calibration) tally(cv *CVResult) {
	var acc, accOK, wrong, wrongRej int
	for i, p := range cv.Pred {
		ok := p == cv.True[i]
		pass := cv.Conf[i] >= c.Threshold && (c.Distance == 0 || len(cv.Dist) != len(cv.Pred) || cv.Dist[i] <= c.Distance)
		if pass {
			acc++
			if ok {
				accOK++
			}
		}
		if !ok {
			wrong++
			if !pass {
				wrongRej++
			}
		}
	}
	c.Accepted = ratio(acc, len(cv.Pred))
	c.AcceptedAccuracy = ratio(accOK, acc)
	c.ErrorsRejected = ratio(wrongRej, wrong)
}

// shrink moves the calibrated threshold toward DefaultThreshold and the
// calibrated distance toward distPrior, the more so the fewer samples they
// were calibrated from (see SelectConfig.PriorWeight).
func (c *Calibration) shrink(weight, distPrior float64) {
	if weight <= 0 || c.Samples == 0 {
		return
	}
	n := float64(c.Samples)
	c.Calibrated, c.CalibratedDistance = c.Threshold, c.Distance
	c.Threshold = (n*c.Threshold + weight*DefaultThreshold) / (n + weight)
	if c.Distance > 0 && distPrior > 0 {
		c.Distance = (n*c.Distance + weight*distPrior) / (n + weight)
	}
	c.PriorWeight, c.DistancePrior = weight, distPrior
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// FoldPlan assigns every sample to one of K folds, stratified by label.
type FoldPlan struct {
	K    int
	Fold []int // fold of each sample
}

// Folds makes a stratified K-fold plan: each label's samples are shuffled
// (seeded) and dealt to the folds in turn. K is reduced to the smallest
// label's count when that is smaller (but not below 2).
func Folds(labels []string, k int, seed uint64) FoldPlan {
	byLabel := map[string][]int{}
	for i, l := range labels {
		byLabel[l] = append(byLabel[l], i)
	}
	names := make([]string, 0, len(byLabel))
	for l := range byLabel {
		names = append(names, l)
	}
	sort.Strings(names)
	for _, l := range names {
		k = min(k, len(byLabel[l]))
	}
	k = max(k, 2)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	plan := FoldPlan{K: k, Fold: make([]int, len(labels))}
	start := 0
	for _, l := range names {
		idx := byLabel[l]
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		// Continue dealing where the previous label stopped, so that folds
		// get equal sizes overall.
		for j, i := range idx {
			plan.Fold[i] = (start + j) % k
		}
		start = (start + len(idx)) % k
	}
	return plan
}

// CVResult holds out-of-fold predictions.
type CVResult struct {
	Kind    string
	Folds   int
	Classes []string
	True    []int     // class index of each sample
	Pred    []int     // out-of-fold predicted class index
	Conf    []float64 // out-of-fold probability of Pred
	Second  []int     // out-of-fold runner-up class index (-1: none)
	// Background is true where the Background class (other animals and
	// scenes) beat every labelled class.
	Background []bool
	// PriorDist are the distances of held-out reference vectors to the
	// nearest labelled class, under each fold's head.
	PriorDist []float64
	Dist      []float64 // out-of-fold distance to the nearest class centroid
	FoldAcc   []float64
	// Accuracy is the fraction of samples predicted correctly.
	Accuracy float64
}

// ErrTooFewForCV is returned when a label has fewer than two samples.
var ErrTooFewForCV = errors.New("cross-validation needs at least two samples of every label")

// CrossValidate trains a head of tc.Kind on all folds but one and predicts
// the held-out fold, for each fold. A linear head may start from warm (a
// head of the same backbone): its problem is strictly convex, so the
// starting point changes only how fast the optimiser reaches the same
// minimum, not which; a hidden head always starts afresh, since where it
// starts and stops early depends on that point.
func CrossValidate(d *Dataset, backbone string, tc TrainConfig, plan FoldPlan, warm *Head) (*CVResult, error) {
	return crossValidate(d, nil, nil, backbone, tc, plan, warm)
}

// crossValidate is CrossValidate with bg's samples (the Background class)
// added to every fold's training samples; predictions are d's classes
// only (the best of them, whether or not Background would win). The
// distances of the prior vectors under each fold's head are collected.
func crossValidate(d, bg *Dataset, prior [][]float32, backbone string, tc TrainConfig, plan FoldPlan, warm *Head) (*CVResult, error) {
	classes := d.Classes()
	if len(classes) < 2 && (bg == nil || len(classes) < 1) {
		return nil, ErrTooFewClasses
	}
	if len(plan.Fold) != len(d.X) {
		return nil, fmt.Errorf("fold plan covers %d samples, the dataset has %d", len(plan.Fold), len(d.X))
	}
	res := &CVResult{Kind: tc.withDefaults().Kind, Folds: plan.K, Classes: classes,
		True: make([]int, len(d.X)), Pred: make([]int, len(d.X)), Conf: make([]float64, len(d.X)), Dist: make([]float64, len(d.X)),
		Second: make([]int, len(d.X)), Background: make([]bool, len(d.X))}
	for i, l := range d.Labels {
		res.True[i] = slices.Index(classes, l)
	}
	correct := 0
	for f := range plan.K {
		var tr, te []int
		for i, fi := range plan.Fold {
			if fi == f {
				te = append(te, i)
			} else {
				tr = append(tr, i)
			}
		}
		if len(te) == 0 {
			continue
		}
		train := d.Subset(tr)
		if len(train.Classes()) != len(classes) {
			return nil, ErrTooFewForCV
		}
		train = join(train, bg)
		fc := tc
		fc.Seed = tc.Seed + uint64(f)
		w := warm
		if fc.withDefaults().Kind != KindLinear {
			w = nil
		}
		h, err := Train(train, backbone, fc, w)
		if err != nil {
			return nil, fmt.Errorf("cross-validation fold %d: %w", f+1, err)
		}
		ok := 0
		for _, i := range te {
			// Scores and distance; the label does not matter here.
			p, err := h.Classify(d.X[i], 1)
			if err != nil {
				return nil, err
			}
			b := h.ClassIndex(p.Nearest)
			res.Pred[i], res.Conf[i], res.Dist[i] = slices.Index(classes, p.Nearest), p.Scores[b], p.Distance
			res.Background[i] = p.Best == Background
			res.Second[i] = -1
			for c, name := range h.Classes {
				if c != b && name != Background && (res.Second[i] < 0 || p.Scores[c] > p.Scores[h.ClassIndex(classes[res.Second[i]])]) {
					res.Second[i] = slices.Index(classes, name)
				}
			}
			if res.Pred[i] == res.True[i] {
				ok++
			}
		}
		correct += ok
		res.FoldAcc = append(res.FoldAcc, float64(ok)/float64(len(te)))
		for _, x := range prior {
			dist, err := h.Distance(x)
			if err != nil {
				return nil, err
			}
			res.PriorDist = append(res.PriorDist, dist)
		}
	}
	res.Accuracy = float64(correct) / float64(len(d.X))
	return res, nil
}
