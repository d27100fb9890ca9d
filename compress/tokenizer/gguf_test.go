package tokenizer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/compress/gguf"
	"pocketllm-native/internal/sharedtest"
)

// writeTokenizerGGUF writes a GGUF file holding t's vocabulary as llama.cpp's
// llama2.c converter writes it, and no tensors.
func writeTokenizerGGUF(t *testing.T, tok *Llama2C, extra ...gguf.KV) string {
	t.Helper()
	pieces := make([]string, tok.VocabSize())
	scores := make([]float32, tok.VocabSize())
	for i := range pieces {
		pieces[i], scores[i] = tok.Piece(i), tok.Score(i)
	}
	md := append(gguf.Metadata{{Key: "general.architecture", Value: gguf.String("llama")}}, gguf.Llama2CTokenizer(pieces, scores)...)
	for _, kv := range extra {
		md.Set(kv.Key, kv.Value)
	}
	path := filepath.Join(t.TempDir(), "tok.gguf")
	w, err := gguf.Create(path, md, nil, formatbase.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func sameEncoding(t *testing.T, a Tokenizer, b Tokenizer, texts []string) {
	t.Helper()
	for _, s := range texts {
		if x, y := a.Encode(s, true), b.Encode(s, true); !cmp.Equal(x, y) {
			t.Errorf("%q: %v from the llama2.c file, %v from the GGUF", s, x, y)
		}
		ids := a.Encode(s, true)
		if x, y := a.DecodeAll(ids), b.DecodeAll(ids); x != y {
			t.Errorf("%q decodes to %q and %q", s, x, y)
		}
	}
}

func TestGGUFTokenizerTiny(t *testing.T) {
	var pieces []string
	for b := 0; b < 256; b++ {
		pieces = append(pieces, fmt.Sprintf("<0x%02X>", b))
	}
	pieces = append([]string{"<unk>", "<s>", "</s>"}, append(pieces, " ", "a", "b", " a", "ab", " ab")...)
	var raw []byte
	raw = append(raw, 8, 0, 0, 0)
	for i, p := range pieces {
		raw = append(raw, f32le(float32(i))...)
		raw = append(raw, byte(len(p)), 0, 0, 0)
		raw = append(raw, p...)
	}
	orig, err := ParseLlama2C("tiny", raw)
	if err != nil {
		t.Fatal(err)
	}
	path := writeTokenizerGGUF(t, orig)
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, orig, got, []string{"ab ab", "a b a", "é ab\n", ""})
	bad := writeTokenizerGGUF(t, orig, gguf.KV{Key: gguf.KeyBOSID, Value: gguf.Uint32(5)})
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "bos_token_id is 5") {
		t.Errorf("BOS 5: %v", err)
	}
	gpt2 := writeTokenizerGGUF(t, orig, gguf.KV{Key: gguf.KeyTokenizerModel, Value: gguf.String("gpt2")})
	if _, err := Load(gpt2); err == nil || !strings.Contains(err.Error(), `model "gpt2" is not supported`) {
		t.Errorf("gpt2: %v", err)
	}
}

func f32le(f float32) []byte {
	b, _ := formatbase.EncodeFloat32(formatbase.F32, []float32{f})
	return b
}

func TestGGUFTokenizerStories260K(t *testing.T) {
	p := sharedtest.Path(t, "models", "stories260K", "tok512.bin")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := ParseLlama2C(p, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(writeTokenizerGGUF(t, orig))
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, orig, got, []string{"Once upon a time, there was a little girl named Lily.", "She said: \"Hello!\"\n\nThe end. ☃"})
}
