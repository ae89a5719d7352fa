package main

import (
	"strings"
	"testing"
)

func TestCompareEmbeddings(t *testing.T) {
	ref := &Embeddings{Format: 1, Backbone: "bb@1", TFLite: "2.2.0", Arch: "amd64", Delegate: "none", Images: []Image{
		{File: "cat.png", SHA256: "aa", Embedding: []float32{0, 1, 2}},
		{File: "dog.jpg", SHA256: "bb", Embedding: []float32{3, 4, 5}},
	}}
	for _, tc := range []struct {
		name   string
		got    Embeddings
		errHas string // "" = passes
	}{
		{"equal", Embeddings{Backbone: "bb@1", Images: []Image{{File: "cat.png", SHA256: "aa", Embedding: []float32{0, 1, 2}}}}, ""},
		{"within tolerance", Embeddings{Backbone: "bb@1", Images: []Image{{File: "dog.jpg", SHA256: "bb", Embedding: []float32{3, 4.00005, 5}}}}, ""},
		{"beyond tolerance", Embeddings{Backbone: "bb@1", Images: []Image{{File: "dog.jpg", SHA256: "bb", Embedding: []float32{3, 4.01, 5}}}}, "dog.jpg: values differ by up to 0.01 (at 1)"},
		{"NaN", Embeddings{Backbone: "bb@1", Images: []Image{{File: "cat.png", SHA256: "aa", Embedding: []float32{0, float32(nan()), 2}}}}, "cat.png: values differ"},
		{"other backbone", Embeddings{Backbone: "bb@2"}, "backbone bb@1"},
		{"other file", Embeddings{Backbone: "bb@1", Images: []Image{{File: "cat.png", SHA256: "cc", Embedding: []float32{0, 1, 2}}}}, "embedded another file"},
		{"missing", Embeddings{Backbone: "bb@1", Images: []Image{{File: "bird.jpg", SHA256: "dd"}}}, "not in the reference"},
		{"length", Embeddings{Backbone: "bb@1", Images: []Image{{File: "cat.png", SHA256: "aa", Embedding: []float32{0, 1}}}}, "3 values in the reference, 2 here"},
	} {
		var out strings.Builder
		err := compareEmbeddings(&out, ref, &tc.got, 1e-4)
		switch {
		case tc.errHas == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
			t.Errorf("%s: error %v, want it to say %q", tc.name, err, tc.errHas)
		}
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}
