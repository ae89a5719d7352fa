package learner

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestImprintNamesANewClassAtOnce(t *testing.T) {
	for _, kind := range []string{KindLinear, KindHidden} {
		for _, shots := range []int{1, 3} {
			rng := rand.New(rand.NewPCG(41, uint64(shots)))
			cs := centres(rng, 3, 40)
			old := blobsAround(rng, cs[:2], 30, 1)
			h, err := Train(old, "bb", TrainConfig{Kind: kind, Seed: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			fresh := blobsAround(rng, cs, 40, 1) // pet0, pet1 and the new pet2
			var newX [][]float32
			for i, l := range fresh.Labels {
				if l == "pet2" && len(newX) < shots {
					newX = append(newX, fresh.X[i])
				}
			}
			im, err := h.Imprint("pet2", newX)
			if err != nil {
				t.Fatal(err)
			}
			if err := im.Validate(); err != nil {
				t.Fatalf("imprinted head invalid: %v", err)
			}
			if !slices.Equal(im.Imprinted, []string{"pet2"}) || len(h.Classes) != 2 {
				t.Fatalf("imprinted %v; the original head changed to %v", im.Imprinted, h.Classes)
			}
			// Its own samples win by the margin.
			for _, x := range newX {
				p, _ := im.Predict(x)
				if best, conf := im.Best(p); best != "pet2" || conf < 0.5 {
					t.Fatalf("%s, %d shots: own sample predicted %s %.2f", kind, shots, best, conf)
				}
			}
			correct := map[string]int{}
			for i, x := range fresh.X {
				p, _ := im.Predict(x)
				if best, _ := im.Best(p); best == fresh.Labels[i] {
					correct[fresh.Labels[i]]++
				}
			}
			t.Logf("%s, %d shots: correct of 40: %v", kind, shots, correct)
			// The old classes keep their accuracy; the new one is named
			// far more often than chance (1 in 3): a one-shot direction is
			// noisy, so the floor is lower with one sample.
			floor := map[string]int{"pet0": 36, "pet1": 36, "pet2": 24}
			if shots > 1 {
				floor["pet2"] = 34
			}
			for l, f := range floor {
				if correct[l] < f {
					t.Errorf("%s, %d shots: %s right %d of 40 after imprinting, want at least %d", kind, shots, l, correct[l], f)
				}
			}
			// Training then refines it; the imprinted mark goes away.
			all := &Dataset{X: append(append([][]float32{}, old.X...), newX...), Labels: append(append([]string{}, old.Labels...), slices.Repeat([]string{"pet2"}, len(newX))...)}
			tr, err := Train(all, "bb", TrainConfig{Kind: kind, Seed: 1}, im)
			if err != nil {
				t.Fatal(err)
			}
			if len(tr.Imprinted) != 0 || tr.ClassIndex("pet2") < 0 {
				t.Fatalf("trained head: classes %v imprinted %v", tr.Classes, tr.Imprinted)
			}
		}
	}
}

func TestHeadEditsKeepTheRestOfTheFunction(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	for _, kind := range []string{KindLinear, KindHidden} {
		d := blobs(rng, 3, 20, 6, 1)
		h, err := Train(d, "bb", TrainConfig{Kind: kind, Seed: 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		x := d.X[0]
		p, _ := h.Predict(x)

		r := h.Renamed("pet1", "Misty")
		if r.ClassIndex("Misty") != 1 || h.ClassIndex("pet1") != 1 {
			t.Fatalf("rename: %v (original %v)", r.Classes, h.Classes)
		}
		pr, _ := r.Predict(x)
		if !slices.Equal(p, pr) {
			t.Fatalf("renaming changed the probabilities: %v vs %v", p, pr)
		}
		w := h.WithoutClass("pet2")
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		pw, _ := w.Predict(x)
		// Removing a class renormalises the others.
		if got, want := pw[0]/pw[1], p[0]/p[1]; got/want < 1-1e-9 || got/want > 1+1e-9 {
			t.Fatalf("removing a class changed the odds of the others: %v vs %v", got, want)
		}
		if w.WithoutClass("pet1") != nil {
			t.Fatal("a head with one class left")
		}
		if m := h.Renamed("pet0", "pet1"); m.ClassIndex("pet0") >= 0 || len(m.Classes) != 2 {
			t.Fatalf("merge: %v", m.Classes)
		}
	}
}
