package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/whiskercam/whisker/internal/atomicfile"
)

// ManifestVersion is the manifest format this package writes and reads.
const ManifestVersion = 1

// Manifest travels beside a backbone model and says how to feed it and what
// comes out. Its Identity is stored next to every feature vector computed
// with the model, so features from different backbones are never mixed.
type Manifest struct {
	Format   int    `json:"format"`
	Identity string `json:"identity"`
	// Model is the model file's name, relative to the manifest.
	Model       string `json:"model"`
	ModelSHA256 string `json:"model_sha256"`
	Source      struct {
		File   string `json:"file"`
		SHA256 string `json:"sha256"`
	} `json:"source"`
	CutTensor string `json:"cut_tensor"`
	// CutAlso are the tensors pooled beside CutTensor and concatenated
	// after it into the feature vector, CutMaps the feature maps appended
	// whole after them, and CutParts the size of each part (CutTensor's
	// first); all empty for one tensor.
	CutAlso    []string   `json:"cut_also,omitempty"`
	CutMaps    []string   `json:"cut_maps,omitempty"`
	CutParts   []int      `json:"cut_parts,omitempty"`
	Pool       Pool       `json:"pool"`
	Input      ManifestIO `json:"input"`
	Output     ManifestIO `json:"output"`
	Preprocess Preprocess `json:"preprocess"`
	Embedding  int        `json:"embedding_size"`
	// HostPool says that the model outputs the feature map itself
	// ([1,H,W,embedding_size]) and Whisker pools it with Pool: over the
	// whole frame, or over a detected box.
	HostPool bool `json:"host_pool,omitempty"`
	// Detection, when present, describes detector outputs that the same
	// run of the model yields beside the features.
	Detection   *Detection `json:"detection,omitempty"`
	Description string     `json:"description,omitempty"`
}

// ManifestIO describes a model input or output tensor.
type ManifestIO struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Shape []int   `json:"shape"`
	Scale float32 `json:"scale,omitempty"`
	Zero  int64   `json:"zero_point,omitempty"`
}

// Preprocess says how camera pixels become the model's input:
// value = (pixel - Mean[c]) / Std[c] for 8-bit pixels in ColorOrder.
type Preprocess struct {
	ColorOrder string     `json:"color_order"` // "RGB" or "BGR"
	Mean       [3]float32 `json:"mean"`
	Std        [3]float32 `json:"std"`
	Resize     string     `json:"resize"` // "stretch", "letterbox" or "crop"
}

// RangePreprocess returns the normalisation that maps 0..255 onto lo..hi.
func RangePreprocess(lo, hi float32) Preprocess {
	std := 255 / (hi - lo)
	mean := -lo * std
	return Preprocess{ColorOrder: "RGB", Mean: [3]float32{mean, mean, mean}, Std: [3]float32{std, std, std}, Resize: "stretch"}
}

// ParseRange reads a pixel range such as "-1,1", "0,1" or "0,255".
func ParseRange(s string) (lo, hi float32, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return 0, 0, fmt.Errorf("pixel range %q: want LO,HI such as -1,1", s)
	}
	if _, err := fmt.Sscan(parts[0], &lo); err != nil {
		return 0, 0, fmt.Errorf("pixel range %q: %v", s, err)
	}
	if _, err := fmt.Sscan(parts[1], &hi); err != nil {
		return 0, 0, fmt.Errorf("pixel range %q: %v", s, err)
	}
	if !(hi > lo) {
		return 0, 0, fmt.Errorf("pixel range %q: high end must exceed low end", s)
	}
	return lo, hi, nil
}

// Validate checks a manifest's own consistency.
func (m *Manifest) Validate() error {
	switch {
	case m.Format != ManifestVersion:
		return fmt.Errorf("manifest format %d, this build reads %d", m.Format, ManifestVersion)
	case m.Model == "" || strings.ContainsAny(m.Model, "/\\") || m.Model == ".." || m.Model == ".":
		return fmt.Errorf("manifest model %q: want a file name beside the manifest", m.Model)
	case len(m.ModelSHA256) != 64:
		return errors.New("manifest has no model_sha256")
	case m.Identity == "":
		return errors.New("manifest has no identity")
	case len(m.Input.Shape) != 4 || m.Input.Shape[3] != 3:
		return fmt.Errorf("manifest input shape %v: want [1,H,W,3]", m.Input.Shape)
	case m.Embedding <= 0:
		return fmt.Errorf("manifest embedding_size %d", m.Embedding)
	case m.Preprocess.ColorOrder != "RGB" && m.Preprocess.ColorOrder != "BGR":
		return fmt.Errorf("manifest color_order %q: want RGB or BGR", m.Preprocess.ColorOrder)
	}
	for c := range 3 {
		if m.Preprocess.Std[c] == 0 {
			return errors.New("manifest preprocess std has a zero")
		}
	}
	switch m.Preprocess.Resize {
	case "", "stretch", "letterbox", "crop":
	default:
		return fmt.Errorf("manifest preprocess resize %q: want stretch, letterbox or crop", m.Preprocess.Resize)
	}
	if len(m.CutAlso)+len(m.CutMaps) > 0 || len(m.CutParts) > 0 {
		sum := 0
		for _, p := range m.CutParts {
			sum += p
		}
		if n := len(m.CutAlso) + len(m.CutMaps) + 1; len(m.CutParts) != n || sum != m.Embedding || m.HostPool {
			return fmt.Errorf("manifest cut_parts %v: want one size per tensor (%d), adding up to embedding_size %d, without host_pool",
				m.CutParts, n, m.Embedding)
		}
	}
	if m.HostPool {
		if s := m.Output.Shape; len(s) != 4 || s[3] != m.Embedding {
			return fmt.Errorf("manifest host_pool: output shape %v is not a [1,H,W,%d] feature map", s, m.Embedding)
		}
		if m.Pool != PoolAvg && m.Pool != PoolMax {
			return fmt.Errorf("manifest host_pool with pool %q: want avg or max", m.Pool)
		}
	}
	if m.Detection != nil {
		if err := m.Detection.Validate(); err != nil {
			return fmt.Errorf("manifest %w", err)
		}
	}
	return nil
}

// ModelPath is the model file the manifest at path describes.
func (m *Manifest) ModelPath(manifestPath string) string {
	return filepath.Join(filepath.Dir(manifestPath), m.Model)
}

// ManifestPath is where the manifest of a model file lives: model.tflite
// has model.manifest.json.
func ManifestPath(modelPath string) string {
	return strings.TrimSuffix(modelPath, filepath.Ext(modelPath)) + ".manifest.json"
}

// ReadManifest loads and validates a manifest.
func ReadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return &m, nil
}

// Write stores the manifest atomically.
func (m *Manifest) Write(path string) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

// LoadBackbone reads a manifest and its model, and checks that the model is
// the one the manifest names (by sha256) and that it parses.
func LoadBackbone(manifestPath string) (*Manifest, []byte, error) {
	man, err := ReadManifest(manifestPath)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(man.ModelPath(manifestPath))
	if err != nil {
		return nil, nil, fmt.Errorf("backbone model: %w", err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != man.ModelSHA256 {
		return nil, nil, fmt.Errorf("backbone model %s: sha256 %s does not match its manifest (%s); the file is corrupt or was replaced",
			man.ModelPath(manifestPath), got[:16], man.ModelSHA256[:16])
	}
	if _, err := Parse(data); err != nil {
		return nil, nil, fmt.Errorf("backbone model %s: %w", man.ModelPath(manifestPath), err)
	}
	return man, data, nil
}

// NewManifest describes a cut model.
func NewManifest(res *CutResult, modelFile string, source string, sourceData []byte, pool Pool, pre Preprocess) *Manifest {
	sum := sha256.Sum256(res.Model)
	src := sha256.Sum256(sourceData)
	m := &Manifest{
		Format:      ManifestVersion,
		Model:       filepath.Base(modelFile),
		ModelSHA256: hex.EncodeToString(sum[:]),
		CutTensor:   res.Tensor,
		Pool:        pool,
		Preprocess:  pre,
		Embedding:   res.EmbeddingDim,
	}
	m.Source.File = filepath.Base(source)
	m.Source.SHA256 = hex.EncodeToString(src[:])
	m.Input = ManifestIO{Name: res.Input.Name, Type: res.Input.Type, Shape: res.Input.Shape, Scale: res.Input.Scale, Zero: res.Input.Zero}
	m.Output = ManifestIO{Name: res.Output.Name, Type: res.Output.Type, Shape: res.Output.Shape, Scale: res.Output.Scale, Zero: res.Output.Zero}
	m.CutAlso, m.CutMaps, m.CutParts = slices.Clone(res.Also), slices.Clone(res.Maps), slices.Clone(res.Parts)
	stem := identityStem(res.Tensor, pool)
	if len(res.Also)+len(res.Maps) > 0 {
		// e.g. Conv_1-Relu6+2-avg: two more tensors pooled beside Conv_1;
		// Conv_1-Relu6+1map-avg: one map kept whole.
		extra := ""
		if len(res.Also) > 0 {
			extra += fmt.Sprintf("+%d", len(res.Also))
		}
		if len(res.Maps) > 0 {
			extra += fmt.Sprintf("+%dmap", len(res.Maps))
		}
		stem = fmt.Sprintf("%s%s-%s", strings.TrimSuffix(stem, "-"+string(pool)), extra, pool)
	}
	if res.Resized {
		stem += fmt.Sprintf("-%dx%d", res.Input.Shape[1], res.Input.Shape[2])
	}
	m.Identity = fmt.Sprintf("%s@%s", stem, m.ModelSHA256[:12])
	return m
}

// identityStem is a readable stem for an identity, e.g. "Conv_1-Relu6-avg".
func identityStem(tensor string, pool Pool) string {
	tensor, _, _ = strings.Cut(tensor, ";") // fused names list several ops
	parts := strings.Split(tensor, "/")
	if len(parts) > 2 {
		parts = parts[len(parts)-2:]
	}
	stem := strings.Join(parts, "-")
	stem = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, stem)
	return stem + "-" + string(pool)
}
