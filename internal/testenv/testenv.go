// Package testenv finds the files `make deps` fetches, for tests. A missing
// file fails the test loudly with the command that installs it: the real
// path is never skipped.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	rootOnce sync.Once
	root     string
)

// Root is the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				root = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				return
			}
			dir = parent
		}
	})
	if root == "" {
		t.Fatal("testenv: cannot find the repository root (go.mod)")
	}
	return root
}

// Deps is the directory `make deps` fills (WHISKER_DEPS, or .deps in the
// repository root).
func Deps(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("WHISKER_DEPS"); d != "" {
		return d
	}
	return filepath.Join(Root(t), ".deps")
}

// File returns the path of a fetched file under Deps, failing the test if it
// is missing.
func File(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Deps(t), rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("missing %s: run `make deps` to fetch it (%v)", p, err)
	}
	return p
}

// Detector is the pretrained SSD-MobileNetV2 detector.
func Detector(t testing.TB) string { return File(t, "models/ssd_mobilenetv2_oidv4_fp16.tflite") }

// BackboneManifest is the default backbone's manifest.
func BackboneManifest(t testing.TB) string { return File(t, "models/backbone.manifest.json") }

// Photo returns one of the test photographs (dog.jpg, chelsea.png, ...).
func Photo(t testing.TB, name string) string { return File(t, filepath.Join("testdata", name)) }

// DemoVideo is the demo video made from the test photographs.
func DemoVideo(t testing.TB) string { return File(t, "demo/pets.avi") }

// Command returns the path of a program, failing the test with the package
// that installs it when it is missing.
func Command(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run `make deps` (installs Debian package %s)", name, debianPackage)
	}
	return p
}

// DetectorBackbone is the manifest of the default backbone that also
// detects: the detector's outputs plus its feature map, from one run.
func DetectorBackbone(t testing.TB) string { return File(t, "models/backbone-detect.manifest.json") }

// Video returns a real video from a package (small.mp4, ...).
func Video(t testing.TB, name string) string { return File(t, filepath.Join("videos", name)) }
