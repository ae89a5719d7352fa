package backbone_test

import (
	"math"
	"os"
	"testing"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner/backbone"
)

const (
	block13 = "FeatureExtractor/MobilenetV2/expanded_conv_13/expand/Relu6"
	block15 = "FeatureExtractor/MobilenetV2/expanded_conv_15/add"
)

func cutWith(t testing.TB, opt model.CutOptions) []byte {
	t.Helper()
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := model.Cut(src, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res.Model
}

// hostAvg averages an [h][w][c] map over its cells.
func hostAvg(m []float32, c int) []float64 {
	out := make([]float64, c)
	cells := len(m) / c
	for p := range cells {
		for i := range c {
			out[i] += float64(m[p*c+i]) / float64(cells)
		}
	}
	return out
}

func maxRelDiff(got []float32, want []float64) float64 {
	var d, norm float64
	for i, w := range want {
		d = math.Max(d, math.Abs(float64(got[i])-w))
		norm = math.Max(norm, math.Abs(w))
	}
	return d / norm
}

// A multi-depth cut's vector is each tensor's own map, pooled on the host,
// one after the other, then the whole maps.
func TestMultiDepthCutConcatenatesPooledMaps(t *testing.T) {
	multi := open(t, cutWith(t, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, Also: []string{block13}, Maps: []string{block15}}))
	last := open(t, cutWith(t, model.CutOptions{Tensor: cutTensor}))
	mid := open(t, cutWith(t, model.CutOptions{Tensor: block13}))
	whole := open(t, cutWith(t, model.CutOptions{Tensor: block15}))
	if multi.Dim() != 1856+16000 {
		t.Fatalf("dim %d, want %d", multi.Dim(), 1856+16000)
	}
	in := ramp(300*300*3, 0.3)
	got, err := multi.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []struct {
		b        *backbone.Backbone
		from, to int
	}{{last, 0, 1280}, {mid, 1280, 1856}} {
		m, err := part.b.Embed(in)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxRelDiff(got[part.from:part.to], hostAvg(m, part.to-part.from)); d > 1e-5 {
			t.Errorf("values %d-%d differ from the host-pooled map by %g of its largest", part.from, part.to, d)
		}
	}
	m, err := whole.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, len(m))
	for i, v := range m {
		want[i] = float64(v)
	}
	if d := maxRelDiff(got[1856:], want); len(m) != 16000 || d != 0 {
		t.Errorf("the whole map (%d values) differs from the map cut by %g of its largest", len(m), d)
	}
}

// TensorFlow Lite itself sizes every tensor of a resized cut as the model
// tool inferred them, and the pooled cut is the pooled map.
func TestResizedCutRuns(t *testing.T) {
	raw := open(t, cutWith(t, model.CutOptions{Tensor: cutTensor, InputHeight: 448, InputWidth: 448}))
	if got := raw.OutputShapes()[0]; len(got) != 4 || got[1] != 14 || got[2] != 14 || got[3] != 1280 {
		t.Fatalf("output shape %v, want [1 14 14 1280]", got)
	}
	if got := raw.InputShape(); got[1] != 448 || got[2] != 448 {
		t.Fatalf("input shape %v", got)
	}
	pooled := open(t, cutWith(t, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, InputHeight: 448, InputWidth: 448}))
	in := ramp(448*448*3, 0.7)
	m, err := raw.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pooled.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxRelDiff(got, hostAvg(m, 1280)); d > 1e-5 {
		t.Errorf("pooled cut differs from the host-pooled map by %g of its largest", d)
	}
	// A 300-pixel input through the resized model is refused, not padded.
	if _, err := pooled.Embed(ramp(300*300*3, 0)); err == nil {
		t.Error("a 300x300 input was taken by a 448x448 model")
	}
}

// BenchmarkCuts compares the cost of one embedding through the cuts the
// feature experiments tried: the default (Conv_1 at 300x300), earlier
// depths pooled beside it, larger inputs, and Conv_1 with the map it is
// computed from kept whole.
func BenchmarkCuts(b *testing.B) {
	const p = "FeatureExtractor/MobilenetV2/"
	depths := []string{p + "expanded_conv_16/expand/Relu6", p + "expanded_conv_13/expand/Relu6", p + "expanded_conv_6/expand/Relu6", p + "expanded_conv_3/expand/Relu6"}
	block16 := p + "expanded_conv_16/project/BatchNorm/FusedBatchNormV3;" + p + "expanded_conv_16/project/Conv2D1"
	for _, bc := range []struct {
		name string
		opt  model.CutOptions
	}{
		{"conv1-300", model.CutOptions{}},
		{"conv1+4depths-300", model.CutOptions{Also: depths}},
		{"conv1+map16-300", model.CutOptions{Maps: []string{block16}}},
		{"conv1-384", model.CutOptions{InputHeight: 384, InputWidth: 384}},
		{"conv1-448", model.CutOptions{InputHeight: 448, InputWidth: 448}},
		{"conv1+4depths-448", model.CutOptions{Also: depths, InputHeight: 448, InputWidth: 448}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opt := bc.opt
			opt.Tensor, opt.Pool = cutTensor, model.PoolAvg
			bb := open(b, cutWith(b, opt))
			in := bb.InputShape()
			x := ramp(in[1]*in[2]*3, 0)
			b.ResetTimer()
			for range b.N {
				if _, err := bb.Embed(x); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
