package bench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/whiskercam/whisker/learner"
)

//go:embed sklearn_compare.py
var sklearnScript []byte

// DefaultPython is the interpreter Debian's python3-sklearn installs into
// (a python3 found first on PATH, such as a pyenv one, may lack it).
const DefaultPython = "/usr/bin/python3"

// SklearnInstall says how to get scikit-learn.
const SklearnInstall = "run `make deps` (or `scripts/deps.sh sklearn`), which installs Debian's python3-sklearn"

// SklearnConfig configures the scikit-learn side.
type SklearnConfig struct {
	// Python is the interpreter (default DefaultPython).
	Python string
	// C, Tol and MaxIter are LogisticRegression's (defaults 1, 1e-4 and
	// 1000).
	C       float64
	Tol     float64
	MaxIter int
	// Probabilities asks for predict_proba on every test set.
	Probabilities bool
}

// SklearnOutcome is LogisticRegression's result on one split.
type SklearnOutcome struct {
	Accuracy   float64     `json:"accuracy"`
	FitSeconds float64     `json:"fit_seconds"`
	Classes    []int       `json:"classes"`
	Proba      [][]float64 `json:"proba"`
}

// SklearnRun is the result of one run of the script.
type SklearnRun struct {
	Version   string           `json:"sklearn"`
	Numpy     string           `json:"numpy"`
	Converged bool             `json:"converged"`
	Results   []SklearnOutcome `json:"results"`
}

// CheckSklearn fails with the install command when the interpreter cannot
// import scikit-learn.
func CheckSklearn(ctx context.Context, python string) (string, error) {
	if python == "" {
		python = DefaultPython
	}
	out, err := exec.CommandContext(ctx, python, "-c", "import sklearn, numpy; print(sklearn.__version__)").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("scikit-learn is not available to %s (%v: %s): %s", python, err, bytes.TrimSpace(out), SklearnInstall)
	}
	return string(bytes.TrimSpace(out)), nil
}

// RunSklearn exports d (class indices in the order of d.Classes()) and the
// splits to a temporary directory and fits scikit-learn's
// LogisticRegression on each split there.
func RunSklearn(ctx context.Context, cfg SklearnConfig, d *learner.Dataset, splits []Split) (*SklearnRun, error) {
	if cfg.Python == "" {
		cfg.Python = DefaultPython
	}
	if cfg.C <= 0 {
		cfg.C = 1
	}
	if cfg.Tol <= 0 {
		cfg.Tol = 1e-4
	}
	if cfg.MaxIter <= 0 {
		cfg.MaxIter = 1000
	}
	if _, err := CheckSklearn(ctx, cfg.Python); err != nil {
		return nil, err
	}
	if len(d.X) == 0 {
		return nil, errors.New("no samples")
	}
	dir, err := os.MkdirTemp("", "whisker-sklearn-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	classes := d.Classes()
	dim := len(d.X[0])
	xb := make([]byte, 0, len(d.X)*dim*4)
	yb := make([]byte, 0, len(d.X)*4)
	for i, x := range d.X {
		for _, v := range x {
			xb = binary.LittleEndian.AppendUint32(xb, math.Float32bits(v))
		}
		yb = binary.LittleEndian.AppendUint32(yb, uint32(slices.Index(classes, d.Labels[i])))
	}
	meta, err := json.Marshal(map[string]any{
		"n": len(d.X), "d": dim, "C": cfg.C, "tol": cfg.Tol, "max_iter": cfg.MaxIter,
		"probabilities": cfg.Probabilities, "splits": splits,
	})
	if err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"x.f32": xb, "y.i32": yb, "meta.json": meta, "compare.py": sklearnScript} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, cfg.Python, filepath.Join(dir, "compare.py"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("scikit-learn comparison (%s): %v: %s", cfg.Python, err, bytes.TrimSpace(out))
	}
	data, err := os.ReadFile(filepath.Join(dir, "out.json"))
	if err != nil {
		return nil, err
	}
	var run SklearnRun
	if err := json.Unmarshal(data, &run); err != nil {
		return nil, fmt.Errorf("scikit-learn comparison output: %w", err)
	}
	if len(run.Results) != len(splits) {
		return nil, fmt.Errorf("scikit-learn comparison returned %d results for %d splits", len(run.Results), len(splits))
	}
	return &run, nil
}
