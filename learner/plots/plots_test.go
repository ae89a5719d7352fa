package plots

import (
	"context"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/whiskercam/whisker/learner"
)

func report(t *testing.T) *learner.Report {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	d := &learner.Dataset{}
	for c := range 3 {
		centre := make([]float64, 8)
		for j := range centre {
			centre[j] = rng.NormFloat64()
		}
		for range 25 {
			x := make([]float32, 8)
			for j := range x {
				x[j] = float32(centre[j] + 1.2*rng.NormFloat64())
			}
			d.X = append(d.X, x)
			d.Labels = append(d.Labels, fmt.Sprintf("pet %d", c))
		}
	}
	r, err := learner.Evaluate(context.Background(), d, "bb", learner.EvalConfig{Repeats: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPlotsArePNGs(t *testing.T) {
	r := report(t)
	dir := t.TempDir()
	for name, draw := range map[string]func(*learner.Report, string) error{
		"confusion.png":      Confusion,
		"learning-curve.png": LearningCurve,
	} {
		path := filepath.Join(dir, name)
		if err := draw(r, path); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// Something is drawn: not a single colour.
		b := img.Bounds()
		first := img.At(b.Min.X, b.Min.Y)
		varied := false
		for y := b.Min.Y; y < b.Max.Y && !varied; y += 7 {
			for x := b.Min.X; x < b.Max.X; x += 7 {
				if img.At(x, y) != first {
					varied = true
					break
				}
			}
		}
		if b.Dx() < 200 || b.Dy() < 200 || !varied {
			t.Fatalf("%s: %v image, varied %v", name, b, varied)
		}
	}
	if err := LearningCurve(&learner.Report{}, filepath.Join(dir, "x.png")); err == nil {
		t.Fatal("a report without a curve was plotted")
	}
}
