package sweep

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"pocketllm-native/internal/atomicfile"
)

// JSON is the results as JSONFile holds them.
func (r *Results) JSON() ([]byte, error) {
	for _, row := range r.Rows {
		if !finite(row.PPL, row.NLL, row.KLMean, row.KLMax, row.BitsPerWeight, row.NMSEMean) {
			return nil, fmt.Errorf("sweep: %s %s: a measurement is not a finite number (perplexity %v)", row.Method, row.Setting, row.PPL)
		}
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Markdown is the results as TableFile holds them: the command line, the
// original's score, and one table row per run.
func (r *Results) Markdown() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Sweep: perplexity against bits per weight\n\n")
	fmt.Fprintf(&b, "```\n%s\n```\n\n", r.Command)
	fmt.Fprintf(&b, "Model %s, text %s (%d sequences, %d scored tokens), backend %s, share %s (pocketllm and vq; rtn: none)",
		mdEscape(r.Model), mdEscape(r.Text), r.Sequences, r.Tokens, r.Backend, r.Share)
	if r.Calibration != "" {
		fmt.Fprintf(&b, ", calibration %s", mdEscape(r.Calibration))
	}
	fmt.Fprintf(&b, ".\n\nOriginal model: perplexity %.4f (NLL %.4f nats/token).\n\n", r.OriginalPPL, r.OriginalNLL)
	b.WriteString("Bits per weight count every stored byte of the compressed tensors; KL is KL(original || compressed) per token; NMSE is the mean over compressed tensors.\n\n")
	b.WriteString("| method | setting | target | chosen | bits/weight | file bytes | ppl | NLL | KL mean | top-1 agree | NMSE mean | seconds |\n")
	b.WriteString("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range r.Rows {
		if row.Skipped {
			fmt.Fprintf(&b, "| %s | %s | %.3f | skipped: %s | | | | | | | | |\n", row.Method, row.Setting, row.Target, mdEscape(row.Reason))
			continue
		}
		setting := row.Setting
		if row.Stage != "" {
			setting += " (after " + row.Stage + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %.3f | %s | %.3f | %d | %.4f | %.4f | %.4f | %.2f%% | %.5f | %.1f |\n",
			row.Method, setting, row.Target, mdEscape(row.Groups), row.BitsPerWeight, row.FileBytes,
			row.PPL, row.NLL, row.KLMean, 100*row.Top1Agreement, row.NMSEMean, row.Seconds)
	}
	return b.Bytes()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ").Replace(s)
}

// Plot size in the PNG.
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 5.5 * vg.Inch
)

// wideRange is the ratio of largest to smallest perplexity past which the
// axis is logarithmic: a collapsed low-bit run would otherwise flatten every
// other line against the original's.
const wideRange = 4

// Plot draws perplexity against measured bits per weight, one line per
// method, with the original model as a dashed line, as a PNG.
func (r *Results) Plot() ([]byte, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Perplexity against bits per weight: %s on %s", filepath.Base(r.Model), filepath.Base(r.Text))
	p.X.Label.Text = "bits per weight (every stored byte of the compressed tensors)"
	p.Y.Label.Text = "perplexity"
	p.Legend.Top = true
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(6), -vg.Points(6) // inside the frame, clear of its corner
	p.Add(plotter.NewGrid())

	var methods []string
	byMethod := map[string]plotter.XYs{}
	lo, hi := r.OriginalPPL, r.OriginalPPL
	xlo, xhi := math.Inf(1), math.Inf(-1)
	for _, row := range r.Rows {
		if row.Skipped || row.Stage != "" { // stage rows sit at their file's size: plot the files
			continue
		}
		if _, ok := byMethod[row.Method]; !ok {
			methods = append(methods, row.Method)
		}
		byMethod[row.Method] = append(byMethod[row.Method], plotter.XY{X: row.BitsPerWeight, Y: row.PPL})
		lo, hi = math.Min(lo, row.PPL), math.Max(hi, row.PPL)
		xlo, xhi = math.Min(xlo, row.BitsPerWeight), math.Max(xhi, row.BitsPerWeight)
	}
	if math.IsInf(xlo, 0) { // every run skipped: span the targets
		for _, row := range r.Rows {
			xlo, xhi = math.Min(xlo, row.Target), math.Max(xhi, row.Target)
		}
	}
	if math.IsInf(xlo, 0) {
		xlo, xhi = 0, 16
	}
	if xhi-xlo < 0.5 {
		xlo, xhi = xlo-0.25, xhi+0.25
	}
	pad := 0.04 * (xhi - xlo)
	xlo, xhi = xlo-pad, xhi+pad

	for i, m := range methods {
		l, s, err := plotter.NewLinePoints(byMethod[m])
		if err != nil {
			return nil, fmt.Errorf("sweep: plotting %s: %w", m, err)
		}
		col := plotutil.DarkColors[i%len(plotutil.DarkColors)]
		l.Color, l.Width = col, vg.Points(1.5)
		s.Color, s.Shape, s.Radius = col, plotutil.Shape(i), vg.Points(3.5)
		p.Add(l, s)
		p.Legend.Add(m, l, s)
	}
	orig, err := plotter.NewLine(plotter.XYs{{X: xlo, Y: r.OriginalPPL}, {X: xhi, Y: r.OriginalPPL}})
	if err != nil {
		return nil, fmt.Errorf("sweep: plotting the original: %w", err)
	}
	orig.Color = color.Gray{Y: 0x40}
	orig.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
	p.Add(orig)
	p.Legend.Add(fmt.Sprintf("original (%.3f)", r.OriginalPPL), orig)

	p.X.Min, p.X.Max = xlo, xhi
	if hi/lo > wideRange {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
		p.Y.Label.Text = "perplexity (log scale)"
		p.Y.Min, p.Y.Max = lo/1.15, hi*1.15
	} else {
		span := math.Max(hi-lo, 0.02*hi)
		p.Y.Min, p.Y.Max = lo-0.08*span, hi+0.08*span
	}

	w, err := p.WriterTo(plotWidth, plotHeight, "png")
	if err != nil {
		return nil, fmt.Errorf("sweep: drawing the plot: %w", err)
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("sweep: drawing the plot: %w", err)
	}
	return b.Bytes(), nil
}

// logTicks labels 1, 2 and 5 times the powers of ten in range (every
// integer multiple when that leaves fewer than three labels, as on an axis
// spanning less than a decade) and marks the other multiples unlabelled.
// plot.LogTicks labels only the powers of ten, which a range such as 5..40
// would show as a single "10".
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var all []float64
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for m := 1; m <= 9; m++ {
			if v := float64(m) * math.Pow(10, e); v >= lo && v <= hi {
				all = append(all, v)
			}
		}
	}
	major := func(v float64) bool {
		m := v / math.Pow(10, math.Floor(math.Log10(v)+1e-9))
		m = math.Round(m)
		return m == 1 || m == 2 || m == 5
	}
	n := 0
	for _, v := range all {
		if major(v) {
			n++
		}
	}
	ticks := make([]plot.Tick, len(all))
	for i, v := range all {
		ticks[i] = plot.Tick{Value: v}
		if n < 3 || major(v) {
			ticks[i].Label = fmt.Sprintf("%g", v)
		}
	}
	return ticks
}

// Write writes JSONFile, TableFile and PlotFile in dir. Each goes to a
// temporary file beside its name and is renamed into place; all three are
// made before any is written, so a failure leaves none.
func (r *Results) Write(dir string, force bool) error {
	js, err := r.JSON()
	if err != nil {
		return err
	}
	png, err := r.Plot()
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{{JSONFile, js}, {TableFile, r.Markdown()}, {PlotFile, png}}
	for _, f := range files {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, force); err != nil {
			return err
		}
	}
	return nil
}
