package pllm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/fp16"
	"pocketllm-native/internal/testfs"
)

func TestRoundTrip(t *testing.T) {
	s := newSample(t, 9)
	path := filepath.Join(t.TempDir(), "m.pllm")
	s.write(t, path)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	if d := cmp.Diff(s.meta, r.Meta()); d != "" {
		t.Errorf("meta (-want +got):\n%s", d)
	}
	infos := r.Groups()
	if len(infos) != len(s.groups) {
		t.Fatalf("%d groups, want %d", len(infos), len(s.groups))
	}
	for i, want := range s.groups {
		if d := cmp.Diff(want.Info(), infos[i]); d != "" {
			t.Errorf("group %d info (-want +got):\n%s", i, d)
		}
		got, err := r.ReadGroup(i)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("group %d (-want +got):\n%s", i, d)
		}
	}
	if _, err := r.ReadGroup(len(s.groups)); err == nil {
		t.Error("ReadGroup out of range: no error")
	}
	if d := cmp.Diff(s.raws, r.RawTensors()); d != "" {
		t.Errorf("raw tensors (-want +got):\n%s", d)
	}
	for i, ti := range s.raws {
		got, err := r.ReadRaw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, s.data[i]) {
			t.Errorf("raw %s: bytes differ", ti.Name)
		}
	}
	if _, err := r.ReadRaw("absent"); err == nil {
		t.Error("ReadRaw of an absent tensor: no error")
	}
	sides, err := r.SideFiles()
	if err != nil {
		t.Fatal(err)
	}
	// Side files come back in file order.
	wantSides := []SideFile{s.sides[0], s.sides[1], s.sides[2]}
	if d := cmp.Diff(wantSides, sides, cmp.Comparer(func(a, b []byte) bool { return bytes.Equal(a, b) })); d != "" {
		t.Errorf("side files (-want +got):\n%s", d)
	}
	if _, err := r.ReadSideFile("absent"); err == nil {
		t.Error("ReadSideFile of an absent file: no error")
	}
}

// referencePack packs values bit by bit as FORMAT.md words it: bit j of
// value i is bit i*bits+j of the stream, stream bit k is bit k%8 of byte k/8.
func referencePack(v []uint32, bits int) []byte {
	out := make([]byte, (len(v)*bits+7)/8)
	for i, x := range v {
		for j := 0; j < bits; j++ {
			if x>>j&1 == 1 {
				k := i*bits + j
				out[k/8] |= 1 << (k % 8)
			}
		}
	}
	return out
}

func TestUintEveryWidth(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	for bits := 1; bits <= 32; bits++ {
		for _, n := range []int{0, 1, 2, 7, 8, 9, 13, 255} {
			v := randUints(rng, n, bits)
			if n > 2 {
				v[0] = uint32(1<<bits - 1) // the largest value fits
				v[1] = 0
			}
			path := filepath.Join(dir, "u.pllm")
			w, err := Create(path, true)
			if err != nil {
				t.Fatal(err)
			}
			g := Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{1}, DType: "F32"}}, Arrays: []Array{UintArray("u", bits, v)}}
			if err := w.WriteGroup(g); err != nil {
				t.Fatal(err)
			}
			if err := w.WriteMeta(Meta{}); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path)
			if err != nil {
				t.Fatalf("bits %d n %d: %v", bits, n, err)
			}
			got, err := r.ReadGroup(0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Arrays[0].Uints, v) || got.Arrays[0].Bits != bits || len(got.Arrays[0].Uints) != n {
				t.Fatalf("bits %d n %d: values differ", bits, n)
			}
			al := r.Layout().Sections[0].Arrays[0]
			r.Close()
			file, _ := os.ReadFile(path)
			stored := file[al.Offset : al.Offset+al.Size]
			if want := referencePack(v, bits); !bytes.Equal(stored, want) {
				t.Fatalf("bits %d n %d: stored % x, want % x", bits, n, stored, want)
			}
		}
	}
}

func TestF16Rounding(t *testing.T) {
	cases := []struct {
		in   float32
		bits uint16
	}{
		{1, 0x3c00},
		{1 + 1.0/2048, 0x3c00},               // halfway, ties to even (down)
		{1 + 3.0/2048, 0x3c02},               // halfway, ties to even (up)
		{1 + 1.0/2048 + 1.0/(1<<20), 0x3c01}, // just above halfway
		{-2, 0xc000},
		{65504, 0x7bff}, // largest half
		{65519, 0x7bff}, // below the overflow midpoint
		{65520, 0x7c00}, // overflow midpoint rounds to Inf
		{-1e10, 0xfc00},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Ldexp(1, -24)), 0x0001},    // smallest subnormal
		{float32(math.Ldexp(1, -25)), 0x0000},    // half of it ties to even zero
		{float32(math.Ldexp(3, -26)), 0x0001},    // 0.75 of it rounds up
		{float32(math.Ldexp(3, -25)), 0x0002},    // 1.5 ties to even 2
		{float32(math.Ldexp(1023, -24)), 0x03ff}, // largest subnormal
		{float32(math.Ldexp(2047, -25)), 0x0400}, // rounds up into the normals
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	vals := make([]float32, len(cases))
	for i, c := range cases {
		vals[i] = c.in
	}
	vals = append(vals, float32(math.NaN()))
	path := filepath.Join(t.TempDir(), "h.pllm")
	w, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteMeta(Meta{})
	w.WriteGroup(Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{1}, DType: "F16"}}, Arrays: []Array{F16Array("h", vals)}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	al := r.Layout().Sections[1].Arrays[0]
	file, _ := os.ReadFile(path)
	stored := file[al.Offset : al.Offset+al.Size]
	g, err := r.ReadGroup(0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if got := binary.LittleEndian.Uint16(stored[2*i:]); got != c.bits {
			t.Errorf("%g stored as %#04x, want %#04x", c.in, got, c.bits)
		}
		if got, want := g.Arrays[0].Floats[i], fp16.ToFloat32(c.bits); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("%g read back as %g, want %g", c.in, got, want)
		}
	}
	nan := binary.LittleEndian.Uint16(stored[2*len(cases):])
	if nan&0x7c00 != 0x7c00 || nan&0x3ff == 0 {
		t.Errorf("NaN stored as %#04x", nan)
	}
	if x := g.Arrays[0].Floats[len(cases)]; x == x {
		t.Errorf("NaN read back as %g", x)
	}
}

// TestSpecBytes checks Writer against bytes framed by hand from FORMAT.md.
func TestSpecBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spec.pllm")
	w, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(w.WriteMeta(Meta{Tool: "t", SourceFormat: "safetensors"}))
	check(w.WriteGroup(Group{
		Name: "g", Method: "m", Params: json.RawMessage(`{ "k": 1 }`),
		Members: []Member{{Name: "w", Shape: []int{2, 3}, DType: "F32"}},
		Arrays:  []Array{UintArray("idx", 3, []uint32{1, 2, 3, 4, 5}), F16Array("cb", []float32{1, -2})},
	}))
	check(w.WriteRaw(TensorInfo{Name: "emb", DType: "F32", Shape: []int{2}}, f32bytes(0.5, -1)))
	check(w.WriteSideFile(SideFile{Name: "config.json", Data: []byte("{}")}))
	check(w.Close())
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := buildFile([]specSection{
		{1, "", `{"tool":"t","source_format":"safetensors"}`, nil},
		{2, "g", `{"method":"m","params":{"k":1},"members":[{"name":"w","shape":[2,3],"dtype":"F32"}],"arrays":[{"name":"idx","encoding":"uint","bits":3,"count":5},{"name":"cb","encoding":"f16","count":2}]}`,
			[]byte{0xd1, 0x58, 0x00, 0x3c, 0x00, 0xc0}},
		{3, "emb", `{"dtype":"F32","shape":[2]}`, f32bytes(0.5, -1)},
		{4, "config.json", `{}`, []byte("{}")},
	})
	if !bytes.Equal(got, want) {
		t.Fatalf("writer output differs from the FORMAT.md framing\n got % x\nwant % x", got, want)
	}
	if err := readAll(want); err != nil {
		t.Fatal(err)
	}
}

func TestDeterministic(t *testing.T) {
	a := newSample(t, 17).bytes(t)
	b := newSample(t, 17).bytes(t)
	if !bytes.Equal(a, b) {
		t.Fatal("same inputs gave different files")
	}
}

func TestLayoutAccounting(t *testing.T) {
	s := newSample(t, 11)
	path := filepath.Join(t.TempDir(), "l.pllm")
	s.write(t, path)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fi, _ := os.Stat(path)
	l := r.Layout()
	if err := l.Check(); err != nil {
		t.Fatal(err)
	}
	total := int64(FileHeaderSize + TrailerSize)
	for _, sec := range l.Sections {
		total += sec.Size
	}
	if total != fi.Size() || l.FileSize != fi.Size() {
		t.Fatalf("sections add to %d, layout says %d, file has %d bytes", total, l.FileSize, fi.Size())
	}
	if last := l.Sections[len(l.Sections)-1]; last.Kind != KindIndex || last.Size != minSectionSize+int64(IndexEntrySize*(len(l.Sections)-1)) {
		t.Fatalf("last section %+v is not the index", last)
	}
	// Charging each entry to its section leaves only the table's frame.
	costs := int64(FileHeaderSize + minSectionSize + TrailerSize)
	for _, sec := range l.Sections {
		costs += sec.Cost()
	}
	if costs != fi.Size() {
		t.Fatalf("costs and framing add to %d, file has %d bytes", costs, fi.Size())
	}
	// Group array sizes and weights follow from the inputs alone.
	gi := 0
	for _, sec := range l.Sections {
		switch sec.Kind {
		case KindGroup:
			g := s.groups[gi]
			gi++
			var weights int64
			for _, m := range g.Members {
				weights += int64(m.NumElements())
			}
			if sec.Weights != weights {
				t.Errorf("group %s: %d weights, want %d", g.Name, sec.Weights, weights)
			}
			// A group is charged its section and its entry in the section
			// table, exactly what GroupSize plans from its description.
			if sec.Cost() != sec.Size+IndexEntrySize {
				t.Errorf("group %s: cost %d, section %d", g.Name, sec.Cost(), sec.Size)
			}
			if got, want := sec.BitsPerWeight(), 8*float64(sec.Size+IndexEntrySize)/float64(weights); got != want {
				t.Errorf("group %s: %v bits per weight, want %v", g.Name, got, want)
			}
			if planned, err := GroupSize(g.Info()); err != nil || planned != sec.Cost() {
				t.Errorf("group %s: GroupSize %d (%v), written cost %d", g.Name, planned, err, sec.Cost())
			}
			for k, a := range g.Arrays {
				var want int
				switch a.Encoding {
				case F32:
					want = 4 * len(a.Floats)
				case F16:
					want = 2 * len(a.Floats)
				case Uint:
					want = (a.Bits*len(a.Uints) + 7) / 8
				case Bytes:
					want = len(a.Bytes)
				}
				if sec.Arrays[k].Size != int64(want) {
					t.Errorf("group %s array %s: %d bytes, want %d", g.Name, a.Name, sec.Arrays[k].Size, want)
				}
			}
			wantFrame := int64(SectionHeaderSize + len(g.Name) + SectionCRCSize)
			if sec.FrameSize != wantFrame {
				t.Errorf("group %s: frame %d, want %d", g.Name, sec.FrameSize, wantFrame)
			}
		case KindRaw:
			if sec.BodySize != int64(len(s.data[slices.IndexFunc(s.raws, func(ti TensorInfo) bool { return ti.Name == sec.Name })])) {
				t.Errorf("raw %s: body %d", sec.Name, sec.BodySize)
			}
		}
	}
	if gi != len(s.groups) {
		t.Fatalf("layout lists %d groups, want %d", gi, len(s.groups))
	}
}

func TestEveryByteFlipFails(t *testing.T) {
	data := newSample(t, 2).bytes(t)
	if err := readAll(data); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, mask := range []byte{0xff, 0x01, 0x80} {
			c := bytes.Clone(data)
			c[i] ^= mask
			if err := readAll(c); err == nil {
				t.Fatalf("byte %d of %d xor %#02x: no error", i, len(data), mask)
			}
		}
	}
}

func TestTruncationAndExtensionFail(t *testing.T) {
	data := newSample(t, 2).bytes(t)
	for n := 0; n < len(data); n++ {
		if err := readAll(data[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(data))
		}
	}
	for _, extra := range [][]byte{{0}, []byte("PLLM-END"), data[len(data)-TrailerSize:]} {
		if err := readAll(append(bytes.Clone(data), extra...)); err == nil {
			t.Fatalf("with %d bytes appended: no error", len(extra))
		}
	}
}

func TestErrorNamesFileAndSection(t *testing.T) {
	s := newSample(t, 3)
	path := filepath.Join(t.TempDir(), "named.pllm")
	s.write(t, path)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := r.Layout()
	r.Close()
	data, _ := os.ReadFile(path)
	for _, sec := range l.Sections {
		if sec.BodySize == 0 {
			continue
		}
		c := bytes.Clone(data)
		c[sec.Offset+sec.Size-SectionCRCSize-1] ^= 1 // last body byte
		if err := os.WriteFile(path, c, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		if err == nil {
			t.Fatalf("%s %q corrupted: no error", sec.Kind, sec.Name)
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, sec.Kind.String()) || !strings.Contains(msg, sec.Name) || !strings.Contains(msg, "CRC") {
			t.Errorf("error %q does not name the file, the %s section %q and the CRC", msg, sec.Kind, sec.Name)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("error %q is not one line", msg)
		}
	}
}

// TestReadDetectsChange checks that a file modified after Open is caught by
// the Read methods instead of returning different data.
func TestReadDetectsChange(t *testing.T) {
	s := newSample(t, 3)
	path := filepath.Join(t.TempDir(), "c.pllm")
	s.write(t, path)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := r.Layout()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range l.Sections {
		if sec.BodySize > 0 && sec.Kind != KindIndex {
			f.WriteAt([]byte{0xee}, sec.Offset+sec.Size-SectionCRCSize-1)
		}
	}
	f.Close()
	if _, err := r.ReadGroup(0); err == nil {
		t.Error("ReadGroup after change: no error")
	}
	if _, err := r.ReadRaw(s.raws[0].Name); err == nil {
		t.Error("ReadRaw after change: no error")
	}
	if _, err := r.SideFiles(); err == nil {
		t.Error("SideFiles after change: no error")
	}
}

func TestExistingOutputRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.pllm")
	orig := []byte("precious")
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(path, false); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Create over an existing file without force: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
		t.Fatal("existing file modified")
	}
	if names := testfs.Names(t, dir); !slices.Equal(names, []string{"out.pllm"}) {
		t.Fatalf("directory holds %v", names)
	}
	if _, err := Create(dir, true); err == nil {
		t.Fatal("Create over a directory with force: no error")
	}
	// With force the file is replaced, but only at Close.
	w, err := Create(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMeta(Meta{Tool: "x"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
		t.Fatal("existing file modified before Close")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if names := testfs.Names(t, dir); !slices.Equal(names, []string{"out.pllm"}) {
		t.Fatalf("directory holds %v", names)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}

// Two writers without force, both started before either finished: the
// second to close is refused and the first one's file stays as it was (the
// publish is a hard link, which never replaces, not a check then rename).
func TestConcurrentWritersDoNotClobber(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.pllm")
	a, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteMeta(Meta{Tool: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteMeta(Meta{Tool: "second"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err == nil || !strings.Contains(err.Error(), "overwriting needs force") {
		t.Fatalf("second writer: %v, want a refusal", err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Meta().Tool != "first" {
		t.Errorf("file written by %q, want the first writer's", r.Meta().Tool)
	}
	if names := testfs.Names(t, dir); !slices.Equal(names, []string{"out.pllm"}) {
		t.Errorf("directory holds %v", names)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.pllm")
	s := newSample(t, 3)
	w, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteGroup(s.groups[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRaw(s.raws[0], s.data[0]); err != nil {
		t.Fatal(err)
	}
	// While writing, the file has no name (Linux O_TMPFILE) or one hidden
	// temporary name beside the output.
	if names := testfs.Names(t, dir); len(names) > 1 || (len(names) == 1 && !strings.HasPrefix(names[0], ".a.pllm.")) {
		t.Fatalf("while writing the folder holds %v", names)
	}
	w.Abort()
	w.Abort()
	if names := testfs.Names(t, dir); len(names) != 0 {
		t.Fatalf("Abort left %v", names)
	}
	if err := w.WriteMeta(Meta{}); err == nil {
		t.Error("write after Abort: no error")
	}
	if err := w.Close(); err == nil {
		t.Error("Close after Abort: no error")
	}
	if names := testfs.Names(t, dir); len(names) != 0 {
		t.Fatalf("left %v", names)
	}
}

func TestWriterErrorsLeaveNothing(t *testing.T) {
	s := newSample(t, 2)
	member := func(name string) []Member { return []Member{{Name: name, Shape: []int{2}, DType: "F32"}} }
	okArr := []Array{F32Array("a", []float32{1})}
	cases := []struct {
		name string
		do   func(w *Writer) error
	}{
		{"close without meta", func(w *Writer) error { return w.Close() }},
		{"meta twice", func(w *Writer) error { w.WriteMeta(Meta{}); return w.WriteMeta(Meta{}) }},
		{"meta bad json", func(w *Writer) error { return w.WriteMeta(Meta{Settings: json.RawMessage("{")}) }},
		{"uint too wide", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: []Array{UintArray("u", 3, []uint32{1, 8})}})
		}},
		{"uint bits 0", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: []Array{UintArray("u", 0, nil)}})
		}},
		{"uint bits 33", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: []Array{UintArray("u", 33, nil)}})
		}},
		{"wrong slice", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: []Array{{Name: "a", Encoding: F32, Uints: []uint32{1}}}})
		}},
		{"bits on f16", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: []Array{{Name: "a", Encoding: F16, Bits: 4}}})
		}},
		{"unknown encoding", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: []Array{{Name: "a", Encoding: "f8"}}})
		}},
		{"duplicate array", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("w"), Arrays: append(okArr, okArr...)})
		}},
		{"no members", func(w *Writer) error { return w.WriteGroup(Group{Name: "g", Method: "m", Arrays: okArr}) }},
		{"no weights", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{0, 3}, DType: "F32"}}})
		}},
		{"negative dim", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{-1}, DType: "F32"}}})
		}},
		{"unknown member dtype", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{1}, DType: "F7"}}})
		}},
		{"empty method", func(w *Writer) error { return w.WriteGroup(Group{Name: "g", Members: member("w")}) }},
		{"empty group name", func(w *Writer) error { return w.WriteGroup(Group{Method: "m", Members: member("w")}) }},
		{"bad params", func(w *Writer) error {
			return w.WriteGroup(Group{Name: "g", Method: "m", Params: json.RawMessage("{x"), Members: member("w")})
		}},
		{"duplicate group", func(w *Writer) error {
			w.WriteGroup(Group{Name: "g", Method: "m", Members: member("a")})
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("b")})
		}},
		{"member in two groups", func(w *Writer) error {
			w.WriteGroup(Group{Name: "g", Method: "m", Members: member("a")})
			return w.WriteGroup(Group{Name: "h", Method: "m", Members: member("a")})
		}},
		{"member also raw", func(w *Writer) error {
			w.WriteGroup(Group{Name: "g", Method: "m", Members: member("a")})
			return w.WriteRaw(TensorInfo{Name: "a", DType: "U8", Shape: []int{1}}, []byte{1})
		}},
		{"raw also member", func(w *Writer) error {
			w.WriteRaw(TensorInfo{Name: "a", DType: "U8", Shape: []int{1}}, []byte{1})
			return w.WriteGroup(Group{Name: "g", Method: "m", Members: member("a")})
		}},
		{"raw twice", func(w *Writer) error {
			w.WriteRaw(TensorInfo{Name: "a", DType: "U8", Shape: []int{1}}, []byte{1})
			return w.WriteRaw(TensorInfo{Name: "a", DType: "U8", Shape: []int{1}}, []byte{1})
		}},
		{"raw short data", func(w *Writer) error { return w.WriteRaw(s.raws[0], s.data[0][1:]) }},
		{"raw unknown dtype", func(w *Writer) error {
			return w.WriteRaw(TensorInfo{Name: "a", DType: "X", Shape: []int{1}}, []byte{1})
		}},
		{"side path", func(w *Writer) error { return w.WriteSideFile(SideFile{Name: "../evil"}) }},
		{"side dir", func(w *Writer) error { return w.WriteSideFile(SideFile{Name: "a/b"}) }},
		{"side backslash", func(w *Writer) error { return w.WriteSideFile(SideFile{Name: `a\b`}) }},
		{"side dotdot", func(w *Writer) error { return w.WriteSideFile(SideFile{Name: ".."}) }},
		{"side empty", func(w *Writer) error { return w.WriteSideFile(SideFile{}) }},
		{"side twice", func(w *Writer) error {
			w.WriteSideFile(SideFile{Name: "a"})
			return w.WriteSideFile(SideFile{Name: "a"})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "e.pllm")
			w, err := Create(path, false)
			if err != nil {
				t.Fatal(err)
			}
			err = c.do(w)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if names := testfs.Names(t, dir); len(names) != 0 {
				t.Fatalf("left %v behind", names)
			}
			if w.WriteMeta(Meta{}) == nil || w.Close() == nil {
				t.Fatal("writer usable after an error")
			}
			if names := testfs.Names(t, dir); len(names) != 0 {
				t.Fatalf("left %v behind", names)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.pllm")); err == nil {
		t.Error("Open of a missing file: no error")
	}
	if _, err := Open(dir); err == nil {
		t.Error("Open of a directory: no error")
	}
}

func TestBitsFor(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		bits int
	}{{0, 1}, {1, 1}, {2, 1}, {3, 2}, {4, 2}, {5, 3}, {4096, 12}, {4097, 13}, {1 << 15, 15}, {1 << 32, 32}} {
		if got := BitsFor(c.n); got != c.bits {
			t.Errorf("BitsFor(%d) = %d, want %d", c.n, got, c.bits)
		}
	}
}

// TestBoundedMemory checks that writing and opening a file with a large raw
// tensor and a large group allocates far less than their size: both stream.
func TestBoundedMemory(t *testing.T) {
	const n = 32 << 20
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	vals := make([]float32, n/8)
	idx := make([]uint32, n/4)
	for i := range idx {
		idx[i] = uint32(i) & 0x7fff
	}
	path := filepath.Join(t.TempDir(), "big.pllm")
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	const limit = 4 << 20
	got := allocated(func() {
		w, err := Create(path, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteRaw(TensorInfo{Name: "emb", DType: "U8", Shape: []int{n}}, data); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteGroup(Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{n}, DType: "F32"}},
			Arrays: []Array{F16Array("h", vals), F32Array("f", vals), UintArray("u", 15, idx)}}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMeta(Meta{}); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
	if got > limit {
		t.Errorf("writing %d MiB allocated %d bytes", 2*n>>20, got)
	}
	got = allocated(func() {
		r, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	})
	if got > limit {
		t.Errorf("opening allocated %d bytes", got)
	}
}
