package pllm

import (
	"math"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader: it must return an error or a
// file whose every part reads back and whose layout adds up, never panic.
// The seeds are hand-framed and a few hundred bytes at most: the fuzzer
// mutates and minimises inputs the size of its seeds, and kilobyte seeds
// spent its time minimising instead of fuzzing.
func FuzzOpen(f *testing.F) {
	f.Add(buildFile([]specSection{metaSec()}))
	f.Add(buildFile([]specSection{
		metaSec(),
		{2, "g", okGroup, []byte{0x11, 0x01}},
		{2, "h", `{"method":"m","members":[{"name":"v","shape":[1,3],"dtype":"BF16","params":{"s":1}}],"arrays":[{"name":"a","encoding":"f16","count":2},{"name":"b","encoding":"f32","count":1},{"name":"c","encoding":"bytes","count":2},{"name":"d","encoding":"uint","bits":32,"count":1}]}`,
			[]byte{0, 0x3c, 0, 0xc0, 0, 0, 0x80, 0x3f, 'h', 'i', 1, 2, 3, 4}},
		{3, "r", `{"dtype":"F16","shape":[2]}`, []byte{0, 0x3c, 0, 0}},
		{4, "config.json", `{}`, []byte("{}")},
	}))
	f.Add(buildFile([]specSection{metaSec(), {2, "g", okGroup, []byte{0x11, 0x81}}}))
	f.Add([]byte{})
	f.Add([]byte("PLLM\r\n\x1a\n\x01\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := readAll(data); err != nil {
			return
		}
		r, err := NewReader(bytesReader(data), int64(len(data)), "fuzz.pllm")
		if err != nil {
			t.Fatalf("second open failed: %v", err)
		}
		if l := r.Layout(); l.FileSize != int64(len(data)) {
			t.Fatalf("layout file size %d, data %d", l.FileSize, len(data))
		}
	})
}

// FuzzContent frames arbitrary section content with correct CRCs and index,
// so the fuzzer reaches the descriptor and body validation behind the CRC
// that FuzzOpen's random bytes almost never pass.
func FuzzContent(f *testing.F) {
	f.Add(uint8(2), "g", okGroup, []byte{0x11, 0x01}, okMeta)
	f.Add(uint8(2), "h", `{"method":"m","params":{"dim":4},"members":[{"name":"v","shape":[1,3],"dtype":"BF16","params":{"s":1}}],"arrays":[{"name":"a","encoding":"f16","count":2},{"name":"b","encoding":"f32","count":1},{"name":"c","encoding":"bytes","count":2},{"name":"d","encoding":"uint","bits":32,"count":1}]}`,
		[]byte{0, 0x3c, 0, 0xc0, 0, 0, 0x80, 0x3f, 'h', 'i', 1, 2, 3, 4}, okMeta)
	f.Add(uint8(2), "g", `{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"uint","bits":7,"count":5}]}`, []byte{1, 2, 3, 4, 5}, `{"tool":"x","source_format":"llama2c","model_config":{"a":1},"settings":[1,2]}`)
	f.Add(uint8(3), "r", `{"dtype":"F16","shape":[2]}`, []byte{0, 0x3c, 0, 0}, okMeta)
	f.Add(uint8(4), "tokenizer.json", `{}`, []byte("{}"), okMeta)
	f.Add(uint8(1), "", okMeta, []byte{}, okMeta)
	f.Fuzz(func(t *testing.T, kind uint8, name, desc string, body []byte, meta string) {
		data := buildFile([]specSection{{1, "", meta, nil}, {uint32(kind), name, desc, body}})
		if err := readAll(data); err != nil {
			return
		}
		r, err := NewReader(bytesReader(data), int64(len(data)), "fuzz.pllm")
		if err != nil {
			t.Fatalf("second open failed: %v", err)
		}
		// Whatever was accepted must survive a rewrite unchanged.
		for i := range r.Groups() {
			g, err := r.ReadGroup(i)
			if err != nil {
				t.Fatal(err)
			}
			if err := rewriteGroup(t, r.Meta(), g); err != nil {
				t.Fatalf("accepted group does not rewrite: %v", err)
			}
		}
	})
}

// rewriteGroup writes g to a fresh file and checks it reads back equal.
func rewriteGroup(t *testing.T, m Meta, g Group) error {
	path := t.TempDir() + "/re.pllm"
	w, err := Create(path, false)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.WriteMeta(m); err != nil {
		return err
	}
	if err := w.WriteGroup(g); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	r, err := Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	back, err := r.ReadGroup(0)
	if err != nil {
		return err
	}
	if !groupsEqual(g, back) {
		t.Fatalf("group changed on rewrite:\n%+v\n%+v", g, back)
	}
	return nil
}

// groupsEqual compares groups bit-exactly (NaN payloads of f16 values are
// allowed to differ only where float16 cannot hold them: never, since read
// values came from float16).
func groupsEqual(a, b Group) bool {
	if a.Name != b.Name || a.Method != b.Method || string(a.Params) != string(b.Params) || len(a.Members) != len(b.Members) || len(a.Arrays) != len(b.Arrays) {
		return false
	}
	for i := range a.Members {
		x, y := a.Members[i], b.Members[i]
		if x.Name != y.Name || x.DType != y.DType || string(x.Params) != string(y.Params) || len(x.Shape) != len(y.Shape) {
			return false
		}
		for k := range x.Shape {
			if x.Shape[k] != y.Shape[k] {
				return false
			}
		}
	}
	for i := range a.Arrays {
		x, y := a.Arrays[i], b.Arrays[i]
		if x.Info() != y.Info() || len(x.Floats) != len(y.Floats) || string(x.Bytes) != string(y.Bytes) || len(x.Uints) != len(y.Uints) {
			return false
		}
		for k := range x.Floats {
			if math.Float32bits(x.Floats[k]) != math.Float32bits(y.Floats[k]) {
				return false
			}
		}
		for k := range x.Uints {
			if x.Uints[k] != y.Uints[k] {
				return false
			}
		}
	}
	return true
}
