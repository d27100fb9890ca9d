package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// allTypes is metadata with one value of every type, arrays of each
// element type, and strings that are not UTF-8.
func allTypes() Metadata {
	return Metadata{
		{"general.architecture", String("llama")},
		{"u8", Value{Type: TypeUint8, Bits: 200}},
		{"i8", Value{Type: TypeInt8, Bits: 0xfe}},
		{"u16", Value{Type: TypeUint16, Bits: 65535}},
		{"i16", Value{Type: TypeInt16, Bits: 0x8000}},
		{"u32", Uint32(1 << 31)},
		{"i32", Int32(-7)},
		{"f32", Float32(float32(math.NaN()))},
		{"bool", Bool(true)},
		{"str", String("\xff\x00not utf-8")},
		{"u64", Value{Type: TypeUint64, Bits: math.MaxUint64}},
		{"i64", Value{Type: TypeInt64, Bits: 1 << 63}},
		{"f64", Value{Type: TypeFloat64, Bits: math.Float64bits(-0.0)}},
		{"arr.str", Array(TypeString, []Value{String("a"), String(""), String("▁b")})},
		{"arr.f32", Array(TypeFloat32, []Value{Float32(1.5), Float32(-2)})},
		{"arr.i32", Array(TypeInt32, []Value{Int32(1), Int32(-1)})},
		{"arr.bool", Array(TypeBool, []Value{Bool(false), Bool(true)})},
		{"arr.empty", Array(TypeUint64, []Value{})},
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	md := allTypes()
	enc, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Parse(bytes.NewReader(enc), int64(len(enc)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(md, h.Metadata); diff != "" {
		t.Errorf("metadata changed (-want +got):\n%s", diff)
	}
	again, _ := EncodeMetadata(h.Metadata)
	if !bytes.Equal(enc, again) {
		t.Error("re-encoding parsed metadata gives other bytes")
	}
	if v, _ := h.Metadata.Get("i8"); v.Bits != 0xfe {
		t.Errorf("i8 bits %x", v.Bits)
	}
	if n, ok := (Value{Type: TypeInt8, Bits: 0xfe}).Int(); !ok || n != -2 {
		t.Errorf("Int of int8 0xfe = %d, %v", n, ok)
	}
}

// writeFile writes a GGUF with the given tensors (data filled with the
// bytes i+1) and returns its path and data.
func writeFile(t testing.TB, md Metadata, tensors []WriteTensor) (string, map[string][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	w, err := Create(path, md, tensors, formatbase.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{}
	for i, tt := range tensors {
		n, _ := tt.Size()
		b := bytes.Repeat([]byte{byte(i + 1)}, int(n))
		data[tt.Name] = b
		if err := w.Write(tt.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestWriteOpen(t *testing.T) {
	for _, align := range []uint32{0, 64} {
		md := allTypes()
		if align != 0 {
			md = append(md, KV{KeyAlignment, Uint32(align)})
		}
		tensors := []WriteTensor{
			{Name: "a", Type: GGMLF32, Dims: []int{3, 2}},
			{Name: "b", Type: GGMLF16, Dims: []int{5}},
			{Name: "c", Type: GGMLQ8_0, Dims: []int{64, 2}},
			{Name: "d", Type: GGMLBF16, Dims: []int{1, 1, 1, 3}},
			{Name: "e", Type: GGMLI64, Dims: []int{}},
		}
		path, data := writeFile(t, md, tensors)
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		want := int(align)
		if want == 0 {
			want = DefaultAlignment
		}
		if f.Alignment != want || f.Version != Version {
			t.Errorf("alignment %d version %d", f.Alignment, f.Version)
		}
		for i, tt := range tensors {
			got := f.Tensors[i]
			if got.Name != tt.Name || got.Type != tt.Type || !cmp.Equal(got.Dims, tt.Dims) || got.Offset%int64(want) != 0 {
				t.Errorf("tensor %d: %+v, want %+v aligned to %d", i, got, tt, want)
			}
			raw, err := f.Raw(tt.Name)
			if err != nil || !bytes.Equal(raw, data[tt.Name]) {
				t.Errorf("tensor %s: data differ (%v)", tt.Name, err)
			}
		}
		if st, _ := os.Stat(path); st.Size()%int64(want) != 0 {
			t.Errorf("file size %d not padded to %d", st.Size(), want)
		}
		if s := f.Tensors[3].Shape(); !cmp.Equal(s, []int{3, 1, 1, 1}) {
			t.Errorf("shape %v", s)
		}
		f.Close()
	}
}

func TestDequantizeQ8_0(t *testing.T) {
	blk := make([]byte, 34)
	binary.LittleEndian.PutUint16(blk, 0x3800) // 0.5 in float16
	for j := 0; j < 32; j++ {
		blk[2+j] = byte(int8(j - 16))
	}
	v, err := DequantizeQ8_0(append(blk, blk...))
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if want := float32((i%32)-16) * 0.5; x != want {
			t.Fatalf("element %d = %v, want %v", i, x, want)
		}
	}
	if _, err := DequantizeQ8_0(blk[:33]); err == nil {
		t.Error("partial block accepted")
	}
}

// valid returns the bytes of a small valid file.
func valid(t testing.TB) []byte {
	path, _ := writeFile(t, Metadata{{"general.architecture", String("llama")}, {"arr", Array(TypeString, []Value{String("x")})}},
		[]WriteTensor{{Name: "w", Type: GGMLF32, Dims: []int{4, 2}}, {Name: "q", Type: GGMLQ8_0, Dims: []int{32}}})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEveryTruncationRefused(t *testing.T) {
	b := valid(t)
	// The last tensor's padding is not needed to read it.
	f, _ := Parse(bytes.NewReader(b), int64(len(b)))
	last := f.Tensors[len(f.Tensors)-1]
	for n := 0; n < int(last.Offset+last.Size); n++ {
		if _, err := Parse(bytes.NewReader(b[:n]), int64(n)); err == nil {
			t.Fatalf("a file cut to %d of %d bytes was accepted", n, len(b))
		} else if strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error: %q", err)
		}
	}
}

// patch returns a copy of b with v written at off.
func patch(b []byte, off int, v []byte) []byte {
	c := append([]byte(nil), b...)
	copy(c[off:], v)
	return c
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// header encodes a file header by hand: version, counts, then body.
func header(version uint32, nt, nkv uint64, body ...[]byte) []byte {
	b := append([]byte(Magic), u32(version)...)
	b = append(b, u64(nt)...)
	b = append(b, u64(nkv)...)
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

func str(s string) []byte { return append(u64(uint64(len(s))), s...) }

func TestCorruptFilesRefused(t *testing.T) {
	good := valid(t)
	tensorAt := bytes.Index(good, []byte("\x01\x00\x00\x00\x00\x00\x00\x00w")) // name length 1, "w"
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "shorter than the 24-byte GGUF header"},
		{"magic", patch(good, 0, []byte("GGUX")), "not a GGUF file"},
		{"v1", patch(good, 4, u32(1)), "version 1 is not supported"},
		{"big-endian", patch(good, 4, []byte{0, 0, 0, 3}), "big-endian"},
		{"v9", patch(good, 4, u32(9)), "version 9"},
		{"kv count", patch(good, 16, u64(1<<60)), "metadata count"},
		{"tensor count", patch(good, 8, u64(1<<62)), "tensor count"},
		{"array length", header(3, 0, 1, str("k"), u32(uint32(TypeArray)), u32(uint32(TypeUint32)), u64(1<<40)), "array length"},
		{"string length", header(3, 0, 1, str("k"), u32(uint32(TypeString)), u64(1<<50)), "claims"},
		{"value type", header(3, 0, 1, str("k"), u32(99)), "unknown value type 99"},
		{"element type", header(3, 0, 1, str("k"), u32(uint32(TypeArray)), u32(77), u64(0)), "unknown array element type 77"},
		{"nested", header(3, 0, 1, str("k"), u32(uint32(TypeArray)), u32(uint32(TypeArray)), u64(1), u32(uint32(TypeUint8)), u64(0)), "nested arrays"},
		{"bool", header(3, 0, 1, str("k"), u32(uint32(TypeBool)), []byte{2}), "neither 0 nor 1"},
		{"duplicate key", header(3, 0, 2, str("k"), u32(uint32(TypeUint8)), []byte{1}, str("k"), u32(uint32(TypeUint8)), []byte{1}), "appears twice"},
		{"alignment type", header(3, 0, 1, str(KeyAlignment), u32(uint32(TypeUint64)), u64(32)), "want uint32"},
		{"alignment value", header(3, 0, 1, str(KeyAlignment), u32(uint32(TypeUint32)), u32(48)), "not a power of two"},
		{"dims", patch(good, tensorAt+9, u32(5)), "5 dimensions"},
		{"type", patch(good, tensorAt+9+4+16, u32(12)), `tensor "w" has type Q4_K, which is not supported`},
		{"unknown type", patch(good, tensorAt+9+4+16, u32(1000)), "ggml type 1000"},
		{"offset aligned", patch(good, tensorAt+9+4+16+4, u64(4)), "not a multiple of the alignment"},
		{"offset past end", patch(good, tensorAt+9+4+16+4, u64(1<<20)), "truncated: tensor \"w\""},
		{"huge dims", patch(good, tensorAt+9+4, u64(1<<62)), "dimensions too large"},
		{"q8 row", header(3, 1, 0, str("q"), u32(1), u64(31), u32(uint32(GGMLQ8_0)), u64(0)), "not a multiple of the Q8_0 block"},
		{"overlap", header(3, 2, 0, str("a"), u32(1), u64(8), u32(0), u64(0), str("b"), u32(1), u64(8), u32(0), u64(0), make([]byte, 64)), "overlap"},
		{"duplicate tensor", header(3, 2, 0, str("a"), u32(1), u64(8), u32(0), u64(0), str("a"), u32(1), u64(8), u32(0), u64(32), make([]byte, 64)), "appears twice"},
	} {
		path := filepath.Join(t.TempDir(), "bad.gguf")
		if err := os.WriteFile(path, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		switch {
		case err == nil:
			t.Errorf("%s: accepted", c.name)
		case !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), path+": gguf: ") || strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error %q, want one line naming the file and %q", c.name, err, c.want)
		}
	}
}

func TestWriterChecks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.gguf")
	for _, c := range []struct {
		tensors []WriteTensor
		want    string
	}{
		{[]WriteTensor{{Name: strings.Repeat("n", 64), Type: GGMLF32, Dims: []int{1}}}, "want 1 to 63 bytes"},
		{[]WriteTensor{{Name: "a", Type: GGMLF32, Dims: []int{1}}, {Name: "a", Type: GGMLF32, Dims: []int{1}}}, "given twice"},
		{[]WriteTensor{{Name: "a", Type: 12, Dims: []int{256}}}, "Q4_K is not one this package writes"},
		{[]WriteTensor{{Name: "a", Type: GGMLQ8_0, Dims: []int{31}}}, "not a multiple"},
	} {
		if _, err := Create(path, nil, c.tensors, formatbase.WriteOptions{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.tensors, err, c.want)
		}
	}
	w, err := Create(path, nil, []WriteTensor{{Name: "a", Type: GGMLF32, Dims: []int{2}}, {Name: "b", Type: GGMLF32, Dims: []int{1}}}, formatbase.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", make([]byte, 4)); err == nil || !strings.Contains(err.Error(), `"a" comes next`) {
		t.Errorf("out of order: %v", err)
	}
	if err := w.Write("a", make([]byte, 4)); err == nil || !strings.Contains(err.Error(), "need 8") {
		t.Errorf("short data: %v", err)
	}
	if err := w.Write("a", make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "1 of 2 tensors") {
		t.Errorf("incomplete close: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("an incomplete file was left: %v", err)
	}
}

func TestNames(t *testing.T) {
	for hf, g := range map[string]string{
		"model.embed_tokens.weight":                      "token_embd.weight",
		"lm_head.weight":                                 "output.weight",
		"model.norm.weight":                              "output_norm.weight",
		"model.layers.0.input_layernorm.weight":          "blk.0.attn_norm.weight",
		"model.layers.11.self_attn.q_proj.weight":        "blk.11.attn_q.weight",
		"model.layers.3.self_attn.k_proj.bias":           "blk.3.attn_k.bias",
		"model.layers.2.self_attn.v_proj.bias":           "blk.2.attn_v.bias",
		"model.layers.2.self_attn.o_proj.weight":         "blk.2.attn_output.weight",
		"model.layers.1.post_attention_layernorm.weight": "blk.1.ffn_norm.weight",
		"model.layers.1.mlp.gate_proj.weight":            "blk.1.ffn_gate.weight",
		"model.layers.1.mlp.up_proj.weight":              "blk.1.ffn_up.weight",
		"model.layers.1.mlp.down_proj.weight":            "blk.1.ffn_down.weight",
		"gguf.rope_freqs.weight":                         "rope_freqs.weight",
		"gguf.blk.01.attn_q.weight":                      "blk.01.attn_q.weight",
	} {
		if got, ok := GGUFName(hf); !ok || got != g {
			t.Errorf("GGUFName(%q) = %q, %v; want %q", hf, got, ok, g)
		}
		if got := HFName(g); got != hf {
			t.Errorf("HFName(%q) = %q, want %q", g, got, hf)
		}
	}
	for _, n := range []string{"llama2c.freq_cis_real", "model.layers.x.mlp.up_proj.weight", "gguf."} {
		if g, ok := GGUFName(n); ok {
			t.Errorf("GGUFName(%q) = %q, want none", n, g)
		}
	}
}

// TestPermute checks the Q/K permutation against convert_hf_to_gguf.py's
// LlamaModel.permute written out: w.reshape(heads, 2, rows/heads/2,
// cols).swapaxes(1, 2), so GGUF row h*hs + 2i + t is Hugging Face row
// h*hs + t*hs/2 + i.
func TestPermute(t *testing.T) {
	const heads, kvHeads, hs, cols = 4, 2, 6, 3
	p := Permuter{Arch: ArchLlama, Heads: heads, KVHeads: kvHeads}
	for _, c := range []struct {
		name  string
		heads int
		shape []int
	}{
		{"model.layers.0.self_attn.q_proj.weight", heads, []int{heads * hs, cols}},
		{"model.layers.0.self_attn.k_proj.weight", kvHeads, []int{kvHeads * hs, cols}},
		{"model.layers.0.self_attn.q_proj.bias", heads, []int{heads * hs}},
	} {
		rows := c.shape[0]
		rowLen := 1
		if len(c.shape) == 2 {
			rowLen = cols
		}
		hf := make([]byte, rows*rowLen)
		for i := range hf {
			hf[i] = byte(i)
		}
		g, err := p.ToGGUF(c.name, hf, c.shape, 1)
		if err != nil {
			t.Fatal(err)
		}
		for h := 0; h < c.heads; h++ {
			for i := 0; i < hs/2; i++ {
				for s := 0; s < 2; s++ {
					gr, hr := h*hs+2*i+s, h*hs+s*hs/2+i
					if !bytes.Equal(g[gr*rowLen:(gr+1)*rowLen], hf[hr*rowLen:(hr+1)*rowLen]) {
						t.Fatalf("%s: GGUF row %d is not HF row %d", c.name, gr, hr)
					}
				}
			}
		}
		back, _ := p.ToHF(c.name, g, c.shape, 1)
		if !bytes.Equal(back, hf) {
			t.Errorf("%s: ToHF does not undo ToGGUF", c.name)
		}
		q := Permuter{Arch: ArchQwen2, Heads: heads, KVHeads: kvHeads}
		if same, _ := q.ToGGUF(c.name, hf, c.shape, 1); !bytes.Equal(same, hf) {
			t.Errorf("%s: qwen2 permuted", c.name)
		}
	}
	if _, err := p.ToGGUF("model.layers.0.self_attn.q_proj.weight", make([]byte, 10), []int{10, 1}, 1); err == nil {
		t.Error("rows that do not split into heads accepted")
	}
}

// TestVersion2 reads a version 2 file: the same layout as version 3.
func TestVersion2(t *testing.T) {
	b := patch(valid(t), 4, u32(2))
	h, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil || h.Version != 2 || len(h.Tensors) != 2 {
		t.Fatalf("version 2: %+v, %v", h, err)
	}
}
