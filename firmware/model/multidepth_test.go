package model_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/firmware/model/modeltest"
	"github.com/whiskercam/whisker/internal/testenv"
)

const block13 = "FeatureExtractor/MobilenetV2/expanded_conv_13/expand/Relu6"

func TestCutConcatenatesPooledDepths(t *testing.T) {
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	res, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, Also: []string{block13}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := model.Inspect(res.Model)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Outputs) != 1 || !equalInts(info.Outputs[0].Shape, 1, 1280+576) || res.EmbeddingDim != 1856 {
		t.Errorf("outputs %+v, dim %d", info.Outputs, res.EmbeddingDim)
	}
	if !equalInts(res.Parts, 1280, 576) || len(res.Also) != 1 || !strings.HasPrefix(res.Also[0], block13) {
		t.Errorf("parts %v, also %v", res.Parts, res.Also)
	}
	if info.OpCounts["MEAN"] != 2 || info.OpCounts["CONCATENATION"] != 1 {
		t.Errorf("operators %v: want two MEANs and one CONCATENATION", info.OpCounts)
	}
	last := info.Operators[len(info.Operators)-1]
	if last.Op != "CONCATENATION" || len(last.Inputs) != 2 {
		t.Errorf("last operator %+v", last)
	}
	man := model.NewManifest(res, "multi.tflite", "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1))
	if err := man.Validate(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(man.Identity, "Conv_1-Relu6+1-avg@") || !equalInts(man.CutParts, 1280, 576) {
		t.Errorf("identity %q, parts %v", man.Identity, man.CutParts)
	}
	man.CutParts = []int{1280, 575}
	if err := man.Validate(); err == nil {
		t.Error("a manifest whose parts do not add up to its embedding validated")
	}

	const block16 = "FeatureExtractor/MobilenetV2/expanded_conv_16/expand/Relu6"
	withMap, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, Also: []string{block13}, Maps: []string{block16}})
	if err != nil {
		t.Fatal(err)
	}
	if !equalInts(withMap.Parts, 1280, 576, 96000) || len(withMap.Maps) != 1 || withMap.EmbeddingDim != 1280+576+96000 {
		t.Errorf("parts %v, maps %v, dim %d", withMap.Parts, withMap.Maps, withMap.EmbeddingDim)
	}
	man = model.NewManifest(withMap, "map.tflite", "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1))
	if err := man.Validate(); err != nil || !strings.HasPrefix(man.Identity, "Conv_1-Relu6+1+1map-avg@") {
		t.Errorf("identity %q, %v", man.Identity, err)
	}
}

// Giving the input the size it has changes no shape: the inferred shapes
// are the converter's own.
func TestResizeInfersTheConvertersShapes(t *testing.T) {
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolNone})
	if err != nil {
		t.Fatal(err)
	}
	same, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolNone, InputHeight: 300, InputWidth: 300})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := model.Inspect(plain.Model)
	b, _ := model.Inspect(same.Model)
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors against %d", len(a.Tensors), len(b.Tensors))
	}
	for i := range a.Tensors {
		if !equalInts(b.Tensors[i].Shape, a.Tensors[i].Shape...) {
			t.Errorf("tensor %s: inferred %v, the converter wrote %v", a.Tensors[i].Name, b.Tensors[i].Shape, a.Tensors[i].Shape)
		}
	}

	big, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, Also: []string{block13}, InputHeight: 448, InputWidth: 448})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := model.Inspect(big.Model)
	shapes := map[string][]int{}
	for _, tt := range info.Tensors {
		name, _, _ := strings.Cut(tt.Name, ";")
		shapes[name] = tt.Shape
	}
	for name, want := range map[string][]int{
		"normalized_input_image_tensor":           {1, 448, 448, 3},
		"FeatureExtractor/MobilenetV2/Conv/Relu6": {1, 224, 224, 32},
		block13: {1, 28, 28, 576},
		"FeatureExtractor/MobilenetV2/Conv_1/Relu6":        {1, 14, 14, 1280},
		"FeatureExtractor/MobilenetV2/expanded_conv_2/add": {1, 112, 112, 24},
	} {
		if !equalInts(shapes[name], want...) {
			t.Errorf("%s: %v, want %v", name, shapes[name], want)
		}
	}
	if !big.Resized || !equalInts(info.Outputs[0].Shape, 1, 1856) {
		t.Errorf("resized %v, output %v", big.Resized, info.Outputs[0].Shape)
	}
	man := model.NewManifest(big, "big.tflite", "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1))
	if !strings.HasPrefix(man.Identity, "Conv_1-Relu6+1-avg-448x448@") || !equalInts(man.Input.Shape, 1, 448, 448, 3) {
		t.Errorf("identity %q, input %v", man.Identity, man.Input.Shape)
	}
}

func TestCutDepthsAndResizeErrors(t *testing.T) {
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		opt    model.CutOptions
		reason string
	}{
		{"depths without pooling", src, model.CutOptions{Tensor: cutTensor, Also: []string{block13}}, "need avg or max pooling"},
		{"depths with detector outputs", src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, KeepOutputs: true, Also: []string{block13}}, "no detector outputs"},
		{"a tensor twice", src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, Also: []string{cutTensor}}, "named twice"},
		{"no such depth", src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, Also: []string{"nope"}}, "no tensor named"},
		{"resize with detector outputs", src, model.CutOptions{Tensor: cutTensor, KeepOutputs: true, InputHeight: 448, InputWidth: 448}, "anchors"},
		{"tiny input", src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg, InputHeight: 16, InputWidth: 16}, "want 32 to 4096"},
		// The detector's heads reshape to a fixed number of boxes.
		{"resize through a reshape", src, model.CutOptions{Tensor: "raw_outputs/box_encodings", InputHeight: 320, InputWidth: 320}, "RESHAPE"},
	} {
		_, err := model.Cut(tc.data, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: err %v, want one mentioning %q", tc.name, err, tc.reason)
		}
	}
	// The tiny model's ADD of a constant per channel broadcasts: not a
	// trunk operator this package resizes through.
	_, err = model.Cut(modeltest.TinyBytes(), model.CutOptions{Tensor: "shifted", Pool: model.PoolAvg, InputHeight: 64, InputWidth: 64})
	if !errors.Is(err, model.ErrUnsupported) || !strings.Contains(err.Error(), "operator 0 (ADD)") {
		t.Errorf("resizing through a broadcasting ADD: %v", err)
	}
}
