// Package llama runs the Llama forward pass in Go over float32 weights with
// Hugging Face tensor names, one token at a time with a key/value cache.
// Mistral (sliding-window attention) and Qwen2 (q/k/v biases) run through
// the same passes; arch.go says exactly what differs.
//
// It exists to measure what compression does to a model (perplexity, KL
// divergence, generated text), so it favours exactness and simplicity over
// speed: float32 weights and activations as the checkpoints store them,
// float64 where a long sum would otherwise lose digits (the rotary angles,
// the softmax normaliser), and matrix-vector products split by rows across
// GOMAXPROCS when they are large.
//
// The rotary embedding is the Hugging Face "rotate_half" form: within each
// head, dimension i is paired with dimension i + head_dim/2. The q_proj and
// k_proj rows of every source are in that layout (the llama2.c reader
// permutes its interleaved rows on the way in), so one forward pass serves
// both sources.
//
// For fine-tuning, Seq runs the same model over a whole sequence at once,
// keeping the activations, and carries gradients back through it (in
// float32, or float64 for gradient checks); its matrix products go
// through a MatMul that a native backend can provide.
package llama

import (
	"fmt"
	"math"
	"strings"

	"pocketllm-native/compress/checkpoint"
)

// Default values for config fields a config.json may omit, as in
// transformers' LlamaConfig.
const (
	DefaultRopeTheta  = 10000.0
	DefaultRMSNormEps = 1e-6
)

// Layer holds one decoder layer's weights, each matrix [out, in] row-major.
type Layer struct {
	AttnNorm       []float32 // [hidden]
	Q, K, V, O     []float32 // [heads*hd, hidden], [kv*hd, hidden] x2, [hidden, heads*hd]
	MLPNorm        []float32 // [hidden]
	Gate, Up, Down []float32 // [inter, hidden] x2, [hidden, inter]
	// QBias, KBias, VBias are [heads*hd], [kv*hd] x2 when the
	// architecture has q/k/v biases (HasQKVBias), nil otherwise.
	QBias, KBias, VBias []float32
	// Window is the layer's attention window (LayerWindows), 0 for full.
	Window int
}

// Model is a Llama model ready to run. Its weight slices are read-only
// after construction and may be shared by any number of States.
type Model struct {
	Config checkpoint.LlamaConfig // with defaults filled in

	Embed  []float32 // [vocab, hidden]
	Layers []Layer
	Norm   []float32 // [hidden]
	// LMHead is [vocab, hidden]; it is Embed itself when the embeddings are tied.
	LMHead []float32

	headDim, kvDim int
	eps            float32
	invFreq        []float64 // [headDim/2]
}

// Weights is where a model's tensors come from: *checkpoint.Source,
// *llama2c.File, or a map via FromTensors.
type Weights interface {
	// Float32 returns the tensor's values converted to float32.
	Float32(name string) ([]float32, error)
	// Info returns the tensor's shape, and false when it is absent.
	Info(name string) (checkpoint.TensorInfo, bool)
}

// Tensor names, as in Hugging Face Llama checkpoints.
const (
	EmbedName  = "model.embed_tokens.weight"
	NormName   = "model.norm.weight"
	LMHeadName = "lm_head.weight"
)

// LayerTensorName returns the name of a per-layer tensor, e.g.
// LayerTensorName(3, "self_attn.q_proj") = "model.layers.3.self_attn.q_proj.weight".
func LayerTensorName(layer int, part string) string {
	return fmt.Sprintf("model.layers.%d.%s.weight", layer, part)
}

// Open opens a checkpoint (any form checkpoint.Open accepts) and loads it.
func Open(path string) (*Model, error) {
	src, err := checkpoint.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return Load(src)
}

// Load builds a model from an opened checkpoint, using its Llama config.
// The weights are copied out as float32, so src may be closed afterwards.
func Load(src *checkpoint.Source) (*Model, error) {
	if src.Config == nil {
		return nil, fmt.Errorf("llama: %s: no Llama config.json found beside the weights", src.Path)
	}
	m, err := FromWeights(*src.Config, src)
	if err != nil {
		return nil, fmt.Errorf("llama: %s: %w", src.Path, err)
	}
	return m, nil
}

// FromTensors builds a model from a map of tensor name to float32 values,
// which is how reconstructed weights are evaluated without writing a file.
// The slices are used in place, not copied.
func FromTensors(cfg checkpoint.LlamaConfig, tensors map[string][]float32) (*Model, error) {
	return FromWeights(cfg, mapWeights(tensors))
}

type mapWeights map[string][]float32

func (m mapWeights) Float32(name string) ([]float32, error) {
	v, ok := m[name]
	if !ok {
		return nil, fmt.Errorf("tensor %s is missing", name)
	}
	return v, nil
}

func (m mapWeights) Info(name string) (checkpoint.TensorInfo, bool) {
	if _, ok := m[name]; !ok {
		return checkpoint.TensorInfo{}, false
	}
	// A bare slice has no shape; FromWeights checks its length instead.
	return checkpoint.TensorInfo{Name: name, DType: "F32"}, true
}

// FromWeights builds a model from any tensor source. Tied embeddings
// (tie_word_embeddings) use the token embedding as the output head, as
// transformers does, whether or not lm_head.weight is stored; otherwise
// lm_head.weight is required. Tensors the model does not use are ignored.
func FromWeights(cfg checkpoint.LlamaConfig, w Weights) (*Model, error) {
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, err
	}
	hidden, inter := cfg.HiddenSize, cfg.IntermediateSize
	hd := hidden / cfg.NumAttentionHeads
	qDim, kvDim := cfg.NumAttentionHeads*hd, cfg.NumKeyValueHeads*hd
	m := &Model{Config: cfg, headDim: hd, kvDim: kvDim, eps: float32(cfg.RMSNormEps)}
	windows := LayerWindows(cfg)

	get := func(name string, shape ...int) ([]float32, error) {
		want := 1
		for _, d := range shape {
			want *= d
		}
		if info, ok := w.Info(name); ok && info.Shape != nil && !sameShape(info.Shape, shape) {
			return nil, fmt.Errorf("tensor %s has shape %v, want %v", name, info.Shape, shape)
		}
		v, err := w.Float32(name)
		if err != nil {
			return nil, err
		}
		if len(v) != want {
			return nil, fmt.Errorf("tensor %s has %d values, want %d (shape %v)", name, len(v), want, shape)
		}
		return v, nil
	}
	if m.Embed, err = get(EmbedName, cfg.VocabSize, hidden); err != nil {
		return nil, err
	}
	if m.Norm, err = get(NormName, hidden); err != nil {
		return nil, err
	}
	if cfg.TieWordEmbeddings {
		m.LMHead = m.Embed
	} else if m.LMHead, err = get(LMHeadName, cfg.VocabSize, hidden); err != nil {
		return nil, fmt.Errorf("%w (tie_word_embeddings is false)", err)
	}
	m.Layers = make([]Layer, cfg.NumHiddenLayers)
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, t := range []struct {
			dst   *[]float32
			part  string
			shape []int
		}{
			{&l.AttnNorm, "input_layernorm", []int{hidden}},
			{&l.Q, "self_attn.q_proj", []int{qDim, hidden}},
			{&l.K, "self_attn.k_proj", []int{kvDim, hidden}},
			{&l.V, "self_attn.v_proj", []int{kvDim, hidden}},
			{&l.O, "self_attn.o_proj", []int{hidden, qDim}},
			{&l.MLPNorm, "post_attention_layernorm", []int{hidden}},
			{&l.Gate, "mlp.gate_proj", []int{inter, hidden}},
			{&l.Up, "mlp.up_proj", []int{inter, hidden}},
			{&l.Down, "mlp.down_proj", []int{hidden, inter}},
		} {
			if *t.dst, err = get(LayerTensorName(i, t.part), t.shape...); err != nil {
				return nil, err
			}
		}
		if HasQKVBias(cfg) {
			for j, dst := range []*[]float32{&l.QBias, &l.KBias, &l.VBias} {
				n := []int{qDim, kvDim, kvDim}[j]
				if *dst, err = get(LayerBiasName(i, biasParts[j]), n); err != nil {
					return nil, fmt.Errorf("%w (model_type %s has q/k/v biases)", err, Arch(cfg))
				}
			}
		}
		l.Window = windows[i]
	}
	m.invFreq = make([]float64, hd/2)
	for i := range m.invFreq {
		m.invFreq[i] = 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(hd))
	}
	return m, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// VocabSize is the number of logits Forward returns.
func (m *Model) VocabSize() int { return m.Config.VocabSize }

// ContextLength is max_position_embeddings (0 when the config omits it).
func (m *Model) ContextLength() int { return m.Config.MaxPositionEmbeddings }

// HeadDim is the size of one attention head.
func (m *Model) HeadDim() int { return m.headDim }

// SetLayerTensor points the projection of l that name (a per-layer tensor
// name, e.g. "model.layers.3.mlp.up_proj.weight") designates at w. It
// reports false for a name that is not one of a layer's projections.
func SetLayerTensor(l *Layer, name string, w []float32) bool {
	parts := map[string]*[]float32{
		"self_attn.q_proj": &l.Q, "self_attn.k_proj": &l.K, "self_attn.v_proj": &l.V, "self_attn.o_proj": &l.O,
		"mlp.gate_proj": &l.Gate, "mlp.up_proj": &l.Up, "mlp.down_proj": &l.Down,
	}
	for part, p := range parts {
		if strings.HasSuffix(name, "."+part+".weight") {
			*p = w
			return true
		}
	}
	return false
}
