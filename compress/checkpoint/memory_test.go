package checkpoint

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOpenManyTensorsStaysNearHeaderSize opens a safetensors file whose
// header is nothing but empty tensors, the most entries its bytes can
// describe: the source's bookkeeping (tensor list, index) and the parser
// together must allocate a small multiple of the header's size. A 100 MiB
// header of 1.78 million empty tensors once cost about 1.7 GB.
func TestOpenManyTensorsStaysNearHeaderSize(t *testing.T) {
	const size = 4 << 20
	const maxRatio = 8 // bytes allocated by Open per header byte
	var b strings.Builder
	b.WriteByte('{')
	n := 0
	for b.Len() < size {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`, n)
		n++
	}
	b.WriteByte('}')
	path := filepath.Join(t.TempDir(), "many.safetensors")
	file := binary.LittleEndian.AppendUint64(nil, uint64(b.Len()))
	if err := os.WriteFile(path, append(file, b.String()...), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	src, err := Open(path)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if len(src.Tensors) != n {
		t.Fatalf("%d tensors, wrote %d", len(src.Tensors), n)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	ratio := float64(alloc) / float64(b.Len())
	t.Logf("%d tensors in a %d-byte header: Open allocated %d bytes (%.2fx)", n, b.Len(), alloc, ratio)
	if ratio > maxRatio {
		t.Errorf("Open allocated %.2fx the header's size, want at most %dx", ratio, maxRatio)
	}
	if info, ok := src.Info(fmt.Sprintf("%x", n-1)); !ok || info.Shape[0] != 0 {
		t.Errorf("last tensor: %+v, %v", info, ok)
	}
}
