package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"image"
	"testing"

	"github.com/whiskercam/whisker/internal/testenv"
)

// benchFrame is a 640x480 frame of a real photograph.
func benchFrame(b *testing.B) frame.Frame {
	b.Helper()
	f, err := ReadImage(testenv.Photo(b, "dog.jpg"))
	if err != nil {
		b.Fatal(err)
	}
	// dog.jpg is 768x576; the camera frame is 640x480.
	jpeg, err := EncodeJPEG(&f, 640, 95)
	if err != nil {
		b.Fatal(err)
	}
	out, err := DecodeImage(jpeg)
	if err != nil {
		b.Fatal(err)
	}
	if out.Width != 640 || out.Height != 480 {
		b.Fatalf("frame is %dx%d", out.Width, out.Height)
	}
	return out
}

func BenchmarkPrepare640x480(b *testing.B) {
	f := benchFrame(b)
	for _, tc := range []struct {
		name string
		spec frame.Spec
	}{
		{"float32", frame.Spec{Width: 300, Height: 300, RGB: true, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5}}},
		{"uint8", frame.Spec{Width: 300, Height: 300, RGB: true, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5}, Type: frame.Uint8, Scale: 1.0 / 128, Zero: 128}},
		{"float32-letterbox", frame.Spec{Width: 300, Height: 300, RGB: true, Mean: [3]float32{127.5, 127.5, 127.5}, Std: [3]float32{127.5, 127.5, 127.5}, Fit: frame.FitLetterbox}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := NewPreprocessor(tc.spec)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			var in frame.Input
			for b.Loop() {
				if err := p.Prepare(&f, image.Rectangle{}, &in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMotionGate640x480(b *testing.B) {
	f := benchFrame(b)
	g, err := NewMotionGate(MotionConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	for b.Loop() {
		if _, err := g.Check(&f); err != nil {
			b.Fatal(err)
		}
		g.Accept()
	}
}

func BenchmarkSnapshotJPEG640x480(b *testing.B) {
	f := benchFrame(b)
	marks := []Mark{{Rect: image.Rect(80, 150, 250, 420), Label: "Misty 0.98", Primary: true}}
	for b.Loop() {
		if _, err := SnapshotJPEG(&f, marks, 640, 85); err != nil {
			b.Fatal(err)
		}
	}
}
