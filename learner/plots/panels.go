package plots

import (
	"errors"
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is one line of a panel: a mean and its spread at each x.
type Series struct {
	Name    string
	X, Y    []float64
	Low, Hi []float64 // error bar below and above Y (optional)
}

// Panel is one plot of a row of panels.
type Panel struct {
	Title, XLabel, YLabel string
	LogX                  bool
	// Target draws a dashed horizontal line (0: none).
	Target float64
	Series []Series
}

// Panels writes panels side by side to a PNG file, with one legend (the
// series' names are the same in every panel).
func Panels(path, title string, panels []Panel) error {
	if len(panels) == 0 {
		return errors.New("plot panels: nothing to plot")
	}
	const w, h = 5 * vg.Inch, 4.2 * vg.Inch
	img := vgimg.New(vg.Length(len(panels))*w, h+0.5*vg.Inch)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	top := draw.Crop(dc, 0, 0, h, 0)
	if title != "" {
		sty := draw.TextStyle{Color: color.Black, Font: plot.DefaultFont, XAlign: draw.XCenter, YAlign: draw.YTop,
			Handler: plot.DefaultTextHandler}
		sty.Font.Size = vg.Points(13)
		top.FillText(sty, vg.Point{X: top.Center().X, Y: top.Max.Y - 4}, title)
	}
	plots := make([][]*plot.Plot, 1)
	for pi, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.Title
		p.X.Label.Text = pn.XLabel
		p.Y.Label.Text = pn.YLabel
		p.Y.Min, p.Y.Max = 0, 1
		if pn.LogX {
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		}
		for si, s := range pn.Series {
			pts := make(plotter.XYs, len(s.X))
			for i := range s.X {
				pts[i] = plotter.XY{X: s.X[i], Y: s.Y[i]}
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return fmt.Errorf("plot %s: %w", pn.Title, err)
			}
			line.Color = plotutil.Color(si)
			line.Dashes = plotutil.Dashes(si % 3)
			points.Color = plotutil.Color(si)
			points.Shape = plotutil.Shape(si)
			p.Add(line, points)
			if len(s.Low) == len(s.X) && len(s.Hi) == len(s.X) {
				errs := make(plotter.YErrors, len(s.X))
				for i := range errs {
					errs[i].Low, errs[i].High = s.Low[i], s.Hi[i]
				}
				bars, err := plotter.NewYErrorBars(struct {
					plotter.XYs
					plotter.YErrors
				}{pts, errs})
				if err == nil {
					bars.Color = plotutil.Color(si)
					p.Add(bars)
				}
			}
			if pi == len(panels)-1 {
				p.Legend.Add(s.Name, line, points)
			}
		}
		if pn.Target > 0 && len(pn.Series) > 0 && len(pn.Series[0].X) > 0 {
			xs := pn.Series[0].X
			l, err := plotter.NewLine(plotter.XYs{{X: xs[0], Y: pn.Target}, {X: xs[len(xs)-1], Y: pn.Target}})
			if err == nil {
				l.Color = color.Gray{Y: 120}
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				p.Add(l)
			}
		}
		p.Legend.Top, p.Legend.Left = false, false
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		p.Add(plotter.NewGrid())
		plots[0] = append(plots[0], p)
	}
	tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2, PadTop: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, draw.Crop(dc, 0, 0, 0, -0.5*vg.Inch))
	for i := range plots[0] {
		plots[0][i].Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	png := vgimg.PngCanvas{Canvas: img}
	if _, err := png.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
