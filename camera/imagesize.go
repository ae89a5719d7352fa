package camera

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// Image sizing runs before any byte reaches OpenCV. OpenCV 4.6 aborts the
// whole process when an image's header claims a size it refuses (an
// exception thrown outside imdecode's own handler reaches cgo), and
// allocates whatever size a header claims before it looks at the pixel
// data, so a file of a few hundred bytes can claim gigabytes. SizeImage
// therefore names the decoder OpenCV would choose, reads the image's size
// with two independent readers (a strict header walk here, and Go's own
// decoder for the format), and refuses the image unless both agree and the
// size is within limits. Formats with no second reader, or whose memory use
// a header does not bound, are refused outright.

// ImageFormat is an image file format, as OpenCV 4.6 recognises it from
// the first bytes.
type ImageFormat string

// Formats OpenCV 4.6 (Debian's build) decodes. Only JPEG, PNG, BMP and
// WebP are accepted; the others are recognised so that their refusal can
// name them.
const (
	FormatJPEG      ImageFormat = "JPEG"
	FormatPNG       ImageFormat = "PNG"
	FormatBMP       ImageFormat = "BMP"
	FormatWebP      ImageFormat = "WebP"
	FormatTIFF      ImageFormat = "TIFF"
	FormatPNM       ImageFormat = "PBM/PGM/PPM"
	FormatPAM       ImageFormat = "PAM"
	FormatPFM       ImageFormat = "PFM"
	FormatSunRaster ImageFormat = "Sun raster"
	FormatHDR       ImageFormat = "Radiance HDR"
	FormatEXR       ImageFormat = "OpenEXR"
	FormatJPEG2000  ImageFormat = "JPEG 2000"
	FormatDICOM     ImageFormat = "DICOM"
	// FormatGIF is not read by OpenCV 4.6; it is named only in refusals.
	FormatGIF ImageFormat = "GIF"
)

// Errors of image sizing and decoding. Every refusal also matches
// ErrNotImage.
var (
	// ErrImageTooLarge: the image's bytes, pixels or a side are over the limits.
	ErrImageTooLarge = errors.New("image too large")
	// ErrImageFormat: a format that is not accepted, or data that does not
	// say clearly which format it is.
	ErrImageFormat = errors.New("image format not accepted")
)

// Image limits.
const (
	// MaxImageBytes is the default limit on an encoded image's size.
	MaxImageBytes = 32 << 20
	// DefaultMaxPixels is the default limit on width*height. A decoded
	// image takes 3 bytes a pixel as a frame; decoding a progressive JPEG
	// takes up to about 6 more while it runs.
	DefaultMaxPixels = 50_000_000
	// MaxImageSide is the longest side any image may have (JPEG's own
	// limit). OpenCV aborts on a side over 2^20, so this is fixed, not
	// configurable.
	MaxImageSide = 65535
)

// ImageLimits bound the images DecodeImageLimits and SizeImage accept.
type ImageLimits struct {
	// MaxBytes is the largest encoded image, in bytes.
	MaxBytes int
	// MaxPixels is the largest width*height. It may not exceed
	// OpenCVPixelLimit, OpenCV's own limit in this process.
	MaxPixels int64
}

// DefaultImageLimits are the limits DecodeImage and ReadImage apply.
func DefaultImageLimits() ImageLimits {
	return ImageLimits{MaxBytes: MaxImageBytes, MaxPixels: DefaultMaxPixels}
}

// Validate checks the limits.
func (l ImageLimits) Validate() error {
	if l.MaxBytes < 1024 || l.MaxBytes > 1<<30 {
		return fmt.Errorf("image byte limit %d: want 1024 to %d", l.MaxBytes, 1<<30)
	}
	if l.MaxPixels < 1 || l.MaxPixels > OpenCVPixelLimit {
		return fmt.Errorf("image pixel limit %d: want 1 to %d (OpenCV's limit in this process)", l.MaxPixels, OpenCVPixelLimit)
	}
	return nil
}

// ImageInfo is what SizeImage found.
type ImageInfo struct {
	Format        ImageFormat
	Width, Height int
}

// SizeImage says which format data is in and how large an image it holds,
// without decoding pixels, and refuses (with an error matching ErrNotImage,
// and ErrImageTooLarge or ErrImageFormat where they apply) anything that
// is over the limits, in a format that is not accepted, or that cannot be
// sized with certainty: an unknown format, data that matches more than one
// format's signature, a header the two readers disagree on, fill or stray
// bytes between JPEG segments, a truncated header.
func SizeImage(data []byte, lim ImageLimits) (ImageInfo, error) {
	if err := lim.Validate(); err != nil {
		return ImageInfo{}, err
	}
	if len(data) == 0 {
		return ImageInfo{}, fmt.Errorf("%w: empty", ErrNotImage)
	}
	if len(data) > lim.MaxBytes {
		return ImageInfo{}, fmt.Errorf("%w: %w: %d bytes is over the %d-byte limit", ErrNotImage, ErrImageTooLarge, len(data), lim.MaxBytes)
	}
	formats := openCVFormats(data)
	switch {
	case len(formats) == 0:
		if bytes.HasPrefix(data, []byte("GIF87a")) || bytes.HasPrefix(data, []byte("GIF89a")) {
			return ImageInfo{}, fmt.Errorf("%w: %w: GIF (OpenCV 4.6 does not read it)", ErrNotImage, ErrImageFormat)
		}
		return ImageInfo{}, fmt.Errorf("%w: %w: unknown format", ErrNotImage, ErrImageFormat)
	case len(formats) > 1:
		return ImageInfo{}, fmt.Errorf("%w: %w: ambiguous, the data has the signatures of %s and %s", ErrNotImage, ErrImageFormat, formats[0], formats[1])
	}
	info := ImageInfo{Format: formats[0]}
	var own func([]byte) (int, int, error)
	var second func([]byte) (image.Config, error)
	switch info.Format {
	case FormatJPEG:
		own, second = sizeJPEG, configOf(jpeg.DecodeConfig)
	case FormatPNG:
		own, second = sizePNG, configOf(png.DecodeConfig)
	case FormatBMP:
		own, second = sizeBMP, configOf(bmp.DecodeConfig)
	case FormatWebP:
		own, second = sizeWebP, configOf(webp.DecodeConfig)
	default:
		return info, fmt.Errorf("%w: %w: %s (accepted: JPEG, PNG, BMP, WebP)", ErrNotImage, ErrImageFormat, info.Format)
	}
	w, h, err := own(data)
	if err != nil {
		return info, fmt.Errorf("%w: %s: %v", ErrNotImage, info.Format, err)
	}
	if err := checkSize(info.Format, int64(w), int64(h), lim); err != nil {
		return info, err
	}
	cfg, err := second(data)
	if err != nil {
		return info, fmt.Errorf("%w: %s header (%dx%d) is refused by a second reader: %v", ErrNotImage, info.Format, w, h, err)
	}
	if cfg.Width != w || cfg.Height != h {
		return info, fmt.Errorf("%w: %w: %s header read as %dx%d and as %dx%d", ErrNotImage, ErrImageFormat, info.Format, w, h, cfg.Width, cfg.Height)
	}
	info.Width, info.Height = w, h
	return info, nil
}

func configOf(f func(io.Reader) (image.Config, error)) func([]byte) (image.Config, error) {
	return func(b []byte) (image.Config, error) { return f(bytes.NewReader(b)) }
}

func checkSize(f ImageFormat, w, h int64, lim ImageLimits) error {
	switch {
	case w <= 0 || h <= 0:
		return fmt.Errorf("%w: %s header says %dx%d", ErrNotImage, f, w, h)
	case w > MaxImageSide || h > MaxImageSide:
		return fmt.Errorf("%w: %w: %s of %dx%d pixels: a side is over %d", ErrNotImage, ErrImageTooLarge, f, w, h, MaxImageSide)
	case w*h > lim.MaxPixels:
		return fmt.Errorf("%w: %w: %s of %dx%d pixels is over the %d-pixel limit", ErrNotImage, ErrImageTooLarge, f, w, h, lim.MaxPixels)
	}
	return nil
}

// openCVFormats lists the formats whose signature OpenCV 4.6 would find in
// data, in the order OpenCV tries its decoders (it takes the first).
func openCVFormats(b []byte) []ImageFormat {
	has := func(off int, sig string) bool {
		return len(b) >= off+len(sig) && string(b[off:off+len(sig)]) == sig
	}
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	p := func(kinds string) bool {
		return len(b) >= 3 && b[0] == 'P' && bytes.IndexByte([]byte(kinds), b[1]) >= 0 && space(b[2])
	}
	var out []ImageFormat
	for _, s := range []struct {
		f  ImageFormat
		ok bool
	}{
		{FormatBMP, has(0, "BM")},
		{FormatHDR, has(0, "#?RGBE") || has(0, "#?RADIANCE")},
		{FormatJPEG, has(0, "\xff\xd8\xff")},
		{FormatWebP, looksWebP(b)},
		{FormatSunRaster, has(0, "\x59\xa6\x6a\x95")},
		{FormatPNM, p("123456")},
		{FormatPAM, p("7")},
		{FormatPFM, p("fF")},
		{FormatTIFF, has(0, "II*\x00") || has(0, "MM\x00*") || has(0, "II+\x00") || has(0, "MM\x00+")},
		{FormatPNG, has(0, "\x89PNG\r\n\x1a\n")},
		{FormatDICOM, has(128, "DICM")},
		{FormatJPEG2000, has(0, "\x00\x00\x00\x0cjP  \r\n\x87\n") || has(0, "\xff\x4f\xff\x51")},
		{FormatEXR, has(0, "\x76\x2f\x31\x01")},
	} {
		if s.ok {
			out = append(out, s.f)
		}
	}
	return out
}

// looksWebP says whether libwebp might take data for WebP: a RIFF WEBP
// container, or a bare VP8L or VP8 key-frame bitstream (which libwebp also
// reads, and SizeImage refuses).
func looksWebP(b []byte) bool {
	switch {
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return true
	case len(b) >= 5 && b[0] == 0x2f:
		return true
	case len(b) >= 10 && b[0]&1 == 0 && b[3] == 0x9d && b[4] == 0x01 && b[5] == 0x2a:
		return true
	}
	return false
}

// sizeJPEG walks a JPEG's marker segments from SOI to the first SOS and
// returns the size in its one frame header. It is stricter than libjpeg
// (and Go): fill bytes, stray bytes between segments, a second frame
// header, unknown markers and coding processes other than baseline,
// extended and progressive Huffman are refused, so that every reader that
// gets as far as the scan has seen the same frame header.
func sizeJPEG(b []byte) (w, h int, err error) {
	if len(b) < 4 || b[0] != 0xff || b[1] != 0xd8 {
		return 0, 0, errors.New("no start of image")
	}
	i := 2
	sof := false
	for {
		if i+4 > len(b) {
			return 0, 0, errors.New("truncated before the first scan")
		}
		if b[i] != 0xff {
			return 0, 0, fmt.Errorf("stray byte %#02x at offset %d where a marker should start", b[i], i)
		}
		m := b[i+1]
		if m == 0xff {
			return 0, 0, fmt.Errorf("fill bytes before a marker at offset %d", i)
		}
		n := int(b[i+2])<<8 | int(b[i+3])
		if n < 2 || i+2+n > len(b) {
			return 0, 0, fmt.Errorf("segment %#02x at offset %d has length %d: past the end or too short", m, i, n)
		}
		seg := b[i+4 : i+2+n]
		switch {
		case m == 0xc0 || m == 0xc1 || m == 0xc2:
			if sof {
				return 0, 0, errors.New("two frame headers")
			}
			if len(seg) < 6 {
				return 0, 0, errors.New("frame header too short")
			}
			if seg[0] != 8 {
				return 0, 0, fmt.Errorf("%d-bit samples", seg[0])
			}
			nc := int(seg[5])
			if nc != 1 && nc != 3 && nc != 4 {
				return 0, 0, fmt.Errorf("%d components", nc)
			}
			if len(seg) != 6+3*nc {
				return 0, 0, fmt.Errorf("frame header of %d bytes for %d components", len(seg), nc)
			}
			for c := range nc {
				hv := seg[6+3*c+1]
				if hv>>4 < 1 || hv>>4 > 4 || hv&15 < 1 || hv&15 > 4 {
					return 0, 0, fmt.Errorf("component %d sampling factors %#02x", c, hv)
				}
			}
			h = int(seg[1])<<8 | int(seg[2])
			w = int(seg[3])<<8 | int(seg[4])
			sof = true
		case m >= 0xc3 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc:
			return 0, 0, fmt.Errorf("coding process of marker %#02x is not accepted", m)
		case m == 0xda:
			if !sof {
				return 0, 0, errors.New("scan before the frame header")
			}
			return w, h, nil
		case m == 0xc4, m == 0xcc, m == 0xdb, m == 0xdd, m >= 0xe0 && m <= 0xef, m == 0xfe:
			// Tables, restart interval, application data and comments.
		default:
			return 0, 0, fmt.Errorf("marker %#02x at offset %d", m, i)
		}
		i += 2 + n
	}
}

// sizePNG reads the IHDR chunk, which must come first, with a valid CRC.
func sizePNG(b []byte) (w, h int, err error) {
	if len(b) < 33 {
		return 0, 0, errors.New("truncated header")
	}
	if binary.BigEndian.Uint32(b[8:12]) != 13 || string(b[12:16]) != "IHDR" {
		return 0, 0, errors.New("first chunk is not a 13-byte IHDR")
	}
	if crc32.ChecksumIEEE(b[12:29]) != binary.BigEndian.Uint32(b[29:33]) {
		return 0, 0, errors.New("IHDR checksum does not match")
	}
	w64, h64 := binary.BigEndian.Uint32(b[16:20]), binary.BigEndian.Uint32(b[20:24])
	if w64 > 1<<31-1 || h64 > 1<<31-1 {
		return 0, 0, fmt.Errorf("size %dx%d is over PNG's 2^31-1", w64, h64)
	}
	depth, ctype := b[24], b[25]
	ok := false
	switch ctype {
	case 0:
		ok = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16
	case 3:
		ok = depth == 1 || depth == 2 || depth == 4 || depth == 8
	case 2, 4, 6:
		ok = depth == 8 || depth == 16
	}
	if !ok {
		return 0, 0, fmt.Errorf("colour type %d with bit depth %d", ctype, depth)
	}
	if b[26] != 0 || b[27] != 0 || b[28] > 1 {
		return 0, 0, errors.New("unknown compression, filter or interlace method")
	}
	return int(w64), int(h64), nil
}

// sizeBMP reads a BMP's info header (40, 108 or 124 bytes: the ones both
// OpenCV and Go read alike) and checks that the file holds every row of
// uncompressed pixels it claims.
func sizeBMP(b []byte) (w, h int, err error) {
	if len(b) < 54 {
		return 0, 0, errors.New("truncated header")
	}
	hdr := binary.LittleEndian.Uint32(b[14:18])
	if hdr != 40 && hdr != 108 && hdr != 124 {
		return 0, 0, fmt.Errorf("info header of %d bytes", hdr)
	}
	w32, h32 := int32(binary.LittleEndian.Uint32(b[18:22])), int32(binary.LittleEndian.Uint32(b[22:26]))
	w64, h64 := int64(w32), int64(h32)
	if h64 < 0 {
		h64 = -h64 // top-down rows; -2^31 becomes 2^31, over every limit
	}
	if w64 <= 0 || h64 == 0 {
		return 0, 0, fmt.Errorf("size %dx%d", w32, h32)
	}
	if w64 > MaxImageSide || h64 > MaxImageSide {
		return int(w64), int(h64), nil // checkSize says why
	}
	bpp := int64(binary.LittleEndian.Uint16(b[28:30]))
	compression := binary.LittleEndian.Uint32(b[30:34])
	if compression != 0 && compression != 3 {
		return 0, 0, fmt.Errorf("compression %d", compression)
	}
	off := int64(binary.LittleEndian.Uint32(b[10:14]))
	stride := (w64*bpp + 31) / 32 * 4
	if bpp == 0 || off+stride*h64 > int64(len(b)) {
		return 0, 0, fmt.Errorf("%d rows of %d bytes from offset %d do not fit in %d bytes", h64, stride, off, len(b))
	}
	return int(w64), int(h64), nil
}

// sizeWebP reads the first chunk of a RIFF WEBP container: a lossy (VP8)
// key frame, a lossless (VP8L) header or an extended (VP8X) canvas.
// Animations and bare bitstreams are refused.
func sizeWebP(b []byte) (w, h int, err error) {
	if len(b) < 30 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return 0, 0, errors.New("not a RIFF WEBP container")
	}
	if riff := int64(binary.LittleEndian.Uint32(b[4:8])); riff < 22 || riff+8 > int64(len(b)) {
		return 0, 0, fmt.Errorf("RIFF size %d for %d bytes", riff, len(b))
	}
	chunk := int64(binary.LittleEndian.Uint32(b[16:20]))
	if 20+chunk > int64(len(b)) {
		return 0, 0, fmt.Errorf("first chunk of %d bytes is past the end", chunk)
	}
	p := b[20:]
	switch string(b[12:16]) {
	case "VP8 ":
		if p[0]&1 != 0 || p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a {
			return 0, 0, errors.New("VP8 data is not a key frame")
		}
		w = int(binary.LittleEndian.Uint16(p[6:8]) & 0x3fff)
		h = int(binary.LittleEndian.Uint16(p[8:10]) & 0x3fff)
	case "VP8L":
		if p[0] != 0x2f {
			return 0, 0, errors.New("VP8L signature missing")
		}
		bits := binary.LittleEndian.Uint32(p[1:5])
		if bits>>29 != 0 {
			return 0, 0, fmt.Errorf("VP8L version %d", bits>>29)
		}
		w = int(bits&0x3fff) + 1
		h = int(bits>>14&0x3fff) + 1
	case "VP8X":
		if p[0]&0x02 != 0 {
			return 0, 0, errors.New("animated WebP")
		}
		w = int(uint32(p[4])|uint32(p[5])<<8|uint32(p[6])<<16) + 1
		h = int(uint32(p[7])|uint32(p[8])<<8|uint32(p[9])<<16) + 1
	default:
		return 0, 0, fmt.Errorf("first chunk %q", b[12:16])
	}
	return w, h, nil
}
