package embedder

import (
	"errors"
	"fmt"
	"image"
	"slices"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/detect"
)

// DetectConfig is how a detecting backbone finds pets, with the agent's
// defaults (camera.detect).
type DetectConfig struct {
	Classes  []string // default Cat and Dog
	MinScore float64  // default 0.5
	IoU      float64  // default 0.6
	Margin   float64  // context around a box for its crop; default 0.1
	MaxPets  int      // default 4
	// Features, when set, is the manifest of another backbone that embeds
	// the crops and the whole frames instead of the detector's own feature
	// map (another cut of the same network: more depths, a larger input).
	// The detector then only finds the pets, and every sighting costs one
	// more run of a model.
	Features string
}

func (c DetectConfig) withDefaults() DetectConfig {
	if len(c.Classes) == 0 {
		c.Classes = []string{"Cat", "Dog"}
	}
	if c.MinScore <= 0 {
		c.MinScore = 0.5
	}
	if c.IoU <= 0 {
		c.IoU = 0.6
	}
	if c.Margin == 0 {
		c.Margin = 0.1
	}
	if c.MaxPets <= 0 {
		c.MaxPets = 4
	}
	return c
}

// nestedPet is the share of a pet box inside a better one above which
// both are the same animal (as the agent's pipeline merges them).
const nestedPet = 0.8

// Found is one pet the detector found in a frame: its box in frame pixels,
// the crop embedded (box and margin) and the crop's feature vector.
type Found struct {
	Box      image.Rectangle
	Crop     image.Rectangle
	Label    string
	Score    float32
	Features []float32
}

// Detector runs a detecting backbone the way the agent's pipeline does:
// the whole frame once (detections and the frame's own feature vector),
// then each pet's crop with its margin. It belongs to one goroutine.
type Detector struct {
	bb  *backbone.Backbone
	emb *Embedder // embeds crops and frames when not nil
	pre *camera.Preprocessor
	dec *detect.Decoder
	cfg DetectConfig
	in  frame.Input
	res backbone.Result
}

// OpenDetector loads a detecting backbone (a manifest with a detection
// section and a pooled feature map).
func OpenDetector(manifestPath string, opt backbone.Options, cfg DetectConfig) (*Detector, error) {
	cfg = cfg.withDefaults()
	bb, err := backbone.Open(manifestPath, opt)
	if err != nil {
		return nil, fmt.Errorf("backbone: %w", err)
	}
	d, err := newDetector(bb, cfg)
	if err != nil {
		bb.Close()
		return nil, fmt.Errorf("detecting backbone %s: %w", manifestPath, err)
	}
	if cfg.Features != "" {
		if d.emb, err = Open(cfg.Features, opt); err != nil {
			d.Close()
			return nil, fmt.Errorf("feature backbone: %w", err)
		}
	}
	return d, nil
}

func newDetector(bb *backbone.Backbone, cfg DetectConfig) (*Detector, error) {
	man := bb.Manifest()
	if man == nil || man.Detection == nil || !bb.Detects() {
		return nil, errors.New("the backbone does not detect (no detection section in its manifest)")
	}
	if h, _ := bb.Grid(); h == 0 {
		return nil, errors.New("the backbone does not pool its feature map (host_pool): crops cannot be embedded by region")
	}
	det := man.Detection
	layout, err := detect.Layout(det.Anchors)
	if err != nil {
		return nil, err
	}
	var classes []int
	for _, name := range cfg.Classes {
		i := slices.Index(det.Labels, name)
		if i <= 0 {
			return nil, fmt.Errorf("%q is not a class of the detector", name)
		}
		classes = append(classes, i)
	}
	dec, err := detect.NewDecoder(detect.Config{Anchors: layout, Scales: det.BoxScales, NumClasses: len(det.Labels),
		Labels: det.Labels, Classes: classes, MinScore: float32(cfg.MinScore), IoU: float32(cfg.IoU), MaxTotal: cfg.MaxPets})
	if err != nil {
		return nil, err
	}
	spec, err := bb.InputSpec()
	if err != nil {
		return nil, err
	}
	pre, err := camera.NewPreprocessor(spec)
	if err != nil {
		return nil, err
	}
	return &Detector{bb: bb, pre: pre, dec: dec, cfg: cfg}, nil
}

// Identity is the backbone identity of the feature vectors.
func (d *Detector) Identity() string {
	if d.emb != nil {
		return d.emb.Identity()
	}
	return d.bb.Manifest().Identity
}

// Frame runs the pipeline on one frame: the frame's own feature vector
// (what the agent classifies when no pet is found) and every pet found,
// best first, each with its crop's feature vector.
func (d *Detector) Frame(f *frame.Frame) (whole []float32, found []Found, err error) {
	if err := d.pre.Prepare(f, image.Rectangle{}, &d.in); err != nil {
		return nil, nil, err
	}
	if err := d.bb.Infer(d.in, &d.res); err != nil {
		return nil, nil, err
	}
	whole = slices.Clone(d.res.Embedding)
	if d.emb != nil {
		if whole, err = d.emb.EmbedRegion(f, image.Rect(0, 0, f.Width, f.Height)); err != nil {
			return nil, nil, err
		}
	}
	dets, err := d.dec.Decode(d.res.Boxes, d.res.Scores)
	if err != nil {
		return nil, nil, err
	}
	dets = detect.MergeAcrossClasses(dets, float32(d.cfg.IoU), nestedPet)
	for _, det := range dets {
		r := d.pre.ToFrame(f, det.Box.YMin, det.Box.XMin, det.Box.YMax, det.Box.XMax)
		if r.Dx() < 4 || r.Dy() < 4 {
			continue
		}
		found = append(found, Found{Box: r, Crop: camera.Expand(r, d.cfg.Margin, f.Width, f.Height), Label: det.Label, Score: det.Score})
	}
	for i := range found {
		if found[i].Features, err = d.Region(f, found[i].Crop); err != nil {
			return nil, nil, err
		}
	}
	return whole, found, nil
}

// Region embeds one part of a frame (stretched to the input, as the agent
// embeds a pet's crop).
func (d *Detector) Region(f *frame.Frame, r image.Rectangle) ([]float32, error) {
	if d.emb != nil {
		return d.emb.EmbedRegion(f, r)
	}
	if err := d.pre.Prepare(f, r, &d.in); err != nil {
		return nil, err
	}
	if err := d.bb.Infer(d.in, &d.res); err != nil {
		return nil, err
	}
	return slices.Clone(d.res.Embedding), nil
}

// Spec is the model input the feature vectors are computed from: the
// feature backbone's when there is one, else the detector's.
func (d *Detector) Spec() frame.Spec {
	if d.emb != nil {
		return d.emb.Spec()
	}
	return d.pre.Spec()
}

// Embed embeds a whole frame (as the agent embeds a frame without a pet).
func (d *Detector) Embed(f *frame.Frame) ([]float32, error) {
	return d.Region(f, image.Rect(0, 0, f.Width, f.Height))
}

// Close frees the backbone and the preprocessor.
func (d *Detector) Close() error {
	if d.emb != nil {
		d.emb.Close()
	}
	d.pre.Close()
	return d.bb.Close()
}
