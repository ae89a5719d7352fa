package camera

import (
	"github.com/whiskercam/whisker/camera/frame"

	"fmt"
	"image"

	"gocv.io/x/gocv"
)

// MotionConfig tunes the motion gate.
type MotionConfig struct {
	// Width is the width, in pixels, the frame is scaled down to before
	// comparing (the height follows the aspect ratio); 0 means 160.
	Width int
	// Blur is the side of the Gaussian kernel that smooths sensor noise
	// away (odd); 0 means 5, 1 means none.
	Blur int
	// PixelThreshold is how many grey levels (of 255) a pixel must change
	// by to count as changed; 0 means 25.
	PixelThreshold int
	// MinArea is the fraction of pixels that must change for the frame to
	// count as moving; 0 means 0.005 (0.5%).
	MinArea float64
}

// Defaults fills the zero fields.
func (c MotionConfig) Defaults() MotionConfig {
	if c.Width == 0 {
		c.Width = 160
	}
	if c.Blur == 0 {
		c.Blur = 5
	}
	if c.PixelThreshold == 0 {
		c.PixelThreshold = 25
	}
	if c.MinArea == 0 {
		c.MinArea = 0.005
	}
	return c
}

// Validate checks a configuration (after Defaults).
func (c MotionConfig) Validate() error {
	switch {
	case c.Width < 16 || c.Width > 1920:
		return fmt.Errorf("motion width %d: want 16 to 1920 pixels", c.Width)
	case c.Blur < 1 || c.Blur > 31 || c.Blur%2 == 0:
		return fmt.Errorf("motion blur %d: want an odd number from 1 to 31", c.Blur)
	case c.PixelThreshold < 1 || c.PixelThreshold > 254:
		return fmt.Errorf("motion pixel threshold %d: want 1 to 254 grey levels", c.PixelThreshold)
	case !(c.MinArea > 0 && c.MinArea <= 1):
		return fmt.Errorf("motion minimum area %g: want above 0 and at most 1", c.MinArea)
	}
	return nil
}

// Motion is the gate's verdict on one frame.
type Motion struct {
	// Changed is the fraction of pixels that differ from the reference.
	Changed float64
	// Moving says whether Changed reaches the minimum area (always true
	// without a reference frame).
	Moving bool
}

// MotionGate compares frames with a reference frame by cheap differencing
// at low resolution: scale down, grey, blur, absolute difference,
// threshold, count. The reference is the last frame Accept was called
// for, so slow changes add up until they count. It keeps its Mats
// between calls: one goroutine owns it, and Close frees them.
type MotionGate struct {
	cfg                   MotionConfig
	small, grey, cur, ref gocv.Mat
	diff                  gocv.Mat
	hasRef, hasCur        bool
	size                  image.Point // frame size of the reference
	curSize               image.Point
}

// NewMotionGate returns a gate; Close it.
func NewMotionGate(cfg MotionConfig) (*MotionGate, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &MotionGate{
		cfg: cfg, small: gocv.NewMat(), grey: gocv.NewMat(), cur: gocv.NewMat(), ref: gocv.NewMat(), diff: gocv.NewMat(),
	}, nil
}

// Check compares f with the reference frame.
func (g *MotionGate) Check(f *frame.Frame) (Motion, error) {
	src, err := matFromFrame(f)
	if err != nil {
		return Motion{}, fmt.Errorf("motion gate: %w", err)
	}
	defer src.Close()
	w := min(g.cfg.Width, f.Width)
	h := max(f.Height*w/f.Width, 1)
	gocv.Resize(src, &g.small, image.Pt(w, h), 0, 0, gocv.InterpolationArea)
	gocv.CvtColor(g.small, &g.grey, gocv.ColorBGRToGray)
	if g.cfg.Blur > 1 {
		gocv.GaussianBlur(g.grey, &g.cur, image.Pt(g.cfg.Blur, g.cfg.Blur), 0, 0, gocv.BorderReplicate)
	} else {
		g.grey.CopyTo(&g.cur)
	}
	g.hasCur, g.curSize = true, image.Pt(f.Width, f.Height)
	if !g.hasRef || g.size != g.curSize {
		return Motion{Changed: 1, Moving: true}, nil
	}
	gocv.AbsDiff(g.cur, g.ref, &g.diff)
	gocv.Threshold(g.diff, &g.diff, float32(g.cfg.PixelThreshold), 255, gocv.ThresholdBinary)
	changed := float64(gocv.CountNonZero(g.diff)) / float64(w*h)
	return Motion{Changed: changed, Moving: changed >= g.cfg.MinArea}, nil
}

// Accept makes the frame last checked the reference.
func (g *MotionGate) Accept() {
	if !g.hasCur {
		return
	}
	g.cur.CopyTo(&g.ref)
	g.hasRef, g.size = true, g.curSize
}

// Close frees the gate's Mats.
func (g *MotionGate) Close() error {
	for _, m := range []*gocv.Mat{&g.small, &g.grey, &g.cur, &g.ref, &g.diff} {
		m.Close()
	}
	return nil
}
