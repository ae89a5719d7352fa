package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/whiskercam/whisker/learner/plots"
)

// OpenSetRow is one method's outcomes at one shot count.
type OpenSetRow struct {
	Shots    int
	Method   string
	Outcomes []OpenSetOutcome
}

// DetectionRate is how often the detector found an individual in its
// views.
type DetectionRate struct {
	Individual string
	Views      int
	Found      int
}

// OpenSetResults is everything `whisker bench openset` measures.
type OpenSetResults struct {
	Setup      []string
	Methods    []string
	Rows       []OpenSetRow
	Detections []DetectionRate
	// Tests counts the test sightings of each kind (per household).
	Tests map[string]int
	Notes []string
}

// Detections counts, per individual, the views the detector found it in.
func Detections(s []Sighting) []DetectionRate {
	var out []DetectionRate
	idx := map[string]int{}
	for _, x := range s {
		if x.Individual == "" {
			continue
		}
		i, ok := idx[x.Individual]
		if !ok {
			i = len(out)
			idx[x.Individual] = i
			out = append(out, DetectionRate{Individual: x.Individual})
		}
		out[i].Views++
		if x.Detected {
			out[i].Found++
		}
	}
	return out
}

// meanSD ignores NaN (a household with no sighting of a kind).
func meanSD(v []float64) (mean, sd float64, n int) {
	for _, x := range v {
		if !math.IsNaN(x) {
			mean += x
			n++
		}
	}
	if n == 0 {
		return math.NaN(), 0, 0
	}
	mean /= float64(n)
	if n < 2 {
		return mean, 0, n
	}
	for _, x := range v {
		if !math.IsNaN(x) {
			sd += (x - mean) * (x - mean)
		}
	}
	return mean, math.Sqrt(sd / float64(n-1)), n
}

func pct(v []float64) string {
	m, sd, n := meanSD(v)
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ± %.1f", 100*m, 100*sd)
}

func pick(os []OpenSetOutcome, f func(OpenSetOutcome) float64) []float64 {
	out := make([]float64, len(os))
	for i, o := range os {
		out[i] = f(o)
	}
	return out
}

func meanFit(os []OpenSetOutcome) time.Duration {
	var s time.Duration
	for _, o := range os {
		s += o.Fit
	}
	if len(os) == 0 {
		return 0
	}
	return s / time.Duration(len(os))
}

// WriteMarkdown prints the results as Markdown tables.
func (r *OpenSetResults) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	for _, s := range r.Setup {
		fmt.Fprintf(&b, "%s  \n", s)
	}
	b.WriteString("\nOpen set: a household labels N sightings of each of its pets (2 cats and a dog); every other sighting is a test " +
		"(percent, mean ± standard deviation over the households). Individuals are views of one photograph each: " +
		"no registry source has several distinct photographs of one cat or dog, so \"named right\" is easier here than in a home.\n\n")
	b.WriteString("| labelled per pet | method | named right | same-species strangers unknown | other species unknown | empty scenes named | training time |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s |\n", row.Shots, row.Method,
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.Named })),
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.Strangers })),
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.Other })),
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.Scenes })),
			ms(meanFit(row.Outcomes)))
	}
	b.WriteString("\nWhere the head alone decides: other animals and empty scenes the detector took for a cat or dog (crops), " +
		"and whole frames without a detected pet classified without the no-pet rule (percent)\n\n")
	b.WriteString("| labelled per pet | method | other species crops unknown | empty-scene crops named | other species whole frames unknown | empty scenes whole named |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", row.Shots, row.Method,
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.OtherCrops })),
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.ScenesCrops })),
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.OtherWhole })),
			pct(pick(row.Outcomes, func(o OpenSetOutcome) float64 { return o.ScenesWhole })))
	}
	if len(r.Detections) > 0 {
		b.WriteString("\nIndividuals: views the detector found the animal in (a missed view gives a whole-frame sighting, never named)\n\n| individual | views | found |\n|---|---|---|\n")
		for _, d := range r.Detections {
			fmt.Fprintf(&b, "| %s | %d | %d |\n", d.Individual, d.Views, d.Found)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Plot draws named right, strangers called unknown and other species
// called unknown against the labelled sightings per pet.
func (r *OpenSetResults) Plot(path string) error {
	type metric struct {
		title  string
		target float64
		get    func(OpenSetOutcome) float64
	}
	ms := []metric{
		{"pets named right", 0.9, func(o OpenSetOutcome) float64 { return o.Named }},
		{"same-species strangers unknown", 0.8, func(o OpenSetOutcome) float64 { return o.Strangers }},
		{"other species unknown", 0.95, func(o OpenSetOutcome) float64 { return o.Other }},
	}
	var panels []plots.Panel
	for _, m := range ms {
		pn := plots.Panel{Title: m.title, XLabel: "labelled sightings per pet", YLabel: "share of test sightings", LogX: true, Target: m.target}
		for _, method := range r.Methods {
			s := plots.Series{Name: method}
			for _, row := range r.Rows {
				if row.Method != method {
					continue
				}
				mean, sd, n := meanSD(pick(row.Outcomes, m.get))
				if n == 0 {
					continue
				}
				s.X = append(s.X, float64(row.Shots))
				s.Y = append(s.Y, mean)
				s.Low = append(s.Low, math.Min(sd, mean))
				s.Hi = append(s.Hi, math.Min(sd, 1-mean))
			}
			if len(s.X) > 0 {
				pn.Series = append(pn.Series, s)
			}
		}
		panels = append(panels, pn)
	}
	return plots.Panels(path, "Tell your pets from every other animal (dashed: targets at 6 per pet)", panels)
}

// SortRows orders the rows by shot count (in the order given), then by
// method (in the order of r.Methods).
func (r *OpenSetResults) SortRows(shots []int) {
	slices.SortStableFunc(r.Rows, func(a, b OpenSetRow) int {
		if a.Shots != b.Shots {
			return slices.Index(shots, a.Shots) - slices.Index(shots, b.Shots)
		}
		return slices.Index(r.Methods, a.Method) - slices.Index(r.Methods, b.Method)
	})
}

// Row returns a method's row at a shot count (nil when absent).
func (r *OpenSetResults) Row(shots int, method string) *OpenSetRow {
	i := slices.IndexFunc(r.Rows, func(x OpenSetRow) bool { return x.Shots == shots && x.Method == method })
	if i < 0 {
		return nil
	}
	return &r.Rows[i]
}
