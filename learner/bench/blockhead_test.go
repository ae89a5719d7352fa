package bench

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/whiskercam/whisker/learner"
)

func TestBlockObjectiveGradientMatchesFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, k, dim, units, ch, cells = 7, 3, 5, 4, 6, 3
	d := blockData{Z: mat.NewDense(n, dim, nil), M: mat.NewDense(n*cells, ch, nil), y: make([]int, n), sw: make([]float64, n)}
	for _, m := range []*mat.Dense{d.Z, d.M} {
		raw := m.RawMatrix().Data
		for i := range raw {
			raw[i] = rng.NormFloat64()
		}
	}
	for i := range n {
		d.y[i], d.sw[i] = i%k, 0.5+rng.Float64()
	}
	o := newBlockObjective(d, k, dim, units, ch, cells, 0.3)
	x := make([]float64, o.size())
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	g := make([]float64, len(x))
	o.grad(g, x)
	const h = 1e-6
	worst := 0.0
	for i := range x {
		xp, xm := append([]float64(nil), x...), append([]float64(nil), x...)
		xp[i] += h
		xm[i] -= h
		num := (o.value(xp) - o.value(xm)) / (2 * h)
		worst = math.Max(worst, math.Abs(num-g[i])/math.Max(1e-3, math.Abs(num)))
	}
	if worst > 1e-4 {
		t.Errorf("gradient differs from finite differences by %g (relative)", worst)
	}
}

func TestBlockPoolMapAveragesCells(t *testing.T) {
	cfg := BlockConfig{Grid: 3, Channels: 1, Pool: 2}
	m := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	got := make([]float64, cfg.cells())
	cfg.poolMap(m, got)
	want := []float64{(1 + 2 + 4 + 5) / 4.0, (3 + 6) / 2.0, (7 + 8) / 2.0, 9}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 {
			t.Fatalf("pooled %v, want %v", got, want)
		}
	}
}

// Two classes whose maps have the same average but differ in where
// features meet: in one, channels 0 and 1 light up in the same cell; in
// the other, in different cells. Pooled vectors cannot tell them apart;
// units trained on the map can.
func TestBlockHeadLearnsWhatPoolingHides(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const grid, ch = 4, 4
	sample := func(together bool) ([]float32, []float32) {
		m := make([]float32, grid*grid*ch)
		for i := range m {
			m[i] = float32(0.1 * rng.NormFloat64())
		}
		a := rng.IntN(grid * grid)
		b := a
		if !together {
			for b == a {
				b = rng.IntN(grid * grid)
			}
		}
		m[a*ch] += 4
		m[b*ch+1] += 4
		z := make([]float32, ch)
		for c := range grid * grid {
			for j := range ch {
				z[j] += m[c*ch+j] / (grid * grid)
			}
		}
		return z, m
	}
	make1 := func(n int) (zs, ms [][]float32, labels []string) {
		for i := range n {
			z, m := sample(i%2 == 0)
			zs, ms = append(zs, z), append(ms, m)
			labels = append(labels, []string{"apart", "together"}[(i+1)%2])
		}
		return
	}
	zs, ms, labels := make1(200)
	lin, err := learner.Train(&learner.Dataset{X: zs, Labels: labels}, "test", learner.TrainConfig{Balanced: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bh, err := TrainBlock(zs, ms, labels, lin, BlockConfig{Grid: grid, Channels: ch, Pool: 1, Units: 8, MaxIter: 300, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tz, tm, tl := make1(200)
	var linOK, blockOK int
	for i := range tz {
		p, _ := lin.Classify(tz[i], 0)
		if p.Best == tl[i] {
			linOK++
		}
		probs, err := bh.Probs(tz[i], tm[i])
		if err != nil {
			t.Fatal(err)
		}
		if bh.Classes()[argmax(probs)] == tl[i] {
			blockOK++
		}
	}
	t.Logf("held out: linear %d/200, block %d/200 (%d iterations)", linOK, blockOK, bh.Iters)
	if linOK > 130 || blockOK < 180 {
		t.Errorf("held out: linear %d/200 (want chance), block %d/200 (want at least 180)", linOK, blockOK)
	}
}
