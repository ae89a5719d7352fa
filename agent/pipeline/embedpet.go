package pipeline

import (
	"context"
	"errors"
	"image"
	"slices"
	"time"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/camera/frame"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/detect"
)

// Pet is an image embedded the way the camera embeds a pet: the best pet
// the detector finds, cropped with the configured margin, or the whole
// image when it finds none (or the backbone does not detect).
type Pet struct {
	Features []float32
	// Crop is what was embedded, in pixels of the image; Found says
	// whether the detector found a pet there, of Class with Score.
	Crop  image.Rectangle
	Found bool
	Class string
	Score float32
}

// EmbedPet finds the pet in an image and embeds its crop, between
// frames. It waits at most 30 s for the backbone.
func (p *Pipeline) EmbedPet(ctx context.Context, img *frame.Frame) (Pet, error) {
	r := embedRequest{img: img, detect: true, reply: make(chan embedResult, 1)}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case p.requests <- r:
	case <-ctx.Done():
		return Pet{}, ctx.Err()
	case <-t.C:
		return Pet{}, errors.New("the backbone is busy")
	}
	select {
	case out := <-r.reply:
		return out.pet, out.err
	case <-ctx.Done():
		return Pet{}, ctx.Err()
	}
}

// embedPet runs in the infer goroutine: the whole image through the
// backbone, the best pet box decoded as the camera does, then its crop.
func (p *Pipeline) embedPet(f *frame.Frame, in *frame.Input, res *backbone.Result) (Pet, error) {
	whole := image.Rect(0, 0, f.Width, f.Height)
	if err := p.crop.Prepare(f, image.Rectangle{}, in); err != nil {
		return Pet{}, err
	}
	if err := p.bb.Infer(*in, res); err != nil {
		return Pet{}, err
	}
	pet := Pet{Crop: whole, Features: slices.Clone(res.Embedding)}
	if p.dec == nil {
		return pet, nil
	}
	dets, err := p.dec.Decode(res.Boxes, res.Scores)
	if err != nil {
		return Pet{}, err
	}
	d := p.cfg.Camera.Detect
	dets = detect.MergeAcrossClasses(dets, float32(d.IoU), nestedPet)
	for i := range dets { // best first
		det := &dets[i]
		rect := p.crop.ToFrame(f, det.Box.YMin, det.Box.XMin, det.Box.YMax, det.Box.XMax)
		if rect.Dx() < 4 || rect.Dy() < 4 {
			continue
		}
		crop := camera.Expand(rect, d.Margin, f.Width, f.Height)
		if err := p.crop.Prepare(f, crop, in); err != nil {
			return Pet{}, err
		}
		if err := p.bb.Infer(*in, res); err != nil {
			return Pet{}, err
		}
		return Pet{Features: slices.Clone(res.Embedding), Crop: crop, Found: true, Class: det.Label, Score: det.Score}, nil
	}
	return pet, nil
}
