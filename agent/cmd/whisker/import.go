package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/whiskercam/whisker/agent/config"
	"github.com/whiskercam/whisker/agent/protocol"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/embedder"
)

// learnerPaths are the agent settings the learner tools need, from the
// configuration file with flags over it.
type learnerPaths struct {
	cfgPath, stateDir, manifest string
}

func (p *learnerPaths) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&p.cfgPath, "config", "c", "", "agent configuration (default /etc/whisker/whisker.yaml if present, else built-in defaults)")
	f.StringVar(&p.stateDir, "state-dir", "", "the agent's state directory (overrides state_dir)")
	f.StringVar(&p.manifest, "backbone", "", "backbone manifest (overrides backbone)")
}

func (p *learnerPaths) load() (config.Config, error) {
	cfg, from, err := loadConfig(p.cfgPath)
	if err != nil {
		return cfg, err
	}
	if p.stateDir != "" {
		cfg.StateDir = p.stateDir
	}
	if p.manifest != "" {
		cfg.Backbone = p.manifest
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", from, err)
	}
	return cfg, nil
}

// importBatch is how many samples one store transaction (one fsync) holds.
const importBatch = 32

func importCmd() *cobra.Command {
	var (
		paths   learnerPaths
		label   string
		noTrain bool
		threads int
	)
	cmd := &cobra.Command{
		Use:   "import DIR",
		Short: "Embed a folder of photographs into the agent's sample store",
		Long: `Embed photographs with the backbone and store them as labelled samples in
the agent's state directory, as if each had been labelled over MQTT, then
retrain the head.

With --label NAME, every file under DIR gets that label. Without, DIR holds
one folder per label:

  DIR/Tigger/1.jpg  DIR/Tigger/2.png  DIR/Misty/a.jpg  DIR/neither/lawn.jpg

Files that are not readable images are skipped and listed at the end;
hidden files are passed over. Importing the same photograph under the same
label again stores nothing new. Stop the agent first: the store is locked
while it runs.`,
		Example: `  whisker import ~/photos/tigger --label Tigger
  whisker import ~/photos/pets --state-dir /var/lib/whisker`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := paths.load()
			if err != nil {
				return err
			}
			if label != "" {
				if err := protocol.CheckLabelName(label); err != nil {
					return fmt.Errorf("--label: %w", err)
				}
			}
			files, skipped, err := embedder.List(args[0], label)
			if err != nil {
				return err
			}
			var todo []embedder.ImageFile
			for _, f := range files {
				if err := protocol.CheckLabelName(f.Label); err != nil {
					skipped = append(skipped, embedder.Skipped{Path: f.Path, Reason: "folder name is not a label: " + err.Error()})
					continue
				}
				todo = append(todo, f)
			}
			if len(todo) == 0 {
				reportSkipped(cmd.ErrOrStderr(), skipped)
				return fmt.Errorf("no files to import in %s", args[0])
			}
			if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
				return fmt.Errorf("state_dir: %w", err)
			}
			store, err := learner.OpenStore(filepath.Join(cfg.StateDir, "samples.db"))
			if err != nil {
				return err
			}
			defer store.Close()
			emb, err := embedder.Open(cfg.Backbone, backbone.Options{Threads: threads})
			if err != nil {
				return err
			}
			defer emb.Close()

			out := cmd.OutOrStdout()
			bar := newProgress(cmd.ErrOrStderr(), len(todo), "embedding")
			var batch []learner.Sample
			added, dups := 0, 0
			flush := func() error {
				if len(batch) == 0 {
					return nil
				}
				_, dup, err := store.AddMany(batch)
				if err != nil {
					return err
				}
				for _, d := range dup {
					if d {
						dups++
					} else {
						added++
					}
				}
				batch = batch[:0]
				return nil
			}
			for _, f := range todo {
				if err := cmd.Context().Err(); err != nil {
					break
				}
				bar.Add(1)
				data, err := os.ReadFile(f.Path)
				if err != nil {
					skipped = append(skipped, embedder.Skipped{Path: f.Path, Reason: err.Error()})
					continue
				}
				// The same photograph under the same label is one sample:
				// one already stored is not embedded again.
				reqID := "import:" + f.Label + ":" + embedder.SHA256(data)
				if _, ok, err := store.Request(reqID); err != nil {
					return err
				} else if ok {
					dups++
					continue
				}
				e, err := emb.EmbedImage(data, cfg.Learner.SnapshotSize)
				if err != nil {
					skipped = append(skipped, embedder.Skipped{Path: f.Path, Reason: err.Error()})
					continue
				}
				batch = append(batch, learner.Sample{
					Label: f.Label, Backbone: emb.Identity(), Time: time.Now(), Source: "import:" + f.Rel,
					RequestID: reqID, Features: e.Features, JPEG: e.JPEG,
				})
				if len(batch) == importBatch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			if err := flush(); err != nil {
				return err
			}
			bar.Finish()
			fmt.Fprintf(out, "Imported %d new samples into %s (%d were already there).\n", added, store.Path(), dups)
			reportSkipped(out, skipped)
			if err := cmd.Context().Err(); err != nil {
				return fmt.Errorf("interrupted after %d files; what was imported is stored", added+dups)
			}
			counts, err := store.Counts(emb.Identity())
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "Samples per label:")
			for _, c := range counts {
				fmt.Fprintf(out, "  %-20s %d\n", c.Label, c.Samples)
			}
			if noTrain {
				return nil
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			tr := learner.NewTrainer(cfg.Trainer(emb.Identity()), store, emb.Identity(), log)
			rep := tr.Retrain()
			if errors.Is(rep.Err, learner.ErrTooFewClasses) {
				fmt.Fprintln(out, "No head trained yet: it needs samples of at least two labels.")
				return nil
			}
			if rep.Err != nil {
				return rep.Err
			}
			writeHeadSummary(out, tr.Summary(), rep.Duration)
			return nil
		},
	}
	paths.flags(cmd)
	cmd.Flags().StringVarP(&label, "label", "l", "", "label for every file under DIR (default: one folder per label)")
	cmd.Flags().BoolVar(&noTrain, "no-train", false, "store the samples without retraining the head")
	cmd.Flags().IntVar(&threads, "threads", 0, "backbone threads (0: all cores)")
	return cmd
}

func reportSkipped(w io.Writer, skipped []embedder.Skipped) {
	if len(skipped) == 0 {
		return
	}
	fmt.Fprintf(w, "Skipped %d files:\n", len(skipped))
	for _, s := range skipped {
		fmt.Fprintf(w, "  %s: %s\n", s.Path, s.Reason)
	}
}

func writeHeadSummary(w io.Writer, s *learner.HeadSummary, took time.Duration) {
	if s == nil {
		return
	}
	fmt.Fprintf(w, "Head: %s, %d classes, %d samples, trained in %s.\n", s.Kind, len(s.Classes), s.Samples, took.Round(time.Millisecond))
	if s.Capacity != nil {
		fmt.Fprintf(w, "  capacity: %s\n", s.Capacity.Reason)
	}
	if c := s.Calibration; c != nil {
		fmt.Fprintf(w, "  unknown below %.3f (calibrated: keeps %.0f%% of correct cross-validated predictions)\n", c.Threshold, 100*c.AcceptRate)
	} else {
		fmt.Fprintf(w, "  unknown below %.3f (not calibrated yet: too few samples)\n", s.Threshold)
	}
}
