package eval

import (
	"fmt"
	"math"
	"math/rand/v2"

	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
)

// Generation is the outcome of Generate.
type Generation struct {
	// Tokens are all the ids run through the model: BOS, the prompt, then
	// what was generated.
	Tokens []int `json:"tokens"`
	// PromptTokens is how many of Tokens (BOS included) came from the prompt.
	PromptTokens int `json:"prompt_tokens"`
	// Text is the prompt and its continuation, decoded.
	Text string `json:"text"`
	// Stopped is true when generation ended at EOS (or BOS) before steps
	// tokens were produced.
	Stopped bool `json:"stopped"`
}

// Generate continues prompt by up to steps tokens. Temperature 0 is greedy
// decoding (the most likely token, lowest id on ties); a positive
// temperature samples from softmax(logits / temperature) with a generator
// seeded by seed, so the same arguments always give the same text.
// Generation stops early when the model produces EOS or BOS, as llama2.c's
// run.c does; the stop token is not included. prompt + steps must fit in
// the model's context.
func Generate(m *llama.Model, tok tokenizer.Tokenizer, prompt string, steps int, temperature float64, seed uint64) (Generation, error) {
	return GenerateStream(m, tok, prompt, steps, temperature, seed, nil)
}

// GenerateStream is Generate calling emit with the text of each token as
// it is produced, prompt tokens included (concatenated, the pieces are
// Generation.Text). An error from emit stops generation and is returned.
func GenerateStream(m *llama.Model, tok tokenizer.Tokenizer, prompt string, steps int, temperature float64, seed uint64,
	emit func(piece string) error) (Generation, error) {
	var g Generation
	if steps < 0 {
		return g, fmt.Errorf("generate: steps %d is negative", steps)
	}
	if temperature < 0 || math.IsNaN(temperature) || math.IsInf(temperature, 0) {
		return g, fmt.Errorf("generate: temperature %g must be 0 (greedy) or positive", temperature)
	}
	if tok.BOS() < 0 {
		return g, fmt.Errorf("generate: the tokenizer has no BOS token to start generation from")
	}
	ids := tok.Encode(prompt, true)
	for _, id := range ids {
		if id >= m.VocabSize() {
			return g, fmt.Errorf("generate: prompt encodes to token %d, outside the model's vocabulary of %d", id, m.VocabSize())
		}
	}
	need := len(ids) + steps - 1 // the last token produced is never fed back
	if c := m.ContextLength(); c > 0 && need > c {
		return g, fmt.Errorf("generate: %d prompt tokens + %d steps exceed the model's context of %d", len(ids), steps, c)
	}
	st, err := m.NewState(max(need, 1))
	if err != nil {
		return g, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x706c6c6d)) // fixed stream id: same seed, same text
	probs := make([]float64, m.VocabSize())
	g.PromptTokens = len(ids)

	var text []byte
	out := func(prev, id int) error {
		piece := tok.Decode(prev, id)
		text = append(text, piece...)
		if emit != nil {
			return emit(piece)
		}
		return nil
	}
	for i := 1; i < len(ids); i++ {
		if err := out(ids[i-1], ids[i]); err != nil {
			return g, err
		}
	}
	for pos := 0; len(ids) < g.PromptTokens+steps; pos++ {
		logits, err := st.Forward(ids[pos], pos)
		if err != nil {
			return g, err
		}
		if pos+1 < len(ids) {
			continue // still reading the prompt
		}
		next := argmax(logits)
		if temperature > 0 {
			next = sample(logits, temperature, probs, rng)
		}
		if next == tok.EOS() || next == tok.BOS() {
			g.Stopped = true
			break
		}
		ids = append(ids, next)
		if err := out(ids[len(ids)-2], next); err != nil {
			return g, err
		}
	}
	g.Tokens = ids
	g.Text = string(text)
	return g, nil
}

// sample draws an index from softmax(logits / temperature) by inverting the
// cumulative distribution at one uniform draw.
func sample(logits []float32, temperature float64, probs []float64, rng *rand.Rand) int {
	mx := math.Inf(-1)
	for _, l := range logits {
		mx = max(mx, float64(l))
	}
	var sum float64
	for i, l := range logits {
		probs[i] = math.Exp((float64(l) - mx) / temperature)
		sum += probs[i]
	}
	r := rng.Float64() * sum
	var c float64
	for i, p := range probs {
		c += p
		if r < c {
			return i
		}
	}
	// r can reach the total only through rounding: take the last token
	// with any probability.
	for i := len(probs) - 1; i >= 0; i-- {
		if probs[i] > 0 {
			return i
		}
	}
	return len(probs) - 1
}
