package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"errors"
	"fmt"
	"image"
	"io"
	"os"

	"gocv.io/x/gocv"
)

// ErrNotImage is returned for bytes no image decoder accepts, and (with
// ErrImageTooLarge or ErrImageFormat) for images refused before decoding.
var ErrNotImage = errors.New("not a readable image")

// errDecodedSizeDiffers marks an image OpenCV decoded at another size than
// SizeImage read: a hole in the sizing, which the fuzz test looks for.
var errDecodedSizeDiffers = errors.New("decoded size differs from the header")

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

// DecodeImage decodes a JPEG, PNG, BMP or WebP image into a BGR frame,
// within DefaultImageLimits.
func DecodeImage(data []byte) (frame.Frame, error) {
	return DecodeImageLimits(data, DefaultImageLimits())
}

// DecodeImageLimits decodes a JPEG, PNG, BMP or WebP image into a BGR
// frame. The image is sized (SizeImage) before any byte reaches OpenCV;
// what cannot be sized with certainty, or is over the limits, is refused.
func DecodeImageLimits(data []byte, lim ImageLimits) (frame.Frame, error) {
	var f frame.Frame
	info, err := SizeImage(data, lim)
	if err != nil {
		return f, err
	}
	m, err := gocv.IMDecode(data, gocv.IMReadColor)
	if err != nil {
		return f, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	defer m.Close()
	if m.Empty() {
		return f, fmt.Errorf("%w: %s of %dx%d does not decode", ErrNotImage, info.Format, info.Width, info.Height)
	}
	// OpenCV turns a JPEG upright by its EXIF orientation: the sides may swap.
	w, h := m.Cols(), m.Rows()
	if !(w == info.Width && h == info.Height) && !(info.Format == FormatJPEG && w == info.Height && h == info.Width) {
		return f, fmt.Errorf("%w: %w: %s header says %dx%d, OpenCV decoded %dx%d", ErrNotImage, errDecodedSizeDiffers, info.Format, info.Width, info.Height, w, h)
	}
	if err := frameFromMat(m, &f); err != nil {
		return f, err
	}
	return f, nil
}

// ReadImage reads an image file into a BGR frame, within
// DefaultImageLimits: a larger file is refused after reading one byte more
// than the limit, never in full.
func ReadImage(path string) (frame.Frame, error) {
	data, err := readLimited(path, DefaultImageLimits().MaxBytes)
	if err != nil {
		return frame.Frame{}, err
	}
	f, err := DecodeImage(data)
	if err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s: %w: %w: over the %d-byte limit", path, ErrNotImage, ErrImageTooLarge, limit)
	}
	return data, nil
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
