// Package detect decodes the raw outputs of an SSD detector (box
// encodings and class logits per anchor) into scored boxes: it generates
// the anchors the model was trained with, applies the box coder, turns
// logits into scores with a sigmoid and suppresses overlapping boxes per
// class. It is pure Go: the model runs elsewhere, and only float32 slices
// come in.
package detect

import (
	"errors"
	"fmt"
	"math"
)

// Anchor is a prior box in normalised input coordinates (0..1), given by
// its centre and size.
type Anchor struct {
	CY, CX, H, W float32
}

// AnchorConfig describes an SSD anchor layout as TensorFlow's object
// detection API generates it (ssd_anchor_generator): one square grid per
// feature map, scales spaced linearly from MinScale to MaxScale, one box
// per aspect ratio in every cell plus one between this layer's scale and
// the next.
type AnchorConfig struct {
	// FeatureMaps lists the grid size of each layer (square grids).
	FeatureMaps []int
	MinScale    float64
	MaxScale    float64
	// AspectRatios are width/height ratios.
	AspectRatios []float64
	// ReduceLowest gives the first layer three boxes only: (0.1, 1),
	// (scale, 2) and (scale, 0.5).
	ReduceLowest bool
	// Interpolated is the aspect ratio of the extra box whose scale is the
	// geometric mean of this layer's and the next; 0 for none.
	Interpolated float64
}

// SSDMobileNetV2 is the layout of TensorFlow's ssd_mobilenet_v2 configs
// for a 300x300 input: feature maps of 19, 10, 5, 3, 2 and 1 cells, scales
// 0.2 to 0.95, aspect ratios 1, 2, 1/2, 3, 1/3, reduced lowest layer: 1917
// anchors.
func SSDMobileNetV2() AnchorConfig {
	return AnchorConfig{
		FeatureMaps:  []int{19, 10, 5, 3, 2, 1},
		MinScale:     0.2,
		MaxScale:     0.95,
		AspectRatios: []float64{1, 2, 0.5, 3, 0.3333},
		ReduceLowest: true,
		Interpolated: 1,
	}
}

// Layout returns an anchor layout by the name a manifest gives it.
func Layout(name string) (AnchorConfig, error) {
	switch name {
	case "ssd_mobilenet_v2_300":
		return SSDMobileNetV2(), nil
	}
	return AnchorConfig{}, fmt.Errorf("unknown anchor layout %q (known: ssd_mobilenet_v2_300)", name)
}

// Validate checks a layout.
func (c AnchorConfig) Validate() error {
	switch {
	case len(c.FeatureMaps) == 0:
		return errors.New("anchor layout has no feature maps")
	case len(c.AspectRatios) == 0:
		return errors.New("anchor layout has no aspect ratios")
	case !(c.MinScale > 0) || !(c.MaxScale >= c.MinScale) || c.MaxScale > 2:
		return fmt.Errorf("anchor scales %g..%g", c.MinScale, c.MaxScale)
	case c.Interpolated < 0:
		return fmt.Errorf("interpolated aspect ratio %g", c.Interpolated)
	}
	for _, n := range c.FeatureMaps {
		if n <= 0 || n > 1024 {
			return fmt.Errorf("feature map size %d", n)
		}
	}
	for _, ar := range c.AspectRatios {
		if !(ar > 0) {
			return fmt.Errorf("aspect ratio %g", ar)
		}
	}
	return nil
}

// boxSpec is one box shape of a cell: a scale and an aspect ratio.
type boxSpec struct{ scale, ratio float64 }

// layerSpecs lists the box shapes of every layer, in the order the model's
// box predictors emit them.
func (c AnchorConfig) layerSpecs() [][]boxSpec {
	n := len(c.FeatureMaps)
	scales := make([]float64, n+1)
	for i := range n {
		if n == 1 {
			scales[i] = c.MinScale
		} else {
			scales[i] = c.MinScale + (c.MaxScale-c.MinScale)*float64(i)/float64(n-1)
		}
	}
	scales[n] = 1
	specs := make([][]boxSpec, n)
	for l := range n {
		if l == 0 && c.ReduceLowest {
			specs[l] = []boxSpec{{0.1, 1}, {scales[l], 2}, {scales[l], 0.5}}
			continue
		}
		for _, ar := range c.AspectRatios {
			specs[l] = append(specs[l], boxSpec{scales[l], ar})
		}
		if c.Interpolated > 0 {
			specs[l] = append(specs[l], boxSpec{math.Sqrt(scales[l] * scales[l+1]), c.Interpolated})
		}
	}
	return specs
}

// Count is the number of anchors the layout generates.
func (c AnchorConfig) Count() int {
	n := 0
	for l, specs := range c.layerSpecs() {
		n += c.FeatureMaps[l] * c.FeatureMaps[l] * len(specs)
	}
	return n
}

// Anchors generates the layout's anchors, layer by layer, each layer row by
// row, column by column, and within a cell box shape by box shape: the
// order in which the box predictors' outputs are concatenated.
func (c AnchorConfig) Anchors() ([]Anchor, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out := make([]Anchor, 0, c.Count())
	for l, specs := range c.layerSpecs() {
		g := c.FeatureMaps[l]
		stride := 1 / float64(g)
		for y := range g {
			cy := (float64(y) + 0.5) * stride
			for x := range g {
				cx := (float64(x) + 0.5) * stride
				for _, s := range specs {
					r := math.Sqrt(s.ratio)
					out = append(out, Anchor{CY: float32(cy), CX: float32(cx), H: float32(s.scale / r), W: float32(s.scale * r)})
				}
			}
		}
	}
	return out, nil
}
