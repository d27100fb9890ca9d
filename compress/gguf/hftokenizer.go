package gguf

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Keys of tokenizers beyond llama2.c's.
const (
	KeyMerges   = "tokenizer.ggml.merges"
	KeyPre      = "tokenizer.ggml.pre"
	KeyAddBOS   = "tokenizer.ggml.add_bos_token"
	KeyAddEOS   = "tokenizer.ggml.add_eos_token"
	maxVocabIDs = 1 << 24
)

type hfTokenizerFile struct {
	Model struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		UnkToken     *string         `json:"unk_token"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
}

// HFTokenizer returns the tokenizer metadata of a Hugging Face
// tokenizer.json (and, when not nil, the tokenizer_config.json beside it,
// which names BOS and EOS and whether they are added) for a model of
// architecture arch. Two kinds of BPE model are written, as llama.cpp reads
// them:
//
//   - byte-level BPE (a ByteLevel pre-tokenizer or decoder, as Qwen2 and
//     Llama 3 have): model "gpt2", the tokens, their types and the merges,
//     pre-tokenizer "qwen2" for a qwen2 model and "default" otherwise;
//   - SentencePiece-style BPE (Llama 2, Mistral): model "llama", the tokens
//     with scores and types. A tokenizer.json has no scores;
//     convert_hf_to_gguf.py writes -1000 for every token, with which
//     llama.cpp's SentencePiece tokenizer merges in no particular order. Here
//     a token made by merge rank r scores -r, and every other token less than
//     any merge, so llama.cpp merges in the tokenizer's own order.
//
// Ids the vocabulary leaves out become unused tokens "[PADn]", as
// convert_hf_to_gguf.py writes them.
func HFTokenizer(tokJSON, configJSON []byte, arch string) (Metadata, error) {
	var f hfTokenizerFile
	if err := json.Unmarshal(tokJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %v", err)
	}
	if f.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model type %q; only BPE tokenizers are written to GGUF", f.Model.Type)
	}
	n := 0
	for _, id := range f.Model.Vocab {
		n = max(n, id+1)
	}
	for _, a := range f.AddedTokens {
		n = max(n, a.ID+1)
	}
	if n > maxVocabIDs {
		return nil, fmt.Errorf("tokenizer.json: token id %d is out of range", n-1)
	}
	pieces := make([]string, n)
	types := make([]int, n)
	for s, id := range f.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer.json: token %q has negative id %d", s, id)
		}
		if types[id] != 0 {
			return nil, fmt.Errorf("tokenizer.json: two tokens have id %d", id)
		}
		pieces[id], types[id] = s, TokenNormal
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("tokenizer.json: added token %q has negative id %d", a.Content, a.ID)
		}
		pieces[a.ID] = a.Content
		switch {
		case a.Special:
			types[a.ID] = TokenControl
		default:
			types[a.ID] = TokenUserDefined
		}
	}
	for id := range pieces {
		if types[id] == 0 {
			pieces[id], types[id] = fmt.Sprintf("[PAD%d]", id), TokenUnused
		}
	}
	merges, err := parseMerges(f.Model.Merges)
	if err != nil {
		return nil, err
	}
	cfg := parseTokenizerConfig(configJSON)
	idOf := func(s string) (int, bool) {
		for id, p := range pieces {
			if p == s && types[id] != TokenUnused {
				return id, true
			}
		}
		return 0, false
	}
	byteLevel := hasByteLevel(f.PreTokenizer) || hasByteLevel(f.Decoder)
	if !byteLevel {
		// SentencePiece's own BOS and EOS, when the config names none.
		for _, sp := range []struct {
			tok  **string
			name string
		}{{&cfg.bos, "<s>"}, {&cfg.eos, "</s>"}} {
			if _, ok := idOf(sp.name); ok && *sp.tok == nil {
				name := sp.name
				*sp.tok = &name
			}
		}
	}
	// BOS and EOS are control tokens, as convert_hf_to_gguf.py marks the
	// tokenizer's special tokens, whether or not tokenizer.json lists them
	// among its added tokens.
	var special Metadata
	for _, sp := range []struct {
		key string
		tok *string
	}{{KeyBOSID, cfg.bos}, {KeyEOSID, cfg.eos}} {
		if sp.tok == nil {
			continue
		}
		id, ok := idOf(*sp.tok)
		if !ok {
			return nil, fmt.Errorf("tokenizer_config.json: %q is not in the vocabulary", *sp.tok)
		}
		types[id] = TokenControl
		special = append(special, KV{sp.key, Uint32(uint32(id))})
	}
	var md Metadata
	toks := make([]Value, n)
	tt := make([]Value, n)
	if byteLevel {
		ms := make([]Value, len(merges))
		for i, m := range merges {
			ms[i] = String(m[0] + " " + m[1])
		}
		pre := "default"
		if arch == ArchQwen2 {
			pre = "qwen2"
		}
		for id := range pieces {
			toks[id], tt[id] = String(pieces[id]), Int32(int32(types[id]))
		}
		md = Metadata{
			{KeyTokenizerModel, String("gpt2")},
			{KeyPre, String(pre)},
			{KeyTokens, Array(TypeString, toks)},
			{KeyTokenType, Array(TypeInt32, tt)},
			{KeyMerges, Array(TypeString, ms)},
		}
	} else {
		rank := map[string]int{}
		for r, m := range merges {
			if _, ok := rank[m[0]+m[1]]; !ok {
				rank[m[0]+m[1]] = r
			}
		}
		scores := make([]Value, n)
		unk := -1
		if f.Model.UnkToken != nil {
			unk, _ = idOf(*f.Model.UnkToken)
		}
		for id, p := range pieces {
			typ := types[id]
			switch {
			case id == unk:
				typ = TokenUnknown
			case typ == TokenNormal && isByteToken(p) && len(p) == 6 && p[5] == '>':
				typ = TokenByte
			}
			score := -float32(len(merges) + 1)
			if r, ok := rank[p]; ok && typ == TokenNormal {
				score = -float32(r)
			}
			toks[id], tt[id], scores[id] = String(p), Int32(int32(typ)), Float32(score)
		}
		md = Metadata{
			{KeyTokenizerModel, String("llama")},
			{KeyPre, String("default")},
			{KeyTokens, Array(TypeString, toks)},
			{KeyScores, Array(TypeFloat32, scores)},
			{KeyTokenType, Array(TypeInt32, tt)},
		}
		if unk >= 0 {
			md = append(md, KV{KeyUnkID, Uint32(uint32(unk))})
		}
	}
	md = append(md, special...)
	if cfg.addBOS != nil {
		md = append(md, KV{KeyAddBOS, Bool(*cfg.addBOS)})
	}
	if cfg.addEOS != nil {
		md = append(md, KV{KeyAddEOS, Bool(*cfg.addEOS)})
	}
	return md, nil
}

// parseMerges reads merges written as "a b" strings or as [a, b] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model.merges is not a list")
	}
	out := make([][2]string, len(items))
	for i, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("tokenizer.json: merge %d %q is not two tokens", i, s)
			}
			out[i] = [2]string{a, b}
			continue
		}
		var pair []string
		if json.Unmarshal(it, &pair) != nil || len(pair) != 2 {
			return nil, fmt.Errorf("tokenizer.json: merge %d is neither \"a b\" nor a pair", i)
		}
		if strings.Contains(pair[0], " ") || strings.Contains(pair[1], " ") {
			return nil, fmt.Errorf("tokenizer.json: merge %d %q has a space, which GGUF's \"a b\" merges cannot hold", i, pair)
		}
		out[i] = [2]string{pair[0], pair[1]}
	}
	return out, nil
}

// hasByteLevel reports whether a pre-tokenizer or decoder is, or contains,
// a ByteLevel step.
func hasByteLevel(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case map[string]any:
			if x["type"] == "ByteLevel" {
				return true
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if walk(x[k]) {
					return true
				}
			}
		case []any:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

type tokenizerConfig struct {
	bos, eos       *string
	addBOS, addEOS *bool
}

// parseTokenizerConfig reads bos_token and eos_token (a string or an
// object with content) and add_bos_token, add_eos_token.
func parseTokenizerConfig(data []byte) tokenizerConfig {
	var c tokenizerConfig
	var raw struct {
		BOS    json.RawMessage `json:"bos_token"`
		EOS    json.RawMessage `json:"eos_token"`
		AddBOS *bool           `json:"add_bos_token"`
		AddEOS *bool           `json:"add_eos_token"`
	}
	if len(data) == 0 || json.Unmarshal(data, &raw) != nil {
		return c
	}
	tok := func(r json.RawMessage) *string {
		if len(r) == 0 || string(r) == "null" {
			return nil
		}
		var s string
		if json.Unmarshal(r, &s) == nil {
			return &s
		}
		var o struct {
			Content *string `json:"content"`
		}
		if json.Unmarshal(r, &o) == nil {
			return o.Content
		}
		return nil
	}
	c.bos, c.eos, c.addBOS, c.addEOS = tok(raw.BOS), tok(raw.EOS), raw.AddBOS, raw.AddEOS
	return c
}
