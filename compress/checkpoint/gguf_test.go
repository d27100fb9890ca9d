package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/fp16"
	"pocketllm-native/compress/gguf"
)

// quantizeQ8_0 is a plain Q8_0 quantizer: per block of 32, the float16
// scale max|x|/127 and each value rounded to a multiple of it.
func quantizeQ8_0(v []float32) []byte {
	var out []byte
	for b := 0; b < len(v); b += 32 {
		amax := float32(0)
		for _, x := range v[b : b+32] {
			amax = max(amax, float32(math.Abs(float64(x))))
		}
		h := fp16.FromFloat32(amax / 127)
		d := fp16.ToFloat32(h)
		out = binary.LittleEndian.AppendUint16(out, h)
		for _, x := range v[b : b+32] {
			out = append(out, byte(int8(math.Round(float64(x/d)))))
		}
	}
	return out
}

type ggufTensor struct {
	t    gguf.WriteTensor
	data []byte
}

func writeGGUF(t *testing.T, md gguf.Metadata, tensors []ggufTensor) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	var wt []gguf.WriteTensor
	for _, x := range tensors {
		wt = append(wt, x.t)
	}
	w, err := gguf.Create(path, md, wt, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tensors {
		if err := w.Write(x.t.Name, x.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func ramp(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * float32(i%37-18)
	}
	return v
}

func f32(v []float32) []byte { b, _ := EncodeFloat32(F32, v); return b }

func hparams(arch string, d, ff, heads, kv, ctx int) gguf.Metadata {
	k := func(s string) string { return arch + "." + s }
	return gguf.Metadata{
		{Key: "general.architecture", Value: gguf.String(arch)},
		{Key: k("context_length"), Value: gguf.Uint32(uint32(ctx))},
		{Key: k("embedding_length"), Value: gguf.Uint32(uint32(d))},
		{Key: k("block_count"), Value: gguf.Uint32(1)},
		{Key: k("feed_forward_length"), Value: gguf.Uint32(uint32(ff))},
		{Key: k("attention.head_count"), Value: gguf.Uint32(uint32(heads))},
		{Key: k("attention.head_count_kv"), Value: gguf.Uint32(uint32(kv))},
		{Key: k("attention.layer_norm_rms_epsilon"), Value: gguf.Float32(1e-6)},
		{Key: k("rope.freq_base"), Value: gguf.Float32(1e6)},
	}
}

// TestOpenGGUFLlama opens a llama GGUF with a Q8_0 Q projection, an F16 K
// projection and a tensor without a Hugging Face name.
func TestOpenGGUFLlama(t *testing.T) {
	const d, vocab, heads, kv = 32, 5, 4, 2
	hs := d / heads
	q := ramp(d*d, 0.01)
	k := ramp(kv*hs*d, 0.5)
	kh := make([]byte, 2*len(k))
	fp16.EncodeF16(kh, k)
	md := append(hparams("llama", d, 64, heads, kv, 128), gguf.KV{Key: "tokenizer.ggml.model", Value: gguf.String("llama")})
	path := writeGGUF(t, md, []ggufTensor{
		{gguf.WriteTensor{Name: "token_embd.weight", Type: gguf.GGMLF32, Dims: []int{d, vocab}}, f32(ramp(d*vocab, 1))},
		{gguf.WriteTensor{Name: "blk.0.attn_q.weight", Type: gguf.GGMLQ8_0, Dims: []int{d, d}}, quantizeQ8_0(q)},
		{gguf.WriteTensor{Name: "blk.0.attn_k.weight", Type: gguf.GGMLF16, Dims: []int{d, kv * hs}}, kh},
		{gguf.WriteTensor{Name: "rope_freqs.weight", Type: gguf.GGMLF32, Dims: []int{hs / 2}}, f32(ramp(hs/2, 1))},
		{gguf.WriteTensor{Name: "output.weight", Type: gguf.GGMLF32, Dims: []int{d, vocab}}, f32(ramp(d*vocab, 2))},
	})
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []TensorInfo{
		{Name: "model.embed_tokens.weight", DType: F32, Shape: []int{vocab, d}},
		{Name: "model.layers.0.self_attn.q_proj.weight", DType: F32, Shape: []int{d, d}},
		{Name: "model.layers.0.self_attn.k_proj.weight", DType: F16, Shape: []int{kv * hs, d}},
		{Name: "gguf.rope_freqs.weight", DType: F32, Shape: []int{hs / 2}},
		{Name: "lm_head.weight", DType: F32, Shape: []int{vocab, d}},
	}
	if diff := cmp.Diff(want, s.Tensors); diff != "" {
		t.Fatalf("tensors (-want +got):\n%s", diff)
	}
	if s.Format != FormatGGUF || len(s.Notices) != 1 || !strings.Contains(s.Notices[0], "1 Q8_0 tensors dequantized to F32") {
		t.Errorf("format %q, notices %q", s.Format, s.Notices)
	}
	// Q comes back dequantized and un-permuted: Hugging Face row
	// h*hs + t*hs/2 + i is GGUF row h*hs + 2i + t.
	deq, _ := gguf.DequantizeQ8_0(quantizeQ8_0(q))
	got, err := s.Float32("model.layers.0.self_attn.q_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	for h := 0; h < heads; h++ {
		for i := 0; i < hs/2; i++ {
			for tt := 0; tt < 2; tt++ {
				hf, gg := h*hs+tt*hs/2+i, h*hs+2*i+tt
				if !cmp.Equal(got[hf*d:(hf+1)*d], deq[gg*d:(gg+1)*d]) {
					t.Fatalf("q_proj row %d is not GGUF row %d", hf, gg)
				}
			}
		}
	}
	c := s.Config
	if c == nil || c.ModelType != "llama" || c.HiddenSize != d || c.NumKeyValueHeads != kv || c.VocabSize != vocab ||
		c.TieWordEmbeddings || c.RMSNormEps != 1e-6 || c.RopeTheta != 1e6 || c.MaxPositionEmbeddings != 128 || c.IntermediateSize != 64 {
		t.Errorf("config %+v", c)
	}
	if len(s.SideFiles) != 1 || s.SideFiles[0].Name != GGUFMetadataFile {
		t.Fatalf("side files %v", s.SideFiles)
	}
	h, err := gguf.Parse(strings.NewReader(string(s.SideFiles[0].Data)), int64(len(s.SideFiles[0].Data)))
	if err != nil || !cmp.Equal(h.Metadata, md) {
		t.Errorf("side file metadata differs: %v", err)
	}
	// Every tensor streams as Raw gives it: read from the file where it is
	// stored as is, converted whole where it is not (Q8_0, permuted K).
	for _, ti := range s.Tensors {
		raw, err := s.Raw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		src, n, err := s.Stream(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		streamed, err := io.ReadAll(src)
		if err != nil || n != int64(len(raw)) || !bytes.Equal(streamed, raw) {
			t.Errorf("%s: streamed %d of %d bytes (%v), equal to Raw: %v", ti.Name, len(streamed), n, err, bytes.Equal(streamed, raw))
		}
	}
	// A file cut short after Open: the stream says so, naming the tensor.
	src, _, err := s.Stream("lm_head.weight")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-8); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(src); !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), `tensor "lm_head.weight"`) {
		t.Errorf("reading a tensor cut short: %v", err)
	}
}

func TestOpenGGUFQwen2AndMistral(t *testing.T) {
	const d, vocab = 8, 3
	bias := ramp(d, 1)
	path := writeGGUF(t, hparams("qwen2", d, 16, 2, 2, 64), []ggufTensor{
		{gguf.WriteTensor{Name: "token_embd.weight", Type: gguf.GGMLF32, Dims: []int{d, vocab}}, f32(ramp(d*vocab, 1))},
		{gguf.WriteTensor{Name: "blk.0.attn_q.bias", Type: gguf.GGMLF32, Dims: []int{d}}, f32(bias)},
	})
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Float32("model.layers.0.self_attn.q_proj.bias")
	if err != nil || !cmp.Equal(got, bias) {
		t.Errorf("qwen2 q bias %v (%v), want %v unpermuted", got, err, bias)
	}
	if c := s.Config; c.ModelType != "qwen2" || !c.TieWordEmbeddings {
		t.Errorf("qwen2 config %+v", c)
	}
	s.Close()

	md := append(hparams("llama", d, 16, 2, 1, 64), gguf.KV{Key: "llama.attention.sliding_window", Value: gguf.Uint32(16)})
	path = writeGGUF(t, md, []ggufTensor{{gguf.WriteTensor{Name: "token_embd.weight", Type: gguf.GGMLF32, Dims: []int{d, vocab}}, f32(ramp(d*vocab, 1))}})
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var cfg struct {
		ModelType     string `json:"model_type"`
		SlidingWindow int    `json:"sliding_window"`
	}
	if err := json.Unmarshal(s.ConfigJSON, &cfg); err != nil || cfg.ModelType != "mistral" || cfg.SlidingWindow != 16 {
		t.Errorf("mistral config.json %s (%v)", s.ConfigJSON, err)
	}
}

func TestOpenGGUFErrors(t *testing.T) {
	emb := ggufTensor{gguf.WriteTensor{Name: "token_embd.weight", Type: gguf.GGMLF32, Dims: []int{8, 2}}, f32(ramp(16, 1))}
	without := func(md gguf.Metadata, key string) gguf.Metadata {
		var out gguf.Metadata
		for _, kv := range md {
			if kv.Key != key {
				out = append(out, kv)
			}
		}
		return out
	}
	for _, c := range []struct {
		md   gguf.Metadata
		want string
	}{
		{gguf.Metadata{{Key: "general.architecture", Value: gguf.String("gpt2")}}, `architecture "gpt2" is not supported`},
		{without(hparams("llama", 8, 16, 2, 2, 64), "llama.block_count"), "llama.block_count is missing"},
		{append(hparams("llama", 8, 16, 2, 2, 64), gguf.KV{Key: "llama.rope.dimension_count", Value: gguf.Uint32(2)}), "not the head size 4"},
		{append(hparams("llama", 8, 16, 2, 2, 64), gguf.KV{Key: "llama.rope.scaling.type", Value: gguf.String("yarn")}), "RoPE scaling"},
		{hparams("llama", 8, 16, 3, 2, 64), "do not divide evenly"},
	} {
		path := writeGGUF(t, c.md, []ggufTensor{emb})
		_, err := Open(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), path+": gguf: ") {
			t.Errorf("err %v, want %q naming the file", err, c.want)
		}
	}
	// Found by content whatever the name.
	path := writeGGUF(t, hparams("llama", 8, 16, 2, 2, 64), []ggufTensor{emb})
	other := filepath.Join(t.TempDir(), "model")
	if err := os.Rename(path, other); err != nil {
		t.Fatal(err)
	}
	s, err := Open(other)
	if err != nil || s.Format != FormatGGUF {
		t.Fatalf("a GGUF without the extension: %v", err)
	}
	s.Close()
}
