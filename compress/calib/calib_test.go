package calib

import (
	"testing"

	"pocketllm-native/compress/eval"
	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/sharedtest"
)

func TestCollectOnStories(t *testing.T) {
	m, err := llama.Open(sharedtest.Stories260K(t))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(sharedtest.Tokenizer(t))
	if err != nil {
		t.Fatal(err)
	}
	lines := eval.Lines("Once upon a time, there was a little dog.\nThe sun was warm and the birds sang.\n")
	st, err := Collect(m, tok, lines, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tokens < 10 {
		t.Fatalf("only %d tokens seen", st.Tokens)
	}
	// Every projection of every layer has statistics of its input width.
	for l := 0; l < 5; l++ {
		for part, width := range map[string]int{"self_attn.q_proj": 64, "self_attn.o_proj": 64, "mlp.up_proj": 64, "mlp.down_proj": 172} {
			ms := st.MeanSquare[llama.LayerTensorName(l, part)]
			if len(ms) != width {
				t.Fatalf("layer %d %s: %d channels, want %d", l, part, len(ms), width)
			}
			var pos int
			for _, v := range ms {
				if v > 0 {
					pos++
				}
			}
			if pos < width/2 {
				t.Errorf("layer %d %s: only %d of %d channels ever active", l, part, pos, width)
			}
		}
	}
	// A token budget stops early.
	few, err := Collect(m, tok, lines, 5)
	if err != nil || few.Tokens != 5 {
		t.Fatalf("budget of 5 tokens: saw %d (%v)", few.Tokens, err)
	}
}
