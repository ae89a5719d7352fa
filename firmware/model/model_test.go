package model_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/model/modeltest"
	"github.com/whiskercam/whisker/firmware/tfl"
	"github.com/whiskercam/whisker/internal/testenv"
)

const cutTensor = "FeatureExtractor/MobilenetV2/Conv_1/Relu6"

func TestInspectSourceAndCut(t *testing.T) {
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := model.Inspect(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != "normalized_input_image_tensor" || !equalInts(info.Inputs[0].Shape, 1, 300, 300, 3) {
		t.Errorf("inputs %+v", info.Inputs)
	}
	if len(info.Outputs) != 2 || !equalInts(info.Outputs[0].Shape, 1, 1917, 4) || !equalInts(info.Outputs[1].Shape, 1, 1917, 24) {
		t.Errorf("outputs %+v", info.Outputs)
	}
	if len(info.Operators) != 241 || info.OpCounts["CONV_2D"] != 55 || info.OpCounts["DEQUANTIZE"] != 144 {
		t.Errorf("operators: %d, counts %v", len(info.Operators), info.OpCounts)
	}

	res, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg})
	if err != nil {
		t.Fatal(err)
	}
	cut, err := model.Inspect(res.Model)
	if err != nil {
		t.Fatal(err)
	}
	if len(cut.Outputs) != 1 || !equalInts(cut.Outputs[0].Shape, 1, 1280) || res.EmbeddingDim != 1280 {
		t.Errorf("cut outputs %+v, dim %d", cut.Outputs, res.EmbeddingDim)
	}
	if cut.OpCounts["MEAN"] != 1 || len(cut.Operators) != res.KeptOps+1 || res.KeptOps+res.DroppedOps != 241 {
		t.Errorf("cut operators %v (kept %d dropped %d)", cut.OpCounts, res.KeptOps, res.DroppedOps)
	}
	if last := cut.Operators[len(cut.Operators)-1]; last.Op != "MEAN" || last.Options != "ReducerOptions" {
		t.Errorf("last operator %+v, want the MEAN", last)
	}
	// The detector heads are gone.
	for _, tt := range cut.Tensors {
		if strings.HasPrefix(tt.Name, "BoxPredictor") && !strings.Contains(tt.Name, "FeatureExtractor") {
			t.Errorf("cut model still has detector tensor %q", tt.Name)
		}
	}
	var table bytes.Buffer
	if err := cut.WriteTable(&table, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"INPUTS", "normalized_input_image_tensor", "[1,1280]", "MEAN", "OPERATORS (167)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("inspect table lacks %q", want)
		}
	}
	// Cutting is deterministic.
	again, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg})
	if err != nil || !bytes.Equal(again.Model, res.Model) {
		t.Errorf("a second cut differs (err %v)", err)
	}
}

func equalInts(got []int, want ...int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestEncodeAlignsBuffersAndRoundTrips(t *testing.T) {
	data := modeltest.TinyBytes()
	m, err := model.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	raw := tfl.GetRootAsModel(data, 0)
	var b tfl.Buffer
	for i := 0; i < raw.BuffersLength(); i++ {
		raw.Buffers(&b, i)
		if d := b.DataBytes(); len(d) > 0 {
			off := len(data) - cap(d) // position of the data in the file
			if off%16 != 0 {
				t.Errorf("buffer %d data at offset %d, not 16-byte aligned", i, off)
			}
		}
	}
	if again := model.Encode(m); !bytes.Equal(again, data) {
		t.Error("decode and re-encode changed the model")
	}
}

func TestCutTinyDropsUnneededOperators(t *testing.T) {
	res, err := model.Cut(modeltest.TinyBytes(), model.CutOptions{Tensor: "shifted", Pool: model.PoolNone})
	if err != nil {
		t.Fatal(err)
	}
	if res.KeptOps != 1 || res.DroppedOps != 1 {
		t.Fatalf("kept %d, dropped %d", res.KeptOps, res.DroppedOps)
	}
	info, _ := model.Inspect(res.Model)
	if len(info.Tensors) != 3 { // image, offset, shifted
		t.Errorf("cut model keeps %d tensors, want 3", len(info.Tensors))
	}
}

func TestCutErrors(t *testing.T) {
	tiny := modeltest.TinyBytes()
	for _, tc := range []struct {
		name   string
		data   []byte
		opt    model.CutOptions
		reason string
	}{
		{"no such tensor", tiny, model.CutOptions{Tensor: "nope"}, "no tensor named"},
		{"ambiguous prefix", tiny, model.CutOptions{Tensor: "o"}, "tensors start with"},
		{"pool of a 1-D tensor", tiny, model.CutOptions{Tensor: "offset", Pool: model.PoolAvg}, "does not depend on any model input"},
		{"not a model", []byte("hello, this is not a model at all"), model.CutOptions{Tensor: "x"}, "not a TensorFlow Lite model"},
	} {
		_, err := model.Cut(tc.data, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: err %v, want one mentioning %q", tc.name, err, tc.reason)
		}
	}
}

// An operator whose option table this build does not declare is refused by
// name, never written without its options.
func TestCutRefusesUnhandledOptions(t *testing.T) {
	data := modeltest.TinyBytes()
	raw := tfl.GetRootAsModel(data, 0)
	var sg tfl.SubGraph
	var op tfl.Operator
	raw.Subgraphs(&sg, 0)
	sg.Operators(&op, 0)
	// Type 3 is ConcatEmbeddingsOptions, which schema.fbs leaves out.
	if !op.MutateBuiltinOptionsType(3) {
		t.Fatal("cannot patch the option type")
	}
	info, err := model.Inspect(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Operators[0].Options; !strings.Contains(got, "not handled") {
		t.Errorf("inspect shows options %q", got)
	}
	_, err = model.Cut(data, model.CutOptions{Tensor: "shifted"})
	if !errors.Is(err, model.ErrUnsupported) || !strings.Contains(err.Error(), "operator 0 (ADD)") || !strings.Contains(err.Error(), "option table 3") {
		t.Fatalf("cut: %v", err)
	}
	// Cutting where that operator is not needed is fine... it is always
	// needed here, so check the other way round: the second one.
	data = modeltest.TinyBytes()
	raw = tfl.GetRootAsModel(data, 0)
	raw.Subgraphs(&sg, 0)
	sg.Operators(&op, 1)
	op.MutateBuiltinOptionsType(3)
	if _, err := model.Cut(data, model.CutOptions{Tensor: "shifted"}); err != nil {
		t.Fatalf("cut that drops the unhandled operator: %v", err)
	}
}

func TestParseRejectsDamage(t *testing.T) {
	good := modeltest.TinyBytes()
	for i := 0; i < len(good)-16; i += 7 { // the last bytes may be padding
		if _, err := model.Parse(good[:i]); err == nil {
			t.Fatalf("model truncated to %d bytes parsed", i)
		}
	}
	// Flip bytes one at a time: never a panic, and an error or a model
	// that still validates.
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0xA5
		if m, err := model.Parse(bad); err == nil && m == nil {
			t.Fatalf("flip at %d: nil model without error", i)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(modeltest.TinyBytes())
	f.Add([]byte("\x10\x00\x00\x00TFL3\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := model.Parse(data)
		if err != nil {
			return
		}
		// What parses can be inspected and re-encoded.
		if _, err := model.Inspect(data); err != nil {
			t.Fatalf("parsed but does not inspect: %v", err)
		}
		if _, err := model.Parse(model.Encode(m)); err != nil {
			t.Fatalf("re-encoded model does not parse: %v", err)
		}
	})
}
