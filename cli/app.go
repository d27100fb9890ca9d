// Package cli is the pocketllm-native command line. Its commands:
//
//   - compress: compress a checkpoint into one .pllm file;
//   - decompress: rebuild dense weights (safetensors, llama2.c or GGUF) from it;
//   - convert: convert a checkpoint between those formats, uncompressed;
//   - inspect: verify a .pllm file and report its tensors, sizes and errors;
//   - demo: the whole job on a built-in model, end to end;
//   - eval: score an original and a compressed model on a text (perplexity,
//     KL divergence, top-1 agreement);
//   - generate: continue a prompt with a model, or write samples;
//   - backends: which kernel backends load here, and why any is refused;
//   - bench: the kernels and a training epoch on every backend, side by side;
//   - sweep: compress with each method over a ladder of settings, score,
//     tabulate and plot;
//   - merge: join the part files of compress --shard into one .pllm file.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"pocketllm-native/bindings"
)

// New returns the application; main runs it with os.Args.
func New() *cli.App {
	return &cli.App{
		Name:  "pocketllm-native",
		Usage: "compress LLM weights to 2-4 bits per weight with the PocketLLM method",
		Description: "Compresses the linear layers of a Hugging Face safetensors model, a llama2.c checkpoint or a GGUF file\n" +
			"into one .pllm file (a small decoder, a latent codebook and bit-packed indices per tensor\n" +
			"group), and reconstructs dense weights from it.",
		// A repeated flag gives one value per use: bench --case values
		// hold commas of their own.
		DisableSliceFlagSeparator: true,
		Commands: []*cli.Command{
			compressCommand(), decompressCommand(), convertCommand(), inspectCommand(), demoCommand(),
			evalCommand(), generateCommand(), backendsCommand(), benchCommand(), sweepCommand(), mergeCommand(),
		},
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		Writer:         os.Stdout,
		ErrWriter:      os.Stderr,
	}
}

// Main runs the application with os.Stdout and os.Stderr and returns the
// process exit code. SIGINT, SIGTERM and SIGHUP cancel the run: unfinished
// outputs are removed and the process exits with 128 plus the signal
// number. Messages of the packages below (log) go to stderr as
// "pocketllm-native: ..." lines.
func Main(args []string) int {
	log.SetFlags(0)
	log.SetPrefix("pocketllm-native: ")
	log.SetOutput(os.Stderr)
	stop := exitOnSignal(os.Stderr)
	defer stop()
	return Run(args, os.Stdout, os.Stderr)
}

// Run runs the application, printing any error as one line on stderr, and
// returns the exit code: 0, or 1 after an error.
func Run(args []string, stdout, stderr io.Writer) int {
	app := New()
	app.Writer, app.ErrWriter = stdout, stderr
	if len(args) > 2 && args[1] == "merge" {
		args = append(args[:2:2], flagsFirst(mergeCommand(), args[2:])...)
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "pocketllm-native: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var backendFlag = &cli.StringFlag{
	Name:    "backend",
	Value:   "auto",
	Usage:   "kernels to run on: auto (CUDA, then native CPU, then pure Go), cuda, cpu or go",
	EnvVars: []string{"POCKETLLM_BACKEND"},
}

func kernels(c *cli.Context) (bindings.Kernels, error) {
	k, _, err := bindings.Select(c.String("backend"))
	return k, err
}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print one JSON object instead of a table"}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether f is a terminal. Asking the terminal driver
// (x/term) matters: /dev/null is a character device too, and live progress
// lines written to it as to a terminal would end up in redirected logs.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
