package backbone_test

import (
	"image"
	"math"
	"testing"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/model/modeltest"
	"github.com/whiskercam/whisker/firmware/tfl"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner/backbone"
)

func preprocessor(t *testing.T, man *model.Manifest) *camera.Preprocessor {
	t.Helper()
	p, err := camera.NewPreprocessor(frame.Spec{
		Width: man.Input.Shape[2], Height: man.Input.Shape[1], RGB: man.Preprocess.ColorOrder == "RGB",
		Mean: man.Preprocess.Mean, Std: man.Preprocess.Std, Fit: frame.Fit(man.Preprocess.Resize),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// The backbone that also detects yields, from one run, detections and the
// same embedding as the embedding-only backbone: the same features, so
// both share an identity.
func TestDetectingBackboneEmbedsAsTheEmbeddingBackbone(t *testing.T) {
	det, err := backbone.Open(testenv.DetectorBackbone(t), backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	emb, err := backbone.Open(testenv.BackboneManifest(t), backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	if !det.Detects() || emb.Detects() || det.Dim() != 1280 {
		t.Fatalf("detects %v / %v, dim %d", det.Detects(), emb.Detects(), det.Dim())
	}
	if h, w := det.Grid(); h != 10 || w != 10 {
		t.Fatalf("grid %dx%d", h, w)
	}
	if det.Manifest().Identity != emb.Manifest().Identity {
		t.Errorf("identities differ: %s vs %s", det.Manifest().Identity, emb.Manifest().Identity)
	}
	pre := preprocessor(t, det.Manifest())
	f, err := camera.ReadImage(testenv.Photo(t, "person.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := pre.Process(&f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var r backbone.Result
	if err := det.Infer(frame.Input{Float: in}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Boxes) != 1917*4 || len(r.Scores) != 1917*24 || len(r.Map) != 10*10*1280 {
		t.Fatalf("outputs: %d boxes, %d scores, %d map values", len(r.Boxes), len(r.Scores), len(r.Map))
	}
	want, err := emb.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	var maxDiff float64
	for i := range want {
		maxDiff = math.Max(maxDiff, math.Abs(float64(want[i]-r.Embedding[i])))
	}
	if maxDiff > 1e-4 {
		t.Errorf("embeddings differ by up to %g", maxDiff)
	}
	// A region's embedding is the mean of the cells under it, computed
	// here cell by cell: box rows 0.25-0.55 touch cells 2-5, columns
	// 0.1-0.3 cells 1-2.
	reg, err := r.RegionEmbedding(0.25, 0.1, 0.55, 0.3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 1280; c += 97 {
		var sum float64
		for y := 2; y <= 5; y++ {
			for x := 1; x <= 2; x++ {
				sum += float64(r.Map[(y*10+x)*1280+c])
			}
		}
		if d := math.Abs(sum/8 - float64(reg[c])); d > 1e-5 {
			t.Fatalf("region channel %d: %g, want %g", c, reg[c], sum/8)
		}
	}
	if _, err := r.RegionEmbedding(0.5, 0.5, 0.5, 0.6, nil); err == nil {
		t.Error("empty region accepted")
	}
	// A manifest that names an output the model lacks is refused.
	man := *det.Manifest()
	d := *man.Detection
	d.Boxes = "no/such/output"
	man.Detection = &d
	_, data, err := model.LoadBackbone(testenv.DetectorBackbone(t))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := backbone.NewWithManifest(data, &man, backbone.Options{}); err == nil {
		b.Close()
		t.Error("manifest with a missing detection output accepted")
	}
}

// 8-bit models: the input is fed as the preprocessor quantises it, and
// outputs come back dequantised, as the arithmetic says.
func TestQuantisedInputAndOutput(t *testing.T) {
	for _, typ := range []tfl.TensorType{tfl.TensorTypeUINT8, tfl.TensorTypeINT8} {
		b, err := backbone.New(model.Encode(modeltest.TinyQuantized(typ)), backbone.Options{Threads: 1})
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		defer b.Close()
		qi, qo := modeltest.QuantIn(typ), modeltest.QuantOut(typ)
		name, q := b.InputType()
		if name != typ.String() || q.Scale != qi.Scale || int64(q.Zero) != qi.Zero {
			t.Fatalf("%s: input type %s %+v", typ, name, q)
		}
		// Pixels 0..255 mapped to [-1,1], then quantised for the input.
		spec := frame.Spec{Width: 4, Height: 4, RGB: true, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5},
			Type: map[tfl.TensorType]string{tfl.TensorTypeUINT8: frame.Uint8, tfl.TensorTypeINT8: frame.Int8}[typ], Scale: q.Scale, Zero: q.Zero}
		pre, err := camera.NewPreprocessor(spec)
		if err != nil {
			t.Fatal(err)
		}
		defer pre.Close()
		f := frame.Frame{Width: 4, Height: 4, Stride: 12, Data: make([]byte, 48)}
		for i := range f.Data {
			f.Data[i] = byte(i * 5)
		}
		var in frame.Input
		if err := pre.Prepare(&f, image.Rectangle{}, &in); err != nil {
			t.Fatal(err)
		}
		var r backbone.Result
		if err := b.Infer(frame.Input{Quantized: in.Quantized}, &r); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		lo, hi := 0.0, 255.0
		if typ == tfl.TensorTypeINT8 {
			lo, hi = -128, 127
		}
		for i, qv := range in.Quantized {
			x := float64(qv)
			if typ == tfl.TensorTypeINT8 {
				x = float64(int8(qv))
			}
			real := float64(qi.Scale) * (x - float64(qi.Zero))
			shifted := real + float64(modeltest.Offset[i%3])
			qout := math.Min(math.Max(math.Round(shifted/float64(qo.Scale))+float64(qo.Zero), lo), hi)
			want := float64(qo.Scale) * (qout - float64(qo.Zero))
			if d := math.Abs(want - float64(r.Embedding[i])); d > float64(qo.Scale)*0.51 {
				t.Fatalf("%s: output %d is %g, want %g", typ, i, r.Embedding[i], want)
			}
		}
		// Float input to an 8-bit model is quantised by the backbone.
		var r2 backbone.Result
		fl := make([]float32, 48)
		for i := range fl {
			fl[i] = float32(i)/47*2 - 1
		}
		if err := b.Infer(frame.Input{Float: fl}, &r2); err != nil {
			t.Fatal(err)
		}
		if len(r2.Embedding) != 48 {
			t.Fatalf("%d outputs", len(r2.Embedding))
		}
	}
}
