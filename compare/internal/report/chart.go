package report

import (
	"fmt"
	"image/color"
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart formats.
const (
	SVG = "svg"
	PNG = "png"
)

var (
	hullColor = color.RGBA{R: 0x1b, G: 0x7f, B: 0x5f, A: 0xff}
	tradColor = color.RGBA{R: 0xc0, G: 0x39, B: 0x2b, A: 0xff}
	rootColor = color.RGBA{R: 0x7b, G: 0x24, B: 0x1c, A: 0xff}
)

// series is one colour of bars across a panel's categories.
type series struct {
	name   string
	values []float64
	color  color.Color
}

// panel is one horizontal bar chart of the figure.
type panel struct {
	title      string
	categories []string // top to bottom
	series     []series
	// legend puts the series names in the bottom right corner, where
	// the short bars leave room.
	legend bool
}

// panels lays the result out for a slide: image contents, the tools an
// attacker looks for, and the red-team count.
func (r *Result) panels() []panel {
	h, t := r.Hull.Surface, r.Traditional.Surface
	n := func(l []string) float64 { return float64(len(l)) }
	contents := panel{
		title:      "What the redis image holds",
		legend:     true,
		categories: []string{"files", "ELF programs", "shared libraries"},
		series: []series{
			{"hull", []float64{float64(h.Files), n(h.Programs), float64(h.SharedLibraries)}, hullColor},
			{"traditional", []float64{float64(t.Files), n(t.Programs), float64(t.SharedLibraries)}, tradColor},
		},
	}
	tools := panel{
		title:      "What an attacker finds there",
		categories: []string{"shells", "interpreters", "package managers", "compilers/downloaders", "setuid/setgid", "device nodes (image)", "device nodes (/dev, run time)"},
		series: []series{
			{"hull", []float64{n(h.Shells), n(h.Interpreters), n(h.PackageManagers), n(h.Tools), n(h.Setuid), n(h.Devices), n(r.Hull.RuntimeDevices)}, hullColor},
			{"traditional", []float64{n(t.Shells), n(t.Interpreters), n(t.PackageManagers), n(t.Tools), n(t.Setuid), n(t.Devices), n(r.Traditional.RuntimeDevices)}, tradColor},
		},
	}
	attacks := panel{title: "Red-team attacks that succeeded"}
	var vals []float64
	var colors []color.Color
	add := func(side string, runs []RedTeamRun, c []color.Color) {
		for i, run := range runs {
			attacks.categories = append(attacks.categories, fmt.Sprintf("%s, as %s (of %d)", side, run.As, run.Attempts))
			vals = append(vals, float64(len(run.Tally.Succeeded)))
			colors = append(colors, c[min(i, len(c)-1)])
		}
	}
	add("hull", r.Hull.RedTeam, []color.Color{hullColor})
	add("traditional", r.Traditional.RedTeam, []color.Color{tradColor, rootColor})
	for i, v := range vals {
		values := make([]float64, len(vals))
		values[i] = v
		attacks.series = append(attacks.series, series{values: values, color: colors[i]})
	}
	return []panel{contents, tools, attacks}
}

// WriteChart draws the surface and attack counts as a three-panel
// horizontal bar chart in format (SVG or PNG).
func (r *Result) WriteChart(w io.Writer, format string) error {
	panels := r.panels()
	plots := make([]*plot.Plot, len(panels))
	for i, pn := range panels {
		p, err := pn.plot()
		if err != nil {
			return fmt.Errorf("chart %q: %w", pn.title, err)
		}
		plots[i] = p
	}
	width, height := 15*vg.Inch, 4.8*vg.Inch
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch format {
	case SVG:
		c = vgsvg.New(width, height)
	case PNG:
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(110))}
	default:
		return fmt.Errorf("chart format %q: want svg or png", format)
	}
	dc := draw.New(c)
	// White background: the PNG is pasted onto slides of any colour.
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	title := fmt.Sprintf("hull vs a traditional Debian server VM — redis-server; same kernel (%s), QEMU, %d MiB, %d vCPU (measured %s)",
		r.Setup.Kernel, r.Setup.MemoryMiB, r.Setup.CPUs, r.Started.Format("2006-01-02"))
	sty := text.Style{Color: color.Black, Font: plot.DefaultFont, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter}
	sty.Font.Size = vg.Points(13)
	top := dc.Max.Y - sty.Height(title)
	dc.FillText(sty, vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: top}, title)
	body := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: dc.Min, Max: vg.Point{X: dc.Max.X, Y: top - vg.Points(6)}}}
	tiles := draw.Tiles{Rows: 1, Cols: len(plots), PadX: vg.Points(24), PadLeft: vg.Points(8), PadRight: vg.Points(16), PadBottom: vg.Points(8)}
	canvases := plot.Align([][]*plot.Plot{plots}, tiles, body)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	_, err := c.WriteTo(w)
	return err
}

func (pn panel) plot() (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = pn.title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	// Categories top to bottom: the Y axis counts upwards.
	cats := slices.Clone(pn.categories)
	slices.Reverse(cats)
	p.NominalY(cats...)
	p.X.Min = 0
	p.X.Tick.Label.Font.Size = vg.Points(9)
	p.Y.Tick.Label.Font.Size = vg.Points(10)
	named := 0
	for _, s := range pn.series {
		if s.name != "" {
			named++
		}
	}
	barW := vg.Points(22)
	if named > 1 {
		barW = vg.Points(13)
	}
	maxV := 1.0
	for si, s := range pn.series {
		vals := slices.Clone(s.values)
		slices.Reverse(vals)
		bars, err := plotter.NewBarChart(plotter.Values(vals), barW)
		if err != nil {
			return nil, err
		}
		bars.Horizontal = true
		bars.Color = s.color
		bars.LineStyle.Width = 0
		var offset vg.Length
		if named > 1 {
			// Two series side by side: the first above the second.
			offset = barW/2 - vg.Length(si)*barW
		}
		bars.Offset = offset
		p.Add(bars)
		if pn.legend && s.name != "" {
			p.Legend.Add(s.name, bars)
		}
		xys := make(plotter.XYs, 0, len(vals))
		var labels []string
		for i, v := range vals {
			if named <= 1 && len(vals)-1-i != si {
				continue // one bar per row: row k is series k's, the others' are empty
			}
			xys = append(xys, plotter.XY{X: v, Y: float64(i)})
			labels = append(labels, fmt.Sprintf("%.0f", v))
			maxV = max(maxV, v)
		}
		if len(xys) == 0 {
			continue
		}
		lab, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return nil, err
		}
		for i := range lab.TextStyle {
			lab.TextStyle[i].YAlign = draw.YCenter
			lab.TextStyle[i].Font.Size = vg.Points(9)
		}
		lab.Offset = vg.Point{X: vg.Points(3), Y: offset}
		p.Add(lab)
	}
	// Room for the value labels right of the longest bar.
	p.X.Max = maxV * 1.22
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(11)
	return p, nil
}
