package detect

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Box is a rectangle in normalised input coordinates: 0..1 from the top
// left of the model's input image.
type Box struct {
	YMin, XMin, YMax, XMax float32
}

// Area is the box's area (0 for an empty or inverted box).
func (b Box) Area() float32 {
	if b.YMax <= b.YMin || b.XMax <= b.XMin {
		return 0
	}
	return (b.YMax - b.YMin) * (b.XMax - b.XMin)
}

// IoU is the intersection over union of two boxes.
func IoU(a, b Box) float32 {
	in := Box{max(a.YMin, b.YMin), max(a.XMin, b.XMin), min(a.YMax, b.YMax), min(a.XMax, b.XMax)}.Area()
	if in == 0 {
		return 0
	}
	return in / (a.Area() + b.Area() - in)
}

// Detection is one scored box.
type Detection struct {
	Box   Box
	Class int     // index into the model's classes (0 is background)
	Label string  // the class name, when the decoder has labels
	Score float32 // sigmoid of the class logit, 0..1
}

// Config says how to decode a model's outputs.
type Config struct {
	Anchors AnchorConfig
	// Scales divide the encoded y, x, h and w (the box coder's scale
	// factors); TensorFlow's SSD configs use 10, 10, 5, 5.
	Scales [4]float32
	// NumClasses is the number of logits per anchor, background included.
	NumClasses int
	// Labels name the classes (index 0 is background); optional.
	Labels []string
	// Classes lists the class indices to report; empty means all but 0.
	Classes []int
	// MinScore drops detections below this score.
	MinScore float32
	// IoU is the overlap above which a lower-scored box of the same class
	// is suppressed.
	IoU float32
	// MaxPerClass and MaxTotal bound the result; 0 means 100.
	MaxPerClass, MaxTotal int
}

// StandardScales are the box coder scale factors of TensorFlow's SSD
// configs.
func StandardScales() [4]float32 { return [4]float32{10, 10, 5, 5} }

// Decoder turns box encodings and class logits into detections. It keeps
// scratch buffers, so it belongs to one goroutine.
type Decoder struct {
	cfg      Config
	anchors  []Anchor
	classes  []int
	minLogit float32
	cand     []cand
}

type cand struct {
	anchor int
	score  float32
	box    Box
}

// NewDecoder checks cfg and generates the anchors.
func NewDecoder(cfg Config) (*Decoder, error) {
	anchors, err := cfg.Anchors.Anchors()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.NumClasses < 2:
		return nil, fmt.Errorf("detector has %d classes; want background and at least one more", cfg.NumClasses)
	case len(cfg.Labels) > 0 && len(cfg.Labels) != cfg.NumClasses:
		return nil, fmt.Errorf("%d labels for %d classes", len(cfg.Labels), cfg.NumClasses)
	case !(cfg.MinScore > 0 && cfg.MinScore < 1):
		return nil, fmt.Errorf("minimum score %g: want above 0 and below 1", cfg.MinScore)
	case !(cfg.IoU > 0 && cfg.IoU <= 1):
		return nil, fmt.Errorf("IoU threshold %g: want above 0 and at most 1", cfg.IoU)
	case cfg.MaxPerClass < 0 || cfg.MaxTotal < 0:
		return nil, errors.New("negative detection limit")
	}
	for i, s := range cfg.Scales {
		if !(s > 0) {
			return nil, fmt.Errorf("box coder scale %d is %g", i, s)
		}
	}
	if cfg.MaxPerClass == 0 {
		cfg.MaxPerClass = 100
	}
	if cfg.MaxTotal == 0 {
		cfg.MaxTotal = 100
	}
	classes := slices.Clone(cfg.Classes)
	if len(classes) == 0 {
		for c := 1; c < cfg.NumClasses; c++ {
			classes = append(classes, c)
		}
	}
	for _, c := range classes {
		if c <= 0 || c >= cfg.NumClasses {
			return nil, fmt.Errorf("class %d is not among the detector's classes 1..%d", c, cfg.NumClasses-1)
		}
	}
	// sigmoid(x) >= s  <=>  x >= log(s/(1-s)): compare logits, and compute
	// the sigmoid only for candidates.
	minLogit := float32(math.Log(float64(cfg.MinScore) / (1 - float64(cfg.MinScore))))
	return &Decoder{cfg: cfg, anchors: anchors, classes: classes, minLogit: minLogit}, nil
}

// Anchors returns the decoder's anchors (shared; do not modify).
func (d *Decoder) Anchors() []Anchor { return d.anchors }

// ClassIndex finds a class by label.
func (d *Decoder) ClassIndex(label string) (int, bool) {
	i := slices.Index(d.cfg.Labels, label)
	return i, i > 0
}

// Decode turns one image's outputs into detections, best first: boxes has
// 4 values per anchor (ty, tx, th, tw), logits NumClasses per anchor.
// Non-finite values never produce a detection.
func (d *Decoder) Decode(boxes, logits []float32) ([]Detection, error) {
	n := len(d.anchors)
	if len(boxes) != 4*n {
		return nil, fmt.Errorf("box encodings have %d values; %d anchors need %d", len(boxes), n, 4*n)
	}
	if len(logits) != d.cfg.NumClasses*n {
		return nil, fmt.Errorf("class logits have %d values; %d anchors x %d classes need %d", len(logits), n, d.cfg.NumClasses, d.cfg.NumClasses*n)
	}
	var out []Detection
	for _, c := range d.classes {
		d.cand = d.cand[:0]
		for a := range n {
			x := logits[a*d.cfg.NumClasses+c]
			if !(x >= d.minLogit) || math.IsInf(float64(x), 1) { // also drops NaN
				continue
			}
			box, ok := d.decodeBox(a, boxes[4*a:4*a+4])
			if !ok {
				continue
			}
			d.cand = append(d.cand, cand{anchor: a, score: sigmoid(x), box: box})
		}
		kept := nms(d.cand, d.cfg.IoU, d.cfg.MaxPerClass)
		for _, k := range kept {
			det := Detection{Box: k.box, Class: c, Score: k.score}
			if len(d.cfg.Labels) > 0 {
				det.Label = d.cfg.Labels[c]
			}
			out = append(out, det)
		}
	}
	slices.SortStableFunc(out, func(a, b Detection) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	if len(out) > d.cfg.MaxTotal {
		out = out[:d.cfg.MaxTotal]
	}
	return out, nil
}

// decodeBox applies the box coder to one anchor's encoding and clips the
// result to the image.
func (d *Decoder) decodeBox(a int, enc []float32) (Box, bool) {
	an := d.anchors[a]
	s := d.cfg.Scales
	ty, tx, th, tw := enc[0]/s[0], enc[1]/s[1], enc[2]/s[2], enc[3]/s[3]
	// exp of more than ~10 is a box hundreds of times its anchor: not a box.
	if !(th < 10 && tw < 10) || math.IsNaN(float64(ty)) || math.IsNaN(float64(tx)) || math.IsInf(float64(ty), 0) || math.IsInf(float64(tx), 0) {
		return Box{}, false
	}
	cy := ty*an.H + an.CY
	cx := tx*an.W + an.CX
	h := float32(math.Exp(float64(th))) * an.H
	w := float32(math.Exp(float64(tw))) * an.W
	b := Box{
		YMin: clamp01(cy - h/2), XMin: clamp01(cx - w/2),
		YMax: clamp01(cy + h/2), XMax: clamp01(cx + w/2),
	}
	return b, b.Area() > 0
}

func clamp01(v float32) float32 { return min(max(v, 0), 1) }

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// nms keeps the best candidates, dropping any whose overlap with a kept
// one exceeds iou (greedy, as TensorFlow's non_max_suppression).
func nms(c []cand, iou float32, limit int) []cand {
	slices.SortStableFunc(c, func(a, b cand) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return a.anchor - b.anchor
	})
	var kept []cand
next:
	for _, x := range c {
		if len(kept) == limit {
			break
		}
		for _, k := range kept {
			if IoU(x.box, k.box) > iou {
				continue next
			}
		}
		kept = append(kept, x)
	}
	return kept
}

// MergeAcrossClasses drops detections that overlap a better-scored one of
// any class by more than iou, or whose smaller box lies inside the other
// by more than the fraction inside: one animal that the detector calls
// both a cat and a dog is one animal, and so is an animal seen once
// whole and once with what stands beside it. dets must be sorted best
// first (as Decode returns them); inside 0 leaves nesting alone.
func MergeAcrossClasses(dets []Detection, iou, inside float32) []Detection {
	var kept []Detection
next:
	for _, d := range dets {
		for _, k := range kept {
			if IoU(d.Box, k.Box) > iou || inside > 0 && Inside(d.Box, k.Box) > inside {
				continue next
			}
		}
		kept = append(kept, d)
	}
	return kept
}

// Inside is the fraction of the smaller box that lies inside the other.
func Inside(a, b Box) float32 {
	in := Box{max(a.YMin, b.YMin), max(a.XMin, b.XMin), min(a.YMax, b.YMax), min(a.XMax, b.XMax)}.Area()
	small := min(a.Area(), b.Area())
	if in == 0 || small == 0 {
		return 0
	}
	return in / small
}
