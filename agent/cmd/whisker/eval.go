package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/embedder"
	"github.com/whiskercam/whisker/learner/plots"
)

func evalCmd() *cobra.Command {
	var (
		paths   learnerPaths
		dataset string
		plotDir string
		asJSON  bool
		repeats int
		folds   int
		threads int
	)
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Have I trained enough? Cross-validated accuracy, confusions, learning curve",
		Long: `Evaluate the head the agent would train on its stored samples (or on a
folder of photographs with one folder per label, --dataset), without
touching the agent's head:

  - samples per class, k-fold cross-validated accuracy, per-class
    precision, recall and share of "unknown", the confusion matrix;
  - the head's capacity (linear or hidden-layer) and why, and the
    calibrated open-set threshold;
  - a learning curve: accuracy when training on 1, 2, 3, 5, 10, ...
    samples per class and testing on the rest. If it is still rising at the
    end, more labels will help.

The confusion matrix and the learning curve are also written as PNG files
to --plots. Stop the agent first (its store is locked while it runs), or
ask it over MQTT with the stats command.`,
		Example: `  whisker eval --state-dir /var/lib/whisker
  whisker eval --dataset ~/photos/pets --plots /tmp/eval`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := paths.load()
			if err != nil {
				return err
			}
			var d *learner.Dataset
			var identity string
			if dataset != "" {
				if d, identity, err = embedFolder(cmd, dataset, cfg.Backbone, threads); err != nil {
					return err
				}
			} else {
				man, err := model.ReadManifest(cfg.Backbone)
				if err != nil {
					return fmt.Errorf("backbone: %w", err)
				}
				identity = man.Identity
				path := filepath.Join(cfg.StateDir, "samples.db")
				if _, err := os.Stat(path); err != nil {
					return fmt.Errorf("no sample store at %s (set --state-dir, or --dataset for a folder of photographs)", path)
				}
				store, err := learner.OpenStore(path)
				if err != nil {
					return err
				}
				d, err = store.Dataset(identity)
				store.Close()
				if err != nil {
					return err
				}
			}
			tc := cfg.Trainer(identity)
			ec := learner.EvalConfig{Train: tc.Train, Select: learner.SelectConfig{Folds: folds}, Repeats: repeats, Seed: 1}
			// The backbone's reference set of other animals and scenes,
			// when 'make deps' computed one, as the head is trained with.
			if ref, err := learner.LoadReference(learner.ReferencePath(cfg.Backbone), identity); err == nil {
				ec.Background.Reference = ref
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			r, err := learner.Evaluate(cmd.Context(), d, identity, ec)
			if errors.Is(err, learner.ErrTooFewClasses) || errors.Is(err, learner.ErrTooFewForCV) {
				var have []string
				for _, c := range d.Counts() {
					have = append(have, fmt.Sprintf("%s %d", c.Label, c.Samples))
				}
				return fmt.Errorf("%w; samples per label: %s", err, strings.Join(have, ", "))
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else if err := r.WriteText(out); err != nil {
				return err
			}
			if plotDir == "" {
				return nil
			}
			if err := os.MkdirAll(plotDir, 0o755); err != nil {
				return err
			}
			written := []string{filepath.Join(plotDir, "confusion.png")}
			if err := plots.Confusion(r, written[0]); err != nil {
				return err
			}
			if len(r.Curve) > 0 {
				written = append(written, filepath.Join(plotDir, "learning-curve.png"))
				if err := plots.LearningCurve(r, written[1]); err != nil {
					return err
				}
			}
			for _, p := range written {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", p)
			}
			return nil
		},
	}
	paths.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&dataset, "dataset", "", "evaluate a folder of photographs (DIR/LABEL/...) instead of the store")
	f.StringVar(&plotDir, "plots", "whisker-eval", "folder for confusion.png and learning-curve.png (empty: no plots)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.IntVar(&repeats, "repeats", 10, "random draws per learning-curve point")
	f.IntVar(&folds, "folds", 5, "cross-validation folds")
	f.IntVar(&threads, "threads", 0, "backbone threads for --dataset (0: all cores)")
	return cmd
}

// embedFolder embeds a folder-per-label dataset.
func embedFolder(cmd *cobra.Command, dir, manifest string, threads int) (*learner.Dataset, string, error) {
	files, skipped, err := embedder.List(dir, "")
	if err != nil {
		return nil, "", err
	}
	if len(files) == 0 {
		reportSkipped(cmd.ErrOrStderr(), skipped)
		return nil, "", fmt.Errorf("no photographs in label folders under %s", dir)
	}
	emb, err := embedder.Open(manifest, backbone.Options{Threads: threads})
	if err != nil {
		return nil, "", err
	}
	defer emb.Close()
	bar := newProgress(cmd.ErrOrStderr(), len(files), "embedding")
	d := &learner.Dataset{}
	for _, f := range files {
		if err := cmd.Context().Err(); err != nil {
			return nil, "", err
		}
		e, err := emb.EmbedFile(f.Path, 0)
		bar.Add(1)
		if err != nil {
			skipped = append(skipped, embedder.Skipped{Path: f.Path, Reason: err.Error()})
			continue
		}
		d.X = append(d.X, e.Features)
		d.Labels = append(d.Labels, f.Label)
	}
	bar.Finish()
	reportSkipped(cmd.ErrOrStderr(), skipped)
	return d, emb.Identity(), nil
}
