// Package llama2c reads and writes Andrej Karpathy's llama2.c "legacy"
// (version 0) checkpoints, the format run.c loads, as Hugging Face Llama
// tensors.
//
// A legacy file is seven little-endian int32 (dim, hidden_dim, n_layers,
// n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means the
// output classifier is stored separately), then float32 arrays, each
// stacking all layers: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn,
// w1, w2, w3, rms_final, freq_cis_real, freq_cis_imag and, when not shared,
// wcls. Matrices are [out, in], row-major.
//
// Tensors are exposed under Hugging Face names (see package checkpoint), in
// file order, as F32. q_proj and k_proj rows are permuted from llama2.c's
// interleaved rotary layout into Hugging Face's half-split layout exactly as
// transformers' convert_llama_weights_to_hf.py does, and un-permuted when
// writing, so both conversions are bit-exact. The two legacy RoPE tables,
// which run.c skips but which occupy space in the file, are carried as
// "llama2c.freq_cis_real" and "llama2c.freq_cis_imag" so that a written file
// reproduces the original byte for byte.
package llama2c

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// The constants run.c hard-codes; a model that needs others cannot be
// expressed in this format.
const (
	RMSNormEps = 1e-5
	RopeTheta  = 10000.0
)

// HeaderSize is the size of the legacy header: seven int32.
const HeaderSize = 7 * 4

// Names of the legacy RoPE tables, [seq_len, head_size/2] F32 each.
const (
	FreqCisReal = "llama2c.freq_cis_real"
	FreqCisImag = "llama2c.freq_cis_imag"
)

// Config is a legacy checkpoint's header.
type Config struct {
	Dim       int // hidden size
	HiddenDim int // feed-forward size
	NLayers   int
	NHeads    int
	NKVHeads  int
	VocabSize int // always positive here; the sign in the file is SharedClassifier
	SeqLen    int // maximum sequence length
	// SharedClassifier is true when the output classifier is the token
	// embedding (a positive vocab_size in the file).
	SharedClassifier bool
}

// HeadSize is Dim / NHeads.
func (c Config) HeadSize() int { return c.Dim / c.NHeads }

// KVDim is the width of the key and value projections.
func (c Config) KVDim() int { return c.NKVHeads * c.HeadSize() }

func (c Config) String() string {
	v := c.VocabSize
	if !c.SharedClassifier {
		v = -v
	}
	return fmt.Sprintf("dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d",
		c.Dim, c.HiddenDim, c.NLayers, c.NHeads, c.NKVHeads, v, c.SeqLen)
}

// Validate checks that the header describes a model run.c and the Hugging
// Face layout can both represent.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"dim", c.Dim}, {"hidden_dim", c.HiddenDim}, {"n_layers", c.NLayers}, {"n_heads", c.NHeads},
		{"n_kv_heads", c.NKVHeads}, {"vocab_size", c.VocabSize}, {"seq_len", c.SeqLen}} {
		if f.v <= 0 || f.v > math.MaxInt32 {
			return fmt.Errorf("%s %d out of range [1, 2^31-1]", f.name, f.v)
		}
	}
	switch {
	case c.Dim%c.NHeads != 0:
		return fmt.Errorf("dim %d is not a multiple of n_heads %d", c.Dim, c.NHeads)
	case c.HeadSize()%2 != 0:
		return fmt.Errorf("head size %d (dim/n_heads) is odd; rotary embeddings need it even", c.HeadSize())
	case c.NKVHeads > c.NHeads || c.NHeads%c.NKVHeads != 0:
		return fmt.Errorf("n_heads %d is not a multiple of n_kv_heads %d", c.NHeads, c.NKVHeads)
	}
	return nil
}

// LlamaConfig returns the Hugging Face configuration of the model.
func (c Config) LlamaConfig() formatbase.LlamaConfig {
	return formatbase.LlamaConfig{
		ModelType:             "llama",
		HiddenSize:            c.Dim,
		IntermediateSize:      c.HiddenDim,
		NumHiddenLayers:       c.NLayers,
		NumAttentionHeads:     c.NHeads,
		NumKeyValueHeads:      c.NKVHeads,
		VocabSize:             c.VocabSize,
		MaxPositionEmbeddings: c.SeqLen,
		RMSNormEps:            RMSNormEps,
		RopeTheta:             RopeTheta,
		TieWordEmbeddings:     c.SharedClassifier,
		HiddenAct:             "silu",
	}
}

// ConfigFromLlama returns the legacy header for a Hugging Face
// configuration: seq_len is max_position_embeddings and the classifier is
// shared when the embeddings are tied. A zero num_key_value_heads means
// num_attention_heads; a zero rms_norm_eps or rope_theta means run.c's. A
// configuration run.c would compute differently is an error.
func ConfigFromLlama(lc formatbase.LlamaConfig) (Config, error) {
	c := Config{
		Dim: lc.HiddenSize, HiddenDim: lc.IntermediateSize, NLayers: lc.NumHiddenLayers,
		NHeads: lc.NumAttentionHeads, NKVHeads: lc.NumKeyValueHeads, VocabSize: lc.VocabSize,
		SeqLen: lc.MaxPositionEmbeddings, SharedClassifier: lc.TieWordEmbeddings,
	}
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	switch {
	case lc.ModelType != "" && lc.ModelType != "llama":
		return c, fmt.Errorf("model_type %q is not llama", lc.ModelType)
	case lc.RMSNormEps != 0 && lc.RMSNormEps != RMSNormEps:
		return c, fmt.Errorf("rms_norm_eps %g differs from the %g llama2.c hard-codes", lc.RMSNormEps, RMSNormEps)
	case lc.RopeTheta != 0 && lc.RopeTheta != RopeTheta:
		return c, fmt.Errorf("rope_theta %g differs from the %g llama2.c hard-codes", lc.RopeTheta, RopeTheta)
	}
	return c, c.Validate()
}

// ConfigJSON returns a Hugging Face LlamaForCausalLM config.json for the
// model.
func (c Config) ConfigJSON() []byte {
	lc := c.LlamaConfig()
	b, err := json.MarshalIndent(struct {
		Architectures []string `json:"architectures"`
		HiddenAct     string   `json:"hidden_act"`
		TorchDType    string   `json:"torch_dtype"`
		formatbase.LlamaConfig
	}{[]string{"LlamaForCausalLM"}, "silu", "float32", lc}, "", "  ")
	if err != nil {
		panic(err) // plain ints, floats and strings always marshal
	}
	return append(b, '\n')
}

// tensorGroup is one of the legacy format's arrays: a tensor, or one tensor
// per layer stacked.
type tensorGroup struct {
	name     string // Hugging Face name; %d stands for the layer
	perLayer bool
	shape    []int
	heads    int // > 0: rows permuted between rotary layouts, in this many heads
}

func (c Config) groups() []tensorGroup {
	d, h, kv, v := c.Dim, c.HiddenDim, c.KVDim(), c.VocabSize
	gs := []tensorGroup{
		{name: "model.embed_tokens.weight", shape: []int{v, d}},
		{name: "model.layers.%d.input_layernorm.weight", perLayer: true, shape: []int{d}},
		{name: "model.layers.%d.self_attn.q_proj.weight", perLayer: true, shape: []int{d, d}, heads: c.NHeads},
		{name: "model.layers.%d.self_attn.k_proj.weight", perLayer: true, shape: []int{kv, d}, heads: c.NKVHeads},
		{name: "model.layers.%d.self_attn.v_proj.weight", perLayer: true, shape: []int{kv, d}},
		{name: "model.layers.%d.self_attn.o_proj.weight", perLayer: true, shape: []int{d, d}},
		{name: "model.layers.%d.post_attention_layernorm.weight", perLayer: true, shape: []int{d}},
		{name: "model.layers.%d.mlp.gate_proj.weight", perLayer: true, shape: []int{h, d}},
		{name: "model.layers.%d.mlp.down_proj.weight", perLayer: true, shape: []int{d, h}},
		{name: "model.layers.%d.mlp.up_proj.weight", perLayer: true, shape: []int{h, d}},
		{name: "model.norm.weight", shape: []int{d}},
		{name: FreqCisReal, shape: []int{c.SeqLen, c.HeadSize() / 2}},
		{name: FreqCisImag, shape: []int{c.SeqLen, c.HeadSize() / 2}},
	}
	if !c.SharedClassifier {
		gs = append(gs, tensorGroup{name: "lm_head.weight", shape: []int{v, d}})
	}
	return gs
}

// FileSize returns the exact size of a legacy file with this header. It
// assumes Validate passed and fails only if the size is absurd.
func (c Config) FileSize() (int64, error) {
	size := int64(HeaderSize)
	for _, g := range c.groups() {
		shape := g.shape
		if g.perLayer {
			shape = append([]int{c.NLayers}, shape...)
		}
		n, err := formatbase.TensorInfo{Name: g.name, DType: formatbase.F32, Shape: shape}.ByteLen()
		if err != nil {
			return 0, err
		}
		if size += n; size > formatbase.MaxTensorBytes {
			return 0, errors.New("implied file size is absurdly large")
		}
	}
	return size, nil
}

// entry is one Hugging Face tensor and where it lies in the file.
type entry struct {
	info   formatbase.TensorInfo
	offset int64
	heads  int
}

// layout lists every tensor in file order. Call it only after FileSize
// succeeded, which bounds the number of layers.
func (c Config) layout() []entry {
	var es []entry
	off := int64(HeaderSize)
	add := func(name string, g tensorGroup) {
		info := formatbase.TensorInfo{Name: name, DType: formatbase.F32, Shape: g.shape}
		es = append(es, entry{info: info, offset: off, heads: g.heads})
		off += 4 * int64(info.NumElements())
	}
	for _, g := range c.groups() {
		if !g.perLayer {
			add(g.name, g)
			continue
		}
		for l := 0; l < c.NLayers; l++ {
			add(fmt.Sprintf(g.name, l), g)
		}
	}
	return es
}

// Tensors returns the Hugging Face tensors of a model with this header, in
// file order.
func (c Config) Tensors() []formatbase.TensorInfo {
	es := c.layout()
	out := make([]formatbase.TensorInfo, len(es))
	for i, e := range es {
		out[i] = e.info
	}
	return out
}

// permuteRows moves the rows of a [heads*headSize, *] matrix between
// llama2.c's rotary layout, where each head's rows pair up as (2i, 2i+1),
// and Hugging Face's, where they pair up as (i, i+headSize/2). This is
// w.view(heads, headSize/2, 2, in).transpose(1, 2) from transformers'
// convert_llama_weights_to_hf.py; inverse undoes it. Rows are rowBytes
// bytes; dst and src must not overlap.
func permuteRows(dst, src []byte, heads, rowBytes int, inverse bool) {
	rows := len(src) / rowBytes
	hs := rows / heads
	half := hs / 2
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			for t := 0; t < 2; t++ {
				llama := (h*hs + 2*i + t) * rowBytes
				hf := (h*hs + t*half + i) * rowBytes
				if inverse {
					copy(dst[llama:llama+rowBytes], src[hf:hf+rowBytes])
				} else {
					copy(dst[hf:hf+rowBytes], src[llama:llama+rowBytes])
				}
			}
		}
	}
}

// PermuteRows is permuteRows for other formats that store Q and K in
// llama2.c's interleaved rotary layout (GGUF's llama layout is the same):
// inverse false turns that layout into Hugging Face's, true turns
// Hugging Face's into it.
func PermuteRows(dst, src []byte, heads, rowBytes int, inverse bool) {
	permuteRows(dst, src, heads, rowBytes, inverse)
}

// FreqCis computes the legacy RoPE tables as llama2.c's model.py
// (precompute_freqs_cis) does in float32: cos and sin of t*theta^(-2i/hs)
// for t < seqLen, i < headSize/2. Use it to supply FreqCisReal and
// FreqCisImag when writing a model that never had them; the tables of a
// file exported by PyTorch may differ in the last bit, since torch's
// float32 pow, cos and sin are not correctly rounded, which run.c never
// notices: it ignores them.
func FreqCis(headSize, seqLen int) (re, im []float32) {
	half := headSize / 2
	freqs := make([]float32, half)
	for i := range freqs {
		e := float32(2*i) / float32(headSize)
		freqs[i] = 1 / float32(math.Pow(RopeTheta, float64(e)))
	}
	re = make([]float32, seqLen*half)
	im = make([]float32, seqLen*half)
	for t := 0; t < seqLen; t++ {
		for i, f := range freqs {
			x := float64(float32(t) * f)
			re[t*half+i] = float32(math.Cos(x))
			im[t*half+i] = float32(math.Sin(x))
		}
	}
	return re, im
}
