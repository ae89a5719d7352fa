package camera

import (
	"fmt"
	"image"
	"math"

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

// Element types of a model input.
const (
	Float32 = "float32"
	Uint8   = "uint8"
	Int8    = "int8"
)

// Spec describes a model input laid out as [H][W][3] in the given channel
// order. Pixels are normalised as value = (pixel - Mean[c]) / Std[c]; for
// 8-bit inputs (Type uint8 or int8) the value is then quantised with the
// tensor's parameters: q = round(value / Scale) + Zero, clamped to the
// type's range.
type Spec struct {
	Width, Height int
	RGB           bool // channel order RGB (else BGR)
	Mean, Std     [3]float32
	Fit           Fit
	Type          string  // Float32 (also ""), Uint8 or Int8
	Scale         float32 // quantisation scale of an 8-bit input
	Zero          int     // quantisation zero point of an 8-bit input
}

// Validate checks a spec.
func (s Spec) Validate() error {
	if s.Width <= 0 || s.Height <= 0 || s.Width > 4096 || s.Height > 4096 {
		return fmt.Errorf("input size %dx%d", s.Width, s.Height)
	}
	for c := range 3 {
		if s.Std[c] == 0 || math.IsNaN(float64(s.Std[c])) || math.IsNaN(float64(s.Mean[c])) {
			return fmt.Errorf("std[%d] is %g, mean[%d] is %g", c, s.Std[c], c, s.Mean[c])
		}
	}
	switch s.Fit {
	case FitStretch, FitLetterbox, FitCrop, "":
	default:
		return fmt.Errorf("unknown fit %q (stretch, letterbox or crop)", s.Fit)
	}
	switch s.Type {
	case Float32, "":
	case Uint8, Int8:
		if !(s.Scale > 0) || math.IsInf(float64(s.Scale), 0) {
			return fmt.Errorf("%s input with quantisation scale %g", s.Type, s.Scale)
		}
		lo, hi := quantRange(s.Type)
		if s.Zero < lo || s.Zero > hi {
			return fmt.Errorf("%s input with zero point %d", s.Type, s.Zero)
		}
	default:
		return fmt.Errorf("input type %q: want float32, uint8 or int8", s.Type)
	}
	return nil
}

func quantRange(typ string) (lo, hi int) {
	if typ == Int8 {
		return -128, 127
	}
	return 0, 255
}

// Input is a preprocessed image: Float for a float32 model input, or
// Quantized for an 8-bit one (int8 values as their two's complement
// bytes).
type Input struct {
	Float     []float32
	Quantized []byte
}

// Preprocessor turns frames into model input. It keeps scratch buffers
// between calls, so it belongs to one goroutine.
type Preprocessor struct {
	spec    Spec
	resized gocv.Mat
	// Per channel of the output, the value of each 8-bit pixel level.
	lutF [3][256]float32
	lutQ [3][256]byte
}

// padGrey is the pixel value of letterbox padding.
const padGrey = 128

// NewPreprocessor validates spec and returns a preprocessor; Close it.
func NewPreprocessor(spec Spec) (*Preprocessor, error) {
	if spec.Fit == "" {
		spec.Fit = FitStretch
	}
	if spec.Type == "" {
		spec.Type = Float32
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("preprocessing: %w", err)
	}
	p := &Preprocessor{spec: spec, resized: gocv.NewMat()}
	lo, hi := quantRange(spec.Type)
	for c := range 3 {
		for v := range 256 {
			x := (float32(v) - spec.Mean[c]) / spec.Std[c]
			p.lutF[c][v] = x
			if spec.Type != Float32 {
				q := int(math.Round(float64(x/spec.Scale))) + spec.Zero
				p.lutQ[c][v] = byte(min(max(q, lo), hi))
			}
		}
	}
	return p, nil
}

// Spec returns the input description.
func (p *Preprocessor) Spec() Spec { return p.spec }

// Len is the number of values Process produces.
func (p *Preprocessor) Len() int { return p.spec.Width * p.spec.Height * 3 }

// Process prepares the whole frame as float32 input, writing into dst
// (grown if needed) and returning it.
func (p *Preprocessor) Process(f *Frame, dst []float32) ([]float32, error) {
	in := Input{Float: dst}
	if p.spec.Type != Float32 {
		return nil, fmt.Errorf("preprocess: the model takes %s input; use Prepare", p.spec.Type)
	}
	if err := p.Prepare(f, image.Rectangle{}, &in); err != nil {
		return nil, err
	}
	return in.Float, nil
}

// Prepare resizes the region of f (the whole frame when region is empty)
// to the input size as the spec's fit says, reorders channels, normalises
// and, for 8-bit inputs, quantises, into in (whose buffers are reused).
func (p *Preprocessor) Prepare(f *Frame, region image.Rectangle, in *Input) error {
	src, err := matFromFrame(f)
	if err != nil {
		return fmt.Errorf("preprocess: %w", err)
	}
	defer src.Close()
	full := image.Rect(0, 0, f.Width, f.Height)
	if region.Empty() {
		region = full
	}
	region = region.Intersect(full)
	if region.Empty() {
		return fmt.Errorf("preprocess: region outside the %dx%d frame", f.Width, f.Height)
	}
	g := p.geometry(region)
	W, H := p.spec.Width, p.spec.Height
	view := src
	if g.roi != full {
		view = src.Region(g.roi)
		defer view.Close()
	}
	gocv.Resize(view, &p.resized, image.Pt(g.rw, g.rh), 0, 0, gocv.InterpolationLinear)
	if !p.resized.IsContinuous() || p.resized.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("preprocess: unexpected resize result %v", p.resized.Type())
	}
	pix, err := p.resized.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("preprocess: %w", err)
	}
	n := W * H * 3
	// Channel c of the output reads BGR channel ci[c] of the pixels.
	ci := [3]int{0, 1, 2}
	if p.spec.RGB {
		ci = [3]int{2, 1, 0}
	}
	if p.spec.Type == Float32 {
		in.Float, in.Quantized = lookUp(grow(in.Float, n), &p.lutF, pix, g, W, H, ci), nil
	} else {
		in.Quantized, in.Float = lookUp(grow(in.Quantized, n), &p.lutQ, pix, g, W, H, ci), nil
	}
	return nil
}

// lookUp writes the resized pixels into dst (a W x H x 3 input) at the
// geometry's offset, each channel through its table (normalisation and,
// for 8-bit inputs, quantisation), and fills letterbox padding with grey.
func lookUp[T float32 | byte](dst []T, lut *[3][256]T, pix []byte, g geometry, W, H int, ci [3]int) []T {
	l0, l1, l2 := &lut[0], &lut[1], &lut[2]
	if g.rw != W || g.rh != H {
		for i := 0; i < len(dst); i += 3 {
			dst[i], dst[i+1], dst[i+2] = l0[padGrey], l1[padGrey], l2[padGrey]
		}
	}
	for y := range g.rh {
		row := pix[y*g.rw*3 : (y+1)*g.rw*3]
		out := dst[((y+g.oy)*W+g.ox)*3 : ((y+g.oy)*W+g.ox+g.rw)*3]
		for x := 0; x < len(row); x += 3 {
			out[x] = l0[row[x+ci[0]]]
			out[x+1] = l1[row[x+ci[1]]]
			out[x+2] = l2[row[x+ci[2]]]
		}
	}
	return dst
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// geometry is where a region of a frame lands in the input: the part roi
// of the frame is resized to rw x rh and placed at (ox, oy).
type geometry struct {
	roi            image.Rectangle
	rw, rh, ox, oy int
}

func (p *Preprocessor) geometry(region image.Rectangle) geometry {
	W, H := p.spec.Width, p.spec.Height
	fw, fh := region.Dx(), region.Dy()
	g := geometry{roi: region, rw: W, rh: H}
	switch p.spec.Fit {
	case FitCrop:
		// Largest centred part with the input's aspect ratio.
		cw, ch := fw, fw*H/W
		if ch > fh {
			cw, ch = fh*W/H, fh
		}
		x0, y0 := region.Min.X+(fw-cw)/2, region.Min.Y+(fh-ch)/2
		g.roi = image.Rect(x0, y0, x0+max(cw, 1), y0+max(ch, 1))
	case FitLetterbox:
		if fw*H > fh*W { // wider than the input
			g.rw, g.rh = W, max(fh*W/fw, 1)
		} else {
			g.rw, g.rh = max(fw*H/fh, 1), H
		}
		g.ox, g.oy = (W-g.rw)/2, (H-g.rh)/2
	}
	return g
}

// ToFrame maps a box in normalised input coordinates (0..1, as a detector
// reports it) of the input made from the whole frame f back to frame
// pixels, clipped to the frame.
func (p *Preprocessor) ToFrame(f *Frame, ymin, xmin, ymax, xmax float32) image.Rectangle {
	g := p.geometry(image.Rect(0, 0, f.Width, f.Height))
	W, H := float64(p.spec.Width), float64(p.spec.Height)
	fx := func(x float32) int {
		in := float64(x)*W - float64(g.ox) // input pixels, from the picture's left
		return g.roi.Min.X + int(math.Round(in/float64(g.rw)*float64(g.roi.Dx())))
	}
	fy := func(y float32) int {
		in := float64(y)*H - float64(g.oy)
		return g.roi.Min.Y + int(math.Round(in/float64(g.rh)*float64(g.roi.Dy())))
	}
	r := image.Rect(fx(xmin), fy(ymin), fx(xmax), fy(ymax))
	return r.Intersect(image.Rect(0, 0, f.Width, f.Height))
}

// Close frees the scratch buffers.
func (p *Preprocessor) Close() error {
	return p.resized.Close()
}
