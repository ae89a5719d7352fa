package camera

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// Fit says how a frame is fitted to the model's input size.
type Fit string

// Ways to fit a frame to the input.
const (
	FitStretch   Fit = "stretch"   // resize to the input size, ignoring aspect ratio
	FitLetterbox Fit = "letterbox" // keep aspect ratio, pad with grey
	FitCrop      Fit = "crop"      // keep aspect ratio, crop the centre
)

// Spec describes a float32 model input: value = (pixel - Mean[c]) / Std[c]
// in the given channel order, laid out as [H][W][3].
type Spec struct {
	Width, Height int
	RGB           bool // channel order RGB (else BGR)
	Mean, Std     [3]float32
	Fit           Fit
}

// Validate checks a spec.
func (s Spec) Validate() error {
	if s.Width <= 0 || s.Height <= 0 || s.Width > 4096 || s.Height > 4096 {
		return fmt.Errorf("input size %dx%d", s.Width, s.Height)
	}
	for c := range 3 {
		if s.Std[c] == 0 {
			return fmt.Errorf("std[%d] is zero", c)
		}
	}
	switch s.Fit {
	case FitStretch, FitLetterbox, FitCrop, "":
	default:
		return fmt.Errorf("unknown fit %q (stretch, letterbox or crop)", s.Fit)
	}
	return nil
}

// Preprocessor turns frames into model input. It keeps scratch buffers
// between calls, so it belongs to one goroutine.
type Preprocessor struct {
	spec    Spec
	resized gocv.Mat
	scale   [3]float32
	offset  [3]float32
	pad     [3]float32
}

// padGrey is the pixel value of letterbox padding.
const padGrey = 128

// NewPreprocessor validates spec and returns a preprocessor; Close it.
func NewPreprocessor(spec Spec) (*Preprocessor, error) {
	if spec.Fit == "" {
		spec.Fit = FitStretch
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("preprocessing: %w", err)
	}
	p := &Preprocessor{spec: spec, resized: gocv.NewMat()}
	for c := range 3 {
		p.scale[c] = 1 / spec.Std[c]
		p.offset[c] = -spec.Mean[c] / spec.Std[c]
		p.pad[c] = padGrey*p.scale[c] + p.offset[c]
	}
	return p, nil
}

// Spec returns the input description.
func (p *Preprocessor) Spec() Spec { return p.spec }

// Len is the number of float32 values Process produces.
func (p *Preprocessor) Len() int { return p.spec.Width * p.spec.Height * 3 }

// Process resizes f to the input size, reorders channels and normalises,
// writing into dst (grown if needed) and returning it.
func (p *Preprocessor) Process(f *Frame, dst []float32) ([]float32, error) {
	src, err := matFromFrame(f)
	if err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}
	defer src.Close()
	W, H := p.spec.Width, p.spec.Height
	// Region of the source to use and size of the resized image.
	roi := image.Rect(0, 0, f.Width, f.Height)
	rw, rh := W, H
	switch p.spec.Fit {
	case FitCrop:
		// Largest centred region with the input's aspect ratio.
		cw, ch := f.Width, f.Width*H/W
		if ch > f.Height {
			cw, ch = f.Height*W/H, f.Height
		}
		x0, y0 := (f.Width-cw)/2, (f.Height-ch)/2
		roi = image.Rect(x0, y0, x0+max(cw, 1), y0+max(ch, 1))
	case FitLetterbox:
		if f.Width*H > f.Height*W { // wider than the input
			rw, rh = W, max(f.Height*W/f.Width, 1)
		} else {
			rw, rh = max(f.Width*H/f.Height, 1), H
		}
	}
	view := src
	if roi != image.Rect(0, 0, f.Width, f.Height) {
		view = src.Region(roi)
		defer view.Close()
	}
	gocv.Resize(view, &p.resized, image.Pt(rw, rh), 0, 0, gocv.InterpolationLinear)
	if !p.resized.IsContinuous() || p.resized.Type() != gocv.MatTypeCV8UC3 {
		return nil, fmt.Errorf("preprocess: unexpected resize result %v", p.resized.Type())
	}
	pix, err := p.resized.DataPtrUint8()
	if err != nil {
		return nil, fmt.Errorf("preprocess: %w", err)
	}

	n := W * H * 3
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	// Channel c of the output reads BGR channel ci[c] of the pixels.
	ci := [3]int{0, 1, 2}
	if p.spec.RGB {
		ci = [3]int{2, 1, 0}
	}
	ox, oy := (W-rw)/2, (H-rh)/2
	if rw != W || rh != H {
		for i := 0; i < n; i += 3 {
			dst[i], dst[i+1], dst[i+2] = p.pad[0], p.pad[1], p.pad[2]
		}
	}
	s0, s1, s2 := p.scale[0], p.scale[1], p.scale[2]
	o0, o1, o2 := p.offset[0], p.offset[1], p.offset[2]
	for y := range rh {
		row := pix[y*rw*3 : (y+1)*rw*3]
		out := dst[((y+oy)*W+ox)*3 : ((y+oy)*W+ox+rw)*3]
		for x := 0; x < len(row); x += 3 {
			out[x] = float32(row[x+ci[0]])*s0 + o0
			out[x+1] = float32(row[x+ci[1]])*s1 + o1
			out[x+2] = float32(row[x+ci[2]])*s2 + o2
		}
	}
	return dst, nil
}

// Close frees the scratch buffers.
func (p *Preprocessor) Close() error {
	return p.resized.Close()
}
