package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
)

func compressCommand() *cli.Command {
	def := pocketllm.DefaultSettings(4, 256)
	return &cli.Command{
		Name:      "compress",
		Usage:     "compress a checkpoint into one .pllm file",
		UsageText: "pocketllm-native compress --in MODEL --out FILE.pllm [--bits B | --dim D --codebook K] [--work-dir W] [--fresh] [--shard I/N|auto] [options]",
		Flags: []cli.Flag{
			presetFlag,
			&cli.StringFlag{Name: "in", Required: true, Usage: "a .safetensors file, a Hugging Face folder, or a llama2.c .bin checkpoint"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "the .pllm file to write"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite --out if it exists"},
			&cli.StringFlag{Name: "method", Value: pipeline.MethodPocketLLM, Usage: "pocketllm (the PocketLLM method), vq (plain k-means of the sub-vectors, same d and K choices) or rtn (round to nearest per group of inputs)"},
			&cli.IntFlag{Name: "qbits", Value: 4, Usage: "rtn: bits per weight code"},
			&cli.IntFlag{Name: "group-size", Value: 32, Usage: "rtn: input weights per scale and offset"},
			&cli.IntFlag{Name: "vq-iters", Value: 0, Usage: "vq: Lloyd iterations at most (0: 25)"},
			&cli.Float64Flag{Name: "bits", Usage: "target bits per weight, every stored byte counted (default 3 unless --dim and --codebook are given)"},
			&cli.StringFlag{Name: "dims", Value: plan.FormatDims(plan.DefaultDims), Usage: "sub-vector lengths --bits may choose from"},
			&cli.IntFlag{Name: "dim", Usage: "sub-vector length d (with --codebook, instead of --bits)"},
			&cli.IntFlag{Name: "codebook", Usage: "codebook size K (with --dim, instead of --bits)"},
			&cli.StringFlag{Name: "share", Value: pipeline.ShareAuto, Usage: "auto: none where every matrix spends at least 95% of its bytes on indices, else width; none: one meta network per matrix; kind: one per tensor kind and row width across layers; width: one per row width"},
			&cli.StringFlag{Name: "include", Value: plan.DefaultInclude, Usage: "regular expression: tensors to compress"},
			&cli.StringFlag{Name: "exclude", Usage: "regular expression: tensors to keep as they are even if included"},
			&cli.IntFlag{Name: "epochs", Value: def.Epochs, Usage: "training epochs per group"},
			&cli.Float64Flag{Name: "lr", Value: bestLR, Usage: "Adam learning rate"},
			&cli.IntFlag{Name: "decay-every", Value: def.DecayEvery, Usage: "epochs between learning-rate decays (x0.1)"},
			&cli.IntFlag{Name: "batch", Value: def.BatchVectors, Usage: "sub-vectors per batch, rounded to whole rows; 0: 16384, or a 64th of a smaller group"},
			&cli.Float64Flag{Name: "lambda", Value: def.Lambda, Usage: "weight of the codebook loss term"},
			&cli.Float64Flag{Name: "beta", Value: bestBeta, Usage: "weight of the commitment loss term"},
			&cli.IntFlag{Name: "kmeans-every", Value: 0, Usage: "exact k-means refresh of the codebook (with dead-code re-seeding) every N epochs; 0: never"},
			&cli.BoolFlag{Name: "kmeans-init", Value: true, Usage: "start from plain k-means: identity paths around the outer MLPs, residual branches at zero, codebook from k-means of the latents (beyond the paper)"},
			&cli.IntFlag{Name: "refine", Value: bestRefine, Usage: "after training, refine each index against the decoded row error, trying this many nearest codewords (0: off)"},
			&cli.IntFlag{Name: "refine-passes", Value: 1, Usage: "passes of --refine over the row positions"},
			&cli.IntFlag{Name: "hidden", Value: def.Hidden, Usage: "hidden width of the encoder and decoder MLPs"},
			&cli.StringFlag{Name: "decoder-dtype", Value: "f16", Usage: "precision of the stored decoder MLPs: f16 or f32"},
			&cli.Uint64Flag{Name: "seed", Value: def.Seed, Usage: "random seed; the same seed, input, settings and backend (for cpu: instruction-set path) give the same bytes"},
			&cli.StringFlag{Name: "calibration", Usage: "text the original model runs over to tell which weights matter, one sequence per line (never the evaluation text); default: text sampled from the model itself"},
			&cli.StringFlag{Name: "tokenizer", Usage: "tokenizer for calibration: a llama2.c tokenizer .bin, a tokenizer.json or a GGUF file (a Hugging Face folder's or a GGUF input's own is used when this is not given)"},
			&cli.IntFlag{Name: "calibration-tokens", Value: 0, Usage: "use at most this many calibration tokens (0: all)"},
			&cli.IntFlag{Name: "calibration-samples", Value: pipeline.DefaultSamples, Usage: "sequences sampled from the model when no --calibration text is given"},
			&cli.BoolFlag{Name: "no-calibration", Usage: "no calibration at all: minimise the weights' own squared error"},
			&cli.StringFlag{Name: "objective", Value: pipeline.ObjectiveOutput, Usage: "output: each layer's output error on calibration inputs (full second moments); diag: each weight weighed by its input's mean square; weights: plain weight error"},
			&cli.IntFlag{Name: "tune-steps", Value: defaultTuneSteps, Usage: "Adam steps of each group's decoder, codebook and scales against the output error after training (0: off)"},
			&cli.Float64Flag{Name: "tune-lr", Value: defaultTuneLR, Usage: "learning rate of --tune-steps"},
			&cli.BoolFlag{Name: "index-update", Value: true, Usage: "vq: re-pick indices by error feedback against the output error (GPTQ-style), kept only where the error falls"},
			&cli.BoolFlag{Name: "sequential", Value: true, Usage: "measure each layer's inputs on the model whose earlier layers are already compressed"},
			&cli.IntFlag{Name: "block-steps", Value: defaultBlockSteps, Usage: "Adam steps per layer of block-wise tuning: each layer's own groups and norms against the original layer's output (0: off)"},
			&cli.IntFlag{Name: "e2e-steps", Value: defaultE2ESteps, Usage: "Adam steps of every group's continuous parameters and the norms against the KL divergence from the original model on the calibration text (0: off)"},
			&cli.Float64Flag{Name: "e2e-lr", Value: defaultE2ELR, Usage: "learning rate of --e2e-steps"},
			&cli.IntFlag{Name: "e2e-batch", Value: defaultE2EBatch, Usage: "calibration sequences per --e2e-steps step"},
			&cli.StringFlag{Name: "work-dir", Usage: "folder for the groups finished so far, reused when the same job runs again after a crash (default: --out with .work appended; removed once the output is written)"},
			&cli.BoolFlag{Name: "fresh", Usage: "discard what the work folder holds and start over"},
			&cli.StringFlag{Name: "shard", Usage: "I/N (I from 0): train only shard I's groups into the part file OUT.part-I-of-N, for merge; auto: I and N from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX and --shards"},
			&cli.IntFlag{Name: "shards", Usage: "with --shard auto under a Kubernetes Indexed Job: the number of shards (the Job's completions)"},
			backendFlag,
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
			&cli.BoolFlag{Name: "progress-json", Usage: "write progress as JSON lines on stderr"},
			jsonFlag,
		},
		Action: runCompress,
	}
}

// trainingSettings reads pocketllm's training flags (compress's, which
// sweep shares) and checks them.
func trainingSettings(c *cli.Context) (pocketllm.Settings, error) {
	st := pocketllm.DefaultSettings(0, 0)
	st.Epochs, st.LR, st.DecayEvery = c.Int("epochs"), c.Float64("lr"), c.Int("decay-every")
	st.BatchVectors, st.Lambda, st.Beta = c.Int("batch"), c.Float64("lambda"), c.Float64("beta")
	st.KMeansEvery, st.Hidden, st.Seed = c.Int("kmeans-every"), c.Int("hidden"), c.Uint64("seed")
	st.RefineCandidates, st.RefinePasses = c.Int("refine"), c.Int("refine-passes")
	st.KMeansInit = c.Bool("kmeans-init")
	switch c.String("decoder-dtype") {
	case "f16":
	case "f32":
		st.DecoderF32 = true
	default:
		return st, fmt.Errorf("--decoder-dtype %q: want f16 or f32", c.String("decoder-dtype"))
	}
	// Check the training settings at a stand-in size; the real ones are planned per group.
	probe := st
	probe.Dim, probe.K = 4, 256
	if err := probe.Validate(); err != nil {
		return st, err
	}
	return st, nil
}

func runCompress(c *cli.Context) error {
	if err := applyPreset(c); err != nil {
		return err
	}
	st, err := trainingSettings(c)
	if err != nil {
		return err
	}
	o := pipeline.CompressOptions{
		In: c.String("in"), Out: c.String("out"), Force: c.Bool("force"),
		Share: c.String("share"), Include: c.String("include"), Exclude: c.String("exclude"),
		MethodName: c.String("method"), Method: st, VQIters: c.Int("vq-iters"),
		RTN: rtn.Settings{Bits: c.Int("qbits"), GroupSize: c.Int("group-size")},
	}
	explicit := c.IsSet("dim") || c.IsSet("codebook")
	switch {
	case o.MethodName == pipeline.MethodRTN:
		if explicit || c.IsSet("bits") {
			return fmt.Errorf("--method rtn takes --qbits and --group-size, not --bits, --dim or --codebook")
		}
	case explicit && c.IsSet("bits"):
		return fmt.Errorf("give either --bits or --dim and --codebook, not both")
	case explicit:
		if !c.IsSet("dim") || !c.IsSet("codebook") {
			return fmt.Errorf("--dim and --codebook go together")
		}
		o.Dim, o.K = c.Int("dim"), c.Int("codebook")
	default:
		o.Bits = 3
		if c.IsSet("bits") {
			o.Bits = c.Float64("bits")
		}
		dims, err := plan.ParseDims(c.String("dims"))
		if err != nil {
			return err
		}
		o.Dims = dims
	}
	if !strings.HasSuffix(o.Out, ".pllm") {
		return fmt.Errorf("--out %s: the output file name must end in .pllm", o.Out)
	}
	if o.Calibration, o.Tuning, err = tuningOptions(c); err != nil {
		return err
	}
	if o.Kernels, o.KernelPath, err = kernelsAndPath(c); err != nil {
		return err
	}
	o.Events = progressEvents(c)
	o.WorkDir, o.Fresh = c.String("work-dir"), c.Bool("fresh")
	if c.IsSet("shard") {
		if o.Shard, err = shardOf(c.String("shard"), c.Int("shards"), os.LookupEnv); err != nil {
			return err
		}
		o.Out = pipeline.PartPath(o.Out, o.Shard)
		if o.WorkDir == "" {
			o.WorkDir = o.Out + ".work"
		}
		part, err := pipeline.CompressShard(o)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c.App.Writer, part)
		}
		if !c.Bool("quiet") {
			fmt.Fprintf(c.App.Writer, "wrote %s: shard %s, %d of %d groups (%d reused from the work folder), %d bytes, took %.1fs\n",
				part.File, part.Shard, len(part.Groups), part.Of, part.Reused, part.Bytes, part.Seconds)
		}
		return nil
	}
	if c.IsSet("shards") {
		return fmt.Errorf("--shards goes with --shard auto")
	}
	if o.WorkDir == "" {
		o.WorkDir = o.Out + ".work"
	}
	rep, err := pipeline.Compress(o)
	if err != nil {
		return err
	}
	return printReportAs(c, rep)
}

// progressEvents is the progress output the flags ask for (nil: none).
func progressEvents(c *cli.Context) func(pipeline.Event) {
	switch {
	case c.Bool("progress-json"):
		enc := json.NewEncoder(c.App.ErrWriter)
		return func(e pipeline.Event) { enc.Encode(e) }
	case !c.Bool("quiet"):
		return progressPrinter(c.App.ErrWriter, isTerminal(os.Stderr))
	}
	return nil
}

// printReportAs prints a written file's report as the flags ask.
func printReportAs(c *cli.Context, rep *pipeline.Report) error {
	if c.Bool("json") {
		return printJSON(c.App.Writer, rep)
	}
	if !c.Bool("quiet") {
		printReport(c.App.Writer, rep)
	}
	return nil
}

// progressPrinter shows a live line per epoch on a terminal, and one line per
// finished group otherwise (logs stay readable).
func progressPrinter(w io.Writer, live bool) func(pipeline.Event) {
	return func(e pipeline.Event) {
		head := fmt.Sprintf("[%d/%d] %s (%d tensor%s, %.2f bits/weight planned)", e.Index, e.Of, e.Group, e.Members, plural(e.Members), e.PlannedBPW)
		if e.Stage != "" && e.Kind != "calibration" && e.Kind != "notice" {
			head = fmt.Sprintf("[%d/%d] %s %s", e.Index, e.Of, e.Stage, e.Group)
		}
		switch e.Kind {
		case "calibration":
			fmt.Fprintf(w, "calibration: %s\n", e.Stage)
		case "notice":
			fmt.Fprintln(w, e.Stage)
		case "tune":
			if live {
				p := e.Tune
				fmt.Fprintf(w, "\r\033[K%s step %d/%d objective %.5g best %.5g", head, p.Step, p.Steps, p.Loss, p.Best)
			}
		case "tuned":
			if live {
				fmt.Fprint(w, "\r\033[K")
			}
			p := e.Tune
			fmt.Fprintf(w, "%s objective %.5g -> %.5g (step %d of %d)\n", head, p.Loss, p.Best, p.Step, p.Steps)
		case "epoch":
			if live {
				p := e.Epoch
				fmt.Fprintf(w, "\r\033[K%s epoch %d/%d loss %.4g mse %.4g best %d, %s left",
					head, p.Epoch, p.Epochs, p.Loss, p.ReconMSE, p.BestEpoch, p.Remaining.Round(time.Second))
			}
		case "reused":
			fmt.Fprintf(w, "%s reused from the work folder, NMSE %s\n", head, formatNMSE(e.NMSE))
		case "done":
			if live {
				fmt.Fprint(w, "\r\033[K")
			}
			fmt.Fprintf(w, "%s NMSE %s in %.1fs\n", head, formatNMSE(e.NMSE), e.Seconds)
		}
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func formatNMSE(v []float64) string {
	if len(v) == 1 {
		return fmt.Sprintf("%.4f", v[0])
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return fmt.Sprintf("%.4f..%.4f", lo, hi)
}

// sizeVersus words a size ratio (reference / file) so that a file larger
// than its reference (explicit --dim and --codebook can make one) is never
// called "0.80x smaller".
func sizeVersus(ratio float64) string {
	if ratio >= 1 {
		return fmt.Sprintf("%.2fx smaller than", ratio)
	}
	return fmt.Sprintf("%.2fx larger than", 1/ratio)
}

// printReport is the summary table of a .pllm file.
func printReport(w io.Writer, r *pipeline.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tshape\tmethod\tbits/weight\tNMSE")
	for _, t := range r.Tensors {
		nmse := "-"
		if t.NMSE != nil {
			nmse = fmt.Sprintf("%.5f", *t.NMSE)
		}
		shape := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(t.Shape)), "x"), "[]")
		method := t.Method
		if t.Method == "raw" {
			method = "kept " + t.DType
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%s\n", t.Name, shape, method, t.BitsPerWeight, nmse)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "group\tmethod\tsetting\ttensors\tweights\tbytes\tbits/weight")
	for _, g := range r.Groups {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%.3f\n", g.Name, g.Method, g.Setting, g.Members, g.Weights, g.Bytes, g.BitsPerWeight)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nfile %s: %d bytes\n", r.File, r.FileBytes)
	fmt.Fprintf(w, "compressed tensors: %d weights in %d bytes = %.3f bits/weight (%.2fx vs FP16, %.2fx vs FP32)\n",
		r.CompressedWeights, r.CompressedBytes, r.BitsPerWeight, r.CompressionRatioFP16, r.CompressionRatioFP32)
	fmt.Fprintf(w, "kept tensors: %d weights in %d bytes; side files %d bytes; framing %d bytes\n",
		r.RawWeights, r.RawBytes, r.SideBytes, r.FramingBytes)
	fmt.Fprintf(w, "whole file: %s the model at FP16 (%d bytes)\n", sizeVersus(r.FileRatioFP16), r.ModelBytesFP16)
	if r.Seconds > 0 {
		fmt.Fprintf(w, "took %.1fs\n", r.Seconds)
	}
}

// Defaults of the tuning after training: the best settings measured
// (RESULTS.md).
const (
	defaultTuneSteps  = 100
	defaultTuneLR     = 2e-3
	defaultBlockSteps = 0
	defaultE2ESteps   = 100
	defaultE2ELR      = 1e-3
	defaultE2EBatch   = 4
)

// The best settings measured where they differ from METHOD.md's (RESULTS.md).
const (
	bestLR     = 0.002
	bestBeta   = 0.25
	bestRefine = 8
)

// Presets: "best" is the flags' defaults; "paper" is METHOD.md's plain
// recipe (the paper's training, one meta network per matrix, no
// calibration, no tuning), for reproduction.
const (
	presetBest  = "best"
	presetPaper = "paper"
)

var presetFlag = &cli.StringFlag{Name: "preset", Value: presetBest, Usage: "best: the best settings measured (the defaults below); paper: METHOD.md's plain recipe (share none, random start, lr 0.016, no calibration or tuning); flags given explicitly override either"}

// paperPreset are the flag values of --preset paper.
var paperPreset = map[string]string{
	"share": "none", "lr": "0.016", "beta": "0", "kmeans-init": "false", "refine": "0",
	"no-calibration": "true", "objective": "weights", "tune-steps": "0", "index-update": "false",
	"sequential": "false", "block-steps": "0", "e2e-steps": "0",
}

// applyPreset sets the flags of --preset paper that were not given
// explicitly.
func applyPreset(c *cli.Context) error {
	switch p := c.String("preset"); p {
	case presetBest:
		return nil
	case presetPaper:
		for name, v := range paperPreset {
			if c.IsSet(name) || !hasFlag(c, name) {
				continue
			}
			if err := c.Set(name, v); err != nil {
				return fmt.Errorf("--preset paper: %v", err)
			}
		}
		return nil
	default:
		return fmt.Errorf("--preset %q: want %s or %s", p, presetBest, presetPaper)
	}
}

func hasFlag(c *cli.Context, name string) bool {
	for _, f := range c.Command.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// tuningOptions reads the calibration and tuning flags (compress's, which
// sweep shares).
func tuningOptions(c *cli.Context) (pipeline.Calibration, pipeline.Tuning, error) {
	cal := pipeline.Calibration{
		Off: c.Bool("no-calibration"), Text: c.String("calibration"), Tokenizer: c.String("tokenizer"),
		MaxTokens: c.Int("calibration-tokens"), Samples: c.Int("calibration-samples"), Seed: c.Uint64("seed"),
	}
	tu := pipeline.Tuning{
		Objective: c.String("objective"), OutputSteps: c.Int("tune-steps"), OutputLR: c.Float64("tune-lr"),
		IndexUpdate: c.Bool("index-update"), Sequential: c.Bool("sequential"),
		BlockSteps: c.Int("block-steps"), E2ESteps: c.Int("e2e-steps"), E2ELR: c.Float64("e2e-lr"), E2EBatch: c.Int("e2e-batch"),
	}
	// sweep's --tokenizer is the evaluation text's, not a calibration choice.
	if cal.Off && (cal.Text != "" || c.Command.Name == "compress" && c.IsSet("tokenizer")) {
		return cal, tu, fmt.Errorf("--no-calibration takes neither --calibration nor --tokenizer")
	}
	if cal.Samples < 1 || cal.MaxTokens < 0 {
		return cal, tu, fmt.Errorf("--calibration-samples %d and --calibration-tokens %d: need at least 1 sample and no negative budget", cal.Samples, cal.MaxTokens)
	}
	return cal, tu, nil
}
