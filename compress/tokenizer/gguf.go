package tokenizer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"pocketllm-native/compress/gguf"
)

// LoadGGUF reads the tokenizer in a GGUF file's metadata (only the header
// is read, not the weights). A SentencePiece vocabulary (tokenizer.ggml.model
// "llama") whose BOS and EOS are 1 and 2, which llama.cpp's llama2.c
// converter and Llama 2 conversions write, is read as a llama2.c vocabulary
// (see Llama2C for what it must hold) and encoded as run.c encodes, its "▁"
// read back as spaces; other tokenizers are refused by name.
func LoadGGUF(path string) (*Llama2C, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	fail := func(format string, a ...any) (*Llama2C, error) {
		return nil, fmt.Errorf("tokenizer: %s: GGUF tokenizer: %s", path, fmt.Sprintf(format, a...))
	}
	md := f.Metadata
	model, _ := md.Get(gguf.KeyTokenizerModel)
	if model.Str != "llama" {
		return fail("model %q is not supported (only llama, SentencePiece)", model.Str)
	}
	tv, _ := md.Get(gguf.KeyTokens)
	pieces, ok := tv.Strings()
	if !ok {
		return fail("%s is not an array of strings", gguf.KeyTokens)
	}
	sv, _ := md.Get(gguf.KeyScores)
	scores, ok := sv.Float32s()
	if !ok || len(scores) != len(pieces) {
		return fail("%s is not an array of %d float32", gguf.KeyScores, len(pieces))
	}
	for _, s := range []struct {
		key  string
		want uint64
	}{{gguf.KeyBOSID, llama2cBOS}, {gguf.KeyEOSID, llama2cEOS}} {
		if v, ok := md.Get(s.key); ok {
			if n, _ := v.Uint(); n != s.want {
				return fail("%s is %d; only %d is supported", s.key, n, s.want)
			}
		}
	}
	var buf bytes.Buffer
	maxLen := 1
	for _, p := range pieces {
		maxLen = max(maxLen, len(strings.ReplaceAll(p, "\u2581", " ")))
	}
	if maxLen > math.MaxInt32 {
		return fail("a token of %d bytes", maxLen)
	}
	binary.Write(&buf, binary.LittleEndian, int32(maxLen))
	for i, p := range pieces {
		p = strings.ReplaceAll(p, "\u2581", " ")
		binary.Write(&buf, binary.LittleEndian, scores[i])
		binary.Write(&buf, binary.LittleEndian, int32(len(p)))
		buf.WriteString(p)
	}
	return ParseLlama2C(path, buf.Bytes())
}
