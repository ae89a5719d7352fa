package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/bench"
	"github.com/whiskercam/whisker/learner/embedder"
)

func modelReferenceCmd() *cobra.Command {
	var deps, detector, out string
	var threads int
	cmd := &cobra.Command{
		Use:   "reference [MANIFEST...]",
		Short: "Compute a backbone's reference set of other animals and scenes",
		Long: `Compute the reference set the head learns as its "other animals and
scenes" class: the sightings the detecting backbone makes of the reference
photographs 'make deps' fetched (other animals pasted onto scenes, scenes from
videos and photographs) and 500 CIFAR-10 cats and 500 dogs. None of these
photographs is used by the open-set benchmark's tests.

The set (about 2 MB: one byte per value) is written beside each MANIFEST given
as NAME.reference, for every manifest of the same backbone identity (default:
the detecting backbone's manifest and DEPS/models/backbone.manifest.json).`,
		Example: "  whisker model reference --deps .deps",
		RunE: func(cmd *cobra.Command, args []string) error {
			if detector == "" {
				detector = filepath.Join(deps, "models", "backbone-detect.manifest.json")
			}
			manifests := args
			if len(manifests) == 0 {
				manifests = []string{detector, filepath.Join(deps, "models", "backbone.manifest.json")}
			}
			det, err := embedder.OpenDetector(detector, backbone.Options{Threads: threads}, embedder.DetectConfig{})
			if err != nil {
				return err
			}
			defer det.Close()
			start := time.Now()
			var bar *progress
			ref, err := bench.BuildReference(cmd.Context(), det, bench.ReferenceConfig{Deps: deps}, filepath.Join(deps, "cache"),
				func(done, total int, _ string) {
					if bar == nil {
						bar = newProgress(cmd.ErrOrStderr(), total, "reference photographs")
					}
					bar.Set(done)
				})
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			for _, m := range manifests {
				man, err := model.ReadManifest(m)
				if err != nil {
					return err
				}
				if man.Identity != ref.Backbone {
					return fmt.Errorf("%s is backbone %s; the reference set was computed by %s", m, man.Identity, ref.Backbone)
				}
				path := out
				if path == "" {
					path = learner.ReferencePath(m)
				}
				if err := ref.Save(path); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d vectors of %s (%s)\n", path, len(ref.X), ref.Backbone, time.Since(start).Round(time.Second))
				if out != "" {
					break
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&deps, "deps", depsDir(), "where 'make deps' put the models, test data and photographs")
	f.StringVar(&detector, "detector", "", "detecting backbone manifest (default DEPS/models/backbone-detect.manifest.json)")
	f.StringVarP(&out, "output", "o", "", "write the set to this file instead (one file)")
	f.IntVar(&threads, "threads", 0, "backbone threads (0: all cores)")
	return cmd
}
