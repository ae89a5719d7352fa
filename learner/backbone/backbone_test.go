package backbone_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/whiskercam/whisker/firmware/model"
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

func open(t *testing.T, data []byte) *backbone.Backbone {
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
