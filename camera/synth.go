package camera

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// Shot is one segment of a composed video: a photograph (or nothing) over
// the background for a number of seconds, drifting from one position to
// another so that consecutive frames differ as they would on a camera.
type Shot struct {
	Photo   *Frame          // nil shows the background alone
	Crop    image.Rectangle // part of the photo to use; empty means all of it
	Seconds float64
	// Height is the fraction of the frame height the photo fills.
	Height float64
	// From and To are the photo centre's start and end, as fractions of the
	// frame size.
	From, To [2]float64
}

// WriteVideo composes shots over a background into an MJPEG AVI file that
// OpenCV (and most players) can read. It returns the number of frames.
func WriteVideo(path string, width, height int, fps float64, background *Frame, shots []Shot) (int, error) {
	if width <= 0 || height <= 0 || fps <= 0 {
		return 0, fmt.Errorf("video size %dx%d at %g fps", width, height, fps)
	}
	if background == nil {
		return 0, errors.New("no background")
	}
	bgSrc, err := matFromFrame(background)
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	defer bgSrc.Close()
	bg := gocv.NewMat()
	defer bg.Close()
	gocv.Resize(bgSrc, &bg, image.Pt(width, height), 0, 0, gocv.InterpolationArea)

	vw, err := gocv.VideoWriterFile(path, "MJPG", fps, width, height, true)
	if err != nil {
		return 0, fmt.Errorf("create video %s: %w", path, err)
	}
	defer vw.Close()
	if !vw.IsOpened() {
		return 0, fmt.Errorf("create video %s: OpenCV cannot write MJPG AVI here", path)
	}

	canvas := gocv.NewMat()
	defer canvas.Close()
	scaled := gocv.NewMat()
	defer scaled.Close()
	frames := 0
	for si, s := range shots {
		n := int(math.Round(s.Seconds * fps))
		if s.Photo != nil {
			if err := scalePhoto(s, height, &scaled); err != nil {
				return frames, fmt.Errorf("shot %d: %w", si, err)
			}
		}
		for i := range n {
			bg.CopyTo(&canvas)
			if s.Photo != nil {
				t := 0.0
				if n > 1 {
					t = float64(i) / float64(n-1)
				}
				cx := (s.From[0] + (s.To[0]-s.From[0])*t) * float64(width)
				cy := (s.From[1] + (s.To[1]-s.From[1])*t) * float64(height)
				paste(&canvas, scaled, int(cx), int(cy))
			}
			if err := vw.Write(canvas); err != nil {
				return frames, fmt.Errorf("write frame %d: %w", frames, err)
			}
			frames++
		}
	}
	return frames, nil
}

func scalePhoto(s Shot, frameHeight int, dst *gocv.Mat) error {
	src, err := matFromFrame(s.Photo)
	if err != nil {
		return err
	}
	defer src.Close()
	crop := s.Crop
	if crop.Empty() {
		crop = image.Rect(0, 0, s.Photo.Width, s.Photo.Height)
	}
	crop = crop.Intersect(image.Rect(0, 0, s.Photo.Width, s.Photo.Height))
	if crop.Empty() {
		return errors.New("crop is outside the photo")
	}
	view := src.Region(crop)
	defer view.Close()
	h := int(s.Height * float64(frameHeight))
	if h < 8 {
		h = 8
	}
	w := crop.Dx() * h / crop.Dy()
	gocv.Resize(view, dst, image.Pt(max(w, 1), h), 0, 0, gocv.InterpolationArea)
	return nil
}

// paste copies src onto dst centred at (cx, cy), clipped to dst.
func paste(dst *gocv.Mat, src gocv.Mat, cx, cy int) {
	r := image.Rect(cx-src.Cols()/2, cy-src.Rows()/2, cx-src.Cols()/2+src.Cols(), cy-src.Rows()/2+src.Rows())
	clip := r.Intersect(image.Rect(0, 0, dst.Cols(), dst.Rows()))
	if clip.Empty() {
		return
	}
	from := src.Region(clip.Sub(r.Min))
	defer from.Close()
	to := dst.Region(clip)
	defer to.Close()
	from.CopyTo(&to)
}
