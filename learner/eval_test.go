package learner

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEvaluateReport(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	// Three classes of 30, overlapping enough for mistakes.
	d := blobs(rng, 3, 30, 10, 1.6)
	r, err := Evaluate(context.Background(), d, "bb", EvalConfig{Train: TrainConfig{Balanced: true}, Repeats: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Samples != 90 || len(r.Classes) != 3 || r.Folds != 5 || r.Kind != KindLinear {
		t.Fatalf("report %+v", r)
	}
	// The confusion matrix accounts for every sample, and precision and
	// recall are read off it.
	total, diag := 0, 0
	for i, row := range r.Confusion {
		rowSum := 0
		for j, n := range row {
			total += n
			rowSum += n
			if i == j {
				diag += n
			}
		}
		if rowSum != 30 || r.PerClass[i].Samples != 30 {
			t.Errorf("class %s: row sums to %d", r.Classes[i], rowSum)
		}
		if want := float64(row[i]) / float64(rowSum); r.PerClass[i].Recall != want {
			t.Errorf("recall %v, want %v", r.PerClass[i].Recall, want)
		}
	}
	if total != 90 || r.Accuracy != float64(diag)/90 {
		t.Errorf("confusion total %d, accuracy %v vs diagonal %d", total, r.Accuracy, diag)
	}
	if r.Accuracy < 0.6 || r.Accuracy > 0.999 {
		t.Errorf("accuracy %v: the data should be learnable but not trivial", r.Accuracy)
	}
	// Learning curve: the points below the smallest class, rising overall.
	if len(r.Curve) != 6 || r.Curve[0].PerClass != 1 || r.Curve[len(r.Curve)-1].PerClass != 20 {
		t.Fatalf("curve %+v", r.Curve)
	}
	if r.Curve[len(r.Curve)-1].Accuracy <= r.Curve[0].Accuracy {
		t.Errorf("accuracy does not rise with labels: %+v", r.Curve)
	}
	if r.Calibration == nil || len(r.Advice) == 0 {
		t.Fatal("no calibration or advice")
	}
	// Every unknown has a reason, and a class with unknowns gets advice.
	for _, c := range r.PerClass {
		if sum := c.UnknownUnsure + c.UnknownFar + c.UnknownBackground; math.Abs(sum-c.Unknown) > 1e-9 {
			t.Errorf("%s: reasons add up to %v, unknown %v", c.Label, sum, c.Unknown)
		}
		advised := false
		for _, a := range r.Advice {
			advised = advised || strings.HasPrefix(a, c.Label+": ")
		}
		if advised != (c.Unknown > 0) {
			t.Errorf("%s: unknown %v, advice %q", c.Label, c.Unknown, r.Advice)
		}
		if c.UnknownUnsure > 0 && (c.Against == "" || c.Against == c.Label) {
			t.Errorf("%s: unsure against %q", c.Label, c.Against)
		}
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Confusion", "precision", "Learning curve", "Unknown when"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
}

func TestEvaluateNeedsTwoPerClass(t *testing.T) {
	d := &Dataset{X: [][]float32{{1}, {2}, {3}}, Labels: []string{"a", "a", "b"}}
	if _, err := Evaluate(context.Background(), d, "bb", EvalConfig{}); err != ErrTooFewForCV {
		t.Fatalf("err = %v", err)
	}
}
