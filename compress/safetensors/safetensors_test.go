package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"pocketllm-native/compress/checkpoint/formatbase"
)

// fileBytes assembles a safetensors file from a header and data, the way
// the format defines it, without the package's writer.
func fileBytes(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func writeTemp(t *testing.T, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func f32bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// TestWriterGoldenBytes pins the writer's output to bytes spelled out by
// hand from the format's definition: length, compact JSON in the given
// order with __metadata__ first, space padding to a multiple of 8, data.
func TestWriterGoldenBytes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "golden.safetensors")
	w, err := Create(path, []formatbase.TensorInfo{
		{Name: "b", DType: formatbase.F32, Shape: []int{2}},
		{Name: "a<1>", DType: formatbase.U8, Shape: []int{3}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WriteFloat32("b", []float32{1, -2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("a<1>", []byte{7, 8, 9}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a<1>":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	want := fileBytes(header, append(f32bytes(1, -2), 7, 8, 9))
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file bytes:\n got %q\nwant %q", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after Close, want only the output", len(entries))
	}
}

func TestRoundTrip(t *testing.T) {
	infos := []formatbase.TensorInfo{
		{Name: "model.embed_tokens.weight", DType: formatbase.F32, Shape: []int{3, 2}},
		{Name: "scalar", DType: formatbase.I64, Shape: []int{}},
		{Name: "empty", DType: formatbase.F16, Shape: []int{0, 4}},
		{Name: "half", DType: formatbase.F16, Shape: []int{2}},
		{Name: "brain", DType: formatbase.BF16, Shape: []int{1, 2}},
		{Name: "bytes", DType: formatbase.U8, Shape: []int{5}},
	}
	data := map[string][]byte{
		"model.embed_tokens.weight": f32bytes(1, 2, 3, 4, 5, 6),
		"scalar":                    {1, 2, 3, 4, 5, 6, 7, 8},
		"empty":                     {},
		"half":                      {0x00, 0x3c, 0x00, 0xc0}, // 1, -2
		"brain":                     {0x80, 0x3f, 0x40, 0x40}, // 1, 3
		"bytes":                     {1, 2, 3, 4, 5},
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	w, err := Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if err := w.Write(in.Name, data[in.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(raw); n%8 != 0 || raw[8] != '{' {
		t.Fatalf("header length %d not a multiple of 8 or header not starting with '{'", n)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if diff := cmp.Diff(infos, f.Infos()); diff != "" {
		t.Fatalf("tensor infos differ (-want +got):\n%s", diff)
	}
	if f.Metadata() != nil {
		t.Errorf("metadata = %v, want nil", f.Metadata())
	}
	for _, in := range infos {
		got, err := f.Raw(in.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[in.Name]) {
			t.Errorf("%s: got % x want % x", in.Name, got, data[in.Name])
		}
	}
	for name, want := range map[string][]float32{"half": {1, -2}, "brain": {1, 3}, "model.embed_tokens.weight": {1, 2, 3, 4, 5, 6}} {
		got, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(got, want) {
			t.Errorf("Float32(%s) = %v, want %v", name, got, want)
		}
	}
	if _, err := f.Float32("scalar"); err == nil || !strings.Contains(err.Error(), `"scalar"`) {
		t.Errorf("Float32 of an I64 tensor: err = %v, want an error naming the tensor", err)
	}
	if _, err := f.Raw("nope"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Raw of a missing tensor: err = %v", err)
	}
}

func TestParseRules(t *testing.T) {
	const ok = `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	if _, err := Parse([]byte(ok+"   \n"), 8); err != nil {
		t.Fatalf("valid header refused: %v", err)
	}
	for _, c := range []struct {
		name, header string
		dataLen      int64
		want         string
	}{
		{"not json", `{"a":`, 8, "not valid JSON"},
		{"array", `[1,2]`, 0, "does not start with"},
		{"leading space", ` ` + ok, 8, "does not start with"},
		{"trailing garbage", ok + `x`, 8, "not valid JSON"},
		{"second object", ok + `{}`, 8, "not valid JSON"},
		{"invalid utf8", "{\"a\xff\":{}}", 0, "UTF-8"},
		{"duplicate tensor", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2, `"a" appears twice`},
		{"escaped duplicate", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"\u0061":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2, `appears twice`},
		{"duplicate field", `{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8, `"dtype" appears twice`},
		{"unknown dtype", `{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}`, 8, `unsupported dtype "F31"`},
		{"sub-byte dtype", `{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, 1, `unsupported dtype`},
		{"dtype not string", `{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, 8, `dtype is 4`},
		{"missing dtype", `{"a":{"shape":[2],"data_offsets":[0,8]}}`, 8, `no dtype`},
		{"missing shape", `{"a":{"dtype":"F32","data_offsets":[0,8]}}`, 8, `no shape`},
		{"missing offsets", `{"a":{"dtype":"F32","shape":[2]}}`, 8, `no data_offsets`},
		{"unknown key", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, 8, `unknown key "x"`},
		{"tensor not object", `{"a":[1]}`, 0, `tensor "a"`},
		{"negative dim", `{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8, `shape holds -2`},
		{"fractional dim", `{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, 8, `shape holds 2.0`},
		{"exponent dim", `{"a":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}}`, 8, `shape holds 2e0`},
		{"huge dim", `{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}`, 8, `shape holds`},
		{"overflowing product", `{"a":{"dtype":"F32","shape":[72057594037927936,72057594037927936],"data_offsets":[0,8]}}`, 8, `larger than`},
		{"string dim", `{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, 8, `shape holds "2"`},
		{"shape not array", `{"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}}`, 8, `shape`},
		{"three offsets", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, 8, `has 3 values`},
		{"reversed offsets", `{"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}`, 8, `end before`},
		{"size mismatch", `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8, `needs 12 bytes`},
		{"past end", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 7, `extend past`},
		{"trailing data", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 9, `1 bytes after the last tensor`},
		{"gap", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 2, `gap of 1`},
		{"overlap", `{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`, 3, `overlap tensor "a"`},
		{"metadata not map", `{"__metadata__":"x"}`, 0, `__metadata__`},
		{"metadata number", `{"__metadata__":{"k":1}}`, 0, `value of "k" is 1`},
		{"metadata null", `{"__metadata__":{"k":null}}`, 0, `value of "k" is null`},
		{"empty name", `{"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0, `empty tensor name`},
		{"negative data", `{}`, -1, `negative`},
		{"lone high surrogate", `{"a\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0, `unpaired UTF-16 surrogate escape \ud800`},
		{"lone low surrogate", `{"a\uDC00b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0, `unpaired UTF-16 surrogate escape \udc00`},
		{"high surrogate then letter", `{"\ud83dx":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0, `unpaired`},
		{"two high surrogates", `{"\ud83d\ud83d":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`, 0, `unpaired`},
		{"surrogate in metadata", `{"__metadata__":{"k":"\udfff"}}`, 0, `__metadata__: string "\udfff" holds an unpaired`},
		{"surrogate in dtype", `{"a":{"dtype":"F\ud800","shape":[0],"data_offsets":[0,0]}}`, 0, `unpaired`},
		{"too many dims", `{"a":{"dtype":"U8","shape":[` + strings.Repeat("1,", MaxRank) + `1],"data_offsets":[0,1]}}`, 1, `more than 64 values`},
		{"too much metadata", `{"__metadata__":{` + manyEntries(MaxMetadataEntries+1) + `}}`, 0, `more than 65536 entries`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.header), c.dataLen)
			if err == nil {
				t.Fatalf("Parse accepted %s", c.header)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
		})
	}
}

func manyEntries(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"%d":""`, i)
	}
	return strings.Join(parts, ",")
}

func TestParseDecodesEscapes(t *testing.T) {
	// A surrogate pair is one character; an escaped backslash before a "u"
	// is no escape at all; escapes in dtypes and keys are decoded.
	h, err := Parse([]byte(`{"\ud83d\ude00\\ud800":{"d\u0074ype":"\u0055\u0038","shape":[`+strings.Repeat("1,", MaxRank-1)+`1],"data_offsets":[0,1]}}`), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Tensors[0]; got.Name != "\U0001F600\\ud800" || got.DType != "U8" || len(got.Shape) != MaxRank {
		t.Fatalf("decoded %q %q rank %d", got.Name, got.DType, len(got.Shape))
	}
	if _, err := Parse([]byte(`{"__metadata__":{`+manyEntries(MaxMetadataEntries)+`}}`), 0); err != nil {
		t.Fatalf("%d metadata entries refused: %v", MaxMetadataEntries, err)
	}
}

// TestOpenMemoryStaysNearHeaderSize generates headers that pack as many
// tensors (or dimensions) into their bytes as the format allows and checks
// that opening the file allocates at most a few times the header's size in
// all: a 100 MiB header of 1.78 million empty tensors once cost about 1.7 GB.
func TestOpenMemoryStaysNearHeaderSize(t *testing.T) {
	const size = 4 << 20
	const maxRatio = 5 // bytes allocated by Open per header byte
	gen := map[string]func(i int) string{
		"empty tensors": func(i int) string {
			return fmt.Sprintf(`"%x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`, i)
		},
		"many dimensions": func(i int) string {
			return fmt.Sprintf(`"%x":{"dtype":"U8","shape":[%s0],"data_offsets":[0,0]}`, i, strings.Repeat("1,", MaxRank-1))
		},
	}
	for name, entry := range gen {
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			b.WriteByte('{')
			n := 0
			for b.Len() < size {
				if n > 0 {
					b.WriteByte(',')
				}
				b.WriteString(entry(n))
				n++
			}
			b.WriteByte('}')
			path := writeTemp(t, "big.safetensors", fileBytes(b.String(), nil))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			f, err := Open(path)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if len(f.Tensors()) != n {
				t.Fatalf("%d tensors, wrote %d", len(f.Tensors()), n)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			ratio := float64(alloc) / float64(b.Len())
			t.Logf("%d tensors in a %d-byte header: Open allocated %d bytes (%.2fx) in %d allocations", n, b.Len(), alloc, ratio, after.Mallocs-before.Mallocs)
			if ratio > maxRatio {
				t.Errorf("Open allocated %.2fx the header's size, want at most %dx", ratio, maxRatio)
			}
			// Lookups by name go through the sorted index.
			for _, i := range []int{0, n / 2, n - 1} {
				want := fmt.Sprintf("%x", i)
				if tt, ok := f.Tensor(want); !ok || tt.Name != want {
					t.Errorf("Tensor(%q) = %q, %v", want, tt.Name, ok)
				}
			}
			if _, ok := f.Tensor("absent"); ok {
				t.Error("found a tensor that is not there")
			}
		})
	}
}

func TestParseOrderAndZeroLength(t *testing.T) {
	// Header order differs from data order; zero-length tensors sit at
	// offsets shared with real ones.
	h, err := Parse([]byte(`{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"z":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"__metadata__":{"k":"v"}}`), 4)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ts := range h.Tensors {
		names = append(names, ts.Name)
	}
	if !cmp.Equal(names, []string{"a", "z", "b"}) {
		t.Errorf("file order = %v, want [a z b]", names)
	}
	if !cmp.Equal(h.Metadata, map[string]string{"k": "v"}) {
		t.Errorf("metadata = %v", h.Metadata)
	}
	if h, err := Parse([]byte(`{}`), 0); err != nil || len(h.Tensors) != 0 {
		t.Errorf("empty header: %v, %v", h, err)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	good := fileBytes(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32bytes(1, 2))
	hugeLen := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(hugeLen, 1<<40)
	longLen := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(longLen, uint64(len(good)))
	for _, c := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"truncated data", good[:len(good)-1], "extend past"},
		{"truncated header", good[:20], "header length"},
		{"short", good[:5], "too short"},
		{"empty", nil, "too short"},
		{"huge header length", hugeLen, "limit"},
		{"header length past end", longLen, "exceeds"},
		{"extra bytes", append(append([]byte(nil), good...), 0), "after the last tensor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "x.safetensors", c.content)
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open accepted a bad file")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s and mentioning %q", msg, path, c.want)
			}
		})
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open accepted a directory")
	}
}

func TestWriterMisuse(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	infos := []formatbase.TensorInfo{{Name: "a", DType: formatbase.U8, Shape: []int{2}}, {Name: "b", DType: formatbase.U8, Shape: []int{1}}}

	for _, bad := range [][]formatbase.TensorInfo{
		{{Name: "a", DType: formatbase.U8, Shape: []int{1}}, {Name: "a", DType: formatbase.U8, Shape: []int{1}}},
		{{Name: "", DType: formatbase.U8}},
		{{Name: MetadataKey, DType: formatbase.U8}},
		{{Name: "x", DType: "F31"}},
		{{Name: "x", DType: formatbase.U8, Shape: []int{-1}}},
		{{Name: "bad\xff", DType: formatbase.U8}},
	} {
		if w, err := Create(path, bad, nil); err == nil {
			w.Abort()
			t.Errorf("Create accepted %v", bad)
		}
	}

	w, err := Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", []byte{1}); err == nil || !strings.Contains(err.Error(), `"a" comes next`) {
		t.Errorf("out-of-order write: %v", err)
	}
	if err := w.Write("a", []byte{1}); err == nil || !strings.Contains(err.Error(), "needs 2") {
		t.Errorf("short write: %v", err)
	}
	if err := w.Write("a", []byte{1, 2}); err != nil {
		t.Fatalf("retry after a refused call: %v", err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("Close with a tensor missing: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("incomplete write left %d files behind", len(entries))
	}

	// Abort leaves nothing.
	w, err = Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write("a", []byte{1, 2})
	w.Abort()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Abort left %d files behind", len(entries))
	}
	if err := w.Write("b", []byte{3}); err == nil {
		t.Error("Write after Abort succeeded")
	}
}

func TestWriterOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	infos := []formatbase.TensorInfo{{Name: "a", DType: formatbase.U8, Shape: []int{1}}}
	write := func(opt formatbase.WriteOptions, v byte) error {
		w, err := CreateWith(path, infos, nil, opt)
		if err != nil {
			return err
		}
		defer w.Abort()
		if err := w.Write("a", []byte{v}); err != nil {
			return err
		}
		return w.Close()
	}
	if err := write(formatbase.WriteOptions{}, 1); err != nil {
		t.Fatal(err)
	}
	if err := write(formatbase.WriteOptions{}, 2); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second write without Overwrite: %v", err)
	}
	if err := write(formatbase.WriteOptions{Overwrite: true}, 3); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, _ := f.Raw("a"); !bytes.Equal(b, []byte{3}) {
		t.Fatalf("after overwrite a = %v, want [3]", b)
	}

	// A destination that appears while the writer runs is not clobbered.
	path2 := filepath.Join(dir, "race.safetensors")
	w, err := Create(path2, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write("a", []byte{1})
	os.WriteFile(path2, []byte("precious"), 0o644)
	if err := w.Close(); err == nil {
		t.Fatal("Close replaced a file created meanwhile")
	}
	if b, _ := os.ReadFile(path2); string(b) != "precious" {
		t.Fatalf("existing file changed to %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want 2 (no temporary left)", len(entries))
	}
}
