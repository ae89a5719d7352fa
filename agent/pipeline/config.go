package pipeline

import (
	"fmt"
	"regexp"
	"time"

	"github.com/whiskercam/whisker/camera"
)

// CameraConfig selects and paces the camera, and says which frames are
// worth the backbone and what is classified in them (docs/camera.md).
type CameraConfig struct {
	// Source: a V4L2 device (/dev/video0 or an index), a GStreamer
	// pipeline (with " ! " or a "gst:" prefix), an rtsp:// or http(s)://
	// MJPEG URL, a video file, or a folder of images.
	Source string `yaml:"source"`
	// Loop restarts a video file or folder at its end.
	Loop bool `yaml:"loop"`
	// MaxFPS caps how many frames a second are classified.
	MaxFPS float64 `yaml:"max_fps"`
	// FolderFPS is how many images a second a folder source shows.
	FolderFPS float64 `yaml:"folder_fps"`
	// Device is what a V4L2 camera is asked for.
	Device DeviceConfig `yaml:"device"`
	// RetryMax caps the delay between attempts to reopen a failed source.
	RetryMax  time.Duration   `yaml:"retry_max"`
	Motion    MotionConfig    `yaml:"motion"`
	Detect    DetectConfig    `yaml:"detect"`
	Snapshots SnapshotsConfig `yaml:"snapshots"`
}

// DeviceConfig is asked of a V4L2 camera; 0 or "" keeps the driver's
// choice.
type DeviceConfig struct {
	Width  int     `yaml:"width"`
	Height int     `yaml:"height"`
	FPS    float64 `yaml:"fps"`
	// PixelFormat is a FOURCC: MJPG, YUYV, ...
	PixelFormat string `yaml:"pixel_format"`
}

// MotionConfig is the motion gate: frame differencing at low resolution
// decides whether a frame is worth the backbone.
type MotionConfig struct {
	Enabled bool `yaml:"enabled"`
	// Width is the width frames are scaled down to before comparing.
	Width int `yaml:"width"`
	// PixelThreshold: grey levels (of 255) a pixel must change by.
	PixelThreshold int `yaml:"pixel_threshold"`
	// MinArea: the fraction of pixels that must change.
	MinArea float64 `yaml:"min_area"`
	// IdleInterval classifies a frame this often even when nothing moves
	// (0: never).
	IdleInterval time.Duration `yaml:"idle_interval"`
}

// DetectConfig finds pets with the backbone's detector outputs (a
// backbone cut with --detect) and classifies each pet's crop.
type DetectConfig struct {
	// Enabled detects when the backbone can; with a backbone without
	// detector outputs, whole frames are classified (and a warning logged).
	Enabled bool `yaml:"enabled"`
	// Classes are the detector's class names that count as pets.
	Classes []string `yaml:"classes"`
	// MinScore is the detector score a pet needs (0.5: the detector's own
	// even odds).
	MinScore float64 `yaml:"min_score"`
	// IoU is the overlap above which two boxes are one pet.
	IoU float64 `yaml:"iou"`
	// MaxPets bounds the sightings per frame.
	MaxPets int `yaml:"max_pets"`
	// Embed says how a pet is embedded: "crop" runs the backbone again on
	// the crop (best), "region" pools the frame's feature map under the
	// box (no second run).
	Embed string `yaml:"embed"`
	// Margin widens a pet's box by this fraction on each side for its
	// crop.
	Margin float64 `yaml:"margin"`
	// ReportEmpty publishes a whole-frame sighting (without a box) for a
	// frame where no pet is found, so that "no pet" can be labelled.
	ReportEmpty bool `yaml:"report_empty"`
}

// SnapshotsConfig keeps a JPEG of each sighting's frame (with its box) and
// crop, in memory, for retrieval by sighting id.
type SnapshotsConfig struct {
	MaxCount int           `yaml:"max_count"`
	MaxAge   time.Duration `yaml:"max_age"`
	// MaxBytes bounds the memory all snapshots take together.
	MaxBytes int `yaml:"max_bytes"`
	// Size is the longer side, in pixels, of snapshot JPEGs.
	Size    int `yaml:"size"`
	Quality int `yaml:"quality"`
}

// DefaultCamera is the camera section's default: /dev/video0 at most
// 2 frames a second, the motion gate on, cats and dogs detected and each
// classified from its crop, 200 snapshots kept for an hour.
func DefaultCamera() CameraConfig {
	return CameraConfig{
		Source:    "/dev/video0",
		Loop:      true,
		MaxFPS:    2,
		FolderFPS: 1,
		RetryMax:  30 * time.Second,
		Motion: MotionConfig{
			Enabled: true, Width: 160, PixelThreshold: 25, MinArea: 0.005, IdleInterval: 30 * time.Second,
		},
		Detect: DetectConfig{
			Enabled: true, Classes: []string{"Cat", "Dog"}, MinScore: 0.5, IoU: 0.6, MaxPets: 4,
			Embed: "crop", Margin: 0.1, ReportEmpty: true,
		},
		Snapshots: SnapshotsConfig{MaxCount: 200, MaxAge: time.Hour, MaxBytes: 32 << 20, Size: 640, Quality: camera.JPEGQuality},
	}
}

var fourCC = regexp.MustCompile(`^[A-Za-z0-9 ]{4}$`)

// Validate checks the camera section and names the first bad key
// (camera.*) with its value.
func (c *CameraConfig) Validate() error {
	bad := func(key string, val any, why string) error {
		return fmt.Errorf("config: %s: %v %s", key, val, why)
	}
	switch {
	case c.Source == "":
		return bad("camera.source", `""`, "must name a camera, video file or image folder")
	case c.MaxFPS < 0 || c.MaxFPS > 120:
		return bad("camera.max_fps", c.MaxFPS, "must be between 0 (source rate) and 120")
	case c.FolderFPS <= 0 || c.FolderFPS > 120:
		return bad("camera.folder_fps", c.FolderFPS, "must be above 0 and at most 120")
	case c.Device.Width < 0 || c.Device.Width > 8192:
		return bad("camera.device.width", c.Device.Width, "must be 0 (the driver's choice) to 8192 pixels")
	case c.Device.Height < 0 || c.Device.Height > 8192:
		return bad("camera.device.height", c.Device.Height, "must be 0 (the driver's choice) to 8192 pixels")
	case c.Device.FPS < 0 || c.Device.FPS > 240:
		return bad("camera.device.fps", c.Device.FPS, "must be 0 (the driver's choice) to 240")
	case c.Device.PixelFormat != "" && !fourCC.MatchString(c.Device.PixelFormat):
		return bad("camera.device.pixel_format", fmt.Sprintf("%q", c.Device.PixelFormat), "must be a four-character code such as MJPG or YUYV")
	case c.RetryMax < time.Second || c.RetryMax > time.Hour:
		return bad("camera.retry_max", c.RetryMax, "must be between 1s and 1h")
	case c.Motion.Width < 16 || c.Motion.Width > 1920:
		return bad("camera.motion.width", c.Motion.Width, "must be 16 to 1920 pixels")
	case c.Motion.PixelThreshold < 1 || c.Motion.PixelThreshold > 254:
		return bad("camera.motion.pixel_threshold", c.Motion.PixelThreshold, "must be 1 to 254 grey levels")
	case !(c.Motion.MinArea > 0 && c.Motion.MinArea <= 1):
		return bad("camera.motion.min_area", c.Motion.MinArea, "must be a fraction above 0 and at most 1")
	case c.Motion.IdleInterval < 0:
		return bad("camera.motion.idle_interval", c.Motion.IdleInterval, "must be 0 (never) or more")
	case c.Detect.Enabled && len(c.Detect.Classes) == 0:
		return bad("camera.detect.classes", "[]", "must name at least one detector class (Cat, Dog, ...)")
	case !(c.Detect.MinScore > 0 && c.Detect.MinScore < 1):
		return bad("camera.detect.min_score", c.Detect.MinScore, "must be above 0 and below 1")
	case !(c.Detect.IoU > 0 && c.Detect.IoU <= 1):
		return bad("camera.detect.iou", c.Detect.IoU, "must be above 0 and at most 1")
	case c.Detect.MaxPets < 1 || c.Detect.MaxPets > 32:
		return bad("camera.detect.max_pets", c.Detect.MaxPets, "must be 1 to 32")
	case c.Detect.Embed != "crop" && c.Detect.Embed != "region":
		return bad("camera.detect.embed", fmt.Sprintf("%q", c.Detect.Embed), "must be crop (run the backbone on the crop) or region (pool the frame's features under the box)")
	case c.Detect.Margin < 0 || c.Detect.Margin > 1:
		return bad("camera.detect.margin", c.Detect.Margin, "must be 0 to 1")
	case c.Snapshots.MaxCount < 0 || c.Snapshots.MaxCount > 100000:
		return bad("camera.snapshots.max_count", c.Snapshots.MaxCount, "must be 0 (keep none) to 100000")
	case c.Snapshots.MaxAge < 0:
		return bad("camera.snapshots.max_age", c.Snapshots.MaxAge, "must be 0 or more")
	case c.Snapshots.MaxBytes < 0:
		return bad("camera.snapshots.max_bytes", c.Snapshots.MaxBytes, "must be 0 or more")
	case c.Snapshots.Size < 32 || c.Snapshots.Size > 4096:
		return bad("camera.snapshots.size", c.Snapshots.Size, "must be 32 to 4096 pixels")
	case c.Snapshots.Quality < 10 || c.Snapshots.Quality > 100:
		return bad("camera.snapshots.quality", c.Snapshots.Quality, "must be 10 to 100")
	}
	return nil
}

// Capture is the capture's part of the camera configuration.
func (c CameraConfig) Capture() camera.CaptureConfig {
	return camera.CaptureConfig{
		Source: c.Source, Loop: c.Loop, MaxFPS: c.MaxFPS, RetryMax: c.RetryMax, Nice: sideNice,
		Options: camera.SourceOptions{
			FolderFPS: c.FolderFPS, Width: c.Device.Width, Height: c.Device.Height, FPS: c.Device.FPS, PixelFormat: c.Device.PixelFormat,
		},
	}
}
