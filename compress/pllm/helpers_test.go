package pllm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"pocketllm-native/compress/fp16"
)

// specSection is one section to be framed by buildFile.
type specSection struct {
	kind uint32
	name string
	desc string
	body []byte
}

// buildFile frames sections exactly as FORMAT.md describes, independently of
// Writer, appending the index and trailer.
func buildFile(secs []specSection) []byte { return buildFileWith(secs, nil) }

// buildFileWith is buildFile with a hook that may alter the index body
// before it is framed, to make consistent but hostile files.
func buildFileWith(secs []specSection, editIndex func([]byte) []byte) []byte {
	le := binary.LittleEndian
	out := []byte("PLLM\r\n\x1a\n")
	out = le.AppendUint32(out, 1)
	out = le.AppendUint32(out, 0)
	frame := func(kind uint32, name, desc string, body []byte) []byte {
		var s []byte
		s = le.AppendUint32(s, kind)
		s = le.AppendUint32(s, uint32(len(name)))
		s = le.AppendUint32(s, uint32(len(desc)))
		s = le.AppendUint32(s, 0)
		s = le.AppendUint64(s, uint64(len(body)))
		s = append(s, name...)
		s = append(s, desc...)
		s = append(s, body...)
		return le.AppendUint32(s, crc32.Checksum(s, crc32.MakeTable(crc32.Castagnoli)))
	}
	var index []byte
	for _, sec := range secs {
		f := frame(sec.kind, sec.name, sec.desc, sec.body)
		index = le.AppendUint64(index, uint64(len(out)))
		index = le.AppendUint64(index, uint64(len(f)))
		index = le.AppendUint32(index, sec.kind)
		index = le.AppendUint32(index, 0)
		out = append(out, f...)
	}
	ixOff := len(out)
	if editIndex != nil {
		index = editIndex(index)
	}
	out = append(out, frame(5, "", "", index)...)
	out = le.AppendUint64(out, uint64(ixOff))
	return append(out, "PLLM-END"...)
}

// sample is a small but complete set of inputs exercising every section kind
// and every encoding.
type sample struct {
	meta   Meta
	groups []Group
	raws   []TensorInfo
	data   [][]byte
	sides  []SideFile
}

// exactF16 returns n values exactly representable in float16, so a round
// trip through the file returns them unchanged.
func exactF16(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = fp16.ToFloat32(uint16(rng.IntN(0x7c00)) | uint16(rng.IntN(2))<<15)
	}
	return v
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func randUints(rng *rand.Rand, n, bits int) []uint32 {
	v := make([]uint32, n)
	for i := range v {
		v[i] = uint32(rng.Uint64() & (1<<bits - 1))
	}
	return v
}

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newSample builds the sample; size scales the array lengths.
func newSample(t testing.TB, size int) sample {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, 4*size)
	for i := range raw {
		raw[i] = byte(rng.IntN(256))
	}
	emb := make([]byte, 2*3*size)
	for i := range emb {
		emb[i] = byte(rng.IntN(256))
	}
	n := 2 * size
	return sample{
		meta: Meta{
			Tool: "pocketllm-native test", SourceFormat: "safetensors",
			ModelConfig: mustJSON(t, map[string]any{"hidden_size": 8, "vocab_size": 3}),
			Settings:    mustJSON(t, map[string]any{"method": "pocketllm", "seed": 7}),
		},
		groups: []Group{{
			Name: "layers.q", Method: "pocketllm",
			Params: mustJSON(t, map[string]any{"dim": 4, "latent": 4, "hidden": 2, "codebook_size": 32}),
			Members: []Member{
				{Name: "model.layers.0.self_attn.q_proj.weight", Shape: []int{size, 4}, DType: "F32", Params: json.RawMessage(`{"nmse":0.01}`)},
				{Name: "model.layers.1.self_attn.q_proj.weight", Shape: []int{size, 4}, DType: "F32"},
			},
			Arrays: []Array{
				UintArray("indices", 5, randUints(rng, n+1, 5)),
				F16Array("codebook", exactF16(rng, 32*4)),
				F32Array("decoder_mlp", randFloats(rng, 3*size+1)),
				F32Array("scales", randFloats(rng, 2)),
				BytesArray("blob", []byte("opaque\x00bytes")),
			},
		}, {
			Name: "single", Method: "rtn",
			Members: []Member{{Name: "model.layers.0.mlp.down_proj.weight", Shape: []int{3, size}, DType: "BF16"}},
			Arrays:  []Array{UintArray("codes", 3, randUints(rng, 3*size, 3)), F16Array("scales", exactF16(rng, 3))},
		}},
		raws:  []TensorInfo{{Name: "model.norm.weight", DType: "F32", Shape: []int{size}}, {Name: "model.embed_tokens.weight", DType: "F16", Shape: []int{3, size}}},
		data:  [][]byte{raw, emb},
		sides: []SideFile{{Name: "config.json", Data: []byte(`{"hidden_size":8}`)}, {Name: "tokenizer.model", Data: []byte{0, 1, 2, 3}}, {Name: "empty.txt", Data: []byte{}}},
	}
}

// write writes the sample to path, interleaving section kinds.
func (s sample) write(t testing.TB, path string) {
	t.Helper()
	w, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(w.WriteSideFile(s.sides[0]))
	check(w.WriteRaw(s.raws[0], s.data[0]))
	check(w.WriteGroup(s.groups[0]))
	check(w.WriteMeta(s.meta))
	check(w.WriteRaw(s.raws[1], s.data[1]))
	check(w.WriteGroup(s.groups[1]))
	for _, f := range s.sides[1:] {
		check(w.WriteSideFile(f))
	}
	check(w.Close())
}

func (s sample) bytes(t testing.TB) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.pllm")
	s.write(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readAll opens data and reads every part of it, returning the first error.
func readAll(data []byte) error {
	r, err := NewReader(bytes.NewReader(data), int64(len(data)), "mem.pllm")
	if err != nil {
		return err
	}
	for i := range r.Groups() {
		if _, err := r.ReadGroup(i); err != nil {
			return err
		}
	}
	for _, ti := range r.RawTensors() {
		if _, err := r.ReadRaw(ti.Name); err != nil {
			return err
		}
	}
	if _, err := r.SideFiles(); err != nil {
		return err
	}
	return r.Layout().Check()
}

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
