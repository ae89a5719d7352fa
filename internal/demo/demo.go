// Package demo describes the demo video: which photograph is on screen in
// which frames. The command that writes it and the tests that check what
// the agent says about it share this description.
package demo

import (
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
)

// Video geometry.
const (
	Width  = 640
	Height = 480
	FPS    = 10
)

// Subjects on screen.
const (
	Empty = ""    // the lawn alone
	Cat   = "cat" // chelsea.png
	Dog   = "dog" // dog.jpg, cropped to the dog
)

type shot struct {
	subject  string
	seconds  float64
	height   float64
	from, to [2]float64
}

// scene: the lawn, then the cat and the dog each twice, at other sizes and
// positions the second time.
var scene = []shot{
	{Empty, 3, 0, [2]float64{}, [2]float64{}},
	{Cat, 6, 0.85, [2]float64{0.45, 0.5}, [2]float64{0.55, 0.52}},
	{Empty, 3, 0, [2]float64{}, [2]float64{}},
	{Dog, 6, 0.9, [2]float64{0.55, 0.5}, [2]float64{0.45, 0.5}},
	{Empty, 3, 0, [2]float64{}, [2]float64{}},
	{Cat, 6, 0.7, [2]float64{0.6, 0.45}, [2]float64{0.4, 0.55}},
	{Dog, 6, 0.75, [2]float64{0.4, 0.5}, [2]float64{0.6, 0.5}},
}

// dogBox is where the dog is in dog.jpg.
var dogBox = image.Rect(110, 200, 330, 550)

// Frames is the number of frames in the video.
func Frames() int {
	n := 0
	for _, s := range scene {
		n += int(math.Round(s.seconds * FPS))
	}
	return n
}

// Subject says what is on screen in frame i (0-based, modulo the length,
// so that a looping source's frame counter can be used directly).
// pass is 0 for the first appearance of that subject and 1 for the second.
func Subject(i int) (subject string, pass int) {
	i %= Frames()
	seen := map[string]int{}
	for _, s := range scene {
		n := int(math.Round(s.seconds * FPS))
		if i < n {
			return s.subject, seen[s.subject]
		}
		i -= n
		seen[s.subject]++
	}
	return Empty, 0
}

// Write composes the demo video from the photographs in dir.
func Write(path, dir string) (int, error) {
	read := func(name string) (*frame.Frame, error) {
		f, err := camera.ReadImage(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%w (run make deps)", err)
		}
		return &f, nil
	}
	cat, err := read("chelsea.png")
	if err != nil {
		return 0, err
	}
	dog, err := read("dog.jpg")
	if err != nil {
		return 0, err
	}
	lawn, err := read("grass.png")
	if err != nil {
		return 0, err
	}
	tintGreen(lawn)
	shots := make([]camera.Shot, len(scene))
	for i, s := range scene {
		shots[i] = camera.Shot{Seconds: s.seconds, Height: s.height, From: s.from, To: s.to}
		switch s.subject {
		case Cat:
			shots[i].Photo = cat
		case Dog:
			shots[i].Photo, shots[i].Crop = dog, dogBox
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	tmp := path + ".tmp.avi"
	n, err := camera.WriteVideo(tmp, Width, Height, FPS, lawn, shots)
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return n, os.Rename(tmp, path)
}

// tintGreen colours the grey lawn photograph.
func tintGreen(f *frame.Frame) {
	for i := 0; i+2 < len(f.Data); i += 3 {
		v := float64(f.Data[i+1])
		f.Data[i] = byte(v * 0.45)
		f.Data[i+1] = byte(v * 0.85)
		f.Data[i+2] = byte(v * 0.55)
	}
}
