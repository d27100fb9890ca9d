package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/pipeline"
)

func decompressCommand() *cli.Command {
	return &cli.Command{
		Name:      "decompress",
		Usage:     "rebuild dense weights from a .pllm file",
		UsageText: "pocketllm-native decompress --in FILE.pllm --out PATH [--format safetensors|llama2c|gguf] [--dtype f32|f16|bf16] [--tokenizer FILE]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Required: true, Usage: "the .pllm file"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "a folder (safetensors) or a file (llama2c, gguf) to write"},
			&cli.StringFlag{Name: "format", Usage: "safetensors (a Hugging Face folder), llama2c or gguf; default: the source's format"},
			&cli.StringFlag{Name: "dtype", Usage: "f32, f16 or bf16 for every floating-point tensor; default: each tensor's source dtype"},
			&cli.StringFlag{Name: "tokenizer", Usage: "GGUF output: the tokenizer to write (a llama2.c tokenizer .bin, a tokenizer.json or a GGUF file); default: a GGUF source's own, or the source folder's tokenizer.json carried in the .pllm"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it exists"},
			backendFlag,
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
		},
		Action: func(c *cli.Context) error {
			k, err := kernels(c)
			if err != nil {
				return err
			}
			o := pipeline.DecompressOptions{
				In: c.String("in"), Out: c.String("out"), Format: c.String("format"),
				DType: c.String("dtype"), Tokenizer: c.String("tokenizer"), Force: c.Bool("force"), Kernels: k,
				Notify: func(n string) {
					if !c.Bool("quiet") {
						fmt.Fprintf(c.App.Writer, "note: %s\n", n)
					}
				},
			}
			if err := pipeline.Decompress(o); err != nil {
				return err
			}
			if !c.Bool("quiet") {
				fmt.Fprintf(c.App.Writer, "wrote %s\n", o.Out)
			}
			return nil
		},
	}
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "verify a .pllm file and report its tensors, settings, sizes and errors",
		UsageText: "pocketllm-native inspect FILE.pllm [--json]",
		Flags:     []cli.Flag{jsonFlag},
		Action: func(c *cli.Context) error {
			// Flags may follow the file name, as in "inspect FILE --json".
			var files []string
			asJSON := c.Bool("json")
			for _, a := range c.Args().Slice() {
				if a == "--json" || a == "-json" {
					asJSON = true
				} else {
					files = append(files, a)
				}
			}
			if len(files) != 1 {
				return fmt.Errorf("inspect takes one .pllm file, got %d arguments", len(files))
			}
			rep, err := pipeline.Inspect(files[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.App.Writer, rep)
			}
			printReport(c.App.Writer, rep)
			return nil
		},
	}
}
