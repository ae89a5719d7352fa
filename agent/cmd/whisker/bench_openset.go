package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/whiskercam/whisker/firmware/model"
	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/bench"
	"github.com/whiskercam/whisker/learner/embedder"
)

type benchOpenSetOptions struct {
	deps, detector, python, out, plot string
	features, parts                   string
	splits, threads                   int
	shots                             []int
	methods                           []string
	quick, noSklearn                  bool
}

// Short names of the open-set methods, for --methods.
var osMethodKeys = map[string]string{
	"head": osHead, "before": osHeadBefore, "cal20": osHeadCal20, "noshrink": osHeadNoShrink,
	"ncm": "nearest class mean + threshold", "knn": "nearest neighbour + threshold", "sklearn": osSklearn,
	"block": osBlock, "blockforced": osBlockForced,
}

// Method names of the open-set table.
const (
	osHead         = "agent head"
	osHeadBefore   = "agent head without reference set (as before)"
	osHeadCal20    = "agent head, calibrated from 20"
	osHeadNoShrink = "agent head, limits not shrunk"
	osSklearn      = "scikit-learn LogisticRegression + threshold 0.6"
	osBlock        = "agent head, last block trained when cross-validation prefers it"
	osBlockForced  = "agent head, last block trained from 20 labels per pet"
)

func benchOpenSetCmd() *cobra.Command {
	var opt benchOpenSetOptions
	cmd := &cobra.Command{
		Use:   "openset",
		Short: "Pets against strangers: named right, strangers unknown, other animals and empty scenes, by labels per pet",
		Long: `Measure the real question on photographs 'make deps' fetched (step photos):
a household of two cats and a dog labels N sightings of each (1, 3, 6, 12,
24); every other sighting is a test. Sightings are made the way the agent's
pipeline makes them: the detecting backbone finds cats and dogs in a frame and
embeds each crop; a frame without one is embedded whole and, under the no-pet
rule, never named as a pet.

Individuals are views of one photograph each (crop, scale, flip, light, blur,
JPEG quality; one dog cut out and pasted onto scenes): no source on the
registries this project reaches has several distinct photographs of one cat or
dog. The other animals, empty scenes and the reference set of "other animals
and scenes" the head learns as a class come from separate photographs.

Reported per shot count, mean and standard deviation over random households:
pets named right, strangers of the same species (the other individuals) called
unknown, other animals not named, empty scenes named, and training time, for
the agent's head (and without the parts it is made of), nearest class mean and
nearest neighbour with thresholds, and scikit-learn's LogisticRegression with
the agent's 0.6 threshold, on the same households.

The sightings and the reference set are cached under DEPS/cache (computing
them takes several minutes once).

--features compares other features: the detecting backbone still finds the
pets, and the backbone of that manifest (another cut of the network, see
'whisker model cut --also --input-size') embeds the crops, the whole frames
and the reference set. --parts keeps some of the parts a multi-depth cut
concatenates (0 is its first tensor), so one embedding serves every
combination. The methods block and blockforced train new units of the
network's last block on each sample's map beside the frozen ones (the
"train more layers" experiment): they need a --features cut with one --map
and no --also (e.g. Conv_1 pooled, then the map it is computed from), and
are compared with the agent head on the pooled part alone.`,
		Example: `  whisker bench openset -o openset.md --plot openset.png
  whisker bench openset --quick
  whisker bench openset --quick --methods head,ncm --features multi.manifest.json --parts 0,2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runBenchOpenSet(cmd, opt) },
	}
	f := cmd.Flags()
	f.StringVar(&opt.deps, "deps", depsDir(), "where 'make deps' put the models, test data and photographs")
	f.StringVar(&opt.detector, "detector", "", "detecting backbone manifest (default DEPS/models/backbone-detect.manifest.json)")
	f.StringVar(&opt.python, "python", bench.DefaultPython, "Python interpreter with scikit-learn")
	f.StringVarP(&opt.out, "output", "o", "", "also write the tables to this file")
	f.StringVar(&opt.plot, "plot", "", "write the plot to this PNG file")
	f.IntVar(&opt.splits, "splits", 20, "random households per shot count")
	f.IntSliceVar(&opt.shots, "shots", []int{1, 3, 6, 12, 24}, "labelled sightings per pet")
	f.IntVar(&opt.threads, "threads", 0, "backbone threads for embedding (0: all cores)")
	f.StringVar(&opt.features, "features", "", "embed crops and frames with this backbone manifest instead of the detector's feature map")
	f.StringVar(&opt.parts, "parts", "", "with a multi-depth --features backbone: the parts to keep, e.g. 0,2 (default all)")
	f.StringSliceVar(&opt.methods, "methods", nil, "run only these methods: head, before, cal20, noshrink, ncm, knn, sklearn, block, blockforced (default all but the block ones)")
	f.BoolVar(&opt.quick, "quick", false, "5 households per shot count and shots 1, 6, 24 (about a minute once cached)")
	f.BoolVar(&opt.noSklearn, "no-sklearn", false, "leave scikit-learn out")
	return cmd
}

func runBenchOpenSet(cmd *cobra.Command, opt benchOpenSetOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	if opt.quick {
		if !cmd.Flags().Changed("splits") {
			opt.splits = 5
		}
		if !cmd.Flags().Changed("shots") {
			opt.shots = []int{1, 6, 24}
		}
	}
	run := map[string]bool{}
	for _, k := range opt.methods {
		name, ok := osMethodKeys[k]
		if !ok {
			return fmt.Errorf("--methods: unknown method %q (want head, before, cal20, noshrink, ncm, knn, sklearn, block or blockforced)", k)
		}
		run[name] = true
	}
	if len(run) > 0 && !run[osSklearn] {
		opt.noSklearn = true
	}
	var skVersion string
	if !opt.noSklearn {
		v, err := bench.CheckSklearn(ctx, opt.python)
		if err != nil {
			return err
		}
		skVersion = v
	}
	ps := bench.PhotoSet()
	if err := bench.PhotoSetMissing(opt.deps, ps); err != nil {
		return err
	}
	if opt.detector == "" {
		opt.detector = filepath.Join(opt.deps, "models", "backbone-detect.manifest.json")
	}
	det, err := embedder.OpenDetector(opt.detector, backbone.Options{Threads: opt.threads}, embedder.DetectConfig{Features: opt.features})
	if err != nil {
		return err
	}
	var parts *bench.Parts
	var block *bench.BlockConfig
	blockDim := 0
	if run[osBlock] || run[osBlockForced] {
		if opt.features == "" || opt.parts != "" {
			det.Close()
			return fmt.Errorf("the block methods need a --features cut with one --map (and no --parts)")
		}
		cfg, dim, err := blockLayout(opt.features)
		if err != nil {
			det.Close()
			return err
		}
		block, blockDim = &cfg, dim
	}
	if opt.parts != "" {
		if opt.features == "" {
			return fmt.Errorf("--parts needs a multi-depth --features backbone")
		}
		man, err := model.ReadManifest(opt.features)
		if err != nil {
			det.Close()
			return err
		}
		p, err := bench.ParseParts(opt.parts, man.CutParts)
		if err != nil {
			det.Close()
			return err
		}
		parts = &p
	}
	detIdentity := det.Identity()
	if opt.features != "" {
		detIdentity = fmt.Sprintf("%s; crops and frames embedded by %s (input %dx%d)", filepath.Base(opt.detector), det.Identity(), det.Spec().Width, det.Spec().Height)
		if parts != nil {
			detIdentity += fmt.Sprintf(", parts %v of %v kept (%d values)", parts.Keep, parts.Sizes, parts.Dim())
		}
	}
	cache := filepath.Join(opt.deps, "cache")
	var bar *progress
	show := func(what string) bench.SightingProgress {
		return func(done, total int, _ string) {
			if bar == nil {
				bar = newProgress(stderr, total, what)
			}
			bar.Set(done)
		}
	}
	finish := func() {
		if bar != nil {
			bar.Finish()
			bar = nil
		}
	}
	s, err := bench.CachedSightings(ctx, ps, bench.RoleBench, det, bench.SightingConfig{Deps: opt.deps}, cache, show("benchmark sightings (cached for next time)"))
	finish()
	if err != nil {
		det.Close()
		return err
	}
	ref, err := bench.BuildReference(ctx, det, bench.ReferenceConfig{Deps: opt.deps}, cache, show("reference set (cached for next time)"))
	finish()
	det.Close()
	if err != nil {
		return err
	}
	if parts != nil {
		if err := bench.ApplyParts(*parts, s, ref); err != nil {
			return err
		}
	}
	hs, err := bench.MakeHouseholds(s, bench.OpenSetConfig{Shots: opt.shots, Splits: opt.splits})
	if err != nil {
		return err
	}
	tc := learner.TrainConfig{C: 1, Balanced: true}
	withRef := learner.BackgroundConfig{Reference: ref}
	methods := []bench.OpenSetMethod{
		bench.HeadMethod(osHead, learner.FitConfig{Train: tc, Background: withRef}),
		bench.HeadMethod(osHeadBefore, learner.FitConfig{Train: tc}),
		bench.HeadMethod(osHeadCal20, learner.FitConfig{Train: tc, Select: learner.SelectConfig{MinCalibrateReference: 20}, Background: withRef}),
		bench.HeadMethod(osHeadNoShrink, learner.FitConfig{Train: tc, Select: learner.SelectConfig{PriorWeight: -1}, Background: withRef}),
		bench.NearestMeanMethod(),
		bench.KNNMethod(),
	}
	var blockStats bench.BlockStats
	if block != nil {
		// The agent head and nearest class mean see the pooled part alone.
		ref0 := bench.ProjectReference(ref, blockDim)
		methods = []bench.OpenSetMethod{
			bench.ProjectMethod(bench.HeadMethod(osHead, learner.FitConfig{Train: tc, Background: learner.BackgroundConfig{Reference: ref0}}), blockDim),
			bench.ProjectMethod(bench.NearestMeanMethod(), blockDim),
		}
		chosen, forced := bench.BlockMethods(osBlock, osBlockForced, learner.FitConfig{Train: tc}, ref, blockDim, *block, &blockStats)
		methods = append(methods, chosen, forced)
	}
	if len(run) > 0 {
		methods = slices.DeleteFunc(methods, func(m bench.OpenSetMethod) bool { return !run[m.Name] })
	}
	counts := map[string]int{}
	for _, x := range s {
		counts[x.Kind]++
	}
	res := &bench.OpenSetResults{Setup: []string{
		fmt.Sprintf("Command: `whisker bench openset%s`", changedFlags(cmd)),
		fmt.Sprintf("Machine: %s, %d cores, %s, load average %s at the start", cpuModel(), runtime.NumCPU(), runtime.Version(), loadAvg()),
		fmt.Sprintf("Sightings: %d from the benchmark's photographs (cats %d, dogs %d, other animals %d, empty scenes %d), made by the detecting backbone %s as the agent's pipeline makes them (Cat and Dog boxes at score 0.5, crops with a 10%% margin, else the whole frame)",
			len(s), counts[bench.KindCat], counts[bench.KindDog], counts[bench.KindOther], counts[bench.KindScene], detIdentity),
		fmt.Sprintf("Reference set: %d vectors (other animals pasted onto scenes, scenes from two videos and street photographs, 500 CIFAR-10 cats and 500 dogs), no photograph shared with the tests; the agent's head trains on 300 of them as one more class", len(ref.X)),
		"Heads: C = 1, balanced class weights. The agent head trains with the reference set as one more class; its open-set limits are calibrated by cross-validation once 6 labelled sightings can be cross-validated, and shrunk toward priors (threshold 0.6; the distance within which 5% of 200 held-out reference vectors lie) with 20 samples' weight. Without a reference set it is the head as it was: limits calibrated from 20 sightings, threshold 0.6 and no distance test before. \"calibrated from 20\" and \"limits not shrunk\" each leave one part out",
		"Baselines: nearest class mean and nearest neighbour on standardised vectors (cosine), with a threshold that keeps 95% of the labelled sightings left out one at a time (none with one label per pet)",
		fmt.Sprintf("Households: %d per shot count (%v labelled sightings per pet), the same for every method", opt.splits, opt.shots),
	}}
	if skVersion != "" {
		res.Setup = append(res.Setup, fmt.Sprintf("scikit-learn %s: StandardScaler + LogisticRegression(C=1), unknown below probability 0.6 (the agent's default threshold)", skVersion))
	}
	start := time.Now()
	outcomes := map[string][]bench.OpenSetOutcome{}
	for _, m := range methods {
		fmt.Fprintf(stderr, "open set: %s...\n", m.Name)
		o, err := bench.RunOpenSet(ctx, s, hs, m)
		if err != nil {
			return err
		}
		if m.Name == osBlockForced && outcomes[osBlock] != nil {
			// It reuses the other block method's fits: their time is its.
			for i := range o {
				o[i].Fit = outcomes[osBlock][i].Fit
			}
		}
		outcomes[m.Name] = o
		res.Methods = append(res.Methods, m.Name)
	}
	if block != nil {
		block := block.WithDefaults()
		res.Setup = append(res.Setup, fmt.Sprintf("Block head: %d units of ReLU6 on the %dx%dx%d map (averaged over %dx%d cells), beside the frozen pooled vector; %s",
			block.Units, block.Grid, block.Grid, block.Channels, block.Pool, block.Pool, blockStats.Summary()))
		fmt.Fprintln(stderr, blockStats.Summary())
	}
	if !opt.noSklearn {
		fmt.Fprintln(stderr, "open set: scikit-learn...")
		o, _, err := bench.SklearnOpenSet(ctx, bench.SklearnConfig{Python: opt.python, C: 1}, s, hs, learner.DefaultThreshold)
		if err != nil {
			return err
		}
		outcomes[osSklearn] = o
		res.Methods = append(res.Methods, osSklearn)
	}
	for _, name := range res.Methods {
		o := outcomes[name]
		for i := 0; i < len(hs); {
			j := i
			for j < len(hs) && hs[j].Shots == hs[i].Shots {
				j++
			}
			res.Rows = append(res.Rows, bench.OpenSetRow{Shots: hs[i].Shots, Method: name, Outcomes: o[i:j]})
			i = j
		}
	}
	res.SortRows(opt.shots)
	res.Detections = bench.Detections(s)
	res.Setup = append(res.Setup, fmt.Sprintf("Took %s (sightings cached); load average %s at the end", time.Since(start).Round(time.Second), loadAvg()))
	var w io.Writer = cmd.OutOrStdout()
	if opt.out != "" {
		f, err := os.Create(opt.out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(w, f)
	}
	if err := res.WriteMarkdown(w); err != nil {
		return err
	}
	if opt.plot != "" {
		if err := res.Plot(opt.plot); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", opt.plot)
	}
	return nil
}

// blockLayout reads how a map cut's vectors split: the pooled part's size,
// then the map's grid and channels.
func blockLayout(manifest string) (bench.BlockConfig, int, error) {
	man, data, err := model.LoadBackbone(manifest)
	if err != nil {
		return bench.BlockConfig{}, 0, err
	}
	if len(man.CutMaps) != 1 || len(man.CutAlso) != 0 {
		return bench.BlockConfig{}, 0, fmt.Errorf("%s: the block methods need a cut with one --map and no --also", manifest)
	}
	info, err := model.Inspect(data)
	if err != nil {
		return bench.BlockConfig{}, 0, err
	}
	for _, t := range info.Tensors {
		if t.Name == man.CutMaps[0] {
			if len(t.Shape) != 4 || t.Shape[1] != t.Shape[2] {
				return bench.BlockConfig{}, 0, fmt.Errorf("%s: map %v is not a square [1,H,W,C] map", manifest, t.Shape)
			}
			return bench.BlockConfig{Grid: t.Shape[1], Channels: t.Shape[3], Pool: 2}, man.CutParts[0], nil
		}
	}
	return bench.BlockConfig{}, 0, fmt.Errorf("%s: no tensor %q in the model", manifest, man.CutMaps[0])
}
