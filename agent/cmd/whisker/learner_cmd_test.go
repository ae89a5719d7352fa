package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whiskercam/whisker/camera/frame"
	"github.com/whiskercam/whisker/firmware/model"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/internal/testenv"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/bench"
)

func execute(t *testing.T, cmd *cobra.Command, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%s %v: %v\n%s%s", cmd.Name(), args, err, out.String(), errb.String())
	}
	return out.String()
}

// petFolder writes n CIFAR-10 cats and dogs as PNG files in DIR/cat and
// DIR/dog, plus a file that is not an image.
func petFolder(t *testing.T, n int) string {
	t.Helper()
	imgs, err := bench.LoadPetImages(testenv.File(t, "testdata/dogsNcats.json"), n)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for label, frames := range map[string][]frame.Frame{"cat": imgs.Cats[:n], "dog": imgs.Dogs[:n]} {
		if err := os.MkdirAll(filepath.Join(dir, label), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range frames {
			if err := camera.WriteImage(filepath.Join(dir, label, fmt.Sprintf("%03d.png", i)), &frames[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "dog", "notes.txt"), []byte("not a photograph"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestImportThenEval imports real photographs with the real backbone into
// a state directory, then evaluates it and writes the plots.
func TestImportThenEval(t *testing.T) {
	photos := petFolder(t, 8)
	state := t.TempDir()
	manifest := testenv.BackboneManifest(t)

	out := execute(t, importCmd(), photos, "--state-dir", state, "--backbone", manifest, "--threads", "2")
	for _, want := range []string{"Imported 16 new samples", "Skipped 1 files", "notes.txt: not a readable image", "cat                  8", "Head: linear, 2 classes, 16 samples"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	// Importing again stores nothing twice; --label puts everything under
	// one label.
	out = execute(t, importCmd(), photos, "--state-dir", state, "--backbone", manifest, "--no-train")
	if !strings.Contains(out, "Imported 0 new samples") || !strings.Contains(out, "(16 were already there)") {
		t.Errorf("re-import:\n%s", out)
	}
	out = execute(t, importCmd(), filepath.Join(photos, "cat"), "--label", "Tigger", "--state-dir", state, "--backbone", manifest)
	if !strings.Contains(out, "Imported 8 new samples") || !strings.Contains(out, "Tigger               8") {
		t.Errorf("import --label:\n%s", out)
	}
	man, err := model.ReadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	// The head is where the agent reads it.
	head, err := learner.LoadHead(learner.HeadPath(state, man.Identity), man.Identity)
	if err != nil || len(head.Classes) != 3 || head.Calibration == nil {
		t.Fatalf("head after import: %+v, %v", head, err)
	}

	plots := filepath.Join(t.TempDir(), "plots")
	out = execute(t, evalCmd(), "--state-dir", state, "--backbone", manifest, "--plots", plots, "--repeats", "2")
	for _, want := range []string{"Samples: 24 in 3 classes", "Accuracy (5-fold cross-validation)", "Confusion", "Learning curve"} {
		if !strings.Contains(out, want) {
			t.Errorf("eval output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range []string{"confusion.png", "learning-curve.png"} {
		if st, err := os.Stat(filepath.Join(plots, p)); err != nil || st.Size() < 1000 {
			t.Errorf("plot %s: %v", p, err)
		}
	}
	out = execute(t, evalCmd(), "--dataset", photos, "--backbone", manifest, "--plots", "", "--json", "--repeats", "2")
	if !strings.Contains(out, `"samples": 16`) || !strings.Contains(out, `"confusion"`) {
		t.Errorf("eval --dataset --json:\n%s", out)
	}
}
