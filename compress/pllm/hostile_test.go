package pllm

import (
	"encoding/binary"
	"strings"
	"testing"
)

const (
	okMeta  = `{"tool":"t","source_format":"s"}`
	okGroup = `{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"uint","bits":3,"count":3}]}`
)

func metaSec() specSection { return specSection{1, "", okMeta, nil} }

// TestHostileButConsistent feeds files whose framing and CRCs are all
// correct but whose content is not, as an attacker would make them.
func TestHostileButConsistent(t *testing.T) {
	group := func(desc string, body ...byte) specSection { return specSection{2, "g", desc, body} }
	cases := []struct {
		name string
		secs []specSection
		edit func([]byte) []byte
		want string // a fragment of the expected error
	}{
		{"no meta", []specSection{group(okGroup, 1, 1)}, nil, "no meta"},
		{"two metas", []specSection{metaSec(), metaSec()}, nil, "second meta"},
		{"meta unknown field", []specSection{{1, "", `{"tool":"t","extra":1}`, nil}}, nil, "unknown field"},
		{"meta trailing data", []specSection{{1, "", `{} {}`, nil}}, nil, "trailing"},
		{"meta not json", []specSection{{1, "", `{`, nil}}, nil, "descriptor"},
		{"meta body", []specSection{{1, "", okMeta, []byte{1}}}, nil, "body"},
		{"meta name", []specSection{{1, "x", okMeta, nil}}, nil, "name"},
		{"unknown kind", []specSection{metaSec(), {9, "x", `{}`, nil}}, nil, "kind"},
		{"second index", []specSection{metaSec(), {5, "", "", nil}}, nil, "kind"},
		{"group ok control", []specSection{metaSec(), group(okGroup, 0x11, 0x01)}, nil, ""},
		{"uint padding bits", []specSection{metaSec(), group(okGroup, 0x11, 0x81)}, nil, "unused bits"},
		{"body too long", []specSection{metaSec(), group(okGroup, 0x11, 0x01, 0)}, nil, "arrays need"},
		{"body too short", []specSection{metaSec(), group(okGroup, 0x11)}, nil, "arrays need"},
		{"huge count", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"f32","count":1099511627776}]}`, 1)}, nil, "arrays need"},
		{"overflowing count", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"f32","count":9223372036854775807}]}`, 1)}, nil, "count"},
		{"negative count", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"bytes","count":-1}]}`)}, nil, "count"},
		{"bits 0", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"uint","count":1}]}`, 0)}, nil, "bits"},
		{"bits 33", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"uint","bits":33,"count":1}]}`, 0, 0, 0, 0, 0)}, nil, "bits"},
		{"bits on f32", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"f32","bits":8,"count":1}]}`, 0, 0, 0, 0)}, nil, "bits"},
		{"unknown encoding", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"u","encoding":"f8","count":1}]}`, 0)}, nil, "encoding"},
		{"overflowing shape", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[4294967296,4294967296],"dtype":"F32"}],"arrays":[]}`)}, nil, "shape"},
		{"no members", []specSection{metaSec(), group(`{"method":"m","members":[],"arrays":[]}`)}, nil, "no members"},
		{"unknown member dtype", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"Q4"}],"arrays":[]}`)}, nil, "dtype"},
		{"duplicate member", []specSection{metaSec(), group(`{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"},{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[]}`)}, nil, "duplicate member"},
		{"duplicate group", []specSection{metaSec(), group(okGroup, 0x11, 0x01), group(okGroup, 0x11, 0x01)}, nil, "duplicate group"},
		{"member in two groups", []specSection{metaSec(), group(okGroup, 0x11, 0x01), {2, "h", okGroup, []byte{0x11, 0x01}}}, nil, "stored twice"},
		{"raw same as member", []specSection{metaSec(), group(okGroup, 0x11, 0x01), {3, "w", `{"dtype":"U8","shape":[1]}`, []byte{1}}}, nil, "stored twice"},
		{"group bad utf8 name", []specSection{metaSec(), {2, "g\xff", okGroup, []byte{0x11, 0x01}}}, nil, "UTF-8"},
		{"group empty name", []specSection{metaSec(), {2, "", okGroup, []byte{0x11, 0x01}}}, nil, "empty"},
		{"raw size mismatch", []specSection{metaSec(), {3, "r", `{"dtype":"F32","shape":[2]}`, []byte{1, 2, 3, 4}}}, nil, "needs 8 bytes"},
		{"raw unknown dtype", []specSection{metaSec(), {3, "r", `{"dtype":"F7","shape":[1]}`, []byte{1}}}, nil, "dtype"},
		{"raw negative dim", []specSection{metaSec(), {3, "r", `{"dtype":"U8","shape":[-1]}`, nil}}, nil, "shape"},
		{"raw twice", []specSection{metaSec(), {3, "r", `{"dtype":"U8","shape":[1]}`, []byte{1}}, {3, "r", `{"dtype":"U8","shape":[1]}`, []byte{1}}}, nil, "stored twice"},
		{"side escapes", []specSection{metaSec(), {4, "../x", `{}`, nil}}, nil, "side file name"},
		{"side absolute", []specSection{metaSec(), {4, "/etc/passwd", `{}`, nil}}, nil, "side file name"},
		{"side dotdot", []specSection{metaSec(), {4, "..", `{}`, nil}}, nil, "side file name"},
		{"side control char", []specSection{metaSec(), {4, "a\nb", `{}`, nil}}, nil, "side file name"},
		{"side twice", []specSection{metaSec(), {4, "a", `{}`, nil}, {4, "a", `{}`, nil}}, nil, "duplicate side"},
		{"side unknown field", []specSection{metaSec(), {4, "a", `{"x":1}`, nil}}, nil, "unknown field"},
		{"index kind mismatch", []specSection{metaSec(), {4, "a", `{}`, nil}}, func(ix []byte) []byte {
			binary.LittleEndian.PutUint32(ix[24+16:], 3)
			return ix
		}, "index says"},
		{"index reserved", []specSection{metaSec()}, func(ix []byte) []byte {
			ix[20] = 1
			return ix
		}, "reserved"},
		{"index gap", []specSection{metaSec(), {4, "a", `{}`, nil}}, func(ix []byte) []byte {
			return ix[:24] // the side section is not listed
		}, "sections end"},
		{"index reordered", []specSection{metaSec(), {4, "a", `{}`, nil}}, func(ix []byte) []byte {
			return append(append([]byte{}, ix[24:]...), ix[:24]...)
		}, "contiguous"},
		{"index size too big", []specSection{metaSec()}, func(ix []byte) []byte {
			binary.LittleEndian.PutUint64(ix[8:], 1<<62)
			return ix
		}, "does not fit"},
		{"index offset huge", []specSection{metaSec()}, func(ix []byte) []byte {
			binary.LittleEndian.PutUint64(ix[0:], 1<<63)
			return ix
		}, "out of range"},
		{"index entry for itself", []specSection{metaSec()}, func(ix []byte) []byte {
			binary.LittleEndian.PutUint32(ix[16:], 5)
			return ix
		}, "kind"},
		{"empty index", []specSection{metaSec()}, func([]byte) []byte { return nil }, "sections end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readAll(buildFileWith(c.secs, c.edit))
			if c.want == "" {
				if err != nil {
					t.Fatalf("control case fails: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if !strings.Contains(err.Error(), "mem.pllm") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// TestHostileFraming alters framing fields and recomputes the CRCs that
// cover them, so only the bound checks can catch the problem.
func TestHostileFraming(t *testing.T) {
	base := buildFile([]specSection{metaSec(), {4, "a", `{}`, []byte("xyz")}})
	le := binary.LittleEndian
	metaOff := FileHeaderSize
	reCRC := func(b []byte, off, size int) {
		le.PutUint32(b[off+size-4:], crcOf(b[off:off+size-4]))
	}
	metaSize := SectionHeaderSize + len(okMeta) + SectionCRCSize
	cases := []struct {
		name string
		edit func(b []byte)
		want string
	}{
		{"version 2", func(b []byte) { le.PutUint32(b[8:], 2) }, "version 2"},
		{"header flags", func(b []byte) { b[12] = 1 }, "flags"},
		{"section flags", func(b []byte) { b[metaOff+12] = 1; reCRC(b, metaOff, metaSize) }, "flags"},
		{"name too long", func(b []byte) { le.PutUint32(b[metaOff+4:], MaxNameLen+1); reCRC(b, metaOff, metaSize) }, "limit"},
		{"descriptor too long", func(b []byte) { le.PutUint32(b[metaOff+8:], MaxDescriptorLen+1); reCRC(b, metaOff, metaSize) }, "limit"},
		{"body huge", func(b []byte) { le.PutUint64(b[metaOff+16:], 1<<63); reCRC(b, metaOff, metaSize) }, "add up"},
		{"lengths shifted", func(b []byte) {
			le.PutUint32(b[metaOff+8:], uint32(len(okMeta)-1))
			le.PutUint64(b[metaOff+16:], 1)
			reCRC(b, metaOff, metaSize)
		}, "body of 1"},
		{"trailer offset before header", func(b []byte) { le.PutUint64(b[len(b)-16:], 3) }, "index offset"},
		{"trailer offset at meta", func(b []byte) { le.PutUint64(b[len(b)-16:], FileHeaderSize) }, "expected index"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := append([]byte{}, base...)
			c.edit(b)
			err := readAll(b)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if err := readAll(base); err != nil {
		t.Fatalf("unaltered file: %v", err)
	}
}

func TestParamsReadCompact(t *testing.T) {
	desc := `{"method":"m","params":{ "dim" : 4 },"members":[{"name":"w","shape":[2],"dtype":"F32","params":[ 1, 2 ]}],"arrays":[]}`
	data := buildFile([]specSection{{1, "", `{"tool":"t","source_format":"s","settings":{ "a" : [ 1 ] }}`, nil}, {2, "g", desc, nil}})
	r, err := NewReader(bytesReader(data), int64(len(data)), "mem.pllm")
	if err != nil {
		t.Fatal(err)
	}
	g := r.Groups()[0]
	if string(g.Params) != `{"dim":4}` || string(g.Members[0].Params) != `[1,2]` || string(r.Meta().Settings) != `{"a":[1]}` {
		t.Fatalf("params not compact: %s %s %s", g.Params, g.Members[0].Params, r.Meta().Settings)
	}
}

func TestIndexLargerThanSectionsCanFill(t *testing.T) {
	// 40 entries cannot describe sections in the 76 bytes before the index.
	data := buildFileWith([]specSection{metaSec()}, func(ix []byte) []byte {
		return append(ix, make([]byte, 39*IndexEntrySize)...)
	})
	err := readAll(data)
	if err == nil || !strings.Contains(err.Error(), "sections fit") {
		t.Fatalf("got %v", err)
	}
}

// TestOpenChecksUintPadding checks that Open itself, not only ReadGroup,
// rejects set padding bits, for arrays anywhere in a body.
func TestOpenChecksUintPadding(t *testing.T) {
	desc := `{"method":"m","members":[{"name":"w","shape":[2],"dtype":"F32"}],"arrays":[{"name":"a","encoding":"bytes","count":2},{"name":"u","encoding":"uint","bits":3,"count":3},{"name":"v","encoding":"uint","bits":4,"count":2},{"name":"z","encoding":"uint","bits":5,"count":1}]}`
	good := []byte{0xff, 0xff, 0xff, 0x01, 0xff, 0x1f}
	data := buildFile([]specSection{metaSec(), {2, "g", desc, good}})
	if _, err := NewReader(bytesReader(data), int64(len(data)), "mem.pllm"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{
		{0xff, 0xff, 0xff, 0x03, 0xff, 0x1f},
		{0xff, 0xff, 0xff, 0x01, 0xff, 0x3f},
		{0xff, 0xff, 0xff, 0x81, 0xff, 0x9f},
	} {
		data := buildFile([]specSection{metaSec(), {2, "g", desc, bad}})
		_, err := NewReader(bytesReader(data), int64(len(data)), "mem.pllm")
		if err == nil || !strings.Contains(err.Error(), "unused bits") {
			t.Errorf("body % x: %v", bad, err)
		}
	}
}
