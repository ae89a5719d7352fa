package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/camera"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/embedder"
)

// EmbeddingsFormat is the version of the document `whisker embed` writes.
const EmbeddingsFormat = 1

// Embeddings is what `whisker embed` writes: the feature vectors of some
// images, and where they were computed.
type Embeddings struct {
	Format   int     `json:"format"`
	Backbone string  `json:"backbone"` // the manifest's identity
	TFLite   string  `json:"tflite"`   // TensorFlow Lite version
	Arch     string  `json:"arch"`     // GOARCH of the binary
	Delegate string  `json:"delegate"` // the delegate that ran the model
	Images   []Image `json:"images"`
}

// Image is one embedded image.
type Image struct {
	File      string    `json:"file"`   // base name
	SHA256    string    `json:"sha256"` // of the file
	Embedding []float32 `json:"embedding"`
}

func embedCmd() *cobra.Command {
	var cfgPath, manifest, delegate, compare string
	var threads int
	var tolerance float64
	cmd := &cobra.Command{
		Use:   "embed IMAGE...",
		Short: "Print the backbone's feature vectors of images as JSON, or compare them with another machine's",
		Long: `Run the backbone on images, preprocessed as the agent preprocesses camera
frames, and print the feature vectors as JSON with the backbone identity,
the TensorFlow Lite version, the architecture and the delegate.

With --compare FILE (the output of an earlier run, for instance on another
machine or with another TensorFlow Lite library), print the largest
difference per image instead, and fail when one exceeds --tolerance. The
backbone identity and each image's sha256 must match.`,
		Example: `  whisker embed --backbone .deps/models/backbone.manifest.json .deps/testdata/chelsea.png > x86.json
  whisker embed --backbone .deps/models/backbone.manifest.json --compare x86.json .deps/testdata/chelsea.png`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if manifest == "" {
				manifest = cfg.Backbone
			}
			if !cmd.Flags().Changed("threads") {
				threads = cfg.Threads
			}
			if !cmd.Flags().Changed("delegate") {
				delegate = cfg.Delegate
			}
			got, err := embedImages(manifest, backbone.Options{Threads: threads, Delegate: backbone.Delegate(delegate)}, args, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if compare == "" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				return enc.Encode(got)
			}
			ref, err := readEmbeddings(compare)
			if err != nil {
				return err
			}
			return compareEmbeddings(cmd.OutOrStdout(), ref, got, tolerance)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgPath, "config", "c", "", "configuration file; its backbone, threads and delegate are the defaults")
	f.StringVar(&manifest, "backbone", "", "backbone manifest (default: the configuration's)")
	f.StringVar(&delegate, "delegate", "", "delegate: none, xnnpack, edgetpu or gpu (default: the configuration's)")
	f.IntVar(&threads, "threads", 0, "backbone threads; 0 = all cores (default: the configuration's)")
	f.StringVar(&compare, "compare", "", "compare with the embeddings in this file (the output of an earlier run)")
	f.Float64Var(&tolerance, "tolerance", 1e-4, "largest absolute difference --compare accepts")
	return cmd
}

func embedImages(manifest string, opt backbone.Options, paths []string, warn io.Writer) (*Embeddings, error) {
	emb, err := embedder.Open(manifest, opt)
	if err != nil {
		return nil, err
	}
	defer emb.Close()
	st := emb.Backbone().Delegate()
	if st.Fallback != nil {
		fmt.Fprintf(warn, "whisker: delegate %s unavailable, running on the CPU: %v\n", st.Requested, st.Fallback)
	}
	out := &Embeddings{
		Format: EmbeddingsFormat, Backbone: emb.Identity(), TFLite: backbone.RuntimeVersion(),
		Arch: runtime.GOARCH, Delegate: string(st.Active),
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		frame, err := camera.DecodeImage(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		v, err := emb.Embed(&frame)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		sum := sha256.Sum256(data)
		out.Images = append(out.Images, Image{File: filepath.Base(p), SHA256: hex.EncodeToString(sum[:]), Embedding: v})
	}
	return out, nil
}

func readEmbeddings(path string) (*Embeddings, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var e Embeddings
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if e.Format != EmbeddingsFormat {
		return nil, fmt.Errorf("%s: format %d, want %d", path, e.Format, EmbeddingsFormat)
	}
	return &e, nil
}

// compareEmbeddings prints, for every image of got, the largest absolute
// difference from the same image in ref, and fails when one exceeds tol.
func compareEmbeddings(w io.Writer, ref, got *Embeddings, tol float64) error {
	if ref.Backbone != got.Backbone {
		return fmt.Errorf("the reference was computed with backbone %s, this run with %s", ref.Backbone, got.Backbone)
	}
	fmt.Fprintf(w, "reference: %s, TensorFlow Lite %s, delegate %s\n", ref.Arch, ref.TFLite, ref.Delegate)
	fmt.Fprintf(w, "this run:  %s, TensorFlow Lite %s, delegate %s\n", got.Arch, got.TFLite, got.Delegate)
	byFile := make(map[string]Image, len(ref.Images))
	for _, im := range ref.Images {
		byFile[im.File] = im
	}
	var errs []error
	for _, im := range got.Images {
		r, ok := byFile[im.File]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: not in the reference", im.File))
			continue
		case r.SHA256 != im.SHA256:
			errs = append(errs, fmt.Errorf("%s: the reference embedded another file (sha256 %.12s, here %.12s)", im.File, r.SHA256, im.SHA256))
			continue
		case len(r.Embedding) != len(im.Embedding):
			errs = append(errs, fmt.Errorf("%s: %d values in the reference, %d here", im.File, len(r.Embedding), len(im.Embedding)))
			continue
		}
		var maxDiff, maxRef float64
		at := 0
		for i := range im.Embedding {
			d := math.Abs(float64(im.Embedding[i]) - float64(r.Embedding[i]))
			if d > maxDiff || math.IsNaN(d) {
				maxDiff, at = d, i
			}
			maxRef = math.Max(maxRef, math.Abs(float64(r.Embedding[i])))
		}
		verdict := "ok"
		if !(maxDiff <= tol) {
			verdict = "DIFFERS"
			errs = append(errs, fmt.Errorf("%s: values differ by up to %.3g (at %d), more than the tolerance %g", im.File, maxDiff, at, tol))
		}
		fmt.Fprintf(w, "%-20s max |difference| %.3g at value %d of %d (largest value %.3g, tolerance %g): %s\n",
			im.File, maxDiff, at, len(im.Embedding), maxRef, tol, verdict)
	}
	return errors.Join(errs...)
}
