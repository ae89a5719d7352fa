package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/whiskercam/whisker/learner"
)

// FewShotRow is one shot count's results.
type FewShotRow struct {
	Shots int
	// Acc holds each method's accuracies over the splits, by method name.
	Acc map[string][]float64
	Fit map[string][]time.Duration
	// Sklearn is LogisticRegression on the same splits (nil when it was
	// not run).
	Sklearn    []float64
	SklearnFit []float64 // seconds
}

// Results is everything `whisker bench learner` measures.
type Results struct {
	Setup   []string // what was measured where, one line each
	FewShot []FewShotRow
	Times   []TrainTime
	Latency []*Latency
}

// CollectFewShot groups per-split outcomes by shot count.
func CollectFewShot(splits []Split, outcomes map[string][]Outcome, sk *SklearnRun) []FewShotRow {
	var rows []FewShotRow
	for i, sp := range splits {
		if len(rows) == 0 || rows[len(rows)-1].Shots != sp.Shots {
			rows = append(rows, FewShotRow{Shots: sp.Shots, Acc: map[string][]float64{}, Fit: map[string][]time.Duration{}})
		}
		r := &rows[len(rows)-1]
		for m, os := range outcomes {
			r.Acc[m] = append(r.Acc[m], os[i].Accuracy)
			r.Fit[m] = append(r.Fit[m], os[i].Fit)
		}
		if sk != nil {
			r.Sklearn = append(r.Sklearn, sk.Results[i].Accuracy)
			r.SklearnFit = append(r.SklearnFit, sk.Results[i].FitSeconds)
		}
	}
	return rows
}

func pm(v []float64) string {
	m, s := learner.MeanStd(v)
	return fmt.Sprintf("%.3f ± %.3f", m, s)
}

func meanDur(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range v {
		s += d
	}
	return s / time.Duration(len(v))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// WriteMarkdown prints the results as Markdown tables.
func (r *Results) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	for _, s := range r.Setup {
		fmt.Fprintf(&b, "%s  \n", s)
	}
	if len(r.FewShot) > 0 {
		methods := []string{}
		for _, m := range Methods() {
			if _, ok := r.FewShot[0].Acc[m]; ok {
				methods = append(methods, m)
			}
		}
		hasSk := r.FewShot[0].Sklearn != nil
		b.WriteString("\nFew-shot accuracy, cats against dogs (mean ± standard deviation over the splits)\n\n")
		b.WriteString("| labelled per class |")
		for _, m := range methods {
			fmt.Fprintf(&b, " %s |", m)
		}
		if hasSk {
			b.WriteString(" scikit-learn LogisticRegression | linear − scikit-learn (points) | training time, linear / scikit-learn |")
		}
		b.WriteString("\n|---|")
		for range methods {
			b.WriteString("---|")
		}
		if hasSk {
			b.WriteString("---|---|---|")
		}
		b.WriteString("\n")
		for _, row := range r.FewShot {
			fmt.Fprintf(&b, "| %d |", row.Shots)
			for _, m := range methods {
				fmt.Fprintf(&b, " %s |", pm(row.Acc[m]))
			}
			if hasSk {
				lin := row.Acc[MethodLinear]
				diff := make([]float64, len(lin))
				for i := range lin {
					diff[i] = 100 * (lin[i] - row.Sklearn[i])
				}
				dm, ds := learner.MeanStd(diff)
				maxAbs := 0.0
				for _, d := range diff {
					maxAbs = max(maxAbs, abs(d))
				}
				ours := meanDur(row.Fit[MethodLinear]).Seconds()
				sk, _ := learner.MeanStd(row.SklearnFit)
				fmt.Fprintf(&b, " %s | %+.2f ± %.2f (largest %.2f) | %s / %s = %.2f |", pm(row.Sklearn), dm, ds, maxAbs,
					ms(meanDur(row.Fit[MethodLinear])), ms(time.Duration(sk*float64(time.Second))), ours/sk)
			}
			b.WriteString("\n")
		}
		b.WriteString("\nMean training time per split\n\n| labelled per class |")
		for _, m := range methods {
			fmt.Fprintf(&b, " %s |", m)
		}
		b.WriteString("\n|---|")
		for range methods {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, row := range r.FewShot {
			fmt.Fprintf(&b, "| %d |", row.Shots)
			for _, m := range methods {
				fmt.Fprintf(&b, " %s |", ms(meanDur(row.Fit[m])))
			}
			b.WriteString("\n")
		}
	}
	if len(r.Times) > 0 {
		kinds := []string{}
		for _, t := range r.Times {
			if !slices.Contains(kinds, t.Kind) {
				kinds = append(kinds, t.Kind)
			}
		}
		b.WriteString("\nTraining time from scratch (median; iterations in brackets)\n\n| samples x dims | classes |")
		for _, k := range kinds {
			fmt.Fprintf(&b, " %s head |", k)
		}
		b.WriteString("\n|---|---|")
		for range kinds {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for i := 0; i < len(r.Times); i += len(kinds) {
			t := r.Times[i]
			fmt.Fprintf(&b, "| %d x %d | %d |", t.N, t.Dim, t.K)
			for j := range kinds {
				if i+j < len(r.Times) {
					tj := r.Times[i+j]
					fmt.Fprintf(&b, " %s (%d) |", ms(tj.Took), tj.Iters)
				}
			}
			b.WriteString("\n")
		}
	}
	if len(r.Latency) > 0 {
		b.WriteString("\nFrom a label to a head that includes it (mean, min-max), with the trainer as the agent runs it\n\n| step |")
		for _, l := range r.Latency {
			fmt.Fprintf(&b, " %s: %d stored, %d labels |", l.Name, l.Stored, l.Classes)
		}
		b.WriteString("\n|---|")
		for range r.Latency {
			b.WriteString("---|")
		}
		rows := []struct {
			name string
			get  func(*Latency) []time.Duration
		}{
			{"new label: stored (fsync) and imprinted head in use", func(l *Latency) []time.Duration { return l.Imprinted }},
			{"new label: retrained head in use (5-fold cross-validation re-chooses capacity and thresholds, then training)", func(l *Latency) []time.Duration { return l.Retrained }},
			{"known label: retrained head in use (warm start, choices kept)", func(l *Latency) []time.Duration { return l.Warm }},
		}
		for _, row := range rows {
			fmt.Fprintf(&b, "\n| %s |", row.name)
			for _, l := range r.Latency {
				fmt.Fprintf(&b, " %s |", spread(row.get(l)))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func spread(v []time.Duration) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s-%s)", ms(meanDur(v)), ms(slices.Min(v)), ms(slices.Max(v)))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
