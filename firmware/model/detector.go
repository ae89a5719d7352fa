package model

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Detection describes the detector outputs a model keeps beside its
// feature map: raw SSD box encodings and class logits per anchor, which
// Whisker decodes itself (the anchors are not in the file).
type Detection struct {
	// Boxes and Scores name the output tensors: [1,A,4] box encodings
	// (ty, tx, th, tw) and [1,A,classes] class logits.
	Boxes  string `json:"boxes"`
	Scores string `json:"scores"`
	// Anchors names the anchor layout (see learner/detect), e.g.
	// "ssd_mobilenet_v2_300".
	Anchors string `json:"anchors"`
	// BoxScales are the box coder's scale factors for y, x, h and w.
	BoxScales [4]float32 `json:"box_scales"`
	// Score says how logits become scores: "sigmoid".
	Score string `json:"score"`
	// Labels name the classes; index 0 is the background.
	Labels []string `json:"labels"`
}

// Validate checks a detection section.
func (d *Detection) Validate() error {
	switch {
	case d.Boxes == "" || d.Scores == "" || d.Boxes == d.Scores:
		return fmt.Errorf("detection outputs %q and %q: want two distinct output names", d.Boxes, d.Scores)
	case d.Anchors == "":
		return errors.New("detection has no anchor layout")
	case d.Score != "sigmoid":
		return fmt.Errorf("detection score %q: only sigmoid is supported", d.Score)
	case len(d.Labels) < 2:
		return fmt.Errorf("detection has %d labels; want the background and at least one class", len(d.Labels))
	}
	for i, s := range d.BoxScales {
		if !(s > 0) {
			return fmt.Errorf("detection box_scales[%d] is %g", i, s)
		}
	}
	return nil
}

// ReadLabels reads a label map: one class name per line, the background
// first. Trailing empty lines are ignored.
func ReadLabels(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var labels []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		labels = append(labels, strings.TrimSpace(sc.Text()))
	}
	for len(labels) > 0 && labels[len(labels)-1] == "" {
		labels = labels[:len(labels)-1]
	}
	if len(labels) < 2 {
		return nil, fmt.Errorf("label map %s has %d labels", path, len(labels))
	}
	return labels, nil
}

// DetectorOptions says how to cut a detector into a model that yields its
// detections and a feature map in one run.
type DetectorOptions struct {
	Tensor    string // the feature tensor (name or unique prefix), a [1,H,W,C] map
	Pool      Pool   // how Whisker pools the map into an embedding (avg or max)
	Labels    []string
	Anchors   string
	BoxScales [4]float32
}

// DetectorCut is a cut detector and what its manifest needs.
type DetectorCut struct {
	*CutResult
	Detection Detection
	// Channels is the embedding size: the feature map's depth.
	Channels int
	// EmbeddingSHA256 is the sha256 of the single-output model that pools
	// the same tensor inside the model: both compute the same features, so
	// they share an identity and the samples stored with either.
	EmbeddingSHA256 string
}

// CutDetector keeps a detector's own outputs and adds the un-pooled
// feature tensor as a last output, dropping only what none of them needs.
// The feature map is pooled by Whisker (host_pool in the manifest), over
// the whole frame or over a detected box.
func CutDetector(data []byte, opt DetectorOptions) (*DetectorCut, error) {
	if opt.Pool != PoolAvg && opt.Pool != PoolMax {
		return nil, fmt.Errorf("detector cut: pooling %q: want avg or max", opt.Pool)
	}
	res, err := Cut(data, CutOptions{Tensor: opt.Tensor, Pool: PoolNone, KeepOutputs: true})
	if err != nil {
		return nil, err
	}
	if len(res.TensorShape) != 4 {
		return nil, fmt.Errorf("detector cut: %q is %v; want a [1,H,W,C] feature map", res.Tensor, res.TensorShape)
	}
	if len(res.Outputs) < 3 {
		return nil, fmt.Errorf("detector cut: the model has %d outputs besides the feature map; want box encodings and class scores", len(res.Outputs)-1)
	}
	det := Detection{Anchors: opt.Anchors, BoxScales: opt.BoxScales, Score: "sigmoid", Labels: slices.Clone(opt.Labels)}
	// Box encodings are [1,A,4] (or [1,A,1,4]); scores [1,A,classes].
	for _, o := range res.Outputs[:len(res.Outputs)-1] {
		s := o.Shape
		switch {
		case len(s) >= 3 && s[len(s)-1] == 4 && det.Boxes == "" && (len(opt.Labels) != 4 || strings.Contains(o.Name, "box")):
			det.Boxes = o.Name
		case len(s) == 3 && s[2] == len(opt.Labels) && det.Scores == "":
			det.Scores = o.Name
		}
	}
	if det.Boxes == "" || det.Scores == "" {
		return nil, fmt.Errorf("detector cut: cannot tell box encodings [1,A,4] and class scores [1,A,%d] apart among the outputs %v",
			len(opt.Labels), outputNames(res.Outputs))
	}
	if err := det.Validate(); err != nil {
		return nil, fmt.Errorf("detector cut: %w", err)
	}
	emb, err := Cut(data, CutOptions{Tensor: opt.Tensor, Pool: opt.Pool})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(emb.Model)
	return &DetectorCut{
		CutResult: res, Detection: det,
		Channels:        res.TensorShape[3],
		EmbeddingSHA256: hex.EncodeToString(sum[:]),
	}, nil
}

func outputNames(ts []Tensor) []string {
	var names []string
	for _, t := range ts {
		names = append(names, fmt.Sprintf("%s %v", t.Name, t.Shape))
	}
	return names
}

// NewDetectorManifest describes a cut detector.
func NewDetectorManifest(dc *DetectorCut, modelFile, source string, sourceData []byte, pool Pool, pre Preprocess) *Manifest {
	m := NewManifest(dc.CutResult, modelFile, source, sourceData, pool, pre)
	m.HostPool = true
	m.Embedding = dc.Channels
	det := dc.Detection
	m.Detection = &det
	m.Identity = fmt.Sprintf("%s@%s", identityStem(dc.Tensor, pool), dc.EmbeddingSHA256[:12])
	return m
}
