package safetensors

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseHeader checks that Parse never panics and never accepts a header
// that breaks the format's rules: every accepted header is re-checked here
// with encoding/json and the rules restated independently, and must survive
// a write/parse round trip unchanged.
func FuzzParseHeader(f *testing.F) {
	seeds := []struct {
		header  string
		dataLen int64
	}{
		{`{}`, 0},
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8},
		{`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}       `, 16},
		{`{"z":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}`, 3},
		{`{"a":{"dtype":"F16","shape":[1,1,1],"data_offsets":[2,4]},"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}`, 4},
		{`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2},
		{`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3},
		{`{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8},
		{`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8},
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":0}}`, 8},
		{`{"__metadata__":{"k":1}}`, 0},
		{`{"a":{"dtype":"F32","shape":[72057594037927936,256],"data_offsets":[0,8]}}`, 8},
		{`{"a\u0000":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}`, 8},
		{`{"\ud83d\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1},
		{`{"\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1},
		{`[]`, 0},
		{"", 0},
	}
	for _, s := range seeds {
		f.Add([]byte(s.header), s.dataLen)
	}
	f.Fuzz(func(t *testing.T, header []byte, dataLen int64) {
		h, err := Parse(header, dataLen)
		if err != nil {
			return
		}
		recheck(t, header, dataLen, h)
		// What the writer would produce from the parsed header parses back
		// to the same header.
		enc := encodeHeader(h.Tensors, h.Metadata)
		h2, err := Parse(enc, dataLen)
		if err != nil {
			t.Fatalf("re-encoded header refused: %v\n%s", err, enc)
		}
		if diff := cmp.Diff(h, h2); diff != "" {
			t.Fatalf("re-encoded header differs (-first +second):\n%s", diff)
		}
	})
}

// recheck restates the format rules with encoding/json and plain loops.
func recheck(t *testing.T, header []byte, dataLen int64, h *Header) {
	t.Helper()
	if len(header) == 0 || header[0] != '{' || !json.Valid(header) || !utf8.Valid(header) {
		t.Fatalf("accepted a header that is not one UTF-8 JSON object starting at byte 0: %q", header)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(header, &top); err != nil {
		t.Fatalf("accepted a header that is not a JSON object: %v", err)
	}
	nTensors := len(top)
	if raw, ok := top[MetadataKey]; ok {
		nTensors--
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil || m == nil {
			t.Fatalf("accepted __metadata__ that is not a string map: %s", raw)
		}
		if !cmp.Equal(m, h.Metadata) {
			t.Fatalf("metadata %v, header says %v", h.Metadata, m)
		}
	} else if h.Metadata != nil {
		t.Fatalf("metadata %v without __metadata__ in the header", h.Metadata)
	}
	// A duplicate key collapses in the map, so counts differ.
	if nTensors != len(h.Tensors) {
		t.Fatalf("header has %d distinct tensor keys, Parse returned %d tensors", nTensors, len(h.Tensors))
	}
	sizes := map[string]int64{"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
		"I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
		"C64": 8, "F64": 8, "I64": 8, "U64": 8}
	var pos int64
	for _, ts := range h.Tensors {
		raw, ok := top[ts.Name]
		if !ok || ts.Name == "" || ts.Name == MetadataKey {
			t.Fatalf("tensor %q not a tensor key of the header", ts.Name)
		}
		var e struct {
			DType       string  `json:"dtype"`
			Shape       []int64 `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("tensor %q: accepted entry %s: %v", ts.Name, raw, err)
		}
		var fields map[string]json.RawMessage
		json.Unmarshal(raw, &fields)
		if len(fields) != 3 || e.Shape == nil || len(e.DataOffsets) != 2 {
			t.Fatalf("tensor %q: accepted entry without exactly dtype, shape and two offsets: %s", ts.Name, raw)
		}
		size, known := sizes[e.DType]
		if !known || string(ts.DType) != e.DType {
			t.Fatalf("tensor %q: dtype %q accepted as %q", ts.Name, e.DType, ts.DType)
		}
		if len(e.Shape) != len(ts.Shape) {
			t.Fatalf("tensor %q: shape %v returned as %v", ts.Name, e.Shape, ts.Shape)
		}
		n := size
		for i, d := range e.Shape {
			if d < 0 || int64(ts.Shape[i]) != d {
				t.Fatalf("tensor %q: shape %v returned as %v", ts.Name, e.Shape, ts.Shape)
			}
			if d != 0 && n > (1<<62)/d {
				t.Fatalf("tensor %q: accepted an overflowing shape %v", ts.Name, e.Shape)
			}
			n *= d
		}
		if e.DataOffsets[0] != ts.Begin || e.DataOffsets[1] != ts.End {
			t.Fatalf("tensor %q: offsets %v returned as [%d %d]", ts.Name, e.DataOffsets, ts.Begin, ts.End)
		}
		if ts.End-ts.Begin != n {
			t.Fatalf("tensor %q: %d bytes for shape %v of %s, want %d", ts.Name, ts.End-ts.Begin, e.Shape, e.DType, n)
		}
		if ts.Begin != pos {
			t.Fatalf("tensor %q begins at %d, previous tensor ended at %d", ts.Name, ts.Begin, pos)
		}
		pos = ts.End
	}
	if pos != dataLen {
		t.Fatalf("tensors end at %d, data area is %d bytes", pos, dataLen)
	}
}
