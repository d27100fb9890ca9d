package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/sweep"
)

// sweepTrainingFlags are compress's flags that sweep passes through, taken
// from compress's own definitions so the two commands cannot drift apart.
var sweepTrainingFlags = []string{
	"dims", "epochs", "lr", "decay-every", "batch", "lambda", "beta", "kmeans-every", "kmeans-init", "refine", "refine-passes",
	"hidden", "decoder-dtype", "seed", "vq-iters", "include", "exclude", "calibration", "calibration-tokens",
	"calibration-samples", "no-calibration", "objective", "tune-steps", "tune-lr", "index-update", "sequential",
	"block-steps", "e2e-steps", "e2e-lr", "e2e-batch",
}

// compressFlags returns compress's flags of those names, in that order.
func compressFlags(names ...string) []cli.Flag {
	byName := map[string]cli.Flag{}
	for _, f := range compressCommand().Flags {
		byName[f.Names()[0]] = f
	}
	out := make([]cli.Flag, len(names))
	for i, n := range names {
		f, ok := byName[n]
		if !ok {
			panic("cli: compress has no flag --" + n)
		}
		out[i] = f
	}
	return out
}

func sweepCommand() *cli.Command {
	return &cli.Command{
		Name:  "sweep",
		Usage: "compress a model with each method over a ladder of settings, score each, and tabulate and plot perplexity against bits per weight",
		UsageText: "pocketllm-native sweep --model CHECKPOINT [--tokenizer PATH] --text FILE --out-dir DIR\n" +
			"   [--methods pocketllm,vq,rtn] [--bits 2,2.5,3,3.5,4] [--rtn 2:32,3:64,...] [--share kind] [training options]",
		Description: "Writes DIR/" + sweep.JSONFile + ", DIR/" + sweep.TableFile + " and DIR/" + sweep.PlotFile +
			", and the compressed models in DIR/" + sweep.PLLMDir + "/.\n" +
			"Bits per weight are measured on the written files: every stored byte of the compressed tensors.\n" +
			"A bits target the planner cannot reach is recorded as skipped. --tokenizer also serves --calibration.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "the original checkpoint: a .safetensors file, a Hugging Face folder, or a llama2.c .bin"},
			tokenizerFlag,
			&cli.StringFlag{Name: "text", Required: true, Usage: "the evaluation text, one sequence per line"},
			&cli.StringFlag{Name: "out-dir", Required: true, Usage: "folder for the results; the .pllm files go in its " + sweep.PLLMDir + " subfolder"},
			&cli.BoolFlag{Name: "force", Usage: "replace results and .pllm files already in --out-dir"},
			&cli.StringFlag{Name: "methods", Value: "pocketllm,vq,rtn", Usage: "methods to run, comma-separated"},
			&cli.StringFlag{Name: "bits", Value: "2,2.5,3,3.5,4", Usage: "bits per weight targets for pocketllm and vq, comma-separated"},
			&cli.StringFlag{Name: "rtn", Value: "2:32,3:64,3:32,4:64,4:32", Usage: "rtn settings as bits:group pairs, comma-separated"},
			&cli.StringFlag{Name: "share", Value: pipeline.ShareAuto, Usage: "share mode of pocketllm and vq (auto, none, kind or width); rtn always uses none"},
			presetFlag,
			&cli.BoolFlag{Name: "stages", Usage: "also score each pocketllm and vq run as trained and after each tuning stage before the last (rows marked 'after ...')"},
		}, append(compressFlags(sweepTrainingFlags...),
			backendFlag,
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors (and --json)"},
			jsonFlag,
		)...),
		Action: runSweep,
	}
}

func runSweep(c *cli.Context) error {
	methods, err := sweep.ParseMethods(c.String("methods"))
	if err != nil {
		return fmt.Errorf("--methods: %w", err)
	}
	bits, err := sweep.ParseBits(c.String("bits"))
	if err != nil {
		return fmt.Errorf("--bits: %w", err)
	}
	rtns, err := sweep.ParseRTN(c.String("rtn"))
	if err != nil {
		return fmt.Errorf("--rtn: %w", err)
	}
	dims, err := plan.ParseDims(c.String("dims"))
	if err != nil {
		return err
	}
	if err := applyPreset(c); err != nil {
		return err
	}
	switch s := c.String("share"); s {
	case pipeline.ShareAuto, plan.ShareNone, plan.ShareKind, plan.ShareWidth:
	default:
		return fmt.Errorf("--share %q: want %s, %s, %s or %s", s, pipeline.ShareAuto, plan.ShareNone, plan.ShareKind, plan.ShareWidth)
	}
	st, err := trainingSettings(c)
	if err != nil {
		return err
	}
	base := pipeline.CompressOptions{
		In: c.String("model"), Dims: dims, Include: c.String("include"), Exclude: c.String("exclude"),
		Method: st, VQIters: c.Int("vq-iters"),
	}
	if cal := c.String("calibration"); cal != "" {
		if same, err := sameFile(cal, c.String("text")); err != nil {
			return err
		} else if same {
			return fmt.Errorf("--calibration %s is the evaluation text; calibrate on other text", cal)
		}
	}
	calOpt, tu, err := tuningOptions(c)
	if err != nil {
		return err
	}
	// The evaluation tokenizer is the model's; calibration uses it too.
	tokPath, err := tokenizerPath(c)
	if err != nil {
		return err
	}
	calOpt.Tokenizer = tokPath
	base.Tuning = tu
	if tu.Objective != pipeline.ObjectiveWeights && !calOpt.Off {
		cal, notice, err := pipeline.Calibrate(c.String("model"), calOpt, tu.Objective == pipeline.ObjectiveOutput)
		if err != nil {
			return err
		}
		if notice != "" && !c.Bool("quiet") {
			fmt.Fprintln(c.App.ErrWriter, notice)
		}
		base.Calibrated = cal
	}
	k, err := kernels(c)
	if err != nil {
		return err
	}
	base.Kernels = k
	o := sweep.Options{
		Model: c.String("model"), Tokenizer: tokPath, Text: c.String("text"),
		OutDir: c.String("out-dir"), Force: c.Bool("force"), Share: c.String("share"),
		Settings: sweep.Ladder(methods, bits, rtns), Base: base, Command: commandLine(c), Stages: c.Bool("stages"),
	}
	if !c.Bool("quiet") {
		o.Progress = func(i, n int, r sweep.Row) {
			if r.Skipped {
				fmt.Fprintf(c.App.ErrWriter, "[%d/%d] %s %s: skipped: %s\n", i, n, r.Method, r.Setting, r.Reason)
				return
			}
			fmt.Fprintf(c.App.ErrWriter, "[%d/%d] %s %s: %.3f bits/weight, ppl %.4f, KL %.4f, top-1 %.1f%%, compressed in %.1fs\n",
				i, n, r.Method, r.Setting, r.BitsPerWeight, r.PPL, r.KLMean, 100*r.Top1Agreement, r.Seconds)
		}
	}
	res, err := sweep.Run(o)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		js, err := res.JSON()
		if err != nil {
			return err
		}
		_, err = c.App.Writer.Write(js)
		return err
	}
	if !c.Bool("quiet") {
		if _, err := c.App.Writer.Write(res.Markdown()); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "\nwrote %s, %s and %s in %s\n", sweep.TableFile, sweep.JSONFile, sweep.PlotFile, o.OutDir)
	}
	return nil
}

// sameFile reports whether two paths name the same existing file.
func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// commandLine is the command as typed, program name first, each argument
// quoted for a POSIX shell where it needs it, so results.md can be rerun.
func commandLine(c *cli.Context) string {
	// The parent context's arguments are the command's name and everything
	// after it; the command's own context keeps only what its flags left.
	parts := []string{c.App.Name}
	for _, l := range c.Lineage()[1:] {
		if args := l.Args(); args.First() == c.Command.Name {
			for _, a := range args.Slice() {
				parts = append(parts, shellQuote(a))
			}
			break
		}
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
