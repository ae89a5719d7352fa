package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/whiskercam/whisker/internal/testenv"
)

func TestMotionGateOnSyntheticFrames(t *testing.T) {
	g, err := NewMotionGate(MotionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	base := solid(320, 240, 90, 120, 100)
	if m, _ := g.Check(&base); !m.Moving {
		t.Fatal("first frame: no reference yet, must count as moving")
	}
	g.Accept()
	same := base.Clone()
	if m, _ := g.Check(&same); m.Moving || m.Changed != 0 {
		t.Fatalf("identical frame: %+v", m)
	}
	for _, tc := range []struct {
		name   string
		side   int
		delta  int
		moving bool
	}{
		{"a 40 px patch 60 levels brighter (2% of the frame)", 40, 60, true},
		{"a 16 px patch 60 levels brighter (0.3%)", 16, 60, false},
		{"a 40 px patch 10 levels brighter (below the pixel threshold)", 40, 10, false},
	} {
		f := base.Clone()
		for y := 100; y < 100+tc.side; y++ {
			for x := 150; x < 150+tc.side; x++ {
				for c := range 3 {
					f.Data[y*f.Stride+x*3+c] += byte(tc.delta)
				}
			}
		}
		m, err := g.Check(&f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Moving != tc.moving {
			t.Errorf("%s: %+v", tc.name, m)
		}
	}
	// Another frame size is a new scene.
	small := solid(160, 120, 90, 120, 100)
	if m, _ := g.Check(&small); !m.Moving {
		t.Error("new frame size not treated as motion")
	}
	for _, bad := range []MotionConfig{{Width: 4}, {Blur: 4}, {PixelThreshold: 300}, {MinArea: 2}} {
		if _, err := NewMotionGate(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// gateVideo runs the gate over a video as the pipeline does (the reference
// is the last accepted frame) and returns how many frames passed.
func gateVideo(t *testing.T, path string) (passed, frames int) {
	t.Helper()
	src, err := OpenSource(path, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	g, err := NewMotionGate(MotionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var f frame.Frame
	for {
		err := src.Read(&f)
		if errors.Is(err, io.EOF) {
			return passed, frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
		m, err := g.Check(&f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Moving {
			passed++
			g.Accept()
		}
	}
}

// A still scene with sensor noise passes only its first frame; a video
// with pets walking through passes most of their frames.
func TestMotionGateOnVideos(t *testing.T) {
	dir := t.TempDir()
	lawn, err := ReadImage(testenv.Photo(t, "grass.png"))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := ReadImage(testenv.Photo(t, "chelsea.png"))
	if err != nil {
		t.Fatal(err)
	}
	still := filepath.Join(dir, "still.avi")
	if _, err := WriteVideo(still, 320, 240, 10, &lawn, []Shot{{Seconds: 3, Noise: 3}}); err != nil {
		t.Fatal(err)
	}
	walk := filepath.Join(dir, "walk.avi")
	if _, err := ComposeVideo(walk, 320, 240, 10, testenv.Video(t, "small.mp4"), []Shot{
		{Seconds: 3, Photo: &cat, Height: 0.5, From: [2]float64{0.1, 0.5}, To: [2]float64{0.9, 0.5}, Noise: 3},
	}); err != nil {
		t.Fatal(err)
	}
	if passed, n := gateVideo(t, still); passed != 1 || n != 30 {
		t.Errorf("still scene: %d of %d frames passed, want only the first", passed, n)
	}
	// The cat crosses the frame in 3 s: about 8 px a frame at this size.
	if passed, n := gateVideo(t, walk); n != 30 || passed < 25 {
		t.Errorf("walking cat: %d of %d frames passed", passed, n)
	}
}
