package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"math/rand/v2"

	"gocv.io/x/gocv"
)

// Shot is one segment of a composed video: a photograph (or nothing) over
// the background for a number of seconds, drifting from one position to
// another so that consecutive frames differ as they would on a camera.
type Shot struct {
	Photo   *frame.Frame    // nil shows the background alone
	Crop    image.Rectangle // part of the photo to use; empty means all of it
	Seconds float64
	// Height is the fraction of the frame height the photo fills.
	Height float64
	// From and To are the photo centre's start and end, as fractions of the
	// frame size.
	From, To [2]float64
	// More are further photos on screen at the same time (their Seconds,
	// Noise and More are ignored).
	More []Shot
	// Noise is the standard deviation, in grey levels, of Gaussian noise
	// added to every pixel of every frame, as a camera sensor adds it.
	Noise float64
}

// WriteVideo composes shots over a background into an MJPEG AVI file that
// OpenCV (and most players) can read. It returns the number of frames.
func WriteVideo(path string, width, height int, fps float64, background *frame.Frame, shots []Shot) (int, error) {
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
	gocv.Resize(bgSrc, &bg, image.Pt(max(width, 1), max(height, 1)), 0, 0, gocv.InterpolationArea)
	return compose(path, width, height, fps, shots, func(dst *gocv.Mat) error {
		bg.CopyTo(dst)
		return nil
	})
}

// ComposeVideo composes shots over the frames of a background video (read
// from the start again when it ends) into an MJPEG AVI file. It returns
// the number of frames.
func ComposeVideo(path string, width, height int, fps float64, background string, shots []Shot) (int, error) {
	src, err := OpenSource(background, SourceOptions{})
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	defer func() { src.Close() }()
	var f frame.Frame
	return compose(path, width, height, fps, shots, func(dst *gocv.Mat) error {
		err := src.Read(&f)
		if errors.Is(err, io.EOF) {
			again, oerr := OpenSource(background, SourceOptions{})
			if oerr != nil {
				return fmt.Errorf("background: %w", oerr)
			}
			src.Close()
			src = again
			err = src.Read(&f)
		}
		if err != nil {
			return fmt.Errorf("background: %w", err)
		}
		m, err := matFromFrame(&f)
		if err != nil {
			return err
		}
		defer m.Close()
		gocv.Resize(m, dst, image.Pt(width, height), 0, 0, gocv.InterpolationArea)
		return nil
	})
}

func compose(path string, width, height int, fps float64, shots []Shot, background func(dst *gocv.Mat) error) (int, error) {
	if width <= 0 || height <= 0 || fps <= 0 {
		return 0, fmt.Errorf("video size %dx%d at %g fps", width, height, fps)
	}
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
	var scaled []gocv.Mat
	defer func() {
		for i := range scaled {
			scaled[i].Close()
		}
	}()
	noise := rand.New(rand.NewPCG(uint64(width), uint64(height)))
	frames := 0
	for si, s := range shots {
		n := int(math.Round(s.Seconds * fps))
		layers := append([]Shot{s}, s.More...)
		for len(scaled) < len(layers) {
			scaled = append(scaled, gocv.NewMat())
		}
		for li, l := range layers {
			if l.Photo != nil {
				if err := scalePhoto(l, height, &scaled[li]); err != nil {
					return frames, fmt.Errorf("shot %d: %w", si, err)
				}
			}
		}
		for i := range n {
			if err := background(&canvas); err != nil {
				return frames, err
			}
			t := 0.0
			if n > 1 {
				t = float64(i) / float64(n-1)
			}
			for li, l := range layers {
				if l.Photo == nil {
					continue
				}
				cx := (l.From[0] + (l.To[0]-l.From[0])*t) * float64(width)
				cy := (l.From[1] + (l.To[1]-l.From[1])*t) * float64(height)
				paste(&canvas, scaled[li], int(cx), int(cy))
			}
			if s.Noise > 0 {
				if err := addNoise(&canvas, s.Noise, noise); err != nil {
					return frames, err
				}
			}
			if err := vw.Write(canvas); err != nil {
				return frames, fmt.Errorf("write frame %d: %w", frames, err)
			}
			frames++
		}
	}
	return frames, nil
}

// addNoise adds Gaussian noise of standard deviation sigma to every byte.
func addNoise(m *gocv.Mat, sigma float64, rng *rand.Rand) error {
	if !m.IsContinuous() || m.Type() != gocv.MatTypeCV8UC3 {
		return errors.New("noise: canvas is not a packed 8-bit BGR image")
	}
	pix, err := m.DataPtrUint8()
	if err != nil {
		return err
	}
	for i, v := range pix {
		x := float64(v) + rng.NormFloat64()*sigma
		pix[i] = byte(min(max(math.Round(x), 0), 255))
	}
	return nil
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
