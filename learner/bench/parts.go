package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/whiskercam/whisker/learner"
)

// Parts keeps some parts of feature vectors that a multi-depth backbone
// concatenates (its manifest's cut_parts), so that one embedding of the
// photographs serves every combination of depths.
type Parts struct {
	Sizes []int // the size of each part, in order
	Keep  []int // the parts kept, ascending
}

// ParseParts reads a --parts value such as "0,2" against the parts' sizes.
func ParseParts(s string, sizes []int) (Parts, error) {
	p := Parts{Sizes: slices.Clone(sizes)}
	for _, f := range strings.Split(s, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || i < 0 || i >= len(sizes) {
			return Parts{}, fmt.Errorf("parts %q: want part numbers 0 to %d, comma-separated", s, len(sizes)-1)
		}
		if !slices.Contains(p.Keep, i) {
			p.Keep = append(p.Keep, i)
		}
	}
	slices.Sort(p.Keep)
	return p, nil
}

// Dim is the length of the kept vector.
func (p Parts) Dim() int {
	n := 0
	for _, i := range p.Keep {
		n += p.Sizes[i]
	}
	return n
}

// Apply returns the kept parts of x.
func (p Parts) Apply(x []float32) ([]float32, error) {
	total := 0
	for _, n := range p.Sizes {
		total += n
	}
	if len(x) != total {
		return nil, fmt.Errorf("a vector of %d values; the parts add up to %d", len(x), total)
	}
	out := make([]float32, 0, p.Dim())
	for _, i := range p.Keep {
		start := 0
		for _, n := range p.Sizes[:i] {
			start += n
		}
		out = append(out, x[start:start+p.Sizes[i]]...)
	}
	return out, nil
}

// Identity names the features the kept parts make: the backbone's
// identity and the parts.
func (p Parts) Identity(backbone string) string {
	keep := make([]string, len(p.Keep))
	for i, k := range p.Keep {
		keep[i] = strconv.Itoa(k)
	}
	return backbone + "/parts=" + strings.Join(keep, "+")
}

// ApplyParts keeps the parts of every sighting's and reference vector.
func ApplyParts(p Parts, s []Sighting, ref *learner.Reference) error {
	for i := range s {
		x, err := p.Apply(s[i].Features)
		if err != nil {
			return fmt.Errorf("sighting %d: %w", i, err)
		}
		s[i].Features = x
	}
	for i := range ref.X {
		x, err := p.Apply(ref.X[i])
		if err != nil {
			return fmt.Errorf("reference vector %d: %w", i, err)
		}
		ref.X[i] = x
	}
	ref.Dim, ref.Backbone = p.Dim(), p.Identity(ref.Backbone)
	return ref.Validate()
}
