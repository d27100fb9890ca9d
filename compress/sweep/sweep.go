// Package sweep compresses one model with several methods over a ladder of
// settings, scores every result against the original on a text, and writes
// the results as a Markdown table, a JSON file and a plot of perplexity
// against bits per weight.
//
// Bits per weight are measured, not planned: they are every stored byte of
// the compressed tensors' group sections in the written .pllm file (what
// `inspect` reports), so methods are compared at the rate they really cost.
package sweep

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/compress/tokenizer"
)

// Names of what a sweep writes in its output folder.
const (
	JSONFile  = "results.json"
	TableFile = "results.md"
	PlotFile  = "ppl_vs_bits.png"
	// PLLMDir is the subfolder that holds the compressed models.
	PLLMDir = "pllm"
)

// Setting is one rung of the ladder: a method with a bits target
// (pocketllm, vq) or an rtn setting.
type Setting struct {
	Method string
	Bits   float64      // pocketllm and vq: bits per weight target
	RTN    rtn.Settings // rtn: bits per code and group size
}

// Label is the setting as the table shows it: "bits 3", "3-bit g64".
func (s Setting) Label() string {
	if s.Method == pipeline.MethodRTN {
		return fmt.Sprintf("%d-bit g%d", s.RTN.Bits, s.RTN.GroupSize)
	}
	return "bits " + formatFloat(s.Bits)
}

// Target is the rate the setting asks for: the bits target of pocketllm and
// vq, and for rtn its nominal rate, the codes plus an fp16 scale and offset
// per group (B + 32/G), before the file's framing.
func (s Setting) Target() float64 {
	if s.Method == pipeline.MethodRTN {
		return float64(s.RTN.Bits) + 32/float64(s.RTN.GroupSize)
	}
	return s.Bits
}

// FileName is the .pllm file the setting is written to, inside PLLMDir.
func (s Setting) FileName() string {
	if s.Method == pipeline.MethodRTN {
		return fmt.Sprintf("rtn-%dbit-g%d.pllm", s.RTN.Bits, s.RTN.GroupSize)
	}
	return fmt.Sprintf("%s-bits%s.pllm", s.Method, formatFloat(s.Bits))
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// ParseMethods reads a comma-separated list of method names.
func ParseMethods(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		m := strings.TrimSpace(f)
		switch m {
		case pipeline.MethodPocketLLM, pipeline.MethodVQ, pipeline.MethodRTN:
		default:
			return nil, fmt.Errorf("methods %q: %q is not one of %s, %s, %s", s, m, pipeline.MethodPocketLLM, pipeline.MethodVQ, pipeline.MethodRTN)
		}
		if seen[m] {
			return nil, fmt.Errorf("methods %q: %s is listed twice", s, m)
		}
		seen[m] = true
		out = append(out, m)
	}
	return out, nil
}

// ParseBits reads a comma-separated list of bits per weight targets.
func ParseBits(s string) ([]float64, error) {
	var out []float64
	seen := map[float64]bool{}
	for _, f := range strings.Split(s, ",") {
		b, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(b > 0) || b > 32 {
			return nil, fmt.Errorf("bits ladder %q: %q is not a number of bits per weight in (0, 32]", s, strings.TrimSpace(f))
		}
		if seen[b] {
			return nil, fmt.Errorf("bits ladder %q: %v is listed twice", s, b)
		}
		seen[b] = true
		out = append(out, b)
	}
	return out, nil
}

// ParseRTN reads a comma-separated list of rtn settings as bits:group pairs
// ("3:64,4:32").
func ParseRTN(s string) ([]rtn.Settings, error) {
	var out []rtn.Settings
	seen := map[rtn.Settings]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		b, g, ok := strings.Cut(f, ":")
		bits, err1 := strconv.Atoi(b)
		group, err2 := strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("rtn ladder %q: %q is not a bits:group pair such as 4:32", s, f)
		}
		st := rtn.Settings{Bits: bits, GroupSize: group}
		if err := st.Validate(); err != nil {
			return nil, fmt.Errorf("rtn ladder %q: %q: %v", s, f, err)
		}
		if seen[st] {
			return nil, fmt.Errorf("rtn ladder %q: %s is listed twice", s, f)
		}
		seen[st] = true
		out = append(out, st)
	}
	return out, nil
}

// Ladder is every method with its settings, in the order of methods: the
// bits targets for pocketllm and vq, the rtn settings for rtn.
func Ladder(methods []string, bits []float64, rtns []rtn.Settings) []Setting {
	var out []Setting
	for _, m := range methods {
		if m == pipeline.MethodRTN {
			for _, r := range rtns {
				out = append(out, Setting{Method: m, RTN: r})
			}
			continue
		}
		for _, b := range bits {
			out = append(out, Setting{Method: m, Bits: b})
		}
	}
	return out
}

// Options describe a sweep.
type Options struct {
	Model     string // the original checkpoint
	Tokenizer string // tokenizer for the evaluation text
	Text      string // evaluation text, one sequence per line
	OutDir    string
	Force     bool // replace result and .pllm files already in OutDir
	Settings  []Setting
	// Share is the --share mode of pocketllm and vq; rtn always uses none.
	Share string
	// Base holds what every run shares: training settings (Method), Dims,
	// VQIters, Include, Exclude, calibration (ColWeights, Calibration) and
	// Kernels. In, Out, Force, Bits, Dim, K, Share, MethodName, RTN and
	// Events are set per run.
	Base pipeline.CompressOptions
	// Stages adds, for each pocketllm and vq run of a tuned compression, a
	// row per stage before the last (as trained, after output tuning): what
	// each ingredient buys, measured within one run.
	Stages bool
	// Command is the command line that started the sweep, for the record.
	Command string
	// Progress, when set, is called after each run with its row.
	Progress func(i, n int, r Row)
}

// Row is one run of the sweep.
type Row struct {
	Method  string `json:"method"`
	Setting string `json:"setting"` // the ladder's setting: "bits 3", "3-bit g64"
	// Stage is "" for a written file, else the tuning stage an in-memory
	// row measures ("trained", "output"; see Options.Stages).
	Stage  string  `json:"stage,omitempty"`
	Target float64 `json:"target"` // see Setting.Target
	// Groups are the settings the planner chose, with how many groups
	// each: "d=4 K=256 x5, d=8 K=4096 x2".
	Groups string `json:"groups,omitempty"`
	File   string `json:"file,omitempty"` // relative to the output folder
	// BitsPerWeight is every stored byte of the compressed tensors per
	// compressed weight, from the written file.
	BitsPerWeight float64 `json:"bits_per_weight"`
	FileBytes     int64   `json:"file_bytes"`
	PPL           float64 `json:"ppl"`
	NLL           float64 `json:"nll"`
	KLMean        float64 `json:"kl_mean"`
	KLMax         float64 `json:"kl_max"`
	Top1Agreement float64 `json:"top1_agreement"`
	// NMSEMean is the unweighted mean over compressed tensors of each
	// tensor's normalised mean square reconstruction error.
	NMSEMean float64 `json:"nmse_mean"`
	// Seconds is the compression's wall time; EvalSeconds the scoring's.
	Seconds     float64 `json:"seconds"`
	EvalSeconds float64 `json:"eval_seconds"`
	Skipped     bool    `json:"skipped,omitempty"`
	Reason      string  `json:"reason,omitempty"` // why it was skipped
}

// Results are a whole sweep: what JSONFile holds.
type Results struct {
	Command     string  `json:"command"`
	Model       string  `json:"model"`
	Tokenizer   string  `json:"tokenizer"`
	Text        string  `json:"text"`
	Sequences   int     `json:"sequences"`
	Tokens      int     `json:"tokens"`
	Backend     string  `json:"backend"`
	Share       string  `json:"share"`
	Calibration string  `json:"calibration,omitempty"`
	OriginalPPL float64 `json:"original_ppl"`
	OriginalNLL float64 `json:"original_nll"`
	// Rows are sorted by method (in the order the sweep ran them) and then
	// by bits per weight (the target for a skipped run).
	Rows []Row `json:"rows"`
}

// Paths are the files a sweep writes, for the overwrite check.
func (o Options) Paths() []string {
	out := []string{filepath.Join(o.OutDir, JSONFile), filepath.Join(o.OutDir, TableFile), filepath.Join(o.OutDir, PlotFile)}
	for _, s := range o.Settings {
		out = append(out, filepath.Join(o.OutDir, PLLMDir, s.FileName()))
	}
	return out
}

// IsUnreachable reports whether a compression failed because the planner
// found no setting within the bits target: a property of the model and the
// rung, recorded as a skipped run rather than failing the sweep.
func IsUnreachable(err error) bool { return errors.Is(err, plan.ErrUnreachable) }

// Run compresses, scores and records every setting, then writes JSONFile,
// TableFile and PlotFile in OutDir (the .pllm files go in OutDir/PLLMDir).
// Nothing is replaced without Force, and the check comes before any work.
func Run(o Options) (*Results, error) {
	if len(o.Settings) == 0 {
		return nil, errors.New("sweep: no settings to run")
	}
	if o.Base.Kernels == nil {
		return nil, errors.New("sweep: no kernels given")
	}
	names := map[string]bool{}
	for _, s := range o.Settings {
		if names[s.FileName()] {
			return nil, fmt.Errorf("sweep: %s %s is in the ladder twice", s.Method, s.Label())
		}
		names[s.FileName()] = true
	}
	if st, err := os.Stat(o.OutDir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("%s: not a folder", o.OutDir)
	}
	if !o.Force {
		for _, p := range o.Paths() {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%s already exists; pass --force to replace the sweep's results", p)
			}
		}
	}
	tok, err := tokenizer.Load(o.Tokenizer)
	if err != nil {
		return nil, err
	}
	lines, err := eval.ReadLines(o.Text)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	orig, err := llama.Open(o.Model)
	if err != nil {
		return nil, err
	}
	base, err := eval.Perplexity(orig, tok, lines, eval.Options{})
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", o.Model, o.Text, err)
	}
	if err := os.MkdirAll(filepath.Join(o.OutDir, PLLMDir), 0o755); err != nil {
		return nil, err
	}
	// Results of an earlier sweep would describe .pllm files this one is
	// about to replace; if this one fails, none is better than stale ones.
	for _, name := range []string{JSONFile, TableFile, PlotFile} {
		if err := os.Remove(filepath.Join(o.OutDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	res := &Results{
		Command: o.Command, Model: o.Model, Tokenizer: o.Tokenizer, Text: o.Text,
		Sequences: base.Sequences, Tokens: base.Tokens, Backend: o.Base.Kernels.Name(), Share: o.Share,
		Calibration: o.Base.Calibrated.Description(), OriginalPPL: base.PPL, OriginalNLL: base.NLL,
	}
	for i, s := range o.Settings {
		stageRows, row, err := runOne(o, s, orig, tok, lines, base)
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, stageRows...)
		res.Rows = append(res.Rows, row)
		if o.Progress != nil {
			o.Progress(i+1, len(o.Settings), row)
		}
	}
	order := map[string]int{}
	for _, s := range o.Settings {
		if _, ok := order[s.Method]; !ok {
			order[s.Method] = len(order)
		}
	}
	sortRows(res.Rows, order)
	if err := res.Write(o.OutDir, o.Force); err != nil {
		return nil, err
	}
	return res, nil
}

func runOne(o Options, s Setting, orig *llama.Model, tok tokenizer.Tokenizer, lines []string, base eval.Result) ([]Row, Row, error) {
	row := Row{Method: s.Method, Setting: s.Label(), Target: s.Target()}
	rel := filepath.Join(PLLMDir, s.FileName())
	path := filepath.Join(o.OutDir, rel)
	c := o.Base
	c.In, c.Out, c.Force, c.Events = o.Model, path, o.Force, nil
	c.MethodName, c.Share, c.Dim, c.K = s.Method, o.Share, 0, 0
	if s.Method == pipeline.MethodRTN {
		c.Share, c.Bits, c.RTN = plan.ShareNone, 0, s.RTN
	} else {
		c.Bits = s.Bits
	}
	var stageRows []Row
	if o.Stages && s.Method != pipeline.MethodRTN {
		last := lastStage(c.Tuning)
		c.AfterStage = func(stage string, tensors map[string][]float32, secs float64) error {
			if stage == last {
				return nil // the written file's row measures it
			}
			r := Row{Method: s.Method, Setting: s.Label(), Target: s.Target(), Stage: stage, Seconds: secs}
			if err := scoreTensors(&r, orig, tensors, tok, lines, base); err != nil {
				return err
			}
			stageRows = append(stageRows, r)
			return nil
		}
	}
	rep, err := pipeline.Compress(c)
	if IsUnreachable(err) {
		// The planner refuses before writing; a file by that name is left
		// from an earlier sweep (replaced only with Force, checked above)
		// and no longer matches this row.
		if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return nil, row, rmErr
		}
		row.Skipped, row.Reason = true, err.Error()
		return nil, row, nil
	}
	if err != nil {
		return nil, row, fmt.Errorf("%s %s: %w", s.Method, s.Label(), err)
	}
	for i := range stageRows {
		stageRows[i].BitsPerWeight, stageRows[i].FileBytes, stageRows[i].Groups = rep.BitsPerWeight, rep.FileBytes, groupSettings(rep.Groups)
	}
	row.File, row.BitsPerWeight, row.FileBytes, row.Seconds = rel, rep.BitsPerWeight, rep.FileBytes, rep.Seconds
	row.Groups = groupSettings(rep.Groups)
	var sum float64
	n := 0
	for _, t := range rep.Tensors {
		if t.NMSE != nil {
			sum += *t.NMSE
			n++
		}
	}
	if n > 0 {
		row.NMSEMean = sum / float64(n)
	}

	start := time.Now()
	cfg, tensors, err := pipeline.LoadModel(path, c.Kernels, &orig.Config)
	if err != nil {
		return nil, row, err
	}
	comp, err := llama.FromTensors(cfg, tensors)
	if err != nil {
		return nil, row, fmt.Errorf("%s: %w", path, err)
	}
	if err := score(&row, orig, comp, tok, lines, base); err != nil {
		return nil, row, fmt.Errorf("%s on %s: %w", path, o.Text, err)
	}
	row.EvalSeconds = time.Since(start).Seconds()
	return stageRows, row, nil
}

// lastStage is the last stage a tuned compression runs ("" for none).
func lastStage(tu pipeline.Tuning) string {
	switch {
	case tu.E2ESteps > 0:
		return "e2e"
	case tu.BlockSteps > 0:
		return "block"
	case tu.OutputSteps > 0 || tu.IndexUpdate:
		return "output"
	}
	return "trained"
}

// scoreTensors scores the original model with the given tensors replaced.
func scoreTensors(row *Row, orig *llama.Model, tensors map[string][]float32, tok tokenizer.Tokenizer, lines []string, base eval.Result) error {
	start := time.Now()
	all := llama.ParamsOf[float32](orig).Tensors()
	var sum float64
	n := 0
	for name, v := range tensors {
		if !strings.HasSuffix(name, "norm.weight") { // a compressed tensor, not a tuned norm
			sum += matrix.NMSE(all[name], v)
			n++
		}
		all[name] = v
	}
	if n > 0 {
		row.NMSEMean = sum / float64(n)
	}
	comp, err := llama.FromTensors(orig.Config, all)
	if err != nil {
		return err
	}
	if err := score(row, orig, comp, tok, lines, base); err != nil {
		return err
	}
	row.EvalSeconds = time.Since(start).Seconds()
	return nil
}

// score compares comp with the original on the text.
func score(row *Row, orig, comp *llama.Model, tok tokenizer.Tokenizer, lines []string, base eval.Result) error {
	cmp, err := eval.Compare(orig, comp, tok, lines, eval.Options{})
	if err != nil {
		return err
	}
	// The original is scored once up front; Compare scores it again on the
	// same tokens in the same order, so anything but the same sum means the
	// two scores are not of the same thing.
	if cmp.NLLOriginal != base.NLL || cmp.Tokens != base.Tokens {
		return fmt.Errorf("sweep: the original scored %.6f nats over %d tokens alone but %.6f over %d beside the compressed model",
			base.NLL, base.Tokens, cmp.NLLOriginal, cmp.Tokens)
	}
	row.PPL, row.NLL = cmp.PPLCompressed, cmp.NLLCompressed
	row.KLMean, row.KLMax, row.Top1Agreement = cmp.KLMean, cmp.KLMax, cmp.Top1Agreement
	return nil
}

// groupSettings summarises the settings chosen per group, most common first.
func groupSettings(gs []pipeline.GroupReport) string {
	count := map[string]int{}
	var order []string
	for _, g := range gs {
		if count[g.Setting] == 0 {
			order = append(order, g.Setting)
		}
		count[g.Setting]++
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] > count[order[j]] })
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%s x%d", s, count[s])
	}
	return strings.Join(parts, ", ")
}

// rowBits is where a row sits on the bits axis.
func rowBits(r Row) float64 {
	if r.Skipped {
		return r.Target
	}
	return r.BitsPerWeight
}

func sortRows(rows []Row, order map[string]int) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Method != b.Method {
			oa, okA := order[a.Method]
			ob, okB := order[b.Method]
			if okA && okB {
				return oa < ob
			}
			return a.Method < b.Method
		}
		if x, y := rowBits(a), rowBits(b); x != y {
			return x < y
		}
		return a.Target < b.Target
	})
}

// finite reports whether a row's measurements can be plotted and written
// as JSON numbers.
func finite(vs ...float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
