package llamacpp

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/tinymodel"
)

// tinyText is what the tiny tokenizer must split as llama.cpp does: its
// merges, and capitals, digits and a non-ASCII letter, which it has only as
// byte tokens.
var tinyText = []string{
	"the cat and the dog sat in the sun.",
	"Once upon a time, there were 3 birds!",
	"a café is where they went",
}

// TestTinyModelsAgreeWithLlamaCpp writes a tiny random model of each
// Llama-family kind (llama; mistral, with rope_theta 1e6 and an untied
// head; qwen2, with q/k/v biases and tied embeddings) as a Hugging Face
// folder, converts it to GGUF, compresses that and decompresses it to GGUF
// and to a folder, and compares llama.cpp's next-token log-probabilities on
// each GGUF with the tool's forward pass over the matching folder, on
// random token sequences that fill the whole context (BOS first), each
// from an empty cache; and llama.cpp must tokenize text with the GGUF's
// tokenizer as the tool does. It needs no ../shared.
//
// The mistral model's sliding window is set to its whole context here:
// llama.cpp runs GGUF "llama" models (Mistral among them, as its own
// converter writes them) with full attention whatever
// llama.attention.sliding_window says. Measured with the default window of
// 8 over a context of 64: llama.cpp's numbers match the tool's forward pass
// with full attention (3.9e-6) and leave the windowed one from position 8
// on (up to 5.1 nats).
func TestTinyModelsAgreeWithLlamaCpp(t *testing.T) {
	r := runner(t)
	for _, kind := range tinymodel.Kinds {
		t.Run(kind, func(t *testing.T) {
			o := tinymodel.Options{Kind: kind, Seed: 7, ByteFallback: true}
			full, err := tinymodel.Config(o)
			if err != nil {
				t.Fatal(err)
			}
			if kind == tinymodel.Mistral {
				o.Window = full.MaxPositionEmbeddings
			}
			dir := t.TempDir()
			folder := filepath.Join(dir, kind)
			cfg, err := tinymodel.Write(folder, o)
			if err != nil {
				t.Fatal(err)
			}
			gguf := filepath.Join(dir, kind+".gguf")
			if _, err := pipeline.Convert(pipeline.ConvertOptions{In: folder, Out: gguf, Format: pipeline.FormatGGUF,
				Tokenizer: filepath.Join(folder, "tokenizer.bin")}); err != nil {
				t.Fatal(err)
			}
			tok, err := tokenizer.Load(folder)
			if err != nil {
				t.Fatal(err)
			}
			sameTokens(t, r, gguf, tok, tinyText)
			// Fixed sizes: no bits target is reachable on matrices this small.
			compGGUF, compFolder := compressed(t, gguf, pipeline.CompressOptions{Dim: 4, K: 16, Share: plan.ShareWidth})

			// Enough whole-context sequences to cover MinPositions.
			ctx := cfg.MaxPositionEmbeddings
			rng := rand.New(rand.NewPCG(7, uint64(len(kind))))
			seqs := make([][]int, (MinPositions+ctx-1)/ctx)
			for s := range seqs {
				seqs[s] = make([]int, ctx)
				seqs[s][0] = 1 // BOS
				for i := 1; i < ctx; i++ {
					seqs[s][i] = 3 + rng.IntN(cfg.VocabSize-3)
				}
			}
			var ours [2][]float64
			for i, folder := range []string{folder, compFolder} {
				m, err := llama.Open(folder)
				if err != nil {
					t.Fatal(err)
				}
				ours[i] = ourLogProbs(t, m, seqs...)
			}
			agree(t, r, kind, gguf, ours[0], seqs...)
			agree(t, r, kind+" compressed", compGGUF, ours[1], seqs...)
			moved(t, ours[0], ours[1])
		})
	}
}
