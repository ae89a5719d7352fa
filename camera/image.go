package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"errors"
	"fmt"
	"image"
	"os"

	"gocv.io/x/gocv"
)

// ErrNotImage is returned for bytes no image decoder accepts.
var ErrNotImage = errors.New("not a readable image")

// MaxImageBytes bounds the images DecodeImage accepts.
const MaxImageBytes = 32 << 20

// maxPixels bounds decoded image sizes (a small file can claim a huge one).
const maxPixels = 50_000_000

// frameFromMat copies an 8-bit BGR (or grey, or BGRA) Mat into dst,
// reusing dst's buffer.
func frameFromMat(m gocv.Mat, dst *frame.Frame) error {
	if m.Empty() {
		return ErrNotImage
	}
	src := m
	if ch := m.Channels(); ch != 3 {
		code := gocv.ColorGrayToBGR
		switch ch {
		case 1:
		case 4:
			code = gocv.ColorBGRAToBGR
		default:
			return fmt.Errorf("%w: %d channels", ErrNotImage, ch)
		}
		conv := gocv.NewMat()
		defer conv.Close()
		gocv.CvtColor(m, &conv, code)
		src = conv
	}
	if src.Type() != gocv.MatTypeCV8UC3 {
		return fmt.Errorf("%w: pixel type %v, want 8-bit", ErrNotImage, src.Type())
	}
	w, h := src.Cols(), src.Rows()
	n := w * h * 3
	if cap(dst.Data) < n {
		dst.Data = make([]byte, n)
	}
	dst.Data = dst.Data[:n]
	if src.IsContinuous() {
		p, err := src.DataPtrUint8()
		if err != nil {
			return err
		}
		copy(dst.Data, p)
	} else {
		b := src.ToBytes()
		copy(dst.Data, b)
	}
	dst.Width, dst.Height, dst.Stride = w, h, w*3
	return nil
}

// matFromFrame wraps a frame's memory in a Mat (no copy). The Mat must be
// closed, and f.Data must not change while it is in use.
func matFromFrame(f *frame.Frame) (gocv.Mat, error) {
	if err := f.Validate(); err != nil {
		return gocv.Mat{}, err
	}
	if f.Stride != f.Width*3 {
		return gocv.Mat{}, fmt.Errorf("frame stride %d: only packed frames are supported", f.Stride)
	}
	return gocv.NewMatFromBytes(f.Height, f.Width, gocv.MatTypeCV8UC3, f.Data[:f.Height*f.Stride])
}

// DecodeImage decodes a JPEG, PNG or other image OpenCV reads into a BGR frame.
func DecodeImage(data []byte) (frame.Frame, error) {
	var f frame.Frame
	if len(data) == 0 {
		return f, fmt.Errorf("%w: empty", ErrNotImage)
	}
	if len(data) > MaxImageBytes {
		return f, fmt.Errorf("%w: %d bytes is over the %d-byte limit", ErrNotImage, len(data), MaxImageBytes)
	}
	if w, h, ok := peekSize(data); ok && int64(w)*int64(h) > maxPixels {
		return f, fmt.Errorf("%w: %dx%d pixels is too large", ErrNotImage, w, h)
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil {
		return f, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	defer m.Close()
	if m.Empty() {
		return f, ErrNotImage
	}
	if err := frameFromMat(m, &f); err != nil {
		return f, err
	}
	return f, nil
}

// ReadImage reads an image file into a BGR frame.
func ReadImage(path string) (frame.Frame, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return frame.Frame{}, err
	}
	f, err := DecodeImage(data)
	if err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// JPEGQuality is the quality of the JPEGs Whisker keeps: the picture
// stored with each sample and, by default, the snapshots of sightings.
const JPEGQuality = 85

// EncodeJPEG encodes a frame as JPEG, scaled down so that its longer side
// is at most maxSide pixels (0 keeps the size).
func EncodeJPEG(f *frame.Frame, maxSide, quality int) ([]byte, error) {
	m, err := matFromFrame(f)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	src := m
	if long := max(f.Width, f.Height); maxSide > 0 && long > maxSide {
		scaled := gocv.NewMat()
		defer scaled.Close()
		w := f.Width * maxSide / long
		h := f.Height * maxSide / long
		gocv.Resize(m, &scaled, image.Pt(max(w, 1), max(h, 1)), 0, 0, gocv.InterpolationArea)
		src = scaled
	}
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, src, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, fmt.Errorf("encode JPEG: %w", err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}

// WriteImage writes a frame to an image file; the extension picks the format.
func WriteImage(path string, f *frame.Frame) error {
	m, err := matFromFrame(f)
	if err != nil {
		return err
	}
	defer m.Close()
	if !gocv.IMWrite(path, m) {
		return fmt.Errorf("write image %s failed", path)
	}
	return nil
}

// peekSize reads the pixel size from PNG and JPEG headers without decoding.
func peekSize(b []byte) (w, h int, ok bool) {
	// PNG: signature, then the IHDR chunk.
	if len(b) >= 24 && string(b[1:4]) == "PNG" {
		w = int(b[16])<<24 | int(b[17])<<16 | int(b[18])<<8 | int(b[19])
		h = int(b[20])<<24 | int(b[21])<<16 | int(b[22])<<8 | int(b[23])
		return w, h, true
	}
	// JPEG: walk the markers to a start-of-frame.
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, false
	}
	i := 2
	for i+9 < len(b) {
		if b[i] != 0xFF {
			return 0, 0, false
		}
		marker := b[i+1]
		if marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7) {
			i += 2
			continue
		}
		seg := int(b[i+2])<<8 | int(b[i+3])
		if marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC {
			h = int(b[i+5])<<8 | int(b[i+6])
			w = int(b[i+7])<<8 | int(b[i+8])
			return w, h, true
		}
		i += 2 + seg
	}
	return 0, 0, false
}
