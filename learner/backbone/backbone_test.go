package backbone_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/model/modeltest"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner/backbone"
)

const cutTensor = "FeatureExtractor/MobilenetV2/Conv_1/Relu6"

// cut cuts the detector at cutTensor with the given pooling.
func cut(t *testing.T, pool model.Pool) []byte {
	t.Helper()
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	return res.Model
}

func open(t testing.TB, data []byte) *backbone.Backbone {
	t.Helper()
	b, err := backbone.New(data, backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// ramp is a deterministic input image in [-1, 1].
func ramp(n int, phase float64) []float32 {
	in := make([]float32, n)
	for i := range in {
		in[i] = float32(math.Sin(float64(i)*0.001+phase)) * 0.9
	}
	return in
}

func TestPooledCutEqualsAverageOfUnpooled(t *testing.T) {
	pooled := open(t, cut(t, model.PoolAvg))
	raw := open(t, cut(t, model.PoolNone))
	if got := raw.OutputShapes()[0]; len(got) != 4 || got[1] != 10 || got[2] != 10 || got[3] != 1280 {
		t.Fatalf("un-pooled output shape %v, want [1 10 10 1280]", got)
	}
	if pooled.Dim() != 1280 {
		t.Fatalf("pooled dim %d, want 1280", pooled.Dim())
	}
	in := ramp(300*300*3, 0)
	emb, err := pooled.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	grid, err := raw.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	var maxDiff, norm float64
	for c := range 1280 {
		var sum float64
		for p := range 100 {
			sum += float64(grid[p*1280+c])
		}
		mean := sum / 100
		maxDiff = math.Max(maxDiff, math.Abs(mean-float64(emb[c])))
		norm += mean * mean
	}
	if norm == 0 {
		t.Fatal("the feature map is all zeros; the model did not run")
	}
	if maxDiff > 1e-4 {
		t.Fatalf("pooled embedding differs from the mean of the un-pooled tensor by %g", maxDiff)
	}
	t.Logf("max |pooled - mean(unpooled)| = %.3g over 1280 channels (TFLite %s)", maxDiff, backbone.RuntimeVersion())
}

func TestRejectsBadModelsAndInputs(t *testing.T) {
	good := cut(t, model.PoolAvg)
	truncated := good[:len(good)/2]
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	flipped := append([]byte(nil), good...)
	copy(flipped[4:8], "XXXX")
	for name, data := range map[string][]byte{"empty": nil, "truncated": truncated, "garbage": garbage, "wrong identifier": flipped} {
		if b, err := backbone.New(data, backbone.Options{}); err == nil {
			b.Close()
			t.Errorf("%s: loaded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	b := open(t, good)
	if _, err := b.Embed(make([]float32, 10)); err == nil {
		t.Error("short input accepted")
	}
	b.Close()
	if _, err := b.Embed(ramp(300*300*3, 0)); err == nil {
		t.Error("closed backbone ran")
	}
}

func TestOpenChecksManifest(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bb.tflite")
	man := model.NewManifest(res, path, "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1))
	if err := os.WriteFile(path, res.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := man.Write(model.ManifestPath(path)); err != nil {
		t.Fatal(err)
	}
	b, err := backbone.Open(model.ManifestPath(path), backbone.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest().Identity != man.Identity {
		t.Errorf("identity %q, want %q", b.Manifest().Identity, man.Identity)
	}
	b.Close()

	// A model that no longer matches its manifest is refused.
	corrupt := append([]byte(nil), res.Model...)
	corrupt[len(corrupt)/2] ^= 0xff
	if err := os.WriteFile(path, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := backbone.Open(model.ManifestPath(path), backbone.Options{}); err == nil {
		t.Fatal("corrupt model opened")
	} else {
		t.Log(err)
	}
}

// The runtime executes a model written by the model tools as the pure-Go
// arithmetic says it should.
func TestRunsEncodedTinyModel(t *testing.T) {
	b := open(t, modeltest.TinyBytes())
	in := ramp(4*4*3, 1)
	out, err := b.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range in {
		want := max(v+modeltest.Offset[i%3], 0)
		if math.Abs(float64(out[i]-want)) > 1e-6 {
			t.Fatalf("out[%d] = %g, want %g", i, out[i], want)
		}
	}
}

func embedPhoto(t *testing.T, b *backbone.Backbone, pre *camera.Preprocessor, name string) []float32 {
	t.Helper()
	f, err := camera.ReadImage(testenv.Photo(t, name))
	if err != nil {
		t.Fatal(err)
	}
	in, err := pre.Process(&f, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPhotoEmbeddings(t *testing.T) {
	b, err := backbone.Open(testenv.BackboneManifest(t), backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	man := b.Manifest()
	pre, err := camera.NewPreprocessor(frame.Spec{
		Width: man.Input.Shape[2], Height: man.Input.Shape[1], RGB: man.Preprocess.ColorOrder == "RGB",
		Mean: man.Preprocess.Mean, Std: man.Preprocess.Std, Fit: frame.Fit(man.Preprocess.Resize),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	cat1 := embedPhoto(t, b, pre, "chelsea.png")
	cat2 := embedPhoto(t, b, pre, "chelsea.png")
	dog := embedPhoto(t, b, pre, "dog.jpg")
	if len(cat1) != 1280 {
		t.Fatalf("embedding has %d values", len(cat1))
	}
	for i := range cat1 {
		if cat1[i] != cat2[i] {
			t.Fatalf("the same photograph twice gives different vectors at %d: %g vs %g", i, cat1[i], cat2[i])
		}
	}
	cos := cosine(cat1, dog)
	t.Logf("cosine(cat, dog) = %.3f", cos)
	if cos > 0.9 {
		t.Fatalf("cat and dog embeddings are nearly identical (cosine %.3f)", cos)
	}
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func BenchmarkEmbed(b *testing.B) {
	bb, err := backbone.Open(testenv.BackboneManifest(b), backbone.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	in := ramp(300*300*3, 0)
	b.ResetTimer()
	for range b.N {
		if _, err := bb.Embed(in); err != nil {
			b.Fatal(err)
		}
	}
}
