package learner

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// EvalConfig tunes Evaluate.
type EvalConfig struct {
	Train  TrainConfig
	Select SelectConfig
	// Background is the reference set the head is trained with, if any.
	Background BackgroundConfig
	// Curve lists the labelled samples per class of the learning curve.
	// Default 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000 (those below the
	// smallest class's count).
	Curve []int
	// Repeats is the number of random draws per curve point. Default 10.
	Repeats int
	// Seed makes folds and draws reproducible.
	Seed uint64
}

// ClassReport is one class's line of a report.
type ClassReport struct {
	Label     string  `json:"label"`
	Samples   int     `json:"samples"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	// Unknown is the fraction of the class's out-of-fold predictions the
	// calibrated open-set tests reject, and the reasons split it:
	// UnknownUnsure (not confident enough, mostly against Against),
	// UnknownFar (unlike every labelled class) and UnknownBackground (more
	// like the reference set's other animals and scenes).
	Unknown           float64 `json:"unknown"`
	UnknownUnsure     float64 `json:"unknown_unsure,omitempty"`
	UnknownFar        float64 `json:"unknown_far,omitempty"`
	UnknownBackground float64 `json:"unknown_background,omitempty"`
	Against           string  `json:"against,omitempty"`
}

// CurvePoint is the accuracy when training on PerClass labelled samples of
// each class and testing on all the others.
type CurvePoint struct {
	PerClass int     `json:"per_class"`
	Accuracy float64 `json:"accuracy"`
	Std      float64 `json:"std"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	Draws    int     `json:"draws"`
}

// Report answers "have I trained enough?".
type Report struct {
	Backbone string        `json:"backbone"`
	Samples  int           `json:"samples"`
	Classes  []string      `json:"classes"`
	PerClass []ClassReport `json:"per_class"`
	// Kind is the head the capacity rule chooses, and Capacity why.
	Kind     string    `json:"kind"`
	Capacity *Capacity `json:"capacity"`
	// Background is the number of reference vectors (other animals and
	// scenes) each cross-validated head was trained with as one more
	// class; 0 without a reference set.
	Background int `json:"background,omitempty"`
	// Folds, Accuracy and AccuracySE are the k-fold cross-validated
	// accuracy of that head and its standard error over the folds.
	Folds      int     `json:"folds"`
	Accuracy   float64 `json:"accuracy"`
	AccuracySE float64 `json:"accuracy_se"`
	// Confusion counts out-of-fold predictions: row = true class, column
	// = predicted class, in the order of Classes.
	Confusion   [][]int      `json:"confusion"`
	Calibration *Calibration `json:"calibration"`
	// Curve is the learning curve of the linear head.
	Curve []CurvePoint `json:"learning_curve"`
	// Advice reads the curve and the confusions for people.
	Advice  []string `json:"advice"`
	Seconds float64  `json:"seconds"`
}

// defaultCurve is the learning curve's default ladder of samples per class.
func defaultCurve() []int { return []int{1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000} }

// Evaluate cross-validates the head Fit would train on d (k-fold,
// stratified): accuracy, per-class precision and recall, the confusion
// matrix, the calibrated threshold and how often each class falls below it,
// and a learning curve (accuracy against labelled samples per class) that
// shows whether more labels would help. Every class needs two samples.
func Evaluate(ctx context.Context, d *Dataset, backbone string, cfg EvalConfig) (*Report, error) {
	start := time.Now()
	if _, err := d.check(); err != nil {
		return nil, err
	}
	counts := d.Counts()
	if len(counts) < 2 {
		return nil, ErrTooFewClasses
	}
	minPer := counts[0].Samples
	for _, c := range counts {
		minPer = min(minPer, c.Samples)
	}
	if minPer < 2 {
		return nil, ErrTooFewForCV
	}
	sel := cfg.Select
	if sel.MaxSamples == 0 {
		sel.MaxSamples = len(d.X) // a report uses every sample
	}
	sel = sel.withDefaults()
	sel.Seed = cfg.Seed
	bg, err := cfg.Background.withDefaults().background(backbone, len(d.X[0]))
	if err != nil {
		return nil, err
	}
	capacity, calib, cv, err := choose(d, bg, backbone, counts, cfg.Train, sel, nil)
	if err != nil {
		return nil, err
	}
	r := &Report{Backbone: backbone, Samples: len(d.X), Classes: cv.Classes, Kind: capacity.Kind, Capacity: capacity,
		Folds: cv.Folds, Accuracy: cv.Accuracy, Calibration: calib}
	if bg != nil {
		r.Background = len(bg.cv.X)
	}
	_, r.AccuracySE = pairedGain(cv.FoldAcc, make([]float64, len(cv.FoldAcc)))
	k := len(cv.Classes)
	r.Confusion = make([][]int, k)
	for i := range r.Confusion {
		r.Confusion[i] = make([]int, k)
	}
	rejected := make([]int, k)
	why := make([]map[string]int, k)
	against := make([]map[int]int, k)
	for c := range why {
		why[c], against[c] = map[string]int{}, map[int]int{}
	}
	threshold, distance := DefaultThreshold, 0.0 // what a head uses before it can calibrate
	if calib != nil {
		threshold, distance = calib.Threshold, calib.Distance
	}
	for i := range cv.Pred {
		r.Confusion[cv.True[i]][cv.Pred[i]]++
		t := cv.True[i]
		var reason string
		switch {
		case cv.Background[i]:
			reason = WhyBackground
		case cv.Conf[i] < threshold:
			reason = WhyUnsure
			other := cv.Pred[i]
			if other == t {
				other = cv.Second[i]
			}
			if other >= 0 {
				against[t][other]++
			}
		case distance > 0 && cv.Dist[i] > distance:
			reason = WhyFar
		}
		if reason != "" {
			rejected[t]++
			why[t][reason]++
		}
	}
	for c, name := range cv.Classes {
		var row, col int
		for j := range k {
			row += r.Confusion[c][j]
			col += r.Confusion[j][c]
		}
		cr := ClassReport{Label: name, Samples: row,
			Precision: ratio(r.Confusion[c][c], col), Recall: ratio(r.Confusion[c][c], row), Unknown: ratio(rejected[c], row),
			UnknownUnsure: ratio(why[c][WhyUnsure], row), UnknownFar: ratio(why[c][WhyFar], row),
			UnknownBackground: ratio(why[c][WhyBackground], row)}
		best := -1
		for o, n := range against[c] {
			if best < 0 || n > against[c][best] || (n == against[c][best] && o < best) {
				best = o
			}
		}
		if best >= 0 {
			cr.Against = cv.Classes[best]
		}
		r.PerClass = append(r.PerClass, cr)
	}

	ladder := cfg.Curve
	if len(ladder) == 0 {
		ladder = defaultCurve()
	}
	repeats := cfg.Repeats
	if repeats <= 0 {
		repeats = 10
	}
	lin := cfg.Train
	lin.Kind = KindLinear
	for _, s := range ladder {
		if s < 1 || s >= minPer {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pt, err := curvePoint(d, lin, s, repeats, cfg.Seed)
		if err != nil {
			return nil, err
		}
		r.Curve = append(r.Curve, pt)
	}
	r.Advice = advise(r)
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// curvePoint trains on s random samples per class and tests on the rest,
// repeats times.
func curvePoint(d *Dataset, tc TrainConfig, s, repeats int, seed uint64) (CurvePoint, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(s)))
	accs := make([]float64, 0, repeats)
	for range repeats {
		tr, te := ShotSplit(d.Labels, s, rng)
		h, err := Train(d.Subset(tr), "curve", tc, nil)
		if err != nil {
			return CurvePoint{}, fmt.Errorf("learning curve at %d per class: %w", s, err)
		}
		acc, err := Accuracy(h, d.Subset(te))
		if err != nil {
			return CurvePoint{}, err
		}
		accs = append(accs, acc)
	}
	mean, std := MeanStd(accs)
	return CurvePoint{PerClass: s, Accuracy: mean, Std: std, Min: slices.Min(accs), Max: slices.Max(accs), Draws: repeats}, nil
}

// ShotSplit draws s samples of every label for training (all of a label's
// samples when it has fewer) and returns the rest for testing; both index
// lists are sorted.
func ShotSplit(labels []string, s int, rng *rand.Rand) (train, test []int) {
	byLabel := map[string][]int{}
	var names []string
	for i, l := range labels {
		if _, ok := byLabel[l]; !ok {
			names = append(names, l)
		}
		byLabel[l] = append(byLabel[l], i)
	}
	slices.Sort(names)
	for _, l := range names {
		idx := slices.Clone(byLabel[l])
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		n := min(s, len(idx))
		train = append(train, idx[:n]...)
		test = append(test, idx[n:]...)
	}
	slices.Sort(train)
	slices.Sort(test)
	return train, test
}

// Accuracy is the fraction of d that h names correctly (no threshold).
func Accuracy(h *Head, d *Dataset) (float64, error) {
	if len(d.X) == 0 {
		return 0, nil
	}
	ok := 0
	for i, x := range d.X {
		p, err := h.Predict(x)
		if err != nil {
			return 0, err
		}
		if best, _ := h.Best(p); best == d.Labels[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(d.X)), nil
}

// MeanStd returns the mean and the sample standard deviation.
func MeanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) < 2 {
		return mean, 0
	}
	for _, x := range v {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(v)-1))
}

// advise reads a report for people.
func advise(r *Report) []string {
	var out []string
	if n := len(r.Curve); n >= 2 {
		a, b := r.Curve[n-2], r.Curve[n-1]
		gain := b.Accuracy - a.Accuracy
		switch {
		case gain > 0.02:
			out = append(out, fmt.Sprintf("Accuracy is still rising (%.1f%% at %d per class, %.1f%% at %d): more labels are likely to help.",
				100*a.Accuracy, a.PerClass, 100*b.Accuracy, b.PerClass))
		case gain > 0.005:
			out = append(out, fmt.Sprintf("Accuracy is rising slowly (%.1f%% at %d per class, %.1f%% at %d): more labels help a little.",
				100*a.Accuracy, a.PerClass, 100*b.Accuracy, b.PerClass))
		default:
			out = append(out, fmt.Sprintf("The learning curve is flat (%.1f%% at %d per class, %.1f%% at %d): more labels of the same kind will not help much; label the frames it gets wrong.",
				100*a.Accuracy, a.PerClass, 100*b.Accuracy, b.PerClass))
		}
	} else {
		out = append(out, "Too few samples per class for a learning curve: label at least 3 of each.")
	}
	// The most frequent confusion.
	bi, bj, bn := -1, -1, 0
	for i, row := range r.Confusion {
		for j, n := range row {
			if i != j && n > bn {
				bi, bj, bn = i, j, n
			}
		}
	}
	if bi >= 0 {
		out = append(out, fmt.Sprintf("Most common mistake: %s taken for %s (%d of %d).", r.Classes[bi], r.Classes[bj], bn, r.PerClass[bi].Samples))
	}
	return append(out, unknownAdvice(r)...)
}

// unknownAdvice says, for each class whose own held-out samples come out
// unknown, why and what to label next.
func unknownAdvice(r *Report) []string {
	var out []string
	for _, c := range r.PerClass {
		n := func(f float64) int { return int(math.Round(f * float64(c.Samples))) }
		if c.Unknown == 0 {
			continue
		}
		line := fmt.Sprintf("%s: %d of %d held-out samples come out unknown", c.Label, n(c.Unknown), c.Samples)
		var parts []string
		if c.UnknownFar > 0 {
			parts = append(parts, fmt.Sprintf("%d unlike every labelled class (label more of %s in other places, light and poses)", n(c.UnknownFar), c.Label))
		}
		if c.UnknownUnsure > 0 {
			p := fmt.Sprintf("%d not confident enough", n(c.UnknownUnsure))
			if c.Against != "" {
				p += fmt.Sprintf(", mostly between %s and %s (label the sightings that tell them apart)", c.Label, c.Against)
			}
			parts = append(parts, p)
		}
		if c.UnknownBackground > 0 {
			parts = append(parts, fmt.Sprintf("%d more like other animals and scenes than like any pet (label sightings of %s where it is small, dark or partly hidden)", n(c.UnknownBackground), c.Label))
		}
		out = append(out, line+": "+strings.Join(parts, "; ")+".")
	}
	return out
}

// WriteText prints the report as tables.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Samples: %d in %d classes (backbone %s)\n", r.Samples, len(r.Classes), r.Backbone)
	fmt.Fprintf(&b, "Head: %s (%s)\n", r.Kind, r.Capacity.Reason)
	if r.Background > 0 {
		fmt.Fprintf(&b, "Other animals and scenes: one more class, learnt from %d vectors of the backbone's reference set\n", r.Background)
	}
	fmt.Fprintf(&b, "Accuracy (%d-fold cross-validation): %.1f%% ± %.1f%%\n", r.Folds, 100*r.Accuracy, 100*r.AccuracySE)
	if c := r.Calibration; c != nil {
		fmt.Fprintf(&b, "Unknown when: best probability below %.3f, or distance to the nearest class above %.3f (each keeps %.0f%% of known samples)\n",
			c.Threshold, c.Distance, 100*c.AcceptRate)
		fmt.Fprintf(&b, "  cross-validated: %.0f%% of samples named, %.1f%% of those right; %.0f%% of mistakes become unknown\n",
			100*c.Accepted, 100*c.AcceptedAccuracy, 100*c.ErrorsRejected)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "class\tsamples\tprecision\trecall\tunknown\tunsure\tunlike all\tlike others\t")
	for _, c := range r.PerClass {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", c.Label, c.Samples, c.Precision, c.Recall, c.Unknown,
			c.UnknownUnsure, c.UnknownFar, c.UnknownBackground)
	}
	tw.Flush()
	b.WriteString("\nConfusion (rows: true class, columns: predicted)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, c := range r.Classes {
		fmt.Fprintf(tw, "%s\t", c)
	}
	fmt.Fprintln(tw)
	for i, row := range r.Confusion {
		fmt.Fprintf(tw, "%s\t", r.Classes[i])
		for _, n := range row {
			fmt.Fprintf(tw, "%d\t", n)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if len(r.Curve) > 0 {
		b.WriteString("\nLearning curve (linear head; train on N per class, test on the rest)\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "per class\taccuracy\tstd\tmin\tmax\t")
		for _, p := range r.Curve {
			fmt.Fprintf(tw, "%d\t%.3f\t%.3f\t%.3f\t%.3f\t\n", p.PerClass, p.Accuracy, p.Std, p.Min, p.Max)
		}
		tw.Flush()
	}
	b.WriteString("\n")
	for _, a := range r.Advice {
		b.WriteString(a + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
