// Package plots draws a learner report as PNG images with gonum/plot: the
// confusion matrix, and the learning curve that shows whether more labels
// would help.
package plots

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/whiskercam/whisker/learner"
)

// confusionGrid is the row-normalised confusion matrix as a heat map grid:
// column c is the predicted class, row 0 (drawn at the top) the first true
// class.
type confusionGrid struct {
	r *learner.Report
}

func (g confusionGrid) Dims() (c, r int) { k := len(g.r.Classes); return k, k }
func (g confusionGrid) X(c int) float64  { return float64(c) }
func (g confusionGrid) Y(r int) float64  { return float64(r) }
func (g confusionGrid) Z(c, r int) float64 {
	row := g.r.Confusion[len(g.r.Classes)-1-r]
	total := 0
	for _, n := range row {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(row[c]) / float64(total)
}

// Confusion writes the confusion matrix (rows: true class, columns:
// predicted; each cell its count and its share of the row) to a PNG file.
func Confusion(r *learner.Report, path string) error {
	k := len(r.Classes)
	if k == 0 || len(r.Confusion) != k {
		return errors.New("plot confusion: the report has no confusion matrix")
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Confusion, %d-fold cross-validation (accuracy %.1f%%)", r.Folds, 100*r.Accuracy)
	p.X.Label.Text = "predicted"
	p.Y.Label.Text = "true"
	hm := plotter.NewHeatMap(confusionGrid{r}, whiteToBlue(64))
	hm.Min, hm.Max = 0, 1
	p.Add(hm)
	var xys plotter.XYLabels
	var dark []bool // cells dark enough for white text
	var xt, yt plot.ConstantTicks
	for c, name := range r.Classes {
		xt = append(xt, plot.Tick{Value: float64(c), Label: name})
		yt = append(yt, plot.Tick{Value: float64(k - 1 - c), Label: name})
	}
	for i, row := range r.Confusion {
		total := 0
		for _, n := range row {
			total += n
		}
		for j, n := range row {
			share := 0.0
			if total > 0 {
				share = float64(n) / float64(total)
			}
			xys.XYs = append(xys.XYs, plotter.XY{X: float64(j), Y: float64(k - 1 - i)})
			xys.Labels = append(xys.Labels, fmt.Sprintf("%d\n%.0f%%", n, 100*share))
			dark = append(dark, share > 0.55)
		}
	}
	labels, err := plotter.NewLabels(xys)
	if err != nil {
		return fmt.Errorf("plot confusion: %w", err)
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].XAlign, labels.TextStyle[i].YAlign = -0.5, -0.5
		labels.TextStyle[i].Color = color.Black
		if dark[i] {
			labels.TextStyle[i].Color = color.White
		}
	}
	p.Add(labels)
	p.X.Tick.Marker, p.Y.Tick.Marker = xt, yt
	p.X.Min, p.X.Max = -0.5, float64(k)-0.5
	p.Y.Min, p.Y.Max = -0.5, float64(k)-0.5
	side := vg.Length(math.Max(4, 1.2*float64(k)+2)) * vg.Inch
	return save(p, side, side, path)
}

// LearningCurve writes accuracy against labelled samples per class (mean
// and standard deviation over the draws, logarithmic axis) to a PNG file,
// with the cross-validated accuracy on all samples and chance for
// reference.
func LearningCurve(r *learner.Report, path string) error {
	if len(r.Curve) == 0 {
		return errors.New("plot learning curve: the report has no learning curve (too few samples per class)")
	}
	p := plot.New()
	p.Title.Text = "Learning curve: would more labels help?"
	p.X.Label.Text = "labelled samples per class"
	p.Y.Label.Text = "accuracy on the other samples"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	var pts plotter.XYs
	var errs plotter.YErrors
	for _, c := range r.Curve {
		pts = append(pts, plotter.XY{X: float64(c.PerClass), Y: c.Accuracy})
		errs = append(errs, struct{ Low, High float64 }{c.Std, c.Std})
	}
	line, points, err := plotter.NewLinePoints(pts)
	if err != nil {
		return fmt.Errorf("plot learning curve: %w", err)
	}
	bars, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{pts, errs})
	if err != nil {
		return fmt.Errorf("plot learning curve: %w", err)
	}
	p.Add(line, points, bars)
	p.Legend.Add("linear head (mean ± sd)", line, points)
	lo, hi := pts[0].X, pts[len(pts)-1].X
	if hi == lo {
		hi = lo * 2
	}
	for _, ref := range []struct {
		name  string
		y     float64
		color color.Color
	}{
		{fmt.Sprintf("cross-validated, all %d samples", r.Samples), r.Accuracy, color.RGBA{B: 200, A: 255}},
		{"chance", 1 / float64(len(r.Classes)), color.Gray{Y: 150}},
	} {
		l, err := plotter.NewLine(plotter.XYs{{X: lo, Y: ref.y}, {X: hi, Y: ref.y}})
		if err != nil {
			return fmt.Errorf("plot learning curve: %w", err)
		}
		l.Color = ref.color
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add(ref.name, l)
	}
	p.Legend.Top, p.Legend.Left = false, false
	p.Add(plotter.NewGrid())
	return save(p, 6*vg.Inch, 4*vg.Inch, path)
}

// ramp is a palette of colours.
type ramp []color.Color

func (r ramp) Colors() []color.Color { return r }

// whiteToBlue runs from white (none of the row) to a deep blue (all of it).
func whiteToBlue(n int) palette.Palette {
	r := make(ramp, n)
	for i := range r {
		f := float64(i) / float64(n-1)
		r[i] = color.RGBA{R: uint8(255 - f*(255-33)), G: uint8(255 - f*(255-102)), B: uint8(255 - f*(255-172)), A: 255}
	}
	return r
}

func save(p *plot.Plot, w, h vg.Length, path string) error {
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
