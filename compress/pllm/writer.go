package pllm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"

	"pocketllm-native/compress/fp16"
	"pocketllm-native/internal/atomicfile"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer writes a .pllm file section by section. Every section is written as
// soon as its Write call is made, so memory stays bounded by the largest
// single argument. The output appears at its path only when Close succeeds;
// after any error the Writer has already removed its temporary file and
// every later call returns that error.
type Writer struct {
	path  string
	tmp   *atomicfile.File
	bw    *bufio.Writer
	off   int64
	index []indexEntry
	err   error
	done  bool

	metaDone bool
	groups   map[string]bool
	tensors  map[string]bool // member and raw tensor names share one namespace
	sides    map[string]bool
	scratch  []byte
}

type indexEntry struct {
	off, size int64
	kind      Kind
}

var errClosed = errors.New("pllm: writer already closed or aborted")

// Create starts writing a .pllm file at path. The data goes to an unnamed
// or hidden temporary file (package atomicfile) that Close moves to path.
// An existing path is refused unless force is set, also when another writer
// creates it while this one writes; a directory is always refused.
func Create(path string, force bool) (*Writer, error) {
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("pllm: create %s: is a directory", path)
	}
	tmp, err := atomicfile.Create(path, force)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("pllm: create %s: file exists (overwriting needs force)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("pllm: create %s: %v", path, err)
	}
	w := &Writer{
		path: path, tmp: tmp,
		bw:      bufio.NewWriterSize(tmp, 1<<20),
		groups:  map[string]bool{},
		tensors: map[string]bool{},
		sides:   map[string]bool{},
		scratch: make([]byte, 64<<10),
	}
	var hdr [FileHeaderSize]byte
	copy(hdr[:], fileMagic[:])
	binary.LittleEndian.PutUint32(hdr[8:], Version)
	binary.LittleEndian.PutUint32(hdr[12:], 0)
	if _, err := w.bw.Write(hdr[:]); err != nil {
		w.fail(fmt.Errorf("pllm: %s: %v", path, err))
		return nil, w.err
	}
	w.off = FileHeaderSize
	return w, nil
}

// fail records err, removes the temporary file and returns err.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	w.cleanup()
	return w.err
}

func (w *Writer) cleanup() {
	if w.tmp != nil {
		w.tmp.Abort()
		w.tmp = nil
	}
}

func (w *Writer) check() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return errClosed
	}
	return nil
}

func (w *Writer) errorf(format string, args ...any) error {
	return w.fail(fmt.Errorf("pllm: %s: "+format, append([]any{w.path}, args...)...))
}

// marshal encodes v as compact JSON without HTML escaping, so the stored
// descriptor is as readable as the data allows and the same for the same v.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// sectionWriter frames one section: it hashes everything written and checks
// that exactly the announced number of bytes arrives.
type sectionWriter struct {
	w    *Writer
	crc  hash.Hash32
	n    int64
	want int64
}

func (s *sectionWriter) Write(p []byte) (int, error) {
	s.crc.Write(p)
	s.n += int64(len(p))
	return s.w.bw.Write(p)
}

// begin writes a section header, name and descriptor.
func (w *Writer) begin(kind Kind, name string, desc []byte, bodyLen int64) (*sectionWriter, error) {
	if len(desc) > MaxDescriptorLen {
		return nil, fmt.Errorf("descriptor of %d bytes exceeds %d", len(desc), MaxDescriptorLen)
	}
	s := &sectionWriter{w: w, crc: crc32.New(castagnoli)}
	s.want = SectionHeaderSize + int64(len(name)) + int64(len(desc)) + bodyLen
	var hdr [SectionHeaderSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(kind))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(name)))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(desc)))
	binary.LittleEndian.PutUint32(hdr[12:], 0)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(bodyLen))
	if _, err := s.Write(hdr[:]); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(s, name); err != nil {
		return nil, err
	}
	if _, err := s.Write(desc); err != nil {
		return nil, err
	}
	return s, nil
}

// end writes the CRC and records the section in the index.
func (w *Writer) end(s *sectionWriter, kind Kind) error {
	if s.n != s.want {
		return fmt.Errorf("internal error: wrote %d bytes, announced %d", s.n, s.want)
	}
	var c [SectionCRCSize]byte
	binary.LittleEndian.PutUint32(c[:], s.crc.Sum32())
	if _, err := w.bw.Write(c[:]); err != nil {
		return err
	}
	size := s.n + SectionCRCSize
	w.index = append(w.index, indexEntry{off: w.off, size: size, kind: kind})
	w.off += size
	return nil
}

// WriteMeta writes the metadata record. It must be called exactly once,
// at any point before Close.
func (w *Writer) WriteMeta(m Meta) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.metaDone {
		return w.errorf("meta: written twice")
	}
	desc, err := marshal(m)
	if err != nil {
		return w.errorf("meta: %v", err)
	}
	s, err := w.begin(KindMeta, "", desc, 0)
	if err == nil {
		err = w.end(s, KindMeta)
	}
	if err != nil {
		return w.errorf("meta: %v", err)
	}
	w.metaDone = true
	return nil
}

// WriteGroup writes one compressed group. Group names are unique; member
// names are unique across all groups and raw tensors.
func (w *Writer) WriteGroup(g Group) error {
	if err := w.check(); err != nil {
		return err
	}
	if err := w.writeGroup(g); err != nil {
		return w.errorf("group %q: %v", g.Name, err)
	}
	return nil
}

func (w *Writer) writeGroup(g Group) error {
	if err := checkName("group", g.Name, MaxNameLen); err != nil {
		return err
	}
	if w.groups[g.Name] {
		return fmt.Errorf("duplicate group name")
	}
	d := groupDesc{Method: g.Method, Params: g.Params, Members: make([]Member, len(g.Members)), Arrays: make([]ArrayInfo, len(g.Arrays))}
	for i, m := range g.Members {
		if m.Shape == nil {
			m.Shape = []int{}
		}
		d.Members[i] = m
	}
	for i, a := range g.Arrays {
		if err := a.checkData(); err != nil {
			return err
		}
		d.Arrays[i] = a.Info()
	}
	_, sizes, err := validateGroup(&d)
	if err != nil {
		return err
	}
	for _, m := range d.Members {
		if w.tensors[m.Name] {
			return fmt.Errorf("member %q: tensor name already written", m.Name)
		}
	}
	desc, err := marshal(d)
	if err != nil {
		return err
	}
	var body int64
	for _, sz := range sizes {
		body += sz
	}
	s, err := w.begin(KindGroup, g.Name, desc, body)
	if err != nil {
		return err
	}
	for _, a := range g.Arrays {
		if err := w.writeArray(s, a); err != nil {
			return err
		}
	}
	if err := w.end(s, KindGroup); err != nil {
		return err
	}
	w.groups[g.Name] = true
	for _, m := range d.Members {
		w.tensors[m.Name] = true
	}
	return nil
}

// checkData rejects arrays whose data does not match their encoding, so a
// caller's slip (values in the wrong slice, a value too wide) is an error
// rather than a silently different file.
func (a Array) checkData() error {
	var bad bool
	switch a.Encoding {
	case F32, F16:
		bad = a.Uints != nil || a.Bytes != nil || a.Bits != 0
	case Uint:
		bad = a.Floats != nil || a.Bytes != nil
		if a.Bits < 1 || a.Bits > 32 {
			return fmt.Errorf("array %q: uint width %d outside 1..32", a.Name, a.Bits)
		}
		if a.Bits < 32 {
			lim := uint32(1) << a.Bits
			for i, v := range a.Uints {
				if v >= lim {
					return fmt.Errorf("array %q: value %d at %d does not fit in %d bits", a.Name, v, i, a.Bits)
				}
			}
		}
	case Bytes:
		bad = a.Floats != nil || a.Uints != nil || a.Bits != 0
	default:
		return fmt.Errorf("array %q: unknown encoding %q", a.Name, a.Encoding)
	}
	if bad {
		return fmt.Errorf("array %q: data or bits set that encoding %q does not use", a.Name, a.Encoding)
	}
	return nil
}

func (w *Writer) writeArray(s *sectionWriter, a Array) error {
	buf := w.scratch
	switch a.Encoding {
	case F32:
		for v := a.Floats; len(v) > 0; {
			n := min(len(v), len(buf)/4)
			for i := 0; i < n; i++ {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v[i]))
			}
			if _, err := s.Write(buf[:4*n]); err != nil {
				return err
			}
			v = v[n:]
		}
	case F16:
		for v := a.Floats; len(v) > 0; {
			n := min(len(v), len(buf)/2)
			fp16.EncodeF16(buf, v[:n])
			if _, err := s.Write(buf[:2*n]); err != nil {
				return err
			}
			v = v[n:]
		}
	case Uint:
		var acc uint64
		var nb uint
		k := 0
		width := uint(a.Bits)
		for _, v := range a.Uints {
			acc |= uint64(v) << nb
			nb += width
			for nb >= 8 {
				buf[k] = byte(acc)
				k++
				acc >>= 8
				nb -= 8
			}
			if k >= len(buf)-8 {
				if _, err := s.Write(buf[:k]); err != nil {
					return err
				}
				k = 0
			}
		}
		if nb > 0 {
			buf[k] = byte(acc)
			k++
		}
		if _, err := s.Write(buf[:k]); err != nil {
			return err
		}
	case Bytes:
		if _, err := s.Write(a.Bytes); err != nil {
			return err
		}
	}
	return nil
}

// WriteRaw writes one tensor uncompressed: data is its exact stored bytes
// (little-endian, len = elements x dtype size). It is written immediately.
func (w *Writer) WriteRaw(info TensorInfo, data []byte) error {
	return w.WriteRawFrom(info, bytes.NewReader(data), int64(len(data)))
}

// WriteRawFrom is WriteRaw with the n data bytes read from src through a
// small buffer, so a kept tensor is copied without being held whole.
func (w *Writer) WriteRawFrom(info TensorInfo, src io.Reader, n int64) error {
	if err := w.check(); err != nil {
		return err
	}
	if err := w.writeRaw(info, src, n); err != nil {
		return w.errorf("raw tensor %q: %v", info.Name, err)
	}
	return nil
}

func (w *Writer) writeRaw(info TensorInfo, src io.Reader, n int64) error {
	if err := checkName("tensor", info.Name, MaxNameLen); err != nil {
		return err
	}
	if w.tensors[info.Name] {
		return fmt.Errorf("tensor name already written")
	}
	d := rawDesc{DType: info.DType, Shape: info.Shape}
	if d.Shape == nil {
		d.Shape = []int{}
	}
	_, size, err := validateRaw(&d)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%d data bytes, dtype %s shape %v needs %d", n, d.DType, d.Shape, size)
	}
	desc, err := marshal(d)
	if err != nil {
		return err
	}
	s, err := w.begin(KindRaw, info.Name, desc, size)
	if err != nil {
		return err
	}
	if got, err := io.CopyBuffer(s, io.LimitReader(src, size), w.scratch); err != nil {
		return err
	} else if got != size {
		return fmt.Errorf("source gave %d of %d data bytes", got, size)
	}
	if err := w.end(s, KindRaw); err != nil {
		return err
	}
	w.tensors[info.Name] = true
	return nil
}

// WriteSideFile writes one side file. Its name must be a single file name
// (no path separators) and unique.
func (w *Writer) WriteSideFile(f SideFile) error {
	if err := w.check(); err != nil {
		return err
	}
	if err := w.writeSide(f); err != nil {
		return w.errorf("side file %q: %v", f.Name, err)
	}
	return nil
}

func (w *Writer) writeSide(f SideFile) error {
	if err := checkSideName(f.Name); err != nil {
		return err
	}
	if w.sides[f.Name] {
		return fmt.Errorf("duplicate side file")
	}
	desc, err := marshal(sideDesc{})
	if err != nil {
		return err
	}
	s, err := w.begin(KindSide, f.Name, desc, int64(len(f.Data)))
	if err != nil {
		return err
	}
	if _, err := s.Write(f.Data); err != nil {
		return err
	}
	if err := w.end(s, KindSide); err != nil {
		return err
	}
	w.sides[f.Name] = true
	return nil
}

// Close writes the section table and trailer, syncs the file to disk and
// renames it to its final path. The meta record must have been written.
func (w *Writer) Close() error { return w.CloseVerified(nil) }

// CloseVerified is Close with a last check before the file is put in place:
// the complete, synced file is read back with NewReader (every check Open
// makes) and, when verify is not nil, handed to it. If either fails, the
// temporary file is removed, nothing appears at the path (an existing file
// there stays as it was) and the error is returned.
func (w *Writer) CloseVerified(verify func(*Reader) error) error {
	if err := w.check(); err != nil {
		return err
	}
	if !w.metaDone {
		return w.errorf("meta record never written")
	}
	if err := w.finish(verify); err != nil {
		if errors.Is(err, errVerify) {
			return w.fail(err)
		}
		return w.errorf("%v", err)
	}
	w.done = true
	return nil
}

// errVerify marks a failed read-back check: its message already names the
// file.
var errVerify = errors.New("the file was not put in place")

// readBack opens the finished temporary file as a Reader named after the
// output path and runs verify on it.
func (w *Writer) readBack(verify func(*Reader) error) error {
	fi, err := w.tmp.Stat()
	if err != nil {
		return err
	}
	r, err := NewReader(w.tmp, fi.Size(), w.path)
	if err == nil && verify != nil {
		err = verify(r)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", err, errVerify)
	}
	return nil
}

func (w *Writer) finish(verify func(*Reader) error) error {
	indexOff := w.off
	body := int64(len(w.index)) * IndexEntrySize
	s, err := w.begin(KindIndex, "", nil, body)
	if err != nil {
		return err
	}
	var e [IndexEntrySize]byte
	for _, x := range w.index {
		binary.LittleEndian.PutUint64(e[0:], uint64(x.off))
		binary.LittleEndian.PutUint64(e[8:], uint64(x.size))
		binary.LittleEndian.PutUint32(e[16:], uint32(x.kind))
		binary.LittleEndian.PutUint32(e[20:], 0)
		if _, err := s.Write(e[:]); err != nil {
			return err
		}
	}
	if err := w.end(s, KindIndex); err != nil {
		return err
	}
	var t [TrailerSize]byte
	binary.LittleEndian.PutUint64(t[0:], uint64(indexOff))
	copy(t[8:], endMagic[:])
	if _, err := w.bw.Write(t[:]); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	if err := w.readBack(verify); err != nil {
		return err
	}
	err = w.tmp.Commit()
	w.tmp = nil
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("file appeared while writing (overwriting needs force)")
	}
	return err
}

// Abort stops writing and removes the temporary file. It is safe to call at
// any time, also after Close (then it does nothing), which makes
// `defer w.Abort()` the idiom.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.cleanup()
}
