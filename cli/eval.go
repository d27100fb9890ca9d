package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/atomicfile"
)

// evalResult is `eval --json`: the comparison plus what the .pllm file states.
type evalResult struct {
	eval.Comparison
	Model         string                  `json:"model"`
	Compressed    string                  `json:"compressed"`
	Text          string                  `json:"text"`
	BitsPerWeight float64                 `json:"bits_per_weight,omitempty"`
	FileBytes     int64                   `json:"file_bytes,omitempty"`
	Tensors       []pipeline.TensorReport `json:"tensors,omitempty"`
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:      "eval",
		Usage:     "score an original and a compressed model on a text: perplexity, KL divergence, top-1 agreement",
		UsageText: "pocketllm-native eval --model ORIGINAL --compressed FILE.pllm|CHECKPOINT [--tokenizer PATH] --text FILE [--json]",
		Description: "Each line of --text is one sequence, encoded with BOS and no EOS; every token after BOS is\n" +
			"scored once, in windows of the model's context that overlap by one token.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "the original checkpoint"},
			&cli.StringFlag{Name: "compressed", Required: true, Usage: "a .pllm file, or a reconstructed checkpoint"},
			tokenizerFlag,
			&cli.StringFlag{Name: "text", Required: true, Usage: "the evaluation text, one sequence per line"},
			backendFlag,
			jsonFlag,
		},
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	tok, err := loadTokenizer(c)
	if err != nil {
		return err
	}
	lines, err := eval.ReadLines(c.String("text"))
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	orig, err := llama.Open(c.String("model"))
	if err != nil {
		return err
	}
	res := evalResult{Model: c.String("model"), Compressed: c.String("compressed"), Text: c.String("text")}
	comp, err := openModel(c, c.String("compressed"), &orig.Config)
	if err != nil {
		return err
	}
	if path := c.String("compressed"); strings.HasSuffix(path, ".pllm") {
		rep, err := pipeline.Inspect(path)
		if err != nil {
			return err
		}
		res.BitsPerWeight, res.FileBytes = rep.BitsPerWeight, rep.FileBytes
		for _, t := range rep.Tensors {
			if t.NMSE != nil {
				res.Tensors = append(res.Tensors, t)
			}
		}
	}
	opt := eval.Options{}
	if !c.Bool("json") && isTerminal(os.Stderr) {
		opt.Progress = func(done, total int) { fmt.Fprintf(c.App.ErrWriter, "\r\033[Kscoring %d/%d sequences", done, total) }
	}
	cmp, err := eval.Compare(orig, comp, tok, lines, opt)
	if opt.Progress != nil {
		fmt.Fprint(c.App.ErrWriter, "\r\033[K")
	}
	if err != nil {
		return err
	}
	res.Comparison = cmp
	if c.Bool("json") {
		return printJSON(c.App.Writer, res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "text %s: %d sequences, %d scored tokens, %d unknown (<unk>)\n", res.Text, cmp.Sequences, cmp.Tokens, cmp.UnknownTokens)
	fmt.Fprintf(w, "original:   NLL %.4f nats/token, perplexity %.4f\n", cmp.NLLOriginal, cmp.PPLOriginal)
	fmt.Fprintf(w, "compressed: NLL %.4f nats/token, perplexity %.4f\n", cmp.NLLCompressed, cmp.PPLCompressed)
	fmt.Fprintf(w, "KL(original || compressed): mean %.4f, max %.4f nats/token; top-1 agreement %.2f%%\n", cmp.KLMean, cmp.KLMax, 100*cmp.Top1Agreement)
	if res.BitsPerWeight > 0 {
		fmt.Fprintf(w, "compressed tensors: %.3f bits per weight (file %d bytes)\n", res.BitsPerWeight, res.FileBytes)
		for _, t := range res.Tensors {
			fmt.Fprintf(w, "  %-44s NMSE %.5f\n", t.Name, *t.NMSE)
		}
	}
	return nil
}

// openModel opens a checkpoint, or reconstructs a .pllm file in memory with
// the backend the flags choose.
// openModel opens a checkpoint, or reconstructs a .pllm file in memory
// (fallback: the config to use if the file stores none).
func openModel(c *cli.Context, path string, fallback *checkpoint.LlamaConfig) (*llama.Model, error) {
	if !strings.HasSuffix(path, ".pllm") {
		return llama.Open(path)
	}
	k, err := kernels(c)
	if err != nil {
		return nil, err
	}
	cfg, tensors, err := pipeline.LoadModel(path, k, fallback)
	if err != nil {
		return nil, err
	}
	m, err := llama.FromTensors(cfg, tensors)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:      "generate",
		Usage:     "continue a prompt with a model (original checkpoint or .pllm), for a quick look",
		UsageText: "pocketllm-native generate --model PATH [--tokenizer PATH] [--prompt TEXT] [--steps N] [--temperature T] [--seed S]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Required: true, Usage: "a checkpoint or a .pllm file"},
			tokenizerFlag,
			&cli.StringFlag{Name: "prompt", Usage: "text to continue (empty: start from BOS)"},
			&cli.IntFlag{Name: "steps", Value: 256, Usage: "new tokens to generate at most"},
			&cli.Float64Flag{Name: "temperature", Value: 0, Usage: "0: greedy; otherwise sample"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "sampling seed"},
			&cli.IntFlag{Name: "samples", Usage: "write this many samples, one per line, to --out (a calibration text the model wrote itself)"},
			&cli.StringFlag{Name: "out", Usage: "file for --samples"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite --out"},
			backendFlag,
		},
		Action: func(c *cli.Context) error {
			tok, err := loadTokenizer(c)
			if err != nil {
				return err
			}
			m, err := openModel(c, c.String("model"), nil)
			if err != nil {
				return err
			}
			if n := c.Int("samples"); n > 0 || c.IsSet("out") {
				return writeSamples(c, m, tok, n)
			}
			_, err = eval.GenerateStream(m, tok, c.String("prompt"), c.Int("steps"), c.Float64("temperature"), c.Uint64("seed"),
				func(piece string) error { _, err := fmt.Fprint(c.App.Writer, piece); return err })
			fmt.Fprintln(c.App.Writer)
			return err
		},
	}
}

// writeSamples writes n generations, one per line (line breaks inside a
// sample become spaces), seeds seed, seed+1, ...
func writeSamples(c *cli.Context, m *llama.Model, tok tokenizer.Tokenizer, n int) error {
	out := c.String("out")
	if out == "" || n < 1 {
		return fmt.Errorf("--samples N (N >= 1) and --out FILE go together")
	}
	if c.Float64("temperature") == 0 && n > 1 {
		return fmt.Errorf("--samples %d at temperature 0 would write the same text %d times; pass --temperature (e.g. 1)", n, n)
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		g, err := eval.Generate(m, tok, c.String("prompt"), c.Int("steps"), c.Float64("temperature"), c.Uint64("seed")+uint64(i))
		if err != nil {
			return err
		}
		b.WriteString(strings.Join(strings.Fields(g.Text), " "))
		b.WriteByte('\n')
	}
	return atomicfile.Write(out, []byte(b.String()), c.Bool("force"))
}

// tokenizerFlag is the tokenizer of the commands that run a model on text;
// a model that carries its own needs none (tokenizerPath).
var tokenizerFlag = &cli.StringFlag{Name: "tokenizer", Usage: "a llama2.c tokenizer .bin, a tokenizer.json (or a folder holding one), or a GGUF file (default: the model's own, for a Hugging Face folder with a tokenizer or a GGUF file)"}

// tokenizerPath is --tokenizer, or else the model itself where it carries
// a tokenizer: a GGUF file, or a Hugging Face folder holding tokenizer.json
// or tokenizer.bin. A llama2.c checkpoint (or a .pllm file) has none.
func tokenizerPath(c *cli.Context) (string, error) {
	if p := c.String("tokenizer"); p != "" {
		return p, nil
	}
	model := c.String("model")
	if tokenizer.Carries(model) {
		return model, nil
	}
	return "", fmt.Errorf("%s carries no tokenizer: give --tokenizer (a llama2.c tokenizer .bin, a tokenizer.json or a GGUF file)", model)
}

// loadTokenizer loads the tokenizer tokenizerPath names.
func loadTokenizer(c *cli.Context) (tokenizer.Tokenizer, error) {
	p, err := tokenizerPath(c)
	if err != nil {
		return nil, err
	}
	return tokenizer.Load(p)
}
