package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"image"
	"math"
	"testing"

	"github.com/whiskercam/whisker/internal/testenv"
)

// 8-bit inputs: q = round(((pixel - mean) / std) / scale) + zero, clamped.
func TestPreprocessQuantisesForUint8AndInt8(t *testing.T) {
	f := solid(40, 30, 0, 100, 255) // B, G, R
	for _, tc := range []struct {
		name  string
		spec  frame.Spec
		want  [3]int // R, G, B after quantisation
		check func(b byte) int
	}{
		// A typical uint8 model: [0,255] pixels as they are.
		{"uint8 identity", frame.Spec{Type: frame.Uint8, Scale: 1, Zero: 0, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}}, [3]int{255, 100, 0}, func(b byte) int { return int(b) }},
		// [-1,1] input quantised with scale 1/128, zero 128.
		{"uint8 of [-1,1]", frame.Spec{Type: frame.Uint8, Scale: 1.0 / 128, Zero: 128, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5}},
			[3]int{q(255, 127.5, 127.5, 1.0/128, 128, 0, 255), q(100, 127.5, 127.5, 1.0/128, 128, 0, 255), q(0, 127.5, 127.5, 1.0/128, 128, 0, 255)}, func(b byte) int { return int(b) }},
		// int8 with zero point -128: pixel - 128 in effect.
		{"int8", frame.Spec{Type: frame.Int8, Scale: 1, Zero: -128, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}}, [3]int{127, -28, -128}, func(b byte) int { return int(int8(b)) }},
		// A scale that overflows the range is clamped.
		{"int8 clamped", frame.Spec{Type: frame.Int8, Scale: 0.5, Zero: 0, Mean: [3]float32{0, 0, 0}, Std: [3]float32{1, 1, 1}}, [3]int{127, 127, 0}, func(b byte) int { return int(int8(b)) }},
	} {
		tc.spec.Width, tc.spec.Height, tc.spec.RGB = 8, 6, true
		p, err := NewPreprocessor(tc.spec)
		if err != nil {
			t.Fatal(tc.name, err)
		}
		var in frame.Input
		err = p.Prepare(&f, image.Rectangle{}, &in)
		p.Close()
		if err != nil {
			t.Fatal(tc.name, err)
		}
		if in.Float != nil || len(in.Quantized) != 8*6*3 {
			t.Fatalf("%s: %d floats, %d bytes", tc.name, len(in.Float), len(in.Quantized))
		}
		for i, b := range in.Quantized {
			if got := tc.check(b); got != tc.want[i%3] {
				t.Fatalf("%s: value %d is %d, want %d", tc.name, i, got, tc.want[i%3])
			}
		}
	}
	for _, bad := range []frame.Spec{
		{Width: 8, Height: 8, Std: [3]float32{1, 1, 1}, Type: frame.Uint8},                     // no scale
		{Width: 8, Height: 8, Std: [3]float32{1, 1, 1}, Type: frame.Int8, Scale: 1, Zero: 200}, // zero out of range
		{Width: 8, Height: 8, Std: [3]float32{1, 1, 1}, Type: "float16"},                       // unknown type
	} {
		if _, err := NewPreprocessor(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func q(pixel, mean, std, scale float64, zero, lo, hi int) int {
	v := int(math.Round((pixel-mean)/std/scale)) + zero
	return min(max(v, lo), hi)
}

// A box in input coordinates maps back to the frame rectangle it came
// from, whichever way the frame was fitted.
func TestToFrameInvertsEachFit(t *testing.T) {
	f := solid(640, 480, 0, 0, 0)
	want := image.Rect(200, 120, 440, 400)
	for _, tc := range []struct {
		fit frame.Fit
		// The box in normalised input coordinates, worked out by hand for
		// a 300x300 input.
		box [4]float32 // ymin, xmin, ymax, xmax
	}{
		{frame.FitStretch, [4]float32{120.0 / 480, 200.0 / 640, 400.0 / 480, 440.0 / 640}},
		// 640x480 letterboxed into 300x300: scale 300/640, 225 rows tall,
		// 37 rows of padding above.
		{frame.FitLetterbox, [4]float32{(37 + 120*300.0/640) / 300, 200 * 300.0 / 640 / 300, (37 + 400*300.0/640) / 300, 440 * 300.0 / 640 / 300}},
		// Centre crop: the middle 480x480 (x from 80), scale 300/480.
		{frame.FitCrop, [4]float32{120.0 / 480, 120.0 / 480, 400.0 / 480, 360.0 / 480}},
	} {
		p, err := NewPreprocessor(frame.Spec{Width: 300, Height: 300, Std: [3]float32{1, 1, 1}, Fit: tc.fit})
		if err != nil {
			t.Fatal(err)
		}
		got := p.ToFrame(&f, tc.box[0], tc.box[1], tc.box[2], tc.box[3])
		p.Close()
		if d := max(abs(got.Min.X-want.Min.X), abs(got.Min.Y-want.Min.Y), abs(got.Max.X-want.Max.X), abs(got.Max.Y-want.Max.Y)); d > 2 {
			t.Errorf("%s: %v, want %v", tc.fit, got, want)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Preparing a region is preparing that part of the frame on its own.
func TestPrepareRegionEqualsPreparingTheCrop(t *testing.T) {
	f, err := ReadImage(testenv.Photo(t, "dog.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	r := image.Rect(110, 200, 330, 550)
	crop := frame.Frame{Width: r.Dx(), Height: r.Dy(), Stride: r.Dx() * 3}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		crop.Data = append(crop.Data, f.Data[y*f.Stride+r.Min.X*3:y*f.Stride+r.Max.X*3]...)
	}
	p, err := NewPreprocessor(frame.Spec{Width: 96, Height: 96, RGB: true, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5}, Fit: frame.FitLetterbox})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var a, b frame.Input
	if err := p.Prepare(&f, r, &a); err != nil {
		t.Fatal(err)
	}
	if err := p.Prepare(&crop, image.Rectangle{}, &b); err != nil {
		t.Fatal(err)
	}
	for i := range a.Float {
		if a.Float[i] != b.Float[i] {
			t.Fatalf("value %d: %g from the region, %g from the crop", i, a.Float[i], b.Float[i])
		}
	}
	if err := p.Prepare(&f, image.Rect(5000, 5000, 5100, 5100), &a); err == nil {
		t.Error("region outside the frame accepted")
	}
}

func TestSnapshotAndCropJPEG(t *testing.T) {
	f, err := ReadImage(testenv.Photo(t, "dog.jpg")) // 768x576
	if err != nil {
		t.Fatal(err)
	}
	before := f.Clone()
	box := image.Rect(110, 200, 330, 550)
	jpeg, err := SnapshotJPEG(&f, []Mark{{Rect: box, Label: "Misty 0.98", Primary: true}, {Rect: image.Rect(460, 70, 690, 170), Label: "Tigger"}}, 384, 90)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.Data {
		if f.Data[i] != before.Data[i] {
			t.Fatal("drawing changed the frame")
		}
	}
	img, err := DecodeImage(jpeg)
	if err != nil {
		t.Fatal(err)
	}
	if img.Width != 384 || img.Height != 288 {
		t.Fatalf("snapshot is %dx%d, want 384x288", img.Width, img.Height)
	}
	// The primary box's left edge (x = 55 at half size) is drawn in its
	// colour (BGR 0, 200, 255), give or take JPEG.
	px := img.Data[200*img.Stride+55*3:]
	if px[0] > 80 || px[1] < 150 || px[2] < 200 {
		t.Errorf("box edge pixel is BGR %v", px[:3])
	}
	crop, err := CropJPEG(&f, box, 100, 90)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := DecodeImage(crop)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Width != 62 || ci.Height != 100 {
		t.Errorf("crop is %dx%d, want 62x100", ci.Width, ci.Height)
	}
	if _, err := CropJPEG(&f, image.Rect(900, 900, 1000, 1000), 100, 90); err == nil {
		t.Error("crop outside the frame accepted")
	}
	if got := Expand(box, 0.1, 768, 576); got != image.Rect(88, 165, 352, 576) {
		t.Errorf("Expand: %v", got)
	}
}
