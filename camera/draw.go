package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"fmt"
	"image"
	"image/color"
	"strings"

	"gocv.io/x/gocv"
)

// Mark is a box to draw on a snapshot, in frame pixels.
type Mark struct {
	Rect  image.Rectangle
	Label string // drawn above the box (ASCII; other characters become '?')
	// Primary marks the box the snapshot is about; others are drawn thin.
	Primary bool
}

var (
	primaryColour = color.RGBA{R: 255, G: 200, B: 0, A: 255}
	otherColour   = color.RGBA{R: 0, G: 170, B: 255, A: 255}
	textColour    = color.RGBA{A: 255}
)

// SnapshotJPEG encodes the frame with the marks drawn on it, scaled so
// that its longer side is at most maxSide pixels (0 keeps the size). The
// frame itself is not changed.
func SnapshotJPEG(f *frame.Frame, marks []Mark, maxSide, quality int) ([]byte, error) {
	m, err := matFromFrame(f)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	img := gocv.NewMat()
	defer img.Close()
	scale := 1.0
	if long := max(f.Width, f.Height); maxSide > 0 && long > maxSide {
		scale = float64(maxSide) / float64(long)
		gocv.Resize(m, &img, image.Pt(max(int(float64(f.Width)*scale), 1), max(int(float64(f.Height)*scale), 1)), 0, 0, gocv.InterpolationArea)
	} else {
		m.CopyTo(&img)
	}
	// Others first, so that the primary box is drawn on top.
	for _, primary := range []bool{false, true} {
		for _, mk := range marks {
			if mk.Primary != primary {
				continue
			}
			drawMark(&img, mk, scale)
		}
	}
	return encodeJPEG(img, quality)
}

func drawMark(img *gocv.Mat, mk Mark, scale float64) {
	r := image.Rect(int(float64(mk.Rect.Min.X)*scale), int(float64(mk.Rect.Min.Y)*scale),
		int(float64(mk.Rect.Max.X)*scale), int(float64(mk.Rect.Max.Y)*scale))
	c, thick := otherColour, 1
	if mk.Primary {
		c, thick = primaryColour, 2
	}
	gocv.Rectangle(img, r, c, thick)
	if mk.Label == "" {
		return
	}
	text := asciiOnly(mk.Label)
	const font, fontScale = gocv.FontHersheySimplex, 0.45
	sz, base := gocv.GetTextSizeWithBaseline(text, font, fontScale, 1)
	y := r.Min.Y - 2
	if y-sz.Y-base < 0 {
		y = r.Min.Y + sz.Y + 2 // no room above: inside the box
	}
	bg := image.Rect(r.Min.X, y-sz.Y-2, r.Min.X+sz.X+4, y+base)
	gocv.Rectangle(img, bg, c, -1)
	gocv.PutText(img, text, image.Pt(r.Min.X+2, y), font, fontScale, textColour, 1)
}

func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 32 || r > 126 {
			return '?'
		}
		return r
	}, s)
}

// CropJPEG encodes the part r of the frame, scaled so that its longer side
// is at most maxSide pixels (0 keeps the size).
func CropJPEG(f *frame.Frame, r image.Rectangle, maxSide, quality int) ([]byte, error) {
	m, err := matFromFrame(f)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	r = r.Intersect(image.Rect(0, 0, f.Width, f.Height))
	if r.Empty() {
		return nil, fmt.Errorf("crop %v is outside the %dx%d frame", r, f.Width, f.Height)
	}
	view := m.Region(r)
	defer view.Close()
	img := gocv.NewMat()
	defer img.Close()
	if long := max(r.Dx(), r.Dy()); maxSide > 0 && long > maxSide {
		gocv.Resize(view, &img, image.Pt(max(r.Dx()*maxSide/long, 1), max(r.Dy()*maxSide/long, 1)), 0, 0, gocv.InterpolationArea)
	} else {
		view.CopyTo(&img)
	}
	return encodeJPEG(img, quality)
}

func encodeJPEG(m gocv.Mat, quality int) ([]byte, error) {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, fmt.Errorf("encode JPEG: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}

// Expand grows r by frac of its size on every side (as context around a
// detected animal) and clips it to a w x h frame.
func Expand(r image.Rectangle, frac float64, w, h int) image.Rectangle {
	dx, dy := int(float64(r.Dx())*frac+0.5), int(float64(r.Dy())*frac+0.5)
	return image.Rect(r.Min.X-dx, r.Min.Y-dy, r.Max.X+dx, r.Max.Y+dy).Intersect(image.Rect(0, 0, w, h))
}
