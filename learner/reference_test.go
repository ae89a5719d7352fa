package learner

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

func testReference(rng *rand.Rand, n, dim int) *Reference {
	r := &Reference{Backbone: "bb@1", Dim: dim}
	for i := range n {
		x := make([]float32, dim)
		for j := range x {
			x[j] = float32(6 * rng.Float64())
		}
		r.X = append(r.X, x)
		r.Kinds = append(r.Kinds, []string{"cat", "dog", "other", "scene"}[i%4])
	}
	return r
}

func TestReferenceRoundTripWithinHalfAStep(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := testReference(rng, 50, 16)
	path := filepath.Join(t.TempDir(), "backbone.reference")
	if err := r.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadReference(path, "bb@1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Dim != 16 || len(got.X) != 50 || got.Kinds[5] != "dog" || got.Backbone != "bb@1" {
		t.Fatalf("decoded %d vectors of %d, kind %q", len(got.X), got.Dim, got.Kinds[5])
	}
	// Each dimension spans at most 6: one step is 6/255, half a step the
	// largest error.
	for i := range r.X {
		for j := range r.X[i] {
			if d := math.Abs(float64(r.X[i][j] - got.X[i][j])); d > 6.0/255/2+1e-6 {
				t.Fatalf("vector %d value %d off by %g", i, j, d)
			}
		}
	}
	if _, err := LoadReference(path, "other@2"); err == nil {
		t.Fatal("a reference set of another backbone loaded")
	}
}

func TestDecodeReferenceRejectsDamage(t *testing.T) {
	r := testReference(rand.New(rand.NewPCG(5, 6)), 4, 3)
	good, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	for name, data := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-5],
		"flipped":   flipped,
		"foreign":   append([]byte("XXXX"), good[4:]...),
	} {
		if _, err := DecodeReference(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	bad := *r
	bad.Kinds = bad.Kinds[:2]
	if _, err := bad.Encode(); err == nil {
		t.Error("a set with fewer kinds than vectors encoded")
	}
}

func FuzzDecodeReference(f *testing.F) {
	r := testReference(rand.New(rand.NewPCG(7, 8)), 3, 2)
	good, _ := r.Encode()
	f.Add(good)
	f.Add([]byte("WREF\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeReference(data)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decoded an invalid set: %v", err)
		}
	})
}

// strangerWorld is two pets, their strangers and a reference set: pets
// are tight clusters, the reference set and the strangers are spread
// around them.
func strangerWorld(rng *rand.Rand, dim int) (pets *Dataset, strangers [][]float32, ref *Reference) {
	cs := centres(rng, 4, dim)
	pets = blobsAround(rng, cs[:2], 6, 0.3)
	for _, s := range blobsAround(rng, cs[2:], 20, 0.3).X {
		strangers = append(strangers, s)
	}
	ref = &Reference{Backbone: "bb", Dim: dim}
	for i := range 400 {
		x := make([]float32, dim)
		for j := range x {
			x[j] = float32(1.5 * rng.NormFloat64())
		}
		ref.X = append(ref.X, x)
		ref.Kinds = append(ref.Kinds, []string{"cat", "scene"}[i%2])
	}
	return pets, strangers, ref
}

func TestBackgroundClassTakesStrangersAndKeepsPets(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const dim = 24
	pets, strangers, ref := strangerWorld(rng, dim)
	unknownShare := func(h *Head, xs [][]float32) float64 {
		n := 0
		for _, x := range xs {
			if p, _ := h.Classify(x, 0); !p.Known() {
				n++
			}
		}
		return float64(n) / float64(len(xs))
	}
	cfg := FitConfig{Train: TrainConfig{C: 1, Balanced: true}, Select: SelectConfig{MinCalibrate: 1 << 20}}
	plain, _, err := Fit(pets, "bb", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Background.Reference = ref
	withRef, _, err := Fit(pets, "bb", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slicesContain(withRef.Classes, Background) || slicesContain(withRef.Labels(), Background) || len(withRef.Labels()) != 2 {
		t.Fatalf("classes %v, labels %v", withRef.Classes, withRef.Labels())
	}
	before, after := unknownShare(plain, strangers), unknownShare(withRef, strangers)
	t.Logf("strangers unknown: %.2f without the reference set, %.2f with it", before, after)
	if after < before+0.3 || after < 0.8 {
		t.Errorf("strangers unknown %.2f with the reference set, %.2f without", after, before)
	}
	fresh := blobsAround(rand.New(rand.NewPCG(11, 12)), centres(rand.New(rand.NewPCG(11, 12)), 4, dim)[:2], 20, 0.3)
	named := 0
	for i, x := range fresh.X {
		if p, _ := withRef.Classify(x, 0); p.Label == fresh.Labels[i] {
			named++
		}
	}
	if share := float64(named) / float64(len(fresh.X)); share < 0.9 {
		t.Errorf("pets named right %.2f with the reference set", share)
	}
	p, _ := withRef.Classify(strangers[0], 0)
	if p.Known() || p.Why != WhyBackground || p.Nearest == "" || p.Nearest == Background {
		t.Errorf("stranger: %+v", p)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestOnePetAndTheReferenceSetMakeAHead(t *testing.T) {
	const dim = 16
	_, strangers, ref := strangerWorld(rand.New(rand.NewPCG(13, 14)), dim)
	one := blobsAround(rand.New(rand.NewPCG(98, 1)), centres(rand.New(rand.NewPCG(13, 14)), 4, dim)[:1], 12, 0.3)
	if _, _, err := Fit(one, "bb", FitConfig{}, nil); err == nil {
		t.Fatal("one label without a reference set trained")
	}
	h, _, err := Fit(one, "bb", FitConfig{Background: BackgroundConfig{Reference: ref}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Labels(); len(got) != 1 || got[0] != "pet0" {
		t.Fatalf("labels %v", got)
	}
	// Fresh sightings of the same pet (the same centres, as strangerWorld
	// draws them first).
	fresh := blobsAround(rand.New(rand.NewPCG(99, 1)), centres(rand.New(rand.NewPCG(13, 14)), 4, dim)[:1], 40, 0.3)
	named, unknown := 0, 0
	for _, x := range fresh.X {
		if p, _ := h.Classify(x, 0); p.Label == "pet0" {
			named++
		}
	}
	for _, x := range strangers {
		if p, _ := h.Classify(x, 0); !p.Known() {
			unknown++
		}
	}
	t.Logf("one pet: %d of %d of its sightings named, %d of %d strangers unknown", named, len(fresh.X), unknown, len(strangers))
	if named < len(fresh.X)*3/4 || unknown < len(strangers)*9/10 {
		t.Errorf("one pet: %d of %d of its sightings named, %d of %d strangers unknown", named, len(fresh.X), unknown, len(strangers))
	}
}

func TestFitRefusesTheBackgroundLabelAndForeignReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	pets, _, ref := strangerWorld(rng, 8)
	bad := pets.Subset([]int{0, 1, 2, 6, 7, 8})
	bad.Labels[0], bad.Labels[1] = Background, Background
	if _, _, err := Fit(bad, "bb", FitConfig{}, nil); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("a sample labelled %q: %v", Background, err)
	}
	if _, _, err := Fit(pets, "other", FitConfig{Background: BackgroundConfig{Reference: ref}}, nil); err == nil {
		t.Error("a reference set of another backbone was used")
	}
	if err := checkLabel(Background); err == nil {
		t.Errorf("%q accepted as a label", Background)
	}
}

func TestNoPetRuleNeverNamesAPetInAFrameWithoutOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	d := blobs(rng, 3, 10, 6, 0.2)
	for i, l := range d.Labels {
		if l == "pet2" {
			d.Labels[i] = "neither"
		}
	}
	// Not calibrated: the default threshold alone, which these well
	// separated clusters pass.
	h, _, err := Fit(d, "bb", FitConfig{Select: SelectConfig{MinCalibrate: 1 << 20}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range d.X {
		p, err := h.ClassifyWith(x, ClassifyOptions{NoPet: true, NoPetLabels: []string{"neither"}})
		if err != nil {
			t.Fatal(err)
		}
		want := Unknown
		if d.Labels[i] == "neither" {
			want = "neither"
		}
		if p.Label != want {
			t.Fatalf("sample of %s in a frame without a pet: %+v", d.Labels[i], p)
		}
		if want == Unknown && p.Why != WhyNoPet {
			t.Fatalf("reason: %+v", p)
		}
		if q, _ := h.ClassifyWith(x, ClassifyOptions{}); q.Label != d.Labels[i] {
			t.Fatalf("with a pet detected: %+v", q)
		}
	}
}

// BenchmarkClassify is the per-sighting cost of a head of three pets, on
// 1280-d vectors, with and without the background class.
func BenchmarkClassify(b *testing.B) {
	rng := rand.New(rand.NewPCG(19, 20))
	const dim = 1280
	pets, _, ref := strangerWorld(rng, dim)
	pets = join(pets, blobsAround(rng, centres(rng, 1, dim), 6, 0.3))
	for _, bc := range []struct {
		name string
		cfg  FitConfig
	}{{"pets", FitConfig{}}, {"pets+background", FitConfig{Background: BackgroundConfig{Reference: ref}}}} {
		h, _, err := Fit(pets, "bb", bc.cfg, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := h.ClassifyWith(pets.X[i%len(pets.X)], ClassifyOptions{NoPet: i%2 == 0}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
