package gguf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/compress/fp16"
)

// Metadata keys. Those with %s take the architecture.
const (
	KeyArchitecture = "general.architecture"
	KeyName         = "general.name"
	KeyFileType     = "general.file_type"
	keyContext      = "%s.context_length"
	keyEmbedding    = "%s.embedding_length"
	keyBlocks       = "%s.block_count"
	keyFeedForward  = "%s.feed_forward_length"
	keyRopeDims     = "%s.rope.dimension_count"
	keyRopeBase     = "%s.rope.freq_base"
	keyRopeScaling  = "%s.rope.scaling.type"
	keyHeads        = "%s.attention.head_count"
	keyKVHeads      = "%s.attention.head_count_kv"
	keyKeyLength    = "%s.attention.key_length"
	keyValueLength  = "%s.attention.value_length"
	keyRMSEps       = "%s.attention.layer_norm_rms_epsilon"
	keySlidingWin   = "%s.attention.sliding_window"
)

// Tokenizer keys, as llama.cpp's llama2.c converter writes them.
const (
	KeyTokenizerModel = "tokenizer.ggml.model"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenType      = "tokenizer.ggml.token_type"
	KeyUnkID          = "tokenizer.ggml.unknown_token_id"
	KeyBOSID          = "tokenizer.ggml.bos_token_id"
	KeyEOSID          = "tokenizer.ggml.eos_token_id"
)

// llama.cpp's token types (llama_token_type).
const (
	TokenNormal      = 1
	TokenUnknown     = 2
	TokenControl     = 3
	TokenUserDefined = 4
	TokenUnused      = 5
	TokenByte        = 6
)

// llama.cpp's file types (llama_ftype) for general.file_type.
const (
	fileTypeAllF32    = 0
	fileTypeMostlyF16 = 1
	fileTypeMostlyQ8  = 7
	fileTypeMostlyBF  = 32
)

// defaultRopeBase is llama.cpp's rope.freq_base when the key is absent.
const defaultRopeBase = 10000

// HFConfig is a Hugging Face config.json as GGUF metadata describes it:
// the tool's Llama-family config and the architectures list transformers
// reads.
type HFConfig struct {
	Architectures []string `json:"architectures,omitempty"`
	formatbase.LlamaConfig
}

// ArchOf returns the GGUF architecture of a Hugging Face model type.
func ArchOf(modelType string) (string, error) {
	switch modelType {
	case "", "llama", "mistral":
		return ArchLlama, nil
	case "qwen2":
		return ArchQwen2, nil
	}
	return "", fmt.Errorf("model_type %q has no GGUF mapping here (llama, mistral and qwen2 do)", modelType)
}

// shortest returns the float64 whose shortest decimal is a float32's, so
// that 1e-5 stored as float32 reads back as 1e-05 in config.json, and
// converts back to the same float32.
func shortest(f float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	return v
}

// Model is what GGUF metadata says about a model: its architecture and the
// Hugging Face config.json equivalent.
type Model struct {
	Arch   string
	Config HFConfig
}

// Permuter returns the Q/K permuter of the model.
func (m Model) Permuter() Permuter {
	return Permuter{Arch: m.Arch, Heads: m.Config.NumAttentionHeads, KVHeads: m.Config.NumKeyValueHeads}
}

// LlamaConfig returns the config as the rest of the tool holds it.
func (m Model) LlamaConfig() formatbase.LlamaConfig { return m.Config.LlamaConfig }

// ConfigJSON returns the config as a config.json.
func (m Model) ConfigJSON() []byte {
	b, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		panic(err) // plain ints, floats and strings always marshal
	}
	return append(b, '\n')
}

// ModelOf reads the hyper-parameters from a GGUF header: the architecture
// (llama or qwen2), the sizes, and from the tensors the vocabulary size and
// whether the output matrix is tied to the embeddings.
func ModelOf(h *Header) (Model, error) {
	md := h.Metadata
	av, ok := md.Get(KeyArchitecture)
	if !ok || av.Type != TypeString {
		return Model{}, fmt.Errorf("no %s string in the metadata", KeyArchitecture)
	}
	arch := av.Str
	var m Model
	m.Arch = arch
	switch arch {
	case ArchLlama:
		m.Config.ModelType = "llama"
		m.Config.Architectures = []string{"LlamaForCausalLM"}
	case ArchQwen2:
		m.Config.ModelType = "qwen2"
		m.Config.Architectures = []string{"Qwen2ForCausalLM"}
	default:
		return Model{}, fmt.Errorf("architecture %q is not supported (llama, which includes Mistral, and qwen2 are)", arch)
	}
	var err error
	need := func(key string) int {
		k := fmt.Sprintf(key, arch)
		v, ok := md.Get(k)
		n, isInt := v.Uint()
		switch {
		case err != nil:
		case !ok:
			err = fmt.Errorf("metadata %s is missing", k)
		case !isInt || n == 0 || n > math.MaxInt32:
			err = fmt.Errorf("metadata %s (%s) is not a positive integer below 2^31", k, v.Type)
		}
		return int(n)
	}
	optional := func(key string, def int) int {
		if _, ok := md.Get(fmt.Sprintf(key, arch)); !ok {
			return def
		}
		return need(key)
	}
	floatKey := func(key string, def float32, required bool) float64 {
		k := fmt.Sprintf(key, arch)
		v, ok := md.Get(k)
		if !ok && !required {
			return shortest(def)
		}
		f, isFloat := v.Float()
		switch {
		case err != nil:
		case !ok:
			err = fmt.Errorf("metadata %s is missing", k)
		case !isFloat || !(f > 0) || math.IsInf(f, 0):
			err = fmt.Errorf("metadata %s is not a positive float", k)
		}
		if v.Type == TypeFloat32 {
			return shortest(float32(f))
		}
		return f
	}
	c := &m.Config
	c.HiddenSize = need(keyEmbedding)
	c.IntermediateSize = need(keyFeedForward)
	c.NumHiddenLayers = need(keyBlocks)
	c.NumAttentionHeads = need(keyHeads)
	c.NumKeyValueHeads = optional(keyKVHeads, c.NumAttentionHeads)
	c.MaxPositionEmbeddings = need(keyContext)
	c.RMSNormEps = floatKey(keyRMSEps, 0, true)
	c.RopeTheta = floatKey(keyRopeBase, defaultRopeBase, false)
	c.HiddenAct = "silu"
	if err != nil {
		return Model{}, err
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return Model{}, fmt.Errorf("embedding length %d, %d heads and %d key/value heads do not divide evenly", c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	headDim := c.HiddenSize / c.NumAttentionHeads
	for _, key := range []string{keyRopeDims, keyKeyLength, keyValueLength} {
		if n := optional(key, headDim); err == nil && n != headDim {
			return Model{}, fmt.Errorf("metadata %s is %d, not the head size %d; such models are not supported", fmt.Sprintf(key, arch), n, headDim)
		}
	}
	if v, ok := md.Get(fmt.Sprintf(keyRopeScaling, arch)); ok && !(v.Type == TypeString && v.Str == "none") {
		return Model{}, fmt.Errorf("metadata %s is %q; RoPE scaling is not supported", fmt.Sprintf(keyRopeScaling, arch), v.Str)
	}
	if arch == ArchLlama {
		if _, ok := md.Get(fmt.Sprintf(keySlidingWin, arch)); ok {
			w := need(keySlidingWin)
			c.ModelType, c.Architectures, c.SlidingWindow = "mistral", []string{"MistralForCausalLM"}, w
		}
	}
	if err != nil {
		return Model{}, err
	}
	c.TieWordEmbeddings = true
	for _, t := range h.Tensors {
		switch t.Name {
		case "token_embd.weight":
			if len(t.Dims) != 2 || t.Dims[0] != c.HiddenSize {
				return Model{}, fmt.Errorf("token_embd.weight has dimensions %v, want [%d, vocabulary]", t.Dims, c.HiddenSize)
			}
			c.VocabSize = t.Dims[1]
		case "output.weight":
			c.TieWordEmbeddings = false
		}
	}
	if c.VocabSize == 0 {
		return Model{}, fmt.Errorf("no token_embd.weight tensor")
	}
	return m, nil
}

// ModelFromConfig reads a Hugging Face config.json.
func ModelFromConfig(configJSON []byte) (Model, error) {
	var m Model
	if err := json.Unmarshal(configJSON, &m.Config); err != nil {
		return m, fmt.Errorf("config.json: %v", err)
	}
	c := &m.Config
	var err error
	if m.Arch, err = ArchOf(c.ModelType); err != nil {
		return m, err
	}
	if !c.RopeScaling.IsNull() {
		return m, fmt.Errorf("config.json: rope_scaling is not supported")
	}
	switch {
	case c.HiddenAct != "" && c.HiddenAct != "silu":
		return m, fmt.Errorf("config.json: hidden_act %q is not supported (llama.cpp's %s runs silu)", c.HiddenAct, m.Arch)
	case c.AttentionBias || c.MLPBias:
		return m, fmt.Errorf("config.json: attention_bias and mlp_bias are not supported")
	}
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"vocab_size", c.VocabSize}, {"max_position_embeddings", c.MaxPositionEmbeddings}} {
		if f.v <= 0 || f.v > math.MaxInt32 {
			return m, fmt.Errorf("config.json: %s %d out of range", f.name, f.v)
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 || c.NumKeyValueHeads <= 0 || c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return m, fmt.Errorf("config.json: hidden_size %d, %d heads and %d key/value heads do not divide evenly", c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads)
	}
	if c.HeadDim != 0 && c.HeadDim != c.HiddenSize/c.NumAttentionHeads {
		return m, fmt.Errorf("config.json: head_dim %d is not hidden_size/num_attention_heads; such models are not supported", c.HeadDim)
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6 // transformers' default for all three
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = defaultRopeBase
	}
	return m, nil
}

// Metadata returns the architecture's hyper-parameters as GGUF metadata,
// with general.architecture first, as convert_hf_to_gguf.py writes them.
// Mistral's sliding window is recorded (llama.attention.sliding_window)
// when it is shorter than the context.
func (m Model) Metadata() Metadata {
	c, a := m.Config, m.Arch
	k := func(key string) string { return fmt.Sprintf(key, a) }
	md := Metadata{
		{KeyArchitecture, String(a)},
		{KeyName, String(nameOf(c))},
		{k(keyContext), Uint32(uint32(c.MaxPositionEmbeddings))},
		{k(keyEmbedding), Uint32(uint32(c.HiddenSize))},
		{k(keyBlocks), Uint32(uint32(c.NumHiddenLayers))},
		{k(keyFeedForward), Uint32(uint32(c.IntermediateSize))},
		{k(keyRopeDims), Uint32(uint32(c.HiddenSize / c.NumAttentionHeads))},
		{k(keyRopeBase), Float32(float32(c.RopeTheta))},
		{k(keyHeads), Uint32(uint32(c.NumAttentionHeads))},
		{k(keyKVHeads), Uint32(uint32(c.NumKeyValueHeads))},
		{k(keyRMSEps), Float32(float32(c.RMSNormEps))},
	}
	if c.ModelType == "mistral" && c.SlidingWindow > 0 && c.SlidingWindow < c.MaxPositionEmbeddings {
		md = append(md, KV{k(keySlidingWin), Uint32(uint32(c.SlidingWindow))})
	}
	return md
}

func nameOf(c HFConfig) string {
	if c.ModelType == "" {
		return "llama"
	}
	return c.ModelType
}

// SetFileType records in md's general.file_type what most weights are,
// from the types of the two-dimensional tensors: all F32, or mostly F16,
// BF16 or Q8_0. A mix of float types leaves md as it is.
func SetFileType(md *Metadata, tensors []WriteTensor) {
	seen := map[GGMLType]bool{}
	for _, t := range tensors {
		if len(t.Dims) == 2 {
			seen[t.Type] = true
		}
	}
	if len(seen) != 1 {
		return
	}
	for t := range seen {
		switch t {
		case GGMLF32:
			md.Set(KeyFileType, Uint32(fileTypeAllF32))
		case GGMLF16:
			md.Set(KeyFileType, Uint32(fileTypeMostlyF16))
		case GGMLBF16:
			md.Set(KeyFileType, Uint32(fileTypeMostlyBF))
		case GGMLQ8_0:
			md.Set(KeyFileType, Uint32(fileTypeMostlyQ8))
		}
	}
}

// Llama2CTokenizer returns the tokenizer metadata of a llama2.c vocabulary
// (pieces and scores by id) as llama.cpp's convert-llama2c-to-ggml writes
// it: model "llama"; ids 0, 1 and 2 become <unk> (unknown), <s> and </s>
// (control); an empty piece is a control token, a <0xHH> piece a byte
// token, anything else normal; spaces become U+2581; unknown, BOS and EOS
// ids are 0, 1 and 2.
func Llama2CTokenizer(pieces []string, scores []float32) Metadata {
	n := len(pieces)
	toks, scs, types := make([]Value, n), make([]Value, n), make([]Value, n)
	for id, text := range pieces {
		typ := TokenNormal
		switch {
		case id == 0:
			text, typ = "<unk>", TokenUnknown
		case id == 1:
			text, typ = "<s>", TokenControl
		case id == 2:
			text, typ = "</s>", TokenControl
		case text == "":
			typ = TokenControl
		case isByteToken(text):
			typ = TokenByte
		}
		toks[id] = String(strings.ReplaceAll(text, " ", "\u2581"))
		scs[id] = Float32(scores[id])
		types[id] = Int32(int32(typ))
	}
	return Metadata{
		{KeyTokenizerModel, String("llama")},
		{KeyTokens, Array(TypeString, toks)},
		{KeyScores, Array(TypeFloat32, scs)},
		{KeyTokenType, Array(TypeInt32, types)},
		{KeyUnkID, Uint32(0)},
		{KeyBOSID, Uint32(1)},
		{KeyEOSID, Uint32(2)},
	}
}

// isByteToken is what sscanf(text, "<0x%02hhX>") accepts: "<0x" and at
// least one hex digit.
func isByteToken(s string) bool {
	rest, ok := strings.CutPrefix(s, "<0x")
	return ok && rest != "" && strings.ContainsRune("0123456789abcdefABCDEF", rune(rest[0]))
}

// TokenCount returns the number of tokens in tokenizer metadata, or -1.
func TokenCount(md Metadata) int {
	v, ok := md.Get(KeyTokens)
	if !ok || v.Type != TypeArray {
		return -1
	}
	return len(v.Items)
}

// DequantizeQ8_0 converts Q8_0 blocks to float32 as ggml's
// dequantize_row_q8_0 does: each of a block's 32 int8 quants times the
// block's float16 scale, one float32 product.
func DequantizeQ8_0(raw []byte) ([]float32, error) {
	if len(raw)%q8BlockSize != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of Q8_0 blocks", len(raw))
	}
	out := make([]float32, len(raw)/q8BlockSize*q8Block)
	for b := 0; b*q8BlockSize < len(raw); b++ {
		blk := raw[b*q8BlockSize : (b+1)*q8BlockSize]
		d := fp16.ToFloat32(binary.LittleEndian.Uint16(blk))
		for j, q := range blk[2:] {
			out[b*q8Block+j] = float32(int8(q)) * d
		}
	}
	return out, nil
}
