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
	"time"

	"github.com/whiskercam/whisker/internal/atomicfile"
)

// HeadFormat is the head file format this package writes and reads.
const HeadFormat = 1

// Head kinds.
const (
	KindLinear = "linear" // multinomial logistic regression
)

// Head is a trained classifier over one backbone's feature vectors:
// p = softmax(W * ((x - Mean) .* Scale) + B).
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
	// Training facts, for reports.
	Samples   int       `json:"samples"`
	C         float64   `json:"c"`
	Trained   time.Time `json:"trained"`
	TrainTime float64   `json:"train_seconds"`
	Iters     int       `json:"iterations"`
	Loss      float64   `json:"loss"`
}

// ErrBackboneMismatch is returned for a head trained on another backbone.
var ErrBackboneMismatch = errors.New("head was trained on a different backbone")

// Validate checks a head's internal consistency.
func (h *Head) Validate() error {
	k := len(h.Classes)
	switch {
	case h.Format != HeadFormat:
		return fmt.Errorf("head format %d, this build reads %d", h.Format, HeadFormat)
	case h.Kind != KindLinear:
		return fmt.Errorf("unknown head kind %q", h.Kind)
	case h.Backbone == "":
		return errors.New("head has no backbone identity")
	case h.Dim <= 0 || h.Dim > 1<<20:
		return fmt.Errorf("head dimension %d", h.Dim)
	case k < 2:
		return fmt.Errorf("head has %d classes, want at least 2", k)
	case len(h.Mean) != h.Dim || len(h.Scale) != h.Dim:
		return fmt.Errorf("head standardisation has %d/%d values, want %d", len(h.Mean), len(h.Scale), h.Dim)
	case len(h.W) != k*h.Dim || len(h.B) != k:
		return fmt.Errorf("head weights are %d+%d values, want %d+%d", len(h.W), len(h.B), k*h.Dim, k)
	}
	seen := map[string]bool{}
	for _, c := range h.Classes {
		if c == "" || seen[c] {
			return fmt.Errorf("head class list has an empty or repeated name %q", c)
		}
		seen[c] = true
	}
	for _, vs := range [][]float64{h.Mean, h.Scale, h.W, h.B} {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return errors.New("head has a non-finite weight")
			}
		}
	}
	return nil
}

// Predict returns the class probabilities for one feature vector, in the
// order of h.Classes.
func (h *Head) Predict(x []float32) ([]float64, error) {
	if len(x) != h.Dim {
		return nil, fmt.Errorf("feature vector has %d values, the head takes %d", len(x), h.Dim)
	}
	z := make([]float64, h.Dim)
	for j, v := range x {
		z[j] = (float64(v) - h.Mean[j]) * h.Scale[j]
	}
	k := len(h.Classes)
	p := make([]float64, k)
	for c := range k {
		row := h.W[c*h.Dim : (c+1)*h.Dim]
		s := h.B[c]
		for j, v := range z {
			s += row[j] * v
		}
		p[c] = s
	}
	softmaxInPlace(p)
	return p, nil
}

// Best returns the most probable class and its probability.
func (h *Head) Best(p []float64) (string, float64) {
	bi := 0
	for i := range p {
		if p[i] > p[bi] {
			bi = i
		}
	}
	return h.Classes[bi], p[bi]
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

// Save writes the head atomically (temp file, fsync, rename, fsync dir).
func (h *Head) Save(path string) error {
	if err := h.Validate(); err != nil {
		return fmt.Errorf("save head: %w", err)
	}
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

// DecodeHead parses and validates a head file's contents.
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
