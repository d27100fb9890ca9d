package gguf

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzGGUF checks that Parse never panics and never accepts a file that
// breaks the rules: every accepted tensor lies aligned inside the file and
// apart from the others, and what the writer makes of the parsed header
// parses back to the same metadata and tensors.
func FuzzGGUF(f *testing.F) {
	f.Add(valid(f))
	enc, _ := EncodeMetadata(allTypes())
	f.Add(enc)
	f.Add(header(2, 1, 1, str(KeyAlignment), u32(uint32(TypeUint32)), u32(8), str("t"), u32(2), u64(2), u64(1), u32(uint32(GGMLF16)), u64(0), make([]byte, 8)))
	f.Add(header(3, 0, 1, str("k"), u32(uint32(TypeArray)), u32(uint32(TypeString)), u64(2), str("a"), str("bc")))
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Parse(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		var tensors []WriteTensor
		for i, ti := range h.Tensors {
			if ti.Offset < h.DataOffset || ti.Offset+ti.Size > int64(len(data)) || (ti.Offset-h.DataOffset)%int64(h.Alignment) != 0 {
				t.Fatalf("tensor %d %+v outside the data section or misaligned", i, ti)
			}
			for j := range i {
				o := h.Tensors[j]
				if ti.Size > 0 && o.Size > 0 && ti.Offset < o.Offset+o.Size && o.Offset < ti.Offset+ti.Size {
					t.Fatalf("tensors %d and %d overlap", i, j)
				}
			}
			tensors = append(tensors, WriteTensor{Name: ti.Name, Type: ti.Type, Dims: ti.Dims})
		}
		hdr, sizes, _, err := encodeHeader(h.Metadata, tensors)
		if err != nil {
			for _, tt := range tensors {
				if len(tt.Name) > MaxNameLen {
					return // read, but llama.cpp's limit keeps the writer from writing it
				}
			}
			t.Fatalf("parsed header does not re-encode: %v", err)
		}
		var body []byte
		for _, s := range sizes {
			body = append(body, make([]byte, s)...)
			end := int64(len(hdr) + len(body))
			body = append(body, make([]byte, alignUp(end, int64(h.Alignment))-end)...)
		}
		file := append(hdr, body...)
		h2, err := Parse(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatalf("re-encoded file refused: %v", err)
		}
		if diff := cmp.Diff(h.Metadata, h2.Metadata); diff != "" {
			t.Fatalf("metadata differs after re-encoding (-first +second):\n%s", diff)
		}
		for i := range h.Tensors {
			a, b := h.Tensors[i], h2.Tensors[i]
			if a.Name != b.Name || a.Type != b.Type || !cmp.Equal(a.Dims, b.Dims) || a.Size != b.Size {
				t.Fatalf("tensor %d differs after re-encoding: %+v vs %+v", i, a, b)
			}
		}
	})
}
