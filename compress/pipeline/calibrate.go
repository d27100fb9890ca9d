package pipeline

import (
	"fmt"
	"os"
	"path/filepath"

	"pocketllm-native/compress/calib"
	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
)

// Calibration says where the text comes from that the original model runs
// over to tell which weights matter (the output-aware objective, the
// sequential mode and end-to-end fine-tuning all use it).
type Calibration struct {
	// Off uses no calibration: the weight-space objective.
	Off bool
	// Text is a text file, one sequence per line (never the evaluation
	// text). "" samples Samples sequences of SampleTokens tokens from the
	// original model itself, at temperature 1, seeded by Seed.
	Text string
	// Tokenizer is a tokenizer file or folder; "" uses the input folder's own
	// (a Hugging Face folder carries one) or a GGUF input's. Without one, calibration falls
	// back to the weight-space objective with a notice.
	Tokenizer    string
	MaxTokens    int // use at most this many tokens (0: all)
	Samples      int // 0: DefaultSamples
	SampleTokens int // 0: DefaultSampleTokens, at most the model's context
	Seed         uint64
}

// Defaults of the calibration text sampled from the model: about 32k tokens,
// enough for every second-moment matrix of a model with inputs up to about
// 8k wide to be well conditioned after damping, and cheap to sample.
const (
	DefaultSamples      = 128
	DefaultSampleTokens = 256
)

// calibrationSet is the text the original model runs over.
type calibrationSet struct {
	model   *llama.Model
	windows [][]int
	tokens  int
	about   string // for the record: where the text came from
}

// loadCalibration reads or samples the calibration text. It returns nil and
// a notice (no error) when no tokenizer is to be had.
func loadCalibration(src *checkpoint.Source, c Calibration) (*calibrationSet, string, error) {
	if c.Off {
		return nil, "", nil
	}
	tokPath := c.Tokenizer
	if tokPath == "" {
		if st, err := os.Stat(src.Path); err == nil && st.IsDir() && tokenizer.Carries(src.Path) {
			tokPath = src.Path
		}
		if src.Format == checkpoint.FormatGGUF {
			// A GGUF file carries its tokenizer; one this tool cannot
			// encode with is the same as none.
			if _, err := tokenizer.LoadGGUF(src.Path); err != nil {
				if c.Text != "" {
					return nil, "", fmt.Errorf("calibration: %s needs a tokenizer: pass --tokenizer (%v)", c.Text, err)
				}
				return nil, fmt.Sprintf("%s: compressing with the weight-space objective (pass --tokenizer to calibrate): %v", src.Path, err), nil
			}
			tokPath = src.Path
		}
	}
	if tokPath == "" {
		if c.Text != "" {
			return nil, "", fmt.Errorf("calibration: %s needs a tokenizer: pass --tokenizer", c.Text)
		}
		return nil, fmt.Sprintf("%s has no tokenizer beside it: compressing with the weight-space objective (pass --tokenizer to calibrate on text the model writes itself)", src.Path), nil
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		return nil, "", fmt.Errorf("calibration: %w", err)
	}
	m, err := llama.Load(src)
	if err != nil {
		return nil, "", fmt.Errorf("calibration: %w", err)
	}
	cs := &calibrationSet{model: m}
	if c.Text != "" {
		lines, err := eval.ReadLines(c.Text)
		if err != nil {
			return nil, "", fmt.Errorf("calibration: %w", err) // ReadLines names the file
		}
		cs.windows = calib.Windows(tok, lines, m.ContextLength(), c.MaxTokens)
		cs.about = filepath.Base(c.Text)
	} else {
		n, steps := c.Samples, c.SampleTokens
		if n <= 0 {
			n = DefaultSamples
		}
		if steps <= 0 {
			steps = DefaultSampleTokens
		}
		if ctx := m.ContextLength(); ctx > 1 {
			// A sample is its first token and the steps after it.
			steps = min(steps, ctx-1)
		}
		for i := 0; i < n; i++ {
			g, err := eval.Generate(m, tok, "", steps, 1, c.Seed+uint64(i))
			if err != nil {
				return nil, "", fmt.Errorf("calibration: sampling from %s: %w", src.Path, err)
			}
			w := g.Tokens
			if c.MaxTokens > 0 {
				w = w[:min(len(w), c.MaxTokens-cs.tokens)]
			}
			if len(w) > 0 {
				cs.windows = append(cs.windows, w)
				cs.tokens += len(w)
			}
			if c.MaxTokens > 0 && cs.tokens >= c.MaxTokens {
				break
			}
		}
		cs.about = fmt.Sprintf("%d sequences sampled from the model (seed %d)", len(cs.windows), c.Seed)
	}
	cs.tokens = 0
	for _, w := range cs.windows {
		cs.tokens += len(w)
	}
	if cs.tokens == 0 {
		return nil, "", fmt.Errorf("calibration: %s holds no tokens", c.Text)
	}
	cs.about = fmt.Sprintf("%s, %d tokens", cs.about, cs.tokens)
	return cs, "", nil
}
