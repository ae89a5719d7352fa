// Package learner holds what Whisker learns on the device: the store of
// labelled feature vectors, the softmax head trained on them, and the
// trainer that keeps the head current. It is pure Go: feature vectors come
// in as []float32 from whatever backbone produced them, tagged with that
// backbone's identity.
package learner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/whiskercam/whisker/internal/atomicfile"
)

// HeadFormat is the head file format this package writes. It also reads
// format 1 (linear heads without a calibrated threshold) and format 2
// (without the background class).
const HeadFormat = 3

// Head kinds.
const (
	KindLinear = "linear" // multinomial logistic regression
	KindHidden = "hidden" // one tanh hidden layer, then softmax
)

// Unknown is the label of a prediction below the head's threshold.
const Unknown = "unknown"

// DefaultThreshold is the threshold of a head that could not be calibrated
// (too few samples for cross-validation) when no setting overrides it.
const DefaultThreshold = 0.6

// maxHidden bounds the hidden layer of a decoded head.
const maxHidden = 4096

// Head is a trained classifier over one backbone's feature vectors. With
// z = (x - Mean) .* Scale, a linear head computes p = softmax(W z + B); a
// hidden head adds a layer of tanh units beside the linear part,
// p = softmax(W z + W2 tanh(W1 z + B1) + B), so that it can only add to what
// the linear head does.
type Head struct {
	Format   int       `json:"format"`
	Kind     string    `json:"kind"`
	Backbone string    `json:"backbone"`
	Dim      int       `json:"dim"`
	Classes  []string  `json:"classes"`
	Mean     []float64 `json:"mean"`
	Scale    []float64 `json:"scale"`
	W        []float64 `json:"w"` // len(Classes) x Dim, row-major
	B        []float64 `json:"b"`
	Hidden   int       `json:"hidden,omitempty"` // hidden units (hidden heads)
	W1       []float64 `json:"w1,omitempty"`     // Hidden x Dim, row-major
	B1       []float64 `json:"b1,omitempty"`
	W2       []float64 `json:"w2,omitempty"` // len(Classes) x Hidden, row-major
	// Centroids are the classes' mean standardised vectors (len(Classes) x
	// Dim), for the distance test of open-set rejection.
	Centroids []float64 `json:"centroids,omitempty"`
	// Calibration holds the open-set thresholds found by cross-validation;
	// nil when there were too few samples.
	Calibration *Calibration `json:"calibration,omitempty"`
	// Capacity records why this kind of head was chosen.
	Capacity *Capacity `json:"capacity,omitempty"`
	// Imprinted lists classes whose rows were set from their mean vector
	// and not trained yet.
	Imprinted []string `json:"imprinted,omitempty"`
	// Training facts, for reports.
	Samples   int       `json:"samples"`
	C         float64   `json:"c"`
	Trained   time.Time `json:"trained"`
	TrainTime float64   `json:"train_seconds"`
	Iters     int       `json:"iterations"`
	Loss      float64   `json:"loss"`
}

// Calibration holds a head's open-set thresholds and how they were chosen.
// A vector is unknown when the head is not confident enough (best
// probability below Threshold: the largest threshold that still accepts
// AcceptRate of the samples cross-validation classified correctly) or when
// it is unlike every labelled class (standardised distance to the nearest
// class centroid above Distance: the distance within which AcceptRate of
// the out-of-fold samples lie).
type Calibration struct {
	// Threshold and Distance are the limits in force. With a reference
	// set they are the calibrated ones (Calibrated, CalibratedDistance)
	// shrunk toward priors (DefaultThreshold, DistancePrior) by
	// PriorWeight samples' worth (see SelectConfig.PriorWeight).
	Threshold          float64 `json:"threshold"`
	Distance           float64 `json:"distance,omitempty"`
	Calibrated         float64 `json:"calibrated,omitempty"`
	CalibratedDistance float64 `json:"calibrated_distance,omitempty"`
	DistancePrior      float64 `json:"distance_prior,omitempty"`
	PriorWeight        float64 `json:"prior_weight,omitempty"`
	AcceptRate         float64 `json:"accept_rate"`
	Folds              int     `json:"folds"`
	// Samples is the number of out-of-fold predictions.
	Samples int `json:"samples"`
	// Accuracy is the out-of-fold accuracy (no rejection).
	Accuracy float64 `json:"accuracy"`
	// Accepted is the fraction of all out-of-fold predictions that pass
	// both tests, and AcceptedAccuracy their accuracy.
	Accepted         float64 `json:"accepted"`
	AcceptedAccuracy float64 `json:"accepted_accuracy"`
	// ErrorsRejected is the fraction of out-of-fold mistakes the tests
	// turn into "unknown".
	ErrorsRejected float64 `json:"errors_rejected"`
}

// Capacity records the capacity decision: which kind of head, and the
// cross-validated accuracies it was based on.
type Capacity struct {
	Kind string `json:"kind"`
	// Reason says why, for people.
	Reason      string `json:"reason"`
	Samples     int    `json:"samples"`
	Classes     int    `json:"classes"`
	MinPerClass int    `json:"min_per_class"`
	Folds       int    `json:"folds"`
	// Subset is the number of samples cross-validated when they were a
	// random subset (SelectConfig.MaxSamples); 0 when all were.
	Subset int `json:"subset,omitempty"`
	// Linear and HiddenAcc are cross-validated accuracies (HiddenAcc is
	// 0 when the hidden head was not tried); Gain is their paired mean
	// difference and GainSE its standard error over the folds.
	LinearAcc float64 `json:"linear_accuracy"`
	HiddenAcc float64 `json:"hidden_accuracy,omitempty"`
	Gain      float64 `json:"gain,omitempty"`
	GainSE    float64 `json:"gain_se,omitempty"`
}

// ErrBackboneMismatch is returned for a head trained on another backbone.
var ErrBackboneMismatch = errors.New("head was trained on a different backbone")

// Validate checks a head's internal consistency.
func (h *Head) Validate() error {
	k := len(h.Classes)
	switch {
	case h.Format < 1 || h.Format > HeadFormat:
		return fmt.Errorf("head format %d, this build reads 1 to %d", h.Format, HeadFormat)
	case h.Kind != KindLinear && h.Kind != KindHidden:
		return fmt.Errorf("unknown head kind %q", h.Kind)
	case h.Format == 1 && (h.Kind != KindLinear || h.Calibration != nil || h.Capacity != nil || h.Imprinted != nil || h.Centroids != nil):
		return errors.New("head format 1 holds only linear heads without calibration")
	case h.Backbone == "":
		return errors.New("head has no backbone identity")
	case h.Dim <= 0 || h.Dim > maxFeatureDim:
		return fmt.Errorf("head dimension %d", h.Dim)
	case k < 2:
		return fmt.Errorf("head has %d classes, want at least 2", k)
	case len(h.Mean) != h.Dim || len(h.Scale) != h.Dim:
		return fmt.Errorf("head standardisation has %d/%d values, want %d", len(h.Mean), len(h.Scale), h.Dim)
	}
	if len(h.Centroids) != 0 && len(h.Centroids) != k*h.Dim {
		return fmt.Errorf("head centroids are %d values, want %d", len(h.Centroids), k*h.Dim)
	}
	if h.Format < 3 && slices.Contains(h.Classes, Background) {
		return fmt.Errorf("head format %d has no background class", h.Format)
	}
	if h.Kind == KindHidden {
		switch {
		case h.Hidden <= 0 || h.Hidden > maxHidden:
			return fmt.Errorf("head hidden layer of %d units", h.Hidden)
		case len(h.W1) != h.Hidden*h.Dim || len(h.B1) != h.Hidden || len(h.W2) != k*h.Hidden:
			return fmt.Errorf("head hidden weights are %d+%d+%d values, want %d+%d+%d",
				len(h.W1), len(h.B1), len(h.W2), h.Hidden*h.Dim, h.Hidden, k*h.Hidden)
		}
	} else if h.Hidden != 0 || len(h.W1) != 0 || len(h.B1) != 0 || len(h.W2) != 0 {
		return errors.New("linear head has hidden-layer weights")
	}
	if len(h.W) != k*h.Dim || len(h.B) != k {
		return fmt.Errorf("head weights are %d+%d values, want %d+%d", len(h.W), len(h.B), k*h.Dim, k)
	}
	seen := map[string]bool{}
	for _, c := range h.Classes {
		if c == "" || c == Unknown || seen[c] {
			return fmt.Errorf("head class list has an empty, reserved or repeated name %q", c)
		}
		seen[c] = true
	}
	for _, c := range h.Imprinted {
		if !seen[c] || c == Background {
			return fmt.Errorf("head marks %q imprinted but has no such class", c)
		}
	}
	for _, vs := range [][]float64{h.Mean, h.Scale, h.W, h.B, h.W1, h.B1, h.W2, h.Centroids} {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return errors.New("head has a non-finite weight")
			}
		}
	}
	if c := h.Calibration; c != nil {
		if !(c.Threshold >= 0 && c.Threshold <= 1) {
			return fmt.Errorf("head threshold %v is not between 0 and 1", c.Threshold)
		}
		if !(c.Distance >= 0) || math.IsInf(c.Distance, 0) {
			return fmt.Errorf("head distance threshold %v", c.Distance)
		}
	}
	return nil
}

// standardise writes (x - Mean) .* Scale into z.
func (h *Head) standardise(x []float32, z []float64) {
	for j, v := range x {
		z[j] = (float64(v) - h.Mean[j]) * h.Scale[j]
	}
}

// logits computes the head's outputs for a standardised vector.
func (h *Head) logits(z []float64) []float64 {
	k := len(h.Classes)
	out := make([]float64, k)
	for c := range k {
		row := h.W[c*h.Dim : (c+1)*h.Dim]
		s := h.B[c]
		for j, v := range z {
			s += row[j] * v
		}
		out[c] = s
	}
	if h.Kind != KindHidden {
		return out
	}
	a := make([]float64, h.Hidden)
	for u := range a {
		row := h.W1[u*h.Dim : (u+1)*h.Dim]
		s := h.B1[u]
		for j, v := range z {
			s += row[j] * v
		}
		a[u] = math.Tanh(s)
	}
	for c := range k {
		row := h.W2[c*h.Hidden : (c+1)*h.Hidden]
		for u, v := range a {
			out[c] += row[u] * v
		}
	}
	return out
}

// Predict returns the class probabilities for one feature vector, in the
// order of h.Classes.
func (h *Head) Predict(x []float32) ([]float64, error) {
	if len(x) != h.Dim {
		return nil, fmt.Errorf("feature vector has %d values, the head takes %d", len(x), h.Dim)
	}
	z := make([]float64, h.Dim)
	h.standardise(x, z)
	p := h.logits(z)
	softmaxInPlace(p)
	return p, nil
}

// Best returns the most probable class and its probability.
func (h *Head) Best(p []float64) (string, float64) {
	bi := argmax(p)
	return h.Classes[bi], p[bi]
}

func argmax(p []float64) int {
	bi := 0
	for i := range p {
		if p[i] > p[bi] {
			bi = i
		}
	}
	return bi
}

// ThresholdFor is the open-set threshold in force: setting when it is above
// 0 (a user's choice), else the calibrated threshold, else
// DefaultThreshold for a head too young to calibrate.
func (h *Head) ThresholdFor(setting float64) float64 {
	switch {
	case setting > 0:
		return math.Min(setting, 1)
	case h.Calibration != nil:
		return h.Calibration.Threshold
	default:
		return DefaultThreshold
	}
}

// DistanceThreshold is the calibrated distance beyond which a vector is
// unlike every labelled class; 0 when there is none (no distance test).
func (h *Head) DistanceThreshold() float64 {
	if h.Calibration == nil || len(h.Centroids) == 0 {
		return 0
	}
	return h.Calibration.Distance
}

// Distance is the root-mean-square distance, in standardised units per
// dimension, from x's standardised vector to the nearest labelled class's
// centroid;
// 0 for a head without centroids.
func (h *Head) Distance(x []float32) (float64, error) {
	if len(x) != h.Dim {
		return 0, fmt.Errorf("feature vector has %d values, the head takes %d", len(x), h.Dim)
	}
	z := make([]float64, h.Dim)
	h.standardise(x, z)
	return h.distance(z), nil
}

func (h *Head) distance(z []float64) float64 {
	if len(h.Centroids) == 0 {
		return 0
	}
	best := math.Inf(1)
	for c, name := range h.Classes {
		if name == Background {
			continue
		}
		row := h.Centroids[c*h.Dim : (c+1)*h.Dim]
		var s float64
		for j, v := range z {
			d := v - row[j]
			s += d * d
		}
		best = math.Min(best, s)
	}
	return math.Sqrt(best / float64(h.Dim))
}

// Reasons a prediction is unknown.
const (
	// WhyUnsure: the best class's probability is below the threshold
	// (the head hesitates between classes).
	WhyUnsure = "not confident enough"
	// WhyFar: the vector is farther from every labelled class's centroid
	// than the calibrated distance (unlike every labelled class).
	WhyFar = "unlike every labelled class"
	// WhyBackground: the vector is more like the reference set's other
	// animals and scenes than like any labelled class.
	WhyBackground = "more like other animals and scenes than any labelled class"
	// WhyNoPet: the detector found no pet in the frame, and a frame
	// without a pet is never named as one (ClassifyOptions.NoPet).
	WhyNoPet = "no pet detected in the frame"
)

// Prediction is one classified feature vector.
type Prediction struct {
	// Label is the best class, or Unknown (see Why).
	Label string `json:"label"`
	// Best is the best class whatever its probability (it may be
	// Background); Nearest is the labelled class with the highest
	// probability, the one a user would correct (never Background).
	Best       string  `json:"best"`
	Nearest    string  `json:"nearest,omitempty"`
	Confidence float64 `json:"confidence"`
	Threshold  float64 `json:"threshold"`
	// Distance is the distance to the nearest class centroid and
	// MaxDistance the calibrated limit (0: no distance test).
	Distance    float64 `json:"distance"`
	MaxDistance float64 `json:"max_distance,omitempty"`
	// Why says why the label is Unknown (WhyUnsure, WhyFar, WhyBackground,
	// WhyNoPet); empty when it is not.
	Why string `json:"why,omitempty"`
	// Scores are the probabilities in the order of the head's classes.
	Scores []float64 `json:"scores"`
}

// Known reports whether the prediction names a class.
func (p Prediction) Known() bool { return p.Label != Unknown }

// ClassifyOptions tune one classification.
type ClassifyOptions struct {
	// Threshold overrides the calibrated probability threshold when above
	// 0 (see ThresholdFor).
	Threshold float64
	// NoPet says that the vector is a whole frame in which the detector
	// found no pet: it may be named only as one of NoPetLabels (labels
	// meaning "no pet here"), never as a pet.
	NoPet       bool
	NoPetLabels []string
}

// Classify predicts x and applies open-set rejection (see ClassifyWith)
// with a threshold setting (0: calibrated).
func (h *Head) Classify(x []float32, setting float64) (Prediction, error) {
	return h.ClassifyWith(x, ClassifyOptions{Threshold: setting})
}

// ClassifyWith predicts x and applies open-set rejection: a vector is
// Unknown when the background class (other animals and scenes) wins, when
// the best probability is below the threshold, when it is farther from
// every labelled class's centroid than the calibrated distance, or, with
// o.NoPet, when it would be named as a pet.
func (h *Head) ClassifyWith(x []float32, o ClassifyOptions) (Prediction, error) {
	if len(x) != h.Dim {
		return Prediction{}, fmt.Errorf("feature vector has %d values, the head takes %d", len(x), h.Dim)
	}
	z := make([]float64, h.Dim)
	h.standardise(x, z)
	p := h.logits(z)
	softmaxInPlace(p)
	best, conf := h.Best(p)
	out := Prediction{Label: best, Best: best, Confidence: conf, Threshold: h.ThresholdFor(o.Threshold),
		Distance: h.distance(z), MaxDistance: h.DistanceThreshold(), Scores: p}
	nearest := -1
	for i, c := range h.Classes {
		if c != Background && (nearest < 0 || p[i] > p[nearest]) {
			nearest = i
		}
	}
	if nearest >= 0 {
		out.Nearest = h.Classes[nearest]
	}
	switch {
	case best == Background:
		out.Label, out.Why = Unknown, WhyBackground
	case conf < out.Threshold:
		out.Label, out.Why = Unknown, WhyUnsure
	case out.MaxDistance > 0 && out.Distance > out.MaxDistance:
		out.Label, out.Why = Unknown, WhyFar
	case o.NoPet && !slices.Contains(o.NoPetLabels, best):
		out.Label, out.Why = Unknown, WhyNoPet
	}
	return out, nil
}

// Labels are the head's classes that are labels (all but Background).
func (h *Head) Labels() []string {
	return slices.DeleteFunc(slices.Clone(h.Classes), func(c string) bool { return c == Background })
}

func softmaxInPlace(v []float64) {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	var sum float64
	for i, x := range v {
		v[i] = math.Exp(x - m)
		sum += v[i]
	}
	for i := range v {
		v[i] /= sum
	}
}

// clone returns a deep copy.
func (h *Head) clone() *Head {
	c := *h
	c.Classes = slices.Clone(h.Classes)
	c.Mean = slices.Clone(h.Mean)
	c.Scale = slices.Clone(h.Scale)
	c.W1 = slices.Clone(h.W1)
	c.B1 = slices.Clone(h.B1)
	c.W2 = slices.Clone(h.W2)
	c.Centroids = slices.Clone(h.Centroids)
	c.W = slices.Clone(h.W)
	c.B = slices.Clone(h.B)
	c.Imprinted = slices.Clone(h.Imprinted)
	if h.Calibration != nil {
		cal := *h.Calibration
		c.Calibration = &cal
	}
	if h.Capacity != nil {
		cp := *h.Capacity
		c.Capacity = &cp
	}
	return &c
}

// ClassIndex returns the index of a class, or -1.
func (h *Head) ClassIndex(name string) int { return slices.Index(h.Classes, name) }

// HeadPath is where the head trained on a backbone is kept in a state
// directory: heads/<backbone identity>.json, one file per backbone, so
// that a rollback to an earlier backbone finds its head again. The agent,
// `whisker import` and updates all read and write heads there.
func HeadPath(stateDir, identity string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, identity)
	return filepath.Join(stateDir, "heads", name+".json")
}

// Save writes the head atomically (temp file, fsync, rename, fsync dir) in
// the current format, making its directory if needed.
func (h *Head) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("save head: %w", err)
	}
	out := *h
	out.Format = HeadFormat
	if err := out.Validate(); err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	data, err := json.Marshal(&out)
	if err != nil {
		return fmt.Errorf("save head %s: %w", path, err)
	}
	return atomicfile.Write(path, data, 0o644)
}

// DecodeHead parses and validates a head file's contents. A format 1 head
// is returned as the equivalent current-format head.
func DecodeHead(data []byte) (*Head, error) {
	var h Head
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	if dec.More() {
		return nil, errors.New("head: trailing data")
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	h.Format = HeadFormat
	return &h, nil
}

// LoadHead reads a head file and checks that it was trained on the given
// backbone (any backbone when backbone is "").
func LoadHead(path, backbone string) (*Head, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h, err := DecodeHead(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if backbone != "" && h.Backbone != backbone {
		return nil, fmt.Errorf("%s: %w (%s, running %s)", path, ErrBackboneMismatch, h.Backbone, backbone)
	}
	return h, nil
}
