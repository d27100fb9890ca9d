package pipeline

import (
	"path/filepath"
	"strings"

	"pocketllm-native/compress/checkpoint"
)

// ConvertOptions describe one conversion between checkpoint formats.
type ConvertOptions struct {
	In, Out string
	// Format is FormatSafetensors, FormatLlama2c or FormatGGUF; "" picks
	// by Out's extension (see OutputFormat).
	Format string
	// DType and Tokenizer are as for Decompress.
	DType, Tokenizer string
	Force            bool
}

// OutputFormat is the format a path names: GGUF for .gguf, llama2.c for
// .bin, a Hugging Face folder otherwise.
func OutputFormat(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".gguf":
		return FormatGGUF
	case ".bin":
		return FormatLlama2c
	}
	return FormatSafetensors
}

// Convert writes any checkpoint checkpoint.Open reads in any output
// format, without compressing, with the writers and checks of Decompress.
// It returns notices: what was changed on reading (Q8_0 tensors
// dequantized), and what the output cannot do that may be expected of it.
func Convert(o ConvertOptions) ([]string, error) {
	dtype, err := parseOutput(o.Format, o.DType)
	if err != nil {
		return nil, err
	}
	src, err := checkpoint.Open(o.In)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	format := o.Format
	if format == "" {
		format = OutputFormat(o.Out)
	}
	notices := append([]string(nil), src.Notices...)
	out := output{path: o.Out, format: format, dtype: dtype, dtypeFlag: o.DType, tokenizer: o.Tokenizer, force: o.Force,
		notify: func(n string) { notices = append(notices, n) }}
	return notices, writeModel(sourceModel(src), out)
}
