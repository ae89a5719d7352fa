package bench

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/whiskercam/whisker/camera/frame"

	"golang.org/x/image/webp"

	"github.com/whiskercam/whisker/camera"
)

// Limits on the photographs the benchmark reads (they come from packages,
// but a file is still checked before it is decoded).
const (
	maxPhotoBytes  = 32 << 20
	maxPhotoPixels = 40_000_000
)

// Cutout is a photograph of an animal with its alpha channel.
type Cutout struct {
	W, H int
	BGRA []byte // 4 bytes a pixel, not premultiplied
}

// readPhoto reads a still photograph as a BGR frame. WebP files are
// decoded in Go (golang.org/x/image/webp), everything else by OpenCV.
func readPhoto(path string) (frame.Frame, error) {
	data, err := readLimited(path)
	if err != nil {
		return frame.Frame{}, err
	}
	if !strings.EqualFold(filepath.Ext(path), ".webp") {
		f, err := camera.DecodeImage(data)
		if err != nil {
			return frame.Frame{}, fmt.Errorf("%s: %w", path, err)
		}
		return f, nil
	}
	cfg, err := webp.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return frame.Frame{}, fmt.Errorf("%s: %w", path, err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPhotoPixels {
		return frame.Frame{}, fmt.Errorf("%s: %dx%d pixels is too large", path, cfg.Width, cfg.Height)
	}
	img, err := webp.Decode(bytes.NewReader(data))
	if err != nil {
		return frame.Frame{}, fmt.Errorf("%s: %w", path, err)
	}
	return frameFromImage(img), nil
}

func readLimited(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxPhotoBytes {
		return nil, fmt.Errorf("%s: %d bytes is over the %d-byte limit", path, st.Size(), maxPhotoBytes)
	}
	return os.ReadFile(path)
}

// readCutout reads a PNG with an alpha channel.
func readCutout(path string) (*Cutout, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, err
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > maxPhotoPixels {
		return nil, fmt.Errorf("%s: %dx%d pixels is too large", path, cfg.Width, cfg.Height)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := img.Bounds()
	c := &Cutout{W: b.Dx(), H: b.Dy(), BGRA: make([]byte, 4*b.Dx()*b.Dy())}
	for y := range c.H {
		for x := range c.W {
			n := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			i := 4 * (y*c.W + x)
			c.BGRA[i], c.BGRA[i+1], c.BGRA[i+2], c.BGRA[i+3] = n.B, n.G, n.R, n.A
		}
	}
	if c.W == 0 || c.H == 0 {
		return nil, fmt.Errorf("%s: empty image", path)
	}
	return c, nil
}

func frameFromImage(img image.Image) frame.Frame {
	b := img.Bounds()
	f := frame.Frame{Width: b.Dx(), Height: b.Dy(), Stride: 3 * b.Dx(), Data: make([]byte, 3*b.Dx()*b.Dy())}
	for y := range f.Height {
		for x := range f.Width {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			i := y*f.Stride + 3*x
			f.Data[i], f.Data[i+1], f.Data[i+2] = byte(bl>>8), byte(g>>8), byte(r>>8)
		}
	}
	return f
}

// crop copies a rectangle of a frame (clipped to it).
func crop(f *frame.Frame, r image.Rectangle) frame.Frame {
	r = r.Intersect(image.Rect(0, 0, f.Width, f.Height))
	out := frame.Frame{Width: r.Dx(), Height: r.Dy(), Stride: 3 * r.Dx(), Data: make([]byte, 3*r.Dx()*r.Dy())}
	for y := range out.Height {
		copy(out.Data[y*out.Stride:(y+1)*out.Stride], f.Data[(r.Min.Y+y)*f.Stride+3*r.Min.X:])
	}
	return out
}

// resize scales a frame to w x h: an area average when shrinking,
// bilinear when growing.
func resize(f *frame.Frame, w, h int) frame.Frame {
	out := frame.Frame{Width: w, Height: h, Stride: 3 * w, Data: make([]byte, 3*w*h)}
	sx, sy := float64(f.Width)/float64(w), float64(f.Height)/float64(h)
	if sx >= 1 && sy >= 1 {
		for y := range h {
			y0, y1 := int(float64(y)*sy), max(int(float64(y+1)*sy), int(float64(y)*sy)+1)
			y1 = min(y1, f.Height)
			for x := range w {
				x0, x1 := int(float64(x)*sx), max(int(float64(x+1)*sx), int(float64(x)*sx)+1)
				x1 = min(x1, f.Width)
				var s [3]int
				for yy := y0; yy < y1; yy++ {
					row := f.Data[yy*f.Stride:]
					for xx := x0; xx < x1; xx++ {
						s[0] += int(row[3*xx])
						s[1] += int(row[3*xx+1])
						s[2] += int(row[3*xx+2])
					}
				}
				n := (y1 - y0) * (x1 - x0)
				for c := range 3 {
					out.Data[y*out.Stride+3*x+c] = byte((s[c] + n/2) / n)
				}
			}
		}
		return out
	}
	for y := range h {
		fy := math.Max(0, (float64(y)+0.5)*sy-0.5)
		y0 := min(int(fy), f.Height-1)
		y1 := min(y0+1, f.Height-1)
		wy := fy - float64(y0)
		for x := range w {
			fx := math.Max(0, (float64(x)+0.5)*sx-0.5)
			x0 := min(int(fx), f.Width-1)
			x1 := min(x0+1, f.Width-1)
			wx := fx - float64(x0)
			for c := range 3 {
				a := float64(f.Data[y0*f.Stride+3*x0+c])*(1-wx) + float64(f.Data[y0*f.Stride+3*x1+c])*wx
				b := float64(f.Data[y1*f.Stride+3*x0+c])*(1-wx) + float64(f.Data[y1*f.Stride+3*x1+c])*wx
				out.Data[y*out.Stride+3*x+c] = byte(math.Round(a*(1-wy) + b*wy))
			}
		}
	}
	return out
}

// paste draws a cutout scaled to w x h onto f at (x, y), blending by its
// alpha, and returns the box of its opaque pixels.
func paste(f *frame.Frame, c *Cutout, x, y, w, h int) image.Rectangle {
	box := image.Rectangle{Min: image.Pt(f.Width, f.Height)}
	for dy := range h {
		ty := y + dy
		if ty < 0 || ty >= f.Height {
			continue
		}
		sy := min(dy*c.H/h, c.H-1)
		for dx := range w {
			tx := x + dx
			if tx < 0 || tx >= f.Width {
				continue
			}
			sx := min(dx*c.W/w, c.W-1)
			p := c.BGRA[4*(sy*c.W+sx):]
			a := int(p[3])
			if a == 0 {
				continue
			}
			q := f.Data[ty*f.Stride+3*tx:]
			for ch := range 3 {
				q[ch] = byte((int(p[ch])*a + int(q[ch])*(255-a) + 127) / 255)
			}
			if a > 127 {
				box.Min.X, box.Min.Y = min(box.Min.X, tx), min(box.Min.Y, ty)
				box.Max.X, box.Max.Y = max(box.Max.X, tx+1), max(box.Max.Y, ty+1)
			}
		}
	}
	if box.Empty() {
		return image.Rectangle{}
	}
	return box
}

// Photometric is a change of light and colour.
type Photometric struct {
	Gain     [3]float64 // per channel (B, G, R), colour temperature
	Contrast float64
	Bright   float64 // added, in 0..255 units
	Gamma    float64
}

func (p Photometric) apply(f *frame.Frame) {
	var lut [3][256]byte
	for c := range 3 {
		for v := range 256 {
			x := float64(v) / 255
			x = math.Pow(x, p.Gamma)
			x = (x-0.5)*p.Contrast + 0.5
			x = x*255*p.Gain[c] + p.Bright
			lut[c][v] = byte(math.Max(0, math.Min(255, math.Round(x))))
		}
	}
	for y := range f.Height {
		row := f.Data[y*f.Stride : y*f.Stride+3*f.Width]
		for i := 0; i < len(row); i += 3 {
			row[i], row[i+1], row[i+2] = lut[0][row[i]], lut[1][row[i+1]], lut[2][row[i+2]]
		}
	}
}

func flip(f *frame.Frame) {
	for y := range f.Height {
		row := f.Data[y*f.Stride:]
		for l, r := 0, f.Width-1; l < r; l, r = l+1, r-1 {
			for c := range 3 {
				row[3*l+c], row[3*r+c] = row[3*r+c], row[3*l+c]
			}
		}
	}
}

// boxBlur blurs with a (2r+1)-wide box, horizontally then vertically.
func boxBlur(f *frame.Frame, r int) {
	if r <= 0 {
		return
	}
	tmp := make([]int, max(f.Width, f.Height)*3)
	// Horizontal.
	for y := range f.Height {
		row := f.Data[y*f.Stride : y*f.Stride+3*f.Width]
		for x := range f.Width {
			var s [3]int
			n := 0
			for k := max(0, x-r); k <= min(f.Width-1, x+r); k++ {
				s[0] += int(row[3*k])
				s[1] += int(row[3*k+1])
				s[2] += int(row[3*k+2])
				n++
			}
			tmp[3*x], tmp[3*x+1], tmp[3*x+2] = s[0]/n, s[1]/n, s[2]/n
		}
		for i := range 3 * f.Width {
			row[i] = byte(tmp[i])
		}
	}
	// Vertical.
	for x := range f.Width {
		for y := range f.Height {
			var s [3]int
			n := 0
			for k := max(0, y-r); k <= min(f.Height-1, y+r); k++ {
				p := f.Data[k*f.Stride+3*x:]
				s[0] += int(p[0])
				s[1] += int(p[1])
				s[2] += int(p[2])
				n++
			}
			tmp[3*y], tmp[3*y+1], tmp[3*y+2] = s[0]/n, s[1]/n, s[2]/n
		}
		for y := range f.Height {
			p := f.Data[y*f.Stride+3*x:]
			p[0], p[1], p[2] = byte(tmp[3*y]), byte(tmp[3*y+1]), byte(tmp[3*y+2])
		}
	}
}

// ViewSpec is one random view of a photograph: which part, how large,
// mirrored or not, its light, blur and JPEG quality.
type ViewSpec struct {
	Rect    image.Rectangle // part of the photograph
	Long    int             // longer side after scaling, pixels
	Flip    bool
	Light   Photometric
	Blur    int
	Quality int // JPEG quality; 0 keeps the pixels as they are
}

// randomView draws a view of a w x h photograph. With a subject box, the
// view always contains it with a random amount of its surroundings;
// otherwise it is a random part of 50 to 100% of each side.
func randomView(rng *rand.Rand, w, h int, subject image.Rectangle) ViewSpec {
	var r image.Rectangle
	if !subject.Empty() {
		grow := func(lo, hi, size int) (int, int) {
			d := float64(hi - lo)
			a := lo - int(d*rng.Float64()*0.8)
			b := hi + int(d*rng.Float64()*0.8)
			return max(a, 0), min(b, size)
		}
		x0, x1 := grow(subject.Min.X, subject.Max.X, w)
		y0, y1 := grow(subject.Min.Y, subject.Max.Y, h)
		r = image.Rect(x0, y0, x1, y1)
	} else {
		fw, fh := 0.5+0.5*rng.Float64(), 0.5+0.5*rng.Float64()
		cw, ch := max(int(float64(w)*fw), 1), max(int(float64(h)*fh), 1)
		x0, y0 := rng.IntN(w-cw+1), rng.IntN(h-ch+1)
		r = image.Rect(x0, y0, x0+cw, y0+ch)
	}
	g := 1 + 0.15*(2*rng.Float64()-1)
	v := ViewSpec{
		Rect: r,
		Long: 200 + rng.IntN(441), // 200..640 px: near and far, small and large cameras
		Flip: rng.IntN(2) == 1,
		Light: Photometric{
			Gain:     [3]float64{g, 1, 2 - g},
			Contrast: 0.7 + 0.6*rng.Float64(),
			Bright:   40 * (2*rng.Float64() - 1),
			Gamma:    math.Exp(0.35 * (2*rng.Float64() - 1)),
		},
		Quality: 30 + rng.IntN(66),
	}
	if rng.Float64() < 0.3 {
		v.Blur = 1 + rng.IntN(2)
	}
	return v
}

// render makes the frame a view describes; subject (in photograph
// coordinates) is mapped to the rendered frame.
func (v ViewSpec) render(f *frame.Frame, subject image.Rectangle) (frame.Frame, image.Rectangle, error) {
	c := crop(f, v.Rect)
	if c.Width == 0 || c.Height == 0 {
		return frame.Frame{}, image.Rectangle{}, errors.New("empty view")
	}
	scale := float64(v.Long) / float64(max(c.Width, c.Height))
	w, h := max(int(math.Round(float64(c.Width)*scale)), 8), max(int(math.Round(float64(c.Height)*scale)), 8)
	out := resize(&c, w, h)
	sub := image.Rectangle{}
	if !subject.Empty() {
		s := subject.Intersect(v.Rect).Sub(v.Rect.Min)
		fx, fy := float64(w)/float64(c.Width), float64(h)/float64(c.Height)
		sub = image.Rect(int(float64(s.Min.X)*fx), int(float64(s.Min.Y)*fy), int(math.Ceil(float64(s.Max.X)*fx)), int(math.Ceil(float64(s.Max.Y)*fy)))
		if v.Flip {
			sub = image.Rect(w-sub.Max.X, sub.Min.Y, w-sub.Min.X, sub.Max.Y)
		}
	}
	if v.Flip {
		flip(&out)
	}
	v.Light.apply(&out)
	boxBlur(&out, v.Blur)
	if v.Quality > 0 {
		jpg, err := camera.EncodeJPEG(&out, 0, v.Quality)
		if err != nil {
			return frame.Frame{}, image.Rectangle{}, err
		}
		if out, err = camera.DecodeImage(jpg); err != nil {
			return frame.Frame{}, image.Rectangle{}, err
		}
	}
	return out, sub, nil
}
