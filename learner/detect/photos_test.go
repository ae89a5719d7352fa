package detect_test

import (
	"image"
	"slices"
	"testing"

	"github.com/whiskercam/whisker/camera/frame"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/detect"
)

// The real detector, decoded here, finds the cat and the dogs in the
// package photographs, and no pet in photographs without one. The
// thresholds are the configuration's defaults: a score of 0.5 (the
// detector's own even odds) and the IoU of TensorFlow's SSD configs.
func TestFindsPetsInPhotographs(t *testing.T) {
	bb, err := backbone.Open(testenv.DetectorBackbone(t), backbone.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Close()
	man := bb.Manifest()
	layout, err := detect.Layout(man.Detection.Anchors)
	if err != nil {
		t.Fatal(err)
	}
	labels := man.Detection.Labels
	cat, dog := slices.Index(labels, "Cat"), slices.Index(labels, "Dog")
	if cat != 8 || dog != 20 {
		t.Fatalf("Cat is class %d and Dog %d; the label map says 8 and 20", cat, dog)
	}
	dec, err := detect.NewDecoder(detect.Config{Anchors: layout, Scales: man.Detection.BoxScales, NumClasses: len(labels),
		Labels: labels, Classes: []int{cat, dog}, MinScore: 0.5, IoU: 0.6})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := camera.NewPreprocessor(frame.Spec{Width: 300, Height: 300, RGB: true,
		Mean: man.Preprocess.Mean, Std: man.Preprocess.Std, Fit: frame.Fit(man.Preprocess.Resize)})
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	for _, tc := range []struct {
		photo string
		want  []string
		// where the pet is, as annotated by hand (empty: not checked)
		where image.Rectangle
	}{
		{"chelsea.png", []string{"Cat"}, image.Rect(0, 0, 451, 300)},   // the cat fills the photograph
		{"dog.jpg", []string{"Dog"}, image.Rect(110, 200, 330, 550)},   // the box internal/demo crops the dog with
		{"person.jpg", []string{"Dog"}, image.Rect(65, 262, 205, 345)}, // by eye: the dog left of the walker
		{"grass.png", nil, image.Rectangle{}},
		{"coffee.png", nil, image.Rectangle{}},
	} {
		f, err := camera.ReadImage(testenv.Photo(t, tc.photo))
		if err != nil {
			t.Fatal(err)
		}
		in, err := pre.Process(&f, nil)
		if err != nil {
			t.Fatal(err)
		}
		var r backbone.Result
		if err := bb.Infer(frame.Input{Float: in}, &r); err != nil {
			t.Fatal(err)
		}
		dets, err := dec.Decode(r.Boxes, r.Scores)
		if err != nil {
			t.Fatal(err)
		}
		dets = detect.MergeAcrossClasses(dets, 0.6, 0.8)
		var got []string
		for _, d := range dets {
			got = append(got, d.Label)
			rect := pre.ToFrame(&f, d.Box.YMin, d.Box.XMin, d.Box.YMax, d.Box.XMax)
			t.Logf("%s: %s %.3f at %v", tc.photo, d.Label, d.Score, rect)
			if !tc.where.Empty() {
				if iou := rectIoU(rect, tc.where); iou < 0.5 {
					t.Errorf("%s: %s at %v overlaps the annotated %v by IoU %.2f", tc.photo, d.Label, rect, tc.where, iou)
				}
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: found %v, want %v", tc.photo, got, tc.want)
		}
	}
}

func rectIoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	ia := float64(in.Dx() * in.Dy())
	return ia / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia)
}
