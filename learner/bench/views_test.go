package bench

import (
	"bytes"
	"image"
	"math/rand/v2"
	"testing"

	"github.com/whiskercam/whisker/camera/frame"
)

func gradientFrame(w, h int) frame.Frame {
	f := frame.Frame{Width: w, Height: h, Stride: 3 * w, Data: make([]byte, 3*w*h)}
	for y := range h {
		for x := range w {
			i := y*f.Stride + 3*x
			f.Data[i], f.Data[i+1], f.Data[i+2] = byte(x*255/max(w-1, 1)), byte(y*255/max(h-1, 1)), 100
		}
	}
	return f
}

func TestResizeKeepsTheImage(t *testing.T) {
	f := gradientFrame(64, 48)
	for _, size := range [][2]int{{32, 24}, {16, 12}, {128, 96}, {64, 48}} {
		r := resize(&f, size[0], size[1])
		if r.Width != size[0] || r.Height != size[1] || len(r.Data) != 3*size[0]*size[1] {
			t.Fatalf("%v: %dx%d, %d bytes", size, r.Width, r.Height, len(r.Data))
		}
		// The corners keep their colours (within rounding of the average).
		last := (r.Height-1)*r.Stride + 3*(r.Width-1)
		if r.Data[0] > 16 || r.Data[last] < 239 || r.Data[last+1] < 239 || r.Data[2] != 100 {
			t.Errorf("%v: corners %v and %v", size, r.Data[:3], r.Data[last:last+3])
		}
	}
}

func TestCropFlipAndPaste(t *testing.T) {
	f := gradientFrame(40, 30)
	c := crop(&f, image.Rect(10, 5, 30, 25))
	if c.Width != 20 || c.Height != 20 || c.Data[0] != f.Data[5*f.Stride+30] {
		t.Fatalf("crop %dx%d starts %d", c.Width, c.Height, c.Data[0])
	}
	if out := crop(&f, image.Rect(35, 25, 60, 60)); out.Width != 5 || out.Height != 5 {
		t.Fatalf("crop past the edge is %dx%d", out.Width, out.Height)
	}
	g := f.Clone()
	flip(&g)
	if !bytes.Equal(g.Data[:3], f.Data[3*39:3*40]) {
		t.Fatal("flip did not mirror the first row")
	}
	// A 2x2 cutout, one pixel transparent, pasted at 10x10.
	cut := &Cutout{W: 2, H: 2, BGRA: []byte{255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 0, 0, 0, 0}}
	bg := gradientFrame(40, 30)
	box := paste(&bg, cut, 5, 5, 10, 10)
	if box != image.Rect(5, 5, 15, 15) {
		t.Fatalf("box %v", box)
	}
	if p := bg.Data[6*bg.Stride+3*6:]; p[0] != 255 || p[1] != 0 || p[2] != 0 {
		t.Fatalf("opaque pixel %v", p[:3])
	}
	if p, q := bg.Data[12*bg.Stride+3*12:], gradientFrame(40, 30).Data[12*bg.Stride+3*12:]; !bytes.Equal(p[:3], q[:3]) {
		t.Fatalf("transparent pixel changed the background: %v", p[:3])
	}
}

func TestViewsKeepTheSubject(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := gradientFrame(400, 300)
	subject := image.Rect(150, 100, 250, 200)
	for i := range 30 {
		v := randomView(rng, f.Width, f.Height, subject)
		if !subject.In(v.Rect) {
			t.Fatalf("view %d: %v does not hold the subject %v", i, v.Rect, subject)
		}
		out, sub, err := v.render(&f, subject)
		if err != nil {
			t.Fatal(err)
		}
		if max(out.Width, out.Height) != v.Long || sub.Empty() || !sub.In(image.Rect(0, 0, out.Width, out.Height).Inset(-2)) {
			t.Fatalf("view %d: %dx%d (long side %d), subject %v", i, out.Width, out.Height, v.Long, sub)
		}
	}
}

func TestSightingsCacheRoundTrip(t *testing.T) {
	s := []Sighting{
		{Photo: 3, Kind: KindCat, Individual: "Chelsea", View: 7, Detected: true, Features: []float32{1, 2, 3}},
		{Photo: 9, Kind: KindScene, View: 0, Features: []float32{4, 5, 6}},
	}
	enc := encodeSightings("bb@1", s)
	got, err := decodeSightings(enc, "bb@1")
	if err != nil || len(got) != 2 || got[0].Individual != "Chelsea" || !got[0].Detected || got[1].Detected || got[1].Features[2] != 6 || got[0].View != 7 {
		t.Fatalf("%+v, %v", got, err)
	}
	if _, err := decodeSightings(enc, "bb@2"); err == nil {
		t.Fatal("a cache of another backbone decoded")
	}
	bad := bytes.Clone(enc)
	bad[10] ^= 1
	if _, err := decodeSightings(bad, "bb@1"); err == nil {
		t.Fatal("a damaged cache decoded")
	}
}

func FuzzDecodeSightings(f *testing.F) {
	f.Add(encodeSightings("bb", []Sighting{{Kind: KindDog, Features: []float32{1}}}))
	f.Add([]byte(sightingsMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := decodeSightings(data, "bb")
		if err != nil {
			return
		}
		for _, x := range s {
			if len(x.Features) != len(s[0].Features) {
				t.Fatal("vectors of different lengths")
			}
		}
	})
}

func TestHouseholdsLeaveStrangers(t *testing.T) {
	var s []Sighting
	for _, ind := range []struct{ name, kind string }{{"a", KindCat}, {"b", KindCat}, {"c", KindCat}, {"d", KindDog}, {"e", KindDog}} {
		for v := range 12 {
			s = append(s, Sighting{Individual: ind.name, Kind: ind.kind, View: v, Detected: v != 11, Features: []float32{1}})
		}
	}
	hs, err := MakeHouseholds(s, OpenSetConfig{Shots: []int{1, 6}, Splits: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 8 {
		t.Fatalf("%d households", len(hs))
	}
	for _, h := range hs {
		if len(h.Pets) != 3 || len(h.Train) != 3*h.Shots {
			t.Fatalf("household %+v", h)
		}
		for _, i := range h.Train {
			if !s[i].Detected || s[i].Individual != h.Pets[0] && s[i].Individual != h.Pets[1] && s[i].Individual != h.Pets[2] {
				t.Fatalf("labelled sighting %+v is not a detected pet of %v", s[i], h.Pets)
			}
		}
	}
	if _, err := MakeHouseholds(s, OpenSetConfig{Shots: []int{9}, Splits: 1}); err == nil {
		t.Fatal("9 shots of 11 detected sightings left fewer than 5 to test")
	}
	if _, err := MakeHouseholds(s[:36], OpenSetConfig{}); err == nil {
		t.Fatal("a household of every cat and no dog was drawn")
	}
}
