package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// Preprocessor turns frames into model input. It keeps scratch buffers
// between calls, so it belongs to one goroutine.
type Preprocessor struct {
	spec    frame.Spec
	resized gocv.Mat
	// Per channel of the output, the value of each 8-bit pixel level.
	lutF [3][256]float32
	lutQ [3][256]byte
}

// padGrey is the pixel value of letterbox padding.
const padGrey = 128

// NewPreprocessor validates spec and returns a preprocessor; Close it.
func NewPreprocessor(spec frame.Spec) (*Preprocessor, error) {
	if spec.Fit == "" {
		spec.Fit = frame.FitStretch
	}
	if spec.Type == "" {
		spec.Type = frame.Float32
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("preprocessing: %w", err)
	}
	p := &Preprocessor{spec: spec, resized: gocv.NewMat()}
	lo, hi := frame.QuantRange(spec.Type)
	for c := range 3 {
		for v := range 256 {
			x := (float32(v) - spec.Mean[c]) / spec.Std[c]
			p.lutF[c][v] = x
			if spec.Type != frame.Float32 {
				q := int(math.Round(float64(x/spec.Scale))) + spec.Zero
				p.lutQ[c][v] = byte(min(max(q, lo), hi))
			}
		}
	}
	return p, nil
}

// Spec returns the input description.
func (p *Preprocessor) Spec() frame.Spec { return p.spec }

// Len is the number of values Process produces.
func (p *Preprocessor) Len() int { return p.spec.Width * p.spec.Height * 3 }

// Process prepares the whole frame as float32 input, writing into dst
// (grown if needed) and returning it.
func (p *Preprocessor) Process(f *frame.Frame, dst []float32) ([]float32, error) {
	in := frame.Input{Float: dst}
	if p.spec.Type != frame.Float32 {
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
func (p *Preprocessor) Prepare(f *frame.Frame, region image.Rectangle, in *frame.Input) error {
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
	if p.spec.Type == frame.Float32 {
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
	case frame.FitCrop:
		// Largest centred part with the input's aspect ratio.
		cw, ch := fw, fw*H/W
		if ch > fh {
			cw, ch = fh*W/H, fh
		}
		x0, y0 := region.Min.X+(fw-cw)/2, region.Min.Y+(fh-ch)/2
		g.roi = image.Rect(x0, y0, x0+max(cw, 1), y0+max(ch, 1))
	case frame.FitLetterbox:
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
func (p *Preprocessor) ToFrame(f *frame.Frame, ymin, xmin, ymax, xmax float32) image.Rectangle {
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
