package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCameraConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"camera:\n  device:\n    width: -1\n", "camera.device.width: -1"},
		{"camera:\n  device:\n    pixel_format: MJPEG\n", "camera.device.pixel_format"},
		{"camera:\n  retry_max: 10ms\n", "camera.retry_max"},
		{"camera:\n  motion:\n    min_area: 0\n", "camera.motion.min_area"},
		{"camera:\n  motion:\n    pixel_threshold: 300\n", "camera.motion.pixel_threshold"},
		{"camera:\n  motion:\n    idle_interval: -1s\n", "camera.motion.idle_interval"},
		{"camera:\n  detect:\n    classes: []\n", "camera.detect.classes"},
		{"camera:\n  detect:\n    min_score: 1\n", "camera.detect.min_score"},
		{"camera:\n  detect:\n    embed: pixels\n", "camera.detect.embed"},
		{"camera:\n  detect:\n    max_pets: 0\n", "camera.detect.max_pets"},
		{"camera:\n  snapshots:\n    quality: 101\n", "camera.snapshots.quality"},
		{"camera:\n  snapshots:\n    size: 8\n", "camera.snapshots.size"},
		{"camera:\n  motion:\n    threshold: 3\n", "field threshold not found"},
	} {
		cfg := Default()
		err := Decode([]byte(tc.yaml), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
}

// Only a file or folder source is a path to resolve against the
// configuration file's directory.
func TestLoadResolvesOnlyPathSources(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ source, want string }{
		{"video.avi", filepath.Join(dir, "video.avi")},
		{"/dev/video2", "/dev/video2"},
		{"0", "0"},
		{"rtsp://cam/stream", "rtsp://cam/stream"},
		{"libcamerasrc ! videoconvert ! appsink", "libcamerasrc ! videoconvert ! appsink"},
	} {
		path := filepath.Join(dir, "w.yaml")
		if err := os.WriteFile(path, []byte("camera:\n  source: \""+tc.source+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Camera.Source != tc.want {
			t.Errorf("%q loaded as %q, want %q", tc.source, cfg.Camera.Source, tc.want)
		}
	}
}
