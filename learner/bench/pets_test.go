package bench

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/embedder"
)

// testPets returns the real feature vectors of the first n dogs and cats,
// from the cache `whisker bench learner` fills or computed now (and cached).
func testPets(t testing.TB, n int) *learner.Dataset {
	t.Helper()
	emb, err := embedder.Open(testenv.BackboneManifest(t), backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	d, err := PetEmbeddings(testenv.File(t, "testdata/dogsNcats.json"), filepath.Join(testenv.Deps(t), "cache"), emb, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.X) != 2*n || len(d.X[0]) != emb.Dim() {
		t.Fatalf("%d vectors of %d values", len(d.X), len(d.X[0]))
	}
	return d
}

func TestPetImagesDecodeAPrefix(t *testing.T) {
	path := testenv.File(t, "testdata/dogsNcats.json")
	few, err := LoadPetImages(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	more, err := LoadPetImages(path, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(few.Dogs) != 3 || len(more.Cats) != 5 {
		t.Fatalf("%d dogs, %d cats", len(few.Dogs), len(more.Cats))
	}
	for i := range 3 {
		if !bytes.Equal(few.Dogs[i].Data, more.Dogs[i].Data) || !bytes.Equal(few.Cats[i].Data, more.Cats[i].Data) {
			t.Fatalf("image %d differs between prefixes", i)
		}
	}
	if bytes.Equal(few.Dogs[0].Data, few.Cats[0].Data) || bytes.Equal(few.Dogs[0].Data, few.Dogs[1].Data) {
		t.Fatal("images are not distinct")
	}
}

func TestEmbeddingCacheRoundTrip(t *testing.T) {
	d := &learner.Dataset{X: [][]float32{{1, 2}, {3, 4}, {5, 6}, {7, 8}}, Labels: []string{DogLabel, DogLabel, CatLabel, CatLabel}}
	enc := encodeCache("bb@1", 2, d)
	got, err := decodeCache(enc, "bb@1")
	if err != nil || len(got.X) != 4 || got.X[3][1] != 8 || got.Labels[2] != CatLabel {
		t.Fatalf("%+v, %v", got, err)
	}
	if _, err := decodeCache(enc, "bb@2"); err == nil {
		t.Fatal("a cache of another backbone was read")
	}
	enc[len(enc)/2] ^= 1
	if _, err := decodeCache(enc, "bb@1"); err == nil {
		t.Fatal("a damaged cache was read")
	}
	if one := firstPerClass(d, 2, 1); one.X[1][0] != 5 || len(one.X) != 2 {
		t.Fatalf("first per class: %+v", one)
	}
}

func FuzzDecodeCache(f *testing.F) {
	d := &learner.Dataset{X: [][]float32{{1, 2}, {3, 4}}, Labels: []string{DogLabel, CatLabel}}
	f.Add(encodeCache("bb@1", 1, d))
	f.Add([]byte(cacheMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeCache(data, "bb@1")
		if err != nil {
			return
		}
		// What decodes has two equal halves of equal-length vectors.
		if len(got.X) == 0 || len(got.X)%2 != 0 || len(got.X) != len(got.Labels) {
			t.Fatalf("%d vectors, %d labels", len(got.X), len(got.Labels))
		}
		for _, x := range got.X {
			if len(x) != len(got.X[0]) {
				t.Fatal("ragged vectors")
			}
		}
	})
}
