package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/pipeline"
)

func convertCommand() *cli.Command {
	return &cli.Command{
		Name:      "convert",
		Usage:     "convert a checkpoint between safetensors, llama2.c and GGUF without compressing it",
		UsageText: "pocketllm-native convert --in PATH --out PATH [--format gguf|safetensors|llama2c] [--dtype f32|f16|bf16] [--tokenizer FILE]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "in", Required: true, Usage: "a Hugging Face folder, a .safetensors file, a llama2.c checkpoint or a .gguf file"},
			&cli.StringFlag{Name: "out", Required: true, Usage: "a folder (safetensors) or a file (llama2c, gguf) to write"},
			&cli.StringFlag{Name: "format", Usage: "gguf, safetensors (a Hugging Face folder) or llama2c; default: gguf for a .gguf --out, llama2c for .bin, else safetensors"},
			&cli.StringFlag{Name: "dtype", Usage: "f32, f16 or bf16 for every floating-point tensor; default: each tensor's own"},
			&cli.StringFlag{Name: "tokenizer", Usage: "GGUF output: the tokenizer to write (a llama2.c tokenizer .bin, a tokenizer.json or a GGUF file); default: a GGUF input's own, or the folder's tokenizer.json (converting a folder: or its tokenizer.bin)"},
			&cli.BoolFlag{Name: "force", Usage: "replace --out if it exists"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
		},
		Action: func(c *cli.Context) error {
			o := pipeline.ConvertOptions{
				In: c.String("in"), Out: c.String("out"), Format: c.String("format"),
				DType: c.String("dtype"), Tokenizer: c.String("tokenizer"), Force: c.Bool("force"),
			}
			notices, err := pipeline.Convert(o)
			if err != nil {
				return err
			}
			if !c.Bool("quiet") {
				for _, n := range notices {
					fmt.Fprintf(c.App.Writer, "note: %s\n", n)
				}
				fmt.Fprintf(c.App.Writer, "wrote %s\n", o.Out)
			}
			return nil
		},
	}
}
