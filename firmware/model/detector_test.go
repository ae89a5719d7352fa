package model_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/internal/testenv"
)

func TestCutDetectorKeepsOutputsAndFeatureMap(t *testing.T) {
	src, err := os.ReadFile(testenv.Detector(t))
	if err != nil {
		t.Fatal(err)
	}
	labels, err := model.ReadLabels(testenv.File(t, "models/oidv4_labelmap.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) != 24 || labels[8] != "Cat" || labels[20] != "Dog" {
		t.Fatalf("labels %q", labels)
	}
	opt := model.DetectorOptions{Tensor: cutTensor, Pool: model.PoolAvg, Labels: labels, Anchors: "ssd_mobilenet_v2_300", BoxScales: [4]float32{10, 10, 5, 5}}
	dc, err := model.CutDetector(src, opt)
	if err != nil {
		t.Fatal(err)
	}
	info, err := model.Inspect(dc.Model)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Outputs) != 3 || !equalInts(info.Outputs[0].Shape, 1, 1917, 4) || !equalInts(info.Outputs[1].Shape, 1, 1917, 24) ||
		!equalInts(info.Outputs[2].Shape, 1, 10, 10, 1280) {
		t.Fatalf("outputs %+v", info.Outputs)
	}
	// Detection needs every operator: nothing is dropped, nothing added.
	if dc.KeptOps != 241 || dc.DroppedOps != 0 || len(info.Operators) != 241 {
		t.Errorf("kept %d, dropped %d, %d operators", dc.KeptOps, dc.DroppedOps, len(info.Operators))
	}
	if dc.Detection.Boxes != "raw_outputs/box_encodings" || dc.Detection.Scores != "raw_outputs/class_predictions" || dc.Channels != 1280 {
		t.Errorf("detection %+v, channels %d", dc.Detection, dc.Channels)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bd.tflite")
	man := model.NewDetectorManifest(dc, path, "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1))
	if err := man.Validate(); err != nil {
		t.Fatal(err)
	}
	// Same features as the embedding-only cut, so the same identity.
	plain, err := model.Cut(src, model.CutOptions{Tensor: cutTensor, Pool: model.PoolAvg})
	if err != nil {
		t.Fatal(err)
	}
	if want := model.NewManifest(plain, "b.tflite", "ssd.tflite", src, model.PoolAvg, model.RangePreprocess(-1, 1)).Identity; man.Identity != want {
		t.Errorf("identity %s, want %s", man.Identity, want)
	}
	if err := os.WriteFile(path, dc.Model, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := man.Write(model.ManifestPath(path)); err != nil {
		t.Fatal(err)
	}
	back, _, err := model.LoadBackbone(model.ManifestPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if !back.HostPool || back.Detection == nil || len(back.Detection.Labels) != 24 {
		t.Errorf("manifest read back as %+v", back)
	}

	for name, bad := range map[string]func(*model.DetectorOptions){
		"no pooling":   func(o *model.DetectorOptions) { o.Pool = model.PoolNone },
		"wrong labels": func(o *model.DetectorOptions) { o.Labels = labels[:5] },
		"not a map":    func(o *model.DetectorOptions) { o.Tensor = "raw_outputs/box_encodings" },
		"no anchors":   func(o *model.DetectorOptions) { o.Anchors = "" },
	} {
		o := opt
		bad(&o)
		if _, err := model.CutDetector(src, o); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestManifestChecksHostPoolAndDetection(t *testing.T) {
	good := func() *model.Manifest {
		return &model.Manifest{
			Format: model.ManifestVersion, Identity: "x@1", Model: "m.tflite", ModelSHA256: strings.Repeat("a", 64),
			Pool: model.PoolAvg, HostPool: true, Embedding: 8,
			Input:      model.ManifestIO{Shape: []int{1, 32, 32, 3}},
			Output:     model.ManifestIO{Shape: []int{1, 2, 2, 8}},
			Preprocess: model.RangePreprocess(-1, 1),
			Detection:  &model.Detection{Boxes: "b", Scores: "s", Anchors: "ssd_mobilenet_v2_300", BoxScales: [4]float32{10, 10, 5, 5}, Score: "sigmoid", Labels: []string{"bg", "cat"}},
		}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*model.Manifest){
		"map depth":      func(m *model.Manifest) { m.Output.Shape = []int{1, 2, 2, 9} },
		"pooled output":  func(m *model.Manifest) { m.Output.Shape = []int{1, 8} },
		"host pool none": func(m *model.Manifest) { m.Pool = model.PoolNone },
		"same outputs":   func(m *model.Manifest) { m.Detection.Scores = "b" },
		"softmax":        func(m *model.Manifest) { m.Detection.Score = "softmax" },
		"one label":      func(m *model.Manifest) { m.Detection.Labels = []string{"bg"} },
		"zero scale":     func(m *model.Manifest) { m.Detection.BoxScales[3] = 0 },
		"resize":         func(m *model.Manifest) { m.Preprocess.Resize = "squash" },
	} {
		m := good()
		edit(m)
		if err := m.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
