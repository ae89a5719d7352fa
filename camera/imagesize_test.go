package camera

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/whiskercam/whisker/camera/frame"
	"github.com/whiskercam/whisker/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the image fixtures in testdata/images and the fuzz seeds in testdata/fuzz")

const fixtureDir = "testdata/images"

// A fixture's expected outcome: accepted as format at w x h, or refused
// with an error matching want (and always ErrNotImage) that mentions say.
type fixture struct {
	name   string
	format ImageFormat
	w, h   int
	want   error  // nil: accepted and decoded
	say    string // part of the refusal
	doc    string
}

// fixtures is the table of real files in testdata/images: well-formed
// images in every accepted format, hostile ones, and files in every format
// OpenCV 4.6 reads that is refused.
var fixtures = []fixture{
	{name: "ok.jpg", format: FormatJPEG, w: 40, h: 30, doc: "baseline JPEG written by OpenCV"},
	{name: "ok-progressive.jpg", format: FormatJPEG, w: 40, h: 30, doc: "progressive JPEG"},
	{name: "ok-gray.jpg", format: FormatJPEG, w: 40, h: 30, doc: "one-component JPEG"},
	{name: "ok-exif-rotated.jpg", format: FormatJPEG, w: 40, h: 30, doc: "EXIF orientation 6: OpenCV turns it to 30x40"},
	{name: "ok.png", format: FormatPNG, w: 40, h: 30, doc: "PNG written by OpenCV"},
	{name: "ok-16bit.png", format: FormatPNG, w: 40, h: 30, doc: "16-bit PNG"},
	{name: "ok-palette.png", format: FormatPNG, w: 40, h: 30, doc: "paletted PNG written by Go"},
	{name: "ok.bmp", format: FormatBMP, w: 40, h: 30, doc: "24-bit BMP written by OpenCV"},
	{name: "ok-gray.bmp", format: FormatBMP, w: 40, h: 30, doc: "8-bit paletted BMP written by OpenCV"},
	{name: "ok-topdown.bmp", format: FormatBMP, w: 40, h: 30, doc: "BMP with top-down rows (negative height)"},
	{name: "ok-lossy.webp", format: FormatWebP, w: 40, h: 30, doc: "lossy WebP (VP8)"},
	{name: "ok-lossless.webp", format: FormatWebP, w: 40, h: 30, doc: "lossless WebP (VP8L)"},
	{name: "ok-alpha.webp", format: FormatWebP, w: 40, h: 30, doc: "extended WebP with alpha (VP8X)"},
	{name: "ok-truncated-scan.jpg", format: FormatJPEG, w: 40, h: 30, doc: "JPEG cut inside its scan: libjpeg fills the rest"},

	{name: "jpeg-fill-30000.jpg", want: ErrNotImage, say: "fill bytes", doc: "a few hundred bytes claiming 30000x30000, a fill byte before the first marker"},
	{name: "jpeg-30000.jpg", want: ErrImageTooLarge, say: "30000x30000", doc: "the same claim without the fill byte"},
	{name: "jpeg-fill-small.jpg", want: ErrNotImage, say: "fill bytes", doc: "a small JPEG with a fill byte: OpenCV reads it, it is refused as ambiguous"},
	{name: "jpeg-stray-bytes.jpg", want: ErrNotImage, say: "stray byte", doc: "bytes between segments, which libjpeg skips"},
	{name: "jpeg-two-frames.jpg", want: ErrNotImage, say: "two frame headers", doc: "a second frame header claiming 60000x60000"},
	{name: "jpeg-zero-height.jpg", want: ErrNotImage, say: "40x0", doc: "height 0 (a DNL image)"},
	{name: "jpeg-max-side.jpg", want: ErrImageTooLarge, say: "65535x65535", doc: "the largest size a JPEG can claim"},
	{name: "jpeg-arithmetic.jpg", want: ErrNotImage, say: "coding process", doc: "arithmetic coding (SOF9)"},
	{name: "jpeg-12bit.jpg", want: ErrNotImage, say: "12-bit", doc: "12-bit samples"},
	{name: "jpeg-no-scan.jpg", want: ErrNotImage, say: "truncated", doc: "headers only, cut before the scan"},
	{name: "jpeg-bad-length.jpg", want: ErrNotImage, say: "past the end", doc: "a segment length past the end of the file"},
	{name: "png-100000.png", want: ErrImageTooLarge, say: "100000x100000", doc: "72 bytes claiming 100000x100000"},
	{name: "png-bomb.png", want: ErrImageTooLarge, say: "10000x10000", doc: "decompression bomb: a few hundred KB of zlib that inflate to 300 MB"},
	{name: "png-10000-little-data.png", want: ErrImageTooLarge, say: "10000x10000", doc: "IHDR of 10000x10000 and 100 bytes of image data"},
	{name: "png-zero.png", want: ErrNotImage, say: "0x0", doc: "0x0"},
	{name: "png-2g.png", want: ErrNotImage, say: "2^31-1", doc: "width 2^31, over PNG's range"},
	{name: "png-bad-crc.png", want: ErrNotImage, say: "checksum", doc: "IHDR checksum wrong"},
	{name: "png-ihdr-not-first.png", want: ErrNotImage, say: "IHDR", doc: "another chunk before IHDR"},
	{name: "png-no-idat.png", format: FormatPNG, w: 40, h: 30, want: ErrNotImage, say: "does not decode", doc: "IHDR only: sized, then refused by libpng"},
	{name: "bmp-height-int-min.bmp", want: ErrImageTooLarge, say: "2147483648", doc: "height -2^31: OpenCV aborts on it"},
	{name: "bmp-wide.bmp", want: ErrImageTooLarge, say: "2000000x1", doc: "2,000,000x1: OpenCV aborts on a side over 2^20"},
	{name: "bmp-zero-width.bmp", want: ErrNotImage, say: "0x30", doc: "width 0"},
	{name: "bmp-negative-width.bmp", want: ErrNotImage, say: "-40x30", doc: "width -40"},
	{name: "bmp-truncated.bmp", want: ErrNotImage, say: "do not fit", doc: "rows missing"},
	{name: "bmp-rle8.bmp", want: ErrNotImage, say: "compression 1", doc: "RLE8 compression"},
	{name: "bmp-os2.bmp", want: ErrNotImage, say: "info header of 12", doc: "OS/2 header"},
	{name: "webp-huge-canvas.webp", want: ErrImageTooLarge, say: "16777216x16777216", doc: "VP8X canvas of 2^24 x 2^24"},
	{name: "webp-animated.webp", want: ErrNotImage, say: "animated", doc: "animation flag"},
	{name: "webp-bare-vp8l.webp", want: ErrNotImage, say: "RIFF", doc: "a bare VP8L bitstream, which libwebp also reads"},
	{name: "webp-riff-past-end.webp", want: ErrNotImage, say: "RIFF size", doc: "RIFF size past the end"},
	{name: "webp-zero.webp", want: ErrNotImage, say: "0x30", doc: "VP8 frame of width 0"},
	{name: "webp-dicom.webp", want: ErrImageFormat, say: "ambiguous", doc: "WebP and DICOM signatures at once: OpenCV falls back to DICOM when libwebp declines"},
	{name: "polyglot-jpeg-png.jpg", want: ErrNotImage, say: "stray byte", doc: "JPEG start, PNG inside"},
	{name: "refused.tiff", want: ErrImageFormat, say: "TIFF", doc: "TIFF written by OpenCV"},
	{name: "refused.ppm", want: ErrImageFormat, say: "PBM/PGM/PPM", doc: "PPM written by OpenCV"},
	{name: "refused.pgm", want: ErrImageFormat, say: "PBM/PGM/PPM", doc: "PGM written by OpenCV"},
	{name: "refused.pbm", want: ErrImageFormat, say: "PBM/PGM/PPM", doc: "PBM written by OpenCV"},
	{name: "refused.pam", want: ErrImageFormat, say: "PAM", doc: "PAM written by OpenCV"},
	{name: "refused.pfm", want: ErrImageFormat, say: "PFM", doc: "PFM written by OpenCV"},
	{name: "refused.ras", want: ErrImageFormat, say: "Sun raster", doc: "Sun raster written by OpenCV"},
	{name: "refused.hdr", want: ErrImageFormat, say: "Radiance HDR", doc: "Radiance HDR written by OpenCV"},
	{name: "refused.exr", want: ErrImageFormat, say: "OpenEXR", doc: "OpenEXR written by OpenCV"},
	{name: "refused.jp2", want: ErrImageFormat, say: "JPEG 2000", doc: "JPEG 2000 written by OpenCV"},
	{name: "refused.j2k", want: ErrImageFormat, say: "JPEG 2000", doc: "a bare JPEG 2000 codestream"},
	{name: "refused.dcm", want: ErrImageFormat, say: "DICOM", doc: "a DICOM preamble"},
	{name: "refused.gif", want: ErrImageFormat, say: "GIF", doc: "GIF written by Go (OpenCV 4.6 has no GIF decoder)"},
	{name: "empty.bin", want: ErrNotImage, say: "empty", doc: "no bytes"},
	{name: "text.txt", want: ErrImageFormat, say: "unknown format", doc: "plain text"},
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("%v (go test ./camera/ -run TestImageFixtures -update writes the fixtures)", err)
	}
	return b
}

// TestImageFixtures writes the fixtures with -update, and otherwise checks
// that the table and testdata/images name the same files.
func TestImageFixtures(t *testing.T) {
	if *update {
		writeFixtures(t)
	}
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	var onDisk, inTable []string
	for _, e := range entries {
		onDisk = append(onDisk, e.Name())
	}
	for _, fx := range fixtures {
		inTable = append(inTable, fx.name)
	}
	slices.Sort(onDisk)
	slices.Sort(inTable)
	if !slices.Equal(onDisk, inTable) {
		t.Fatalf("testdata/images holds %v\nthe table names %v", onDisk, inTable)
	}
}

// TestDecodeImageFixtures runs every fixture through SizeImage and
// DecodeImage in this process: a file that reached an OpenCV call that
// throws would abort the test binary.
func TestDecodeImageFixtures(t *testing.T) {
	lim := DefaultImageLimits()
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			data := readFixture(t, fx.name)
			info, sizeErr := SizeImage(data, lim)
			f, err := DecodeImage(data)
			if fx.want == nil {
				if sizeErr != nil || err != nil {
					t.Fatalf("%s: refused: size %v, decode %v", fx.doc, sizeErr, err)
				}
				if info.Format != fx.format || info.Width != fx.w || info.Height != fx.h {
					t.Fatalf("sized as %+v, want %s %dx%d", info, fx.format, fx.w, fx.h)
				}
				w, h := fx.w, fx.h
				if strings.Contains(fx.name, "exif-rotated") {
					w, h = h, w
				}
				if f.Width != w || f.Height != h || f.Validate() != nil {
					t.Fatalf("decoded %dx%d, want %dx%d", f.Width, f.Height, w, h)
				}
				return
			}
			if err == nil {
				t.Fatalf("%s: decoded as %dx%d", fx.doc, f.Width, f.Height)
			}
			if !errors.Is(err, fx.want) || !errors.Is(err, ErrNotImage) || !strings.Contains(err.Error(), fx.say) {
				t.Fatalf("%s: error %q, want %v mentioning %q", fx.doc, err, fx.want, fx.say)
			}
			if fx.format != "" && (sizeErr != nil || info.Format != fx.format || info.Width != fx.w || info.Height != fx.h) {
				t.Fatalf("sized as %+v (%v), want %s %dx%d before decoding fails", info, sizeErr, fx.format, fx.w, fx.h)
			}
		})
	}
}

// Every prefix and every single-byte change of the well-formed files is
// sized and decoded without harm: refused, or decoded at the size its
// header gives.
func TestDecodeImageTruncatedAndCorrupt(t *testing.T) {
	lim := ImageLimits{MaxBytes: 1 << 20, MaxPixels: 1 << 20}
	for _, fx := range fixtures {
		if !strings.HasPrefix(fx.name, "ok") {
			continue
		}
		data := readFixture(t, fx.name)
		tried, decoded := 0, 0
		check := func(what string, b []byte) {
			tried++
			f, err := DecodeImageLimits(b, lim)
			if errors.Is(err, errDecodedSizeDiffers) {
				t.Fatalf("%s %s: %v", fx.name, what, err)
			}
			if err == nil {
				decoded++
				if f.Validate() != nil {
					t.Fatalf("%s %s: decoded frame %dx%d is invalid", fx.name, what, f.Width, f.Height)
				}
			} else if !errors.Is(err, ErrNotImage) {
				t.Fatalf("%s %s: error %v does not match ErrNotImage", fx.name, what, err)
			}
		}
		for n := range len(data) {
			check(fmt.Sprintf("cut to %d bytes", n), data[:n])
		}
		for i := range data {
			b := bytes.Clone(data)
			b[i] ^= 0x55
			check(fmt.Sprintf("byte %d changed", i), b)
			b[i] = 0xff
			check(fmt.Sprintf("byte %d set to 0xff", i), b)
		}
		if decoded == 0 || decoded == tried {
			t.Fatalf("%s: %d of %d damaged copies decoded: the damage reached nothing", fx.name, decoded, tried)
		}
		t.Logf("%s: %d of %d damaged copies decoded, the rest refused", fx.name, decoded, tried)
	}
}

func TestImageLimits(t *testing.T) {
	data := readFixture(t, "ok.png")
	if _, err := SizeImage(data, ImageLimits{MaxBytes: 1024, MaxPixels: 40*30 - 1}); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("40x30 under a 1199-pixel limit: %v", err)
	}
	if _, err := SizeImage(data, ImageLimits{MaxBytes: 1024, MaxPixels: 40 * 30}); err != nil {
		t.Fatalf("40x30 under a 1200-pixel limit: %v", err)
	}
	big := readFixture(t, "ok-gray.bmp") // over 1 KB
	if _, err := SizeImage(big, ImageLimits{MaxBytes: 1024, MaxPixels: 1 << 20}); !errors.Is(err, ErrImageTooLarge) || len(big) <= 1024 {
		t.Fatalf("%d bytes under a 1024-byte limit: %v", len(big), err)
	}
	for _, bad := range []ImageLimits{{}, {MaxBytes: 1 << 20}, {MaxBytes: 1 << 20, MaxPixels: OpenCVPixelLimit + 1}, {MaxBytes: 2 << 30, MaxPixels: 1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("limits %+v accepted", bad)
		}
		if _, err := SizeImage(data, bad); err == nil {
			t.Errorf("SizeImage with limits %+v accepted", bad)
		}
	}
	if err := DefaultImageLimits().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestReadImageRefusesLargeFilesUnread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.jpg")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: its size is over the limit, its blocks are not.
	if err := fh.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if _, err := ReadImage(path); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("4 GiB file: %v", err)
	}
}

// FuzzDecodeImage: no input makes sizing or decoding crash, and what is
// accepted decodes at the size it was given.
func FuzzDecodeImage(f *testing.F) {
	lim := ImageLimits{MaxBytes: 1 << 20, MaxPixels: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := SizeImage(data, lim)
		if err != nil {
			if !errors.Is(err, ErrNotImage) {
				t.Fatalf("refusal %v does not match ErrNotImage", err)
			}
			return
		}
		if info.Width <= 0 || info.Height <= 0 || int64(info.Width)*int64(info.Height) > lim.MaxPixels {
			t.Fatalf("accepted %+v", info)
		}
		fr, err := DecodeImageLimits(data, lim)
		if errors.Is(err, errDecodedSizeDiffers) {
			t.Fatal(err)
		}
		if err == nil && fr.Validate() != nil {
			t.Fatalf("decoded an invalid frame %dx%d", fr.Width, fr.Height)
		}
	})
}

// writeFixtures (re)creates testdata/images and the fuzz seeds from code.
func writeFixtures(t *testing.T) {
	files := map[string][]byte{}
	enc := func(ext string, m gocv.Mat, params ...int) []byte {
		t.Helper()
		var buf *gocv.NativeByteBuffer
		var err error
		if len(params) == 0 {
			buf, err = gocv.IMEncode(gocv.FileExt(ext), m)
		} else {
			buf, err = gocv.IMEncodeWithParams(gocv.FileExt(ext), m, params)
		}
		if err != nil {
			t.Fatalf("encode %s: %v", ext, err)
		}
		defer buf.Close()
		return bytes.Clone(buf.GetBytes())
	}
	color3 := gradient(40, 30)
	defer color3.Close()
	gray := gocv.NewMat()
	defer gray.Close()
	gocv.CvtColor(color3, &gray, gocv.ColorBGRToGray)
	px := make([]byte, 40*30*4)
	for i := range px {
		px[i] = byte(i * 7) // alpha varies too, so the encoder keeps it
	}
	bgra, err := gocv.NewMatFromBytes(30, 40, gocv.MatTypeCV8UC4, px)
	if err != nil {
		t.Fatal(err)
	}
	defer bgra.Close()
	big := gradient(96, 80) // JPEG 2000's default resolutions need more than 40x30
	defer big.Close()
	wide := gocv.NewMat()
	defer wide.Close()
	color3.ConvertTo(&wide, gocv.MatTypeCV16UC3)
	floats := gocv.NewMat()
	defer floats.Close()
	color3.ConvertTo(&floats, gocv.MatTypeCV32FC3)

	jpg := enc(".jpg", color3, gocv.IMWriteJpegQuality, 90)
	files["ok.jpg"] = jpg
	files["ok-progressive.jpg"] = enc(".jpg", color3, gocv.IMWriteJpegProgressive, 1)
	files["ok-gray.jpg"] = enc(".jpg", gray)
	files["ok-exif-rotated.jpg"] = slices.Concat(jpg[:2], exifOrientation(6), jpg[2:])
	files["ok-truncated-scan.jpg"] = jpg[:len(jpg)*2/3]
	tiny := enc(".jpg", gray, gocv.IMWriteJpegQuality, 10)
	sof := jpegSOF(t, tiny)
	files["jpeg-30000.jpg"] = patched(tiny, sof+5, 0x75, 0x30, 0x75, 0x30)
	files["jpeg-fill-30000.jpg"] = slices.Concat(tiny[:2], []byte{0xff}, files["jpeg-30000.jpg"][2:])
	files["jpeg-fill-small.jpg"] = slices.Concat(tiny[:2], []byte{0xff}, tiny[2:])
	files["jpeg-stray-bytes.jpg"] = slices.Concat(tiny[:sof], []byte{0x00, 0x13}, tiny[sof:])
	second := patched(tiny[sof:sof+2+int(binary.BigEndian.Uint16(tiny[sof+2:]))], 5, 0xea, 0x60, 0xea, 0x60)
	files["jpeg-two-frames.jpg"] = slices.Concat(tiny[:sof], tiny[sof:sof+len(second)], second, tiny[sof+len(second):])
	files["jpeg-zero-height.jpg"] = patched(jpg, jpegSOF(t, jpg)+5, 0, 0)
	files["jpeg-max-side.jpg"] = patched(tiny, sof+5, 0xff, 0xff, 0xff, 0xff)
	files["jpeg-arithmetic.jpg"] = patched(tiny, sof+1, 0xc9)
	files["jpeg-12bit.jpg"] = patched(tiny, sof+4, 12)
	files["jpeg-no-scan.jpg"] = tiny[:jpegSOS(t, tiny)]
	files["jpeg-bad-length.jpg"] = patched(tiny, sof+2, 0xff, 0xf0)

	pngOK := enc(".png", color3)
	files["ok.png"] = pngOK
	files["ok-16bit.png"] = enc(".png", wide)
	files["ok-palette.png"] = palettePNG(t)
	files["png-100000.png"] = pngOf(ihdr(100000, 100000, 8, 2), zlibZeros(t, 100))
	files["png-bomb.png"] = pngOf(ihdr(10000, 10000, 8, 2), zlibZeros(t, 10000*(1+10000*3)))
	files["png-10000-little-data.png"] = pngOf(ihdr(10000, 10000, 8, 2), zlibZeros(t, 100))
	files["png-zero.png"] = pngOf(ihdr(0, 0, 8, 2), zlibZeros(t, 1))
	files["png-2g.png"] = pngOf(ihdr(1<<31, 1, 8, 2), zlibZeros(t, 1))
	files["png-bad-crc.png"] = patched(pngOK, 29, pngOK[29]^1)
	files["png-ihdr-not-first.png"] = slices.Concat(pngOK[:8], pngChunk("tEXt", []byte("a\x00b")), pngOK[8:])
	files["png-no-idat.png"] = pngOK[:33]

	bmpOK := enc(".bmp", color3)
	files["ok.bmp"] = bmpOK
	files["ok-gray.bmp"] = enc(".bmp", gray)
	files["ok-topdown.bmp"] = patched(bmpOK, 22, le32(-30)...)
	files["bmp-height-int-min.bmp"] = patched(bmpOK, 22, le32(-1<<31)...)
	files["bmp-wide.bmp"] = patched(bmpOK, 18, slices.Concat(le32(2000000), le32(1))...)
	files["bmp-zero-width.bmp"] = patched(bmpOK, 18, le32(0)...)
	files["bmp-negative-width.bmp"] = patched(bmpOK, 18, le32(-40)...)
	files["bmp-truncated.bmp"] = bmpOK[:len(bmpOK)-100]
	files["bmp-rle8.bmp"] = patched(files["ok-gray.bmp"], 30, le32(1)...)
	files["bmp-os2.bmp"] = patched(bmpOK, 14, le32(12)...)

	lossy := enc(".webp", color3, gocv.IMWriteWebpQuality, 80)
	files["ok-lossy.webp"] = lossy
	lossless := enc(".webp", color3, gocv.IMWriteWebpQuality, 101)
	files["ok-lossless.webp"] = lossless
	alpha := enc(".webp", bgra, gocv.IMWriteWebpQuality, 80)
	files["ok-alpha.webp"] = alpha
	if string(lossy[12:16]) != "VP8 " || string(lossless[12:16]) != "VP8L" || string(alpha[12:16]) != "VP8X" {
		t.Fatalf("WebP chunks %q %q %q, want VP8, VP8L, VP8X", lossy[12:16], lossless[12:16], alpha[12:16])
	}
	files["webp-huge-canvas.webp"] = patched(alpha, 24, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	files["webp-animated.webp"] = patched(alpha, 20, alpha[20]|0x02)
	files["webp-bare-vp8l.webp"] = lossless[20:]
	files["webp-riff-past-end.webp"] = patched(lossy, 4, le32(int32(len(lossy)))...)
	files["webp-zero.webp"] = patched(lossy, 26, 0, 0)
	dicom := bytes.Clone(lossy)
	for len(dicom) < 132 {
		dicom = append(dicom, 0)
	}
	copy(dicom[128:], "DICM")
	files["webp-dicom.webp"] = dicom
	files["polyglot-jpeg-png.jpg"] = slices.Concat(tiny[:sof], pngOK, tiny[sof:])

	files["refused.tiff"] = enc(".tiff", color3)
	files["refused.ppm"] = enc(".ppm", color3)
	files["refused.pgm"] = enc(".pgm", gray)
	files["refused.pbm"] = enc(".pbm", gray)
	files["refused.pam"] = enc(".pam", color3)
	files["refused.pfm"] = enc(".pfm", floats)
	files["refused.ras"] = enc(".ras", color3)
	files["refused.hdr"] = enc(".hdr", floats)
	files["refused.exr"] = enc(".exr", floats)
	jp2 := enc(".jp2", big)
	files["refused.jp2"] = jp2
	if i := bytes.Index(jp2, []byte{0xff, 0x4f, 0xff, 0x51}); i > 0 {
		files["refused.j2k"] = jp2[i:]
	} else {
		t.Fatal("no codestream in the JPEG 2000 file")
	}
	files["refused.dcm"] = slices.Concat(make([]byte, 128), []byte("DICM\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"))
	var g bytes.Buffer
	if err := gif.Encode(&g, image.NewGray(image.Rect(0, 0, 40, 30)), nil); err != nil {
		t.Fatal(err)
	}
	files["refused.gif"] = g.Bytes()
	files["empty.bin"] = nil
	files["text.txt"] = []byte("a label for Tigger, not an image\n")

	for _, dir := range []string{fixtureDir, "testdata/fuzz/FuzzDecodeImage"} {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(fixtureDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(b) > 64<<10 {
			continue // too large to be a useful fuzz seed
		}
		seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join("testdata/fuzz/FuzzDecodeImage", name), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d fixtures", len(files))
}

// gradient is a w x h BGR image with some structure for the encoders.
func gradient(w, h int) gocv.Mat {
	f := frame.Frame{Width: w, Height: h, Stride: 3 * w, Data: make([]byte, 3*w*h)}
	for y := range h {
		for x := range w {
			i := y*f.Stride + 3*x
			f.Data[i], f.Data[i+1], f.Data[i+2] = byte(x*255/w), byte(y*255/h), byte((x+y)*7)
		}
	}
	m, err := matFromFrame(&f)
	if err != nil {
		panic(err)
	}
	return m // the Mat keeps f.Data alive
}

func patched(b []byte, at int, with ...byte) []byte {
	out := bytes.Clone(b)
	copy(out[at:], with)
	return out
}

func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

// jpegSOF and jpegSOS find the frame header and first scan by walking the
// segments of a JPEG this test wrote.
func jpegSOF(t *testing.T, b []byte) int { return jpegMarker(t, b, 0xc0, 0xc2) }
func jpegSOS(t *testing.T, b []byte) int { return jpegMarker(t, b, 0xda, 0xda) }

func jpegMarker(t *testing.T, b []byte, lo, hi byte) int {
	t.Helper()
	for i := 2; i+4 <= len(b); i += 2 + int(binary.BigEndian.Uint16(b[i+2:])) {
		if b[i+1] >= lo && b[i+1] <= hi {
			return i
		}
	}
	t.Fatalf("no marker %#x", lo)
	return 0
}

// exifOrientation is an APP1 Exif segment with one tag: the orientation.
func exifOrientation(o uint16) []byte {
	tiff := []byte("II*\x00\x08\x00\x00\x00\x01\x00")
	tiff = binary.LittleEndian.AppendUint16(tiff, 0x0112)
	tiff = binary.LittleEndian.AppendUint16(tiff, 3) // SHORT
	tiff = binary.LittleEndian.AppendUint32(tiff, 1)
	tiff = binary.LittleEndian.AppendUint16(tiff, o)
	tiff = append(tiff, 0, 0, 0, 0, 0, 0) // value padding, no next IFD
	body := append([]byte("Exif\x00\x00"), tiff...)
	return slices.Concat([]byte{0xff, 0xe1}, binary.BigEndian.AppendUint16(nil, uint16(len(body)+2)), body)
}

func pngChunk(typ string, data []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	out = append(out, typ...)
	out = append(out, data...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[4:]))
}

func ihdr(w, h uint32, depth, ctype byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, w)
	b = binary.BigEndian.AppendUint32(b, h)
	return append(b, depth, ctype, 0, 0, 0)
}

func pngOf(hdr, idat []byte) []byte {
	return slices.Concat([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", hdr), pngChunk("IDAT", idat), pngChunk("IEND", nil))
}

// zlibZeros is a zlib stream of n zero bytes, compressed as far as zlib goes.
func zlibZeros(t *testing.T, n int) []byte {
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<16)
	for n > 0 {
		k := min(n, len(zero))
		if _, err := w.Write(zero[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func palettePNG(t *testing.T) []byte {
	img := image.NewPaletted(image.Rect(0, 0, 40, 30), color.Palette{color.Black, color.White, color.RGBA{200, 100, 50, 255}})
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 3)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Real photographs (from Debian packages, as make deps fetches them) are
// accepted: the strict JPEG walk does not refuse what cameras and editors
// write.
func TestRealPhotosAreAccepted(t *testing.T) {
	for _, name := range []string{"dog.jpg", "eagle.jpg", "horses.jpg", "person.jpg", "chelsea.png", "coffee.png", "grass.png"} {
		f, err := ReadImage(testenv.Photo(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		t.Logf("%s: %dx%d", name, f.Width, f.Height)
	}
}
