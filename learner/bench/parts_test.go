package bench

import (
	"slices"
	"testing"

	"github.com/whiskercam/whisker/learner"
)

func TestPartsKeepTheNamedParts(t *testing.T) {
	sizes := []int{3, 2, 1}
	x := []float32{0, 1, 2, 10, 11, 20}
	for _, tc := range []struct {
		spec string
		want []float32
	}{
		{"0", []float32{0, 1, 2}},
		{"1", []float32{10, 11}},
		{"2,0", []float32{0, 1, 2, 20}},
		{"0,1,2", x},
		{"1,1", []float32{10, 11}},
	} {
		p, err := ParseParts(tc.spec, sizes)
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		got, err := p.Apply(x)
		if err != nil || !slices.Equal(got, tc.want) || p.Dim() != len(tc.want) {
			t.Errorf("%s: %v (dim %d, err %v), want %v", tc.spec, got, p.Dim(), err, tc.want)
		}
	}
	for _, bad := range []string{"", "3", "-1", "a", "0,,1"} {
		if _, err := ParseParts(bad, sizes); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	p, _ := ParseParts("2,0", sizes)
	if _, err := p.Apply(x[:5]); err == nil {
		t.Error("a vector of the wrong length was cut")
	}
	s := []Sighting{{Features: slices.Clone(x)}}
	ref := &learner.Reference{Backbone: "multi@1", Dim: 6, Kinds: []string{"cat"}, X: [][]float32{slices.Clone(x)}}
	if err := ApplyParts(p, s, ref); err != nil {
		t.Fatal(err)
	}
	if ref.Backbone != "multi@1/parts=0+2" || ref.Dim != 4 || len(s[0].Features) != 4 || len(ref.X[0]) != 4 {
		t.Errorf("after ApplyParts: %q dim %d, %v, %v", ref.Backbone, ref.Dim, s[0].Features, ref.X[0])
	}
}
