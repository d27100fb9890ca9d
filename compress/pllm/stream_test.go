package pllm

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestRawStreamRoundTrip writes a kept tensor from a reader and reads it
// back as a stream: the same bytes as ReadRaw, with allocations far below
// the tensor's size both ways.
func TestRawStreamRoundTrip(t *testing.T) {
	const n = 24 << 20
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*131 + i>>9)
	}
	path := filepath.Join(t.TempDir(), "s.pllm")
	allocated := func(f func()) uint64 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	const limit = 4 << 20
	info := TensorInfo{Name: "emb", DType: "F32", Shape: []int{n / 4}}
	if got := allocated(func() {
		w, err := Create(path, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMeta(Meta{}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteRawFrom(info, bytes.NewReader(data), n); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}); got > limit {
		t.Errorf("WriteRawFrom of %d MiB allocated %d bytes", n>>20, got)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	whole, err := r.ReadRaw("emb")
	if err != nil || !bytes.Equal(whole, data) {
		t.Fatalf("ReadRaw: %v, equal %v", err, bytes.Equal(whole, data))
	}
	whole = nil
	var sum [2]uint64
	if got := allocated(func() {
		src, size, err := r.RawStream("emb")
		if err != nil || size != n {
			t.Fatalf("RawStream: %v, size %d", err, size)
		}
		buf := make([]byte, 1000) // not a divisor of the size
		for off := 0; ; {
			k, err := src.Read(buf)
			for i, b := range buf[:k] {
				sum[0] += uint64(b) * uint64(off+i+1)
				sum[1] += uint64(data[off+i]) * uint64(off+i+1)
			}
			off += k
			if err == io.EOF {
				if off != n {
					t.Fatalf("stream ended after %d of %d bytes", off, n)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}); got > limit {
		t.Errorf("RawStream of %d MiB allocated %d bytes", n>>20, got)
	}
	if sum[0] != sum[1] {
		t.Error("RawStream gave different bytes")
	}
	if _, _, err := r.RawStream("nope"); err == nil || !strings.Contains(err.Error(), "s.pllm") {
		t.Errorf("missing tensor: %v", err)
	}
}

// TestRawStreamDetectsChange changes a kept tensor's bytes after Open: a
// reader of exactly its length, as the writers read it, gets
// the CRC error with the last bytes. (io.CopyN itself drops an error
// that comes with the last bytes; io.Copy of an io.LimitReader keeps it.)
func TestRawStreamDetectsChange(t *testing.T) {
	s := newSample(t, 3)
	path := filepath.Join(t.TempDir(), "c.pllm")
	s.write(t, path)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	name := s.raws[0].Name
	src, n, err := r.RawStream(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(src, n)); err != nil {
		t.Fatalf("unchanged file: %v", err)
	}
	for _, sec := range r.Layout().Sections {
		if sec.Kind == KindRaw && sec.Name == name {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			at := sec.Offset + sec.Size - SectionCRCSize - 1
			f.ReadAt(b, at)
			f.WriteAt([]byte{^b[0]}, at)
			f.Close()
		}
	}
	src, n, err = r.RawStream(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(src, n)); err == nil || !strings.Contains(err.Error(), "CRC mismatch") {
		t.Errorf("changed file: %v, want a CRC mismatch", err)
	}
}

// TestWriteRawFromShortSource refuses a source that ends early, leaving no
// file.
func TestWriteRawFromShortSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "short.pllm")
	w, err := Create(path, false)
	if err != nil {
		t.Fatal(err)
	}
	err = w.WriteRawFrom(TensorInfo{Name: "x", DType: "U8", Shape: []int{10}}, strings.NewReader("123"), 10)
	if err == nil || !strings.Contains(err.Error(), "10 data bytes") {
		t.Errorf("short source: %v", err)
	}
	w.Abort()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file left behind: %v", err)
	}
}
