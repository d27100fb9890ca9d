// Package tokenizer turns text into token ids and back for the Llama-family
// models the project evaluates.
//
// Two kinds of tokenizer file are supported:
//
//   - the llama2.c tokenizer format (tokenizer.bin, tok512.bin, ...), encoded
//     and decoded exactly as llama2.c's run.c does, or, for a vocabulary
//     trained without byte fallback, with <unk> for what has no token, as
//     SentencePiece does (see Llama2C);
//   - a Hugging Face tokenizer.json whose model is a SentencePiece-style BPE
//     (model.type "BPE" with vocab and merges, optional byte_fallback, the
//     "▁" space marker added by a Prepend+Replace normalizer or a Metaspace
//     pre-tokenizer), which is what Llama 1/2, TinyLlama, Mistral and most
//     llama2.c exports ship (see HF).
//
// Everything else (WordPiece, Unigram, WordLevel, byte-level BPE as used by
// GPT-2 and Llama 3, regex pre-tokenizers, Unicode normalizers, the
// SentencePiece tokenizer.model protobuf) is refused at load time with an
// error that names the file and the unsupported part, rather than encoded
// approximately: a tokenizer that is almost right silently skews every
// perplexity measured with it.
package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"pocketllm-native/compress/gguf"
	"pocketllm-native/internal/regularfile"
)

// Tokenizer is the interface the evaluation code uses.
//
// Implementations are safe for concurrent use by several goroutines once
// loaded: encoding and decoding only read the tables.
type Tokenizer interface {
	// Encode returns the token ids of text, preceded by BOS when bos is true
	// (and the tokenizer has one). No EOS is ever appended.
	Encode(text string, bos bool) []int
	// Decode returns the bytes token tok stands for when it follows token
	// prev (pass -1 when there is none): a byte-fallback token gives its raw
	// byte, and the leading space of a token right after BOS is dropped, as
	// llama2.c's run.c and SentencePiece do (for a tokenizer.json, when its
	// decoder strips it). The result of one call may be an incomplete UTF-8
	// sequence; concatenated results are the text.
	Decode(prev, tok int) string
	// DecodeAll decodes a whole sequence; BOS and EOS contribute no text.
	DecodeAll(ids []int) string
	// BOS is the begin-of-sequence id, or -1 when the tokenizer has none.
	BOS() int
	// EOS is the end-of-sequence id, or -1 when the tokenizer has none.
	EOS() int
	// VocabSize is one more than the largest token id.
	VocabSize() int
	// Unknown is the id a piece of text with no token of its own becomes
	// (<unk>), or -1 when the tokenizer has none. Evaluation counts it so
	// that a vocabulary without byte fallback cannot hide how much of a
	// text it could not represent.
	Unknown() int
}

// Carries says whether a model path holds its own tokenizer, which Load
// then reads from the same path: a GGUF file, or a folder with
// tokenizer.json or tokenizer.bin.
func Carries(model string) bool {
	st, err := os.Stat(model)
	switch {
	case err != nil:
		return false
	case st.IsDir():
		for _, name := range []string{"tokenizer.json", "tokenizer.bin"} {
			if fi, err := os.Stat(filepath.Join(model, name)); err == nil && fi.Mode().IsRegular() {
				return true
			}
		}
		return false
	}
	return st.Mode().IsRegular() && gguf.IsGGUF(model)
}

// Load opens a tokenizer, choosing the format by the file's content: a GGUF
// file's tokenizer is read from its metadata (see LoadGGUF),
// a JSON object is a Hugging Face tokenizer.json, anything else is read as
// a llama2.c tokenizer file (whose length must then add up exactly). A directory is searched for tokenizer.json,
// then tokenizer.bin. For a tokenizer.json, a tokenizer_config.json beside
// it, when present, names BOS and EOS (bos_token, eos_token). A SentencePiece tokenizer.model is refused by name,
// since reading its protobuf as a llama2.c file would only give a confusing
// size error.
func Load(path string) (Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		for _, name := range []string{"tokenizer.json", "tokenizer.bin"} {
			p := filepath.Join(path, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return Load(p)
			}
		}
		if _, err := os.Stat(filepath.Join(path, "tokenizer.model")); err == nil {
			return nil, fmt.Errorf("tokenizer: %s: has only tokenizer.model (SentencePiece protobuf), which is not supported; provide tokenizer.json or a llama2.c tokenizer.bin", path)
		}
		return nil, fmt.Errorf("tokenizer: %s: directory holds neither tokenizer.json nor tokenizer.bin", path)
	}
	if strings.EqualFold(filepath.Ext(path), ".model") {
		return nil, fmt.Errorf("tokenizer: %s: SentencePiece .model files are not supported; provide tokenizer.json or a llama2.c tokenizer.bin", path)
	}
	if gguf.IsGGUF(path) {
		return LoadGGUF(path)
	}
	data, err := regularfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	// A llama2.c file starts with a little-endian int32, which can begin
	// with '{' too, so only well-formed JSON (or a .json name) goes to the
	// JSON reader.
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' &&
		(json.Valid(data) || strings.EqualFold(filepath.Ext(path), ".json")) {
		t, err := ParseHF(path, data)
		if err != nil {
			return nil, err
		}
		if err := t.applyTokenizerConfig(); err != nil {
			return nil, err
		}
		return t, nil
	}
	t, err := ParseLlama2C(path, data)
	if err != nil {
		return nil, err
	}
	return t, nil
}
