package pllm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"pocketllm-native/compress/fp16"
	"pocketllm-native/internal/regularfile"
)

// Reader gives access to a validated .pllm file. Open has checked the whole
// file; the Read methods re-check the CRC of what they read, so a file that
// changes after Open yields an error rather than silently different data.
// After Open a Reader is safe for concurrent use by several goroutines.
type Reader struct {
	name   string
	ra     io.ReaderAt
	closer io.Closer
	size   int64

	meta     Meta
	sections []section // file order, index last
	groups   []int     // positions in sections
	raws     []int
	sides    []int
	rawIdx   map[string]int
	sideIdx  map[string]int
	scratch  []byte // streaming buffer of load, released after it
}

type section struct {
	kind    Kind
	name    string
	off     int64
	size    int64
	nameLen int64
	descLen int64
	bodyLen int64
	crc     uint32

	group   *GroupInfo
	weights int64
	arrays  []int64 // byte size of each group array
	raw     TensorInfo
}

// bodyOff is the absolute offset of the section's body.
func (s *section) bodyOff() int64 { return s.off + SectionHeaderSize + s.nameLen + s.descLen }

// Open opens and fully validates the .pllm file at path.
func Open(path string) (*Reader, error) {
	f, err := regularfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pllm: %v", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pllm: %v", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("pllm: %s: not a regular file", path)
	}
	r, err := NewReader(f, fi.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader validates a .pllm file of the given size read through ra. name
// is used in error messages only.
func NewReader(ra io.ReaderAt, size int64, name string) (*Reader, error) {
	r := &Reader{name: name, ra: ra, size: size, rawIdx: map[string]int{}, sideIdx: map[string]int{}}
	if err := r.load(); err != nil {
		return nil, err
	}
	r.scratch = nil
	return r, nil
}

// Close releases the file opened by Open.
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	err := r.closer.Close()
	r.closer = nil
	return err
}

func (r *Reader) errf(where, format string, args ...any) error {
	return fmt.Errorf("pllm: %s: %s: %s", r.name, where, fmt.Sprintf(format, args...))
}

func (r *Reader) secWhere(i int, s *section) string {
	if s.name == "" {
		return fmt.Sprintf("section %d (%s) at offset %d", i, s.kind, s.off)
	}
	return fmt.Sprintf("section %d (%s %q) at offset %d", i, s.kind, s.name, s.off)
}

// readAt reads exactly len(p) bytes at off; a short read is an error.
func (r *Reader) readAt(p []byte, off int64) error {
	n, err := r.ra.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

const minSectionSize = SectionHeaderSize + SectionCRCSize

func (r *Reader) load() error {
	if r.size < FileHeaderSize+minSectionSize+TrailerSize {
		return r.errf("file", "%d bytes is too short for a .pllm file", r.size)
	}
	var hdr [FileHeaderSize]byte
	if err := r.readAt(hdr[:], 0); err != nil {
		return r.errf("header", "%v", err)
	}
	if !bytes.Equal(hdr[:8], fileMagic[:]) {
		return r.errf("header", "not a .pllm file (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != Version {
		return r.errf("header", "format version %d not supported (this reader reads version %d)", v, Version)
	}
	if fl := binary.LittleEndian.Uint32(hdr[12:]); fl != 0 {
		return r.errf("header", "unknown flags %#x", fl)
	}
	var tr [TrailerSize]byte
	if err := r.readAt(tr[:], r.size-TrailerSize); err != nil {
		return r.errf("trailer", "%v", err)
	}
	if !bytes.Equal(tr[8:], endMagic[:]) {
		return r.errf("trailer", "bad end magic (truncated or not a .pllm file)")
	}
	indexEnd := r.size - TrailerSize
	ixOff := binary.LittleEndian.Uint64(tr[:8])
	if ixOff < FileHeaderSize || ixOff > uint64(indexEnd-minSectionSize) {
		return r.errf("trailer", "index offset %d outside [%d, %d]", ixOff, FileHeaderSize, indexEnd-minSectionSize)
	}
	idx := section{kind: KindIndex, off: int64(ixOff), size: indexEnd - int64(ixOff)}
	entries, err := r.readIndex(&idx)
	if err != nil {
		return err
	}

	// The sections must tile the file between header and index exactly, so
	// that the per-section sizes add up to the file size.
	pos := int64(FileHeaderSize)
	metaSeen := false
	tensorSeen := map[string]bool{}
	groupSeen := map[string]bool{}
	for i, e := range entries {
		where := fmt.Sprintf("index entry %d", i)
		if e.kind == KindIndex || !e.kind.known() {
			return r.errf("index", "%s: bad section kind %d", where, uint32(e.kind))
		}
		if e.off != pos {
			return r.errf("index", "%s: offset %d, expected %d (sections must be contiguous)", where, e.off, pos)
		}
		if e.size < minSectionSize || e.size > idx.off-pos {
			return r.errf("index", "%s: size %d does not fit before the index at %d", where, e.size, idx.off)
		}
		s := section{kind: e.kind, off: e.off, size: e.size}
		if err := r.verify(i, &s); err != nil {
			return err
		}
		switch s.kind {
		case KindMeta:
			if metaSeen {
				return r.errf(r.secWhere(i, &s), "second meta section")
			}
			metaSeen = true
		case KindGroup:
			if groupSeen[s.name] {
				return r.errf(r.secWhere(i, &s), "duplicate group name")
			}
			groupSeen[s.name] = true
			for _, m := range s.group.Members {
				if tensorSeen[m.Name] {
					return r.errf(r.secWhere(i, &s), "member %q: tensor stored twice", m.Name)
				}
				tensorSeen[m.Name] = true
			}
			r.groups = append(r.groups, len(r.sections))
		case KindRaw:
			if tensorSeen[s.name] {
				return r.errf(r.secWhere(i, &s), "tensor stored twice")
			}
			tensorSeen[s.name] = true
			r.rawIdx[s.name] = len(r.sections)
			r.raws = append(r.raws, len(r.sections))
		case KindSide:
			if _, dup := r.sideIdx[s.name]; dup {
				return r.errf(r.secWhere(i, &s), "duplicate side file")
			}
			r.sideIdx[s.name] = len(r.sections)
			r.sides = append(r.sides, len(r.sections))
		}
		r.sections = append(r.sections, s)
		pos += e.size
	}
	if pos != idx.off {
		return r.errf("index", "sections end at %d but the index starts at %d", pos, idx.off)
	}
	if !metaSeen {
		return r.errf("index", "no meta section")
	}
	r.sections = append(r.sections, idx)
	return nil
}

// readIndex reads, checks and decodes the section table.
func (r *Reader) readIndex(s *section) ([]indexEntry, error) {
	where := fmt.Sprintf("index section at offset %d", s.off)
	var hdr [SectionHeaderSize]byte
	if err := r.readAt(hdr[:], s.off); err != nil {
		return nil, r.errf(where, "%v", err)
	}
	kind := Kind(binary.LittleEndian.Uint32(hdr[0:]))
	nameLen := binary.LittleEndian.Uint32(hdr[4:])
	descLen := binary.LittleEndian.Uint32(hdr[8:])
	flags := binary.LittleEndian.Uint32(hdr[12:])
	bodyLen := binary.LittleEndian.Uint64(hdr[16:])
	switch {
	case kind != KindIndex:
		return nil, r.errf(where, "kind %s, expected index", kind)
	case nameLen != 0 || descLen != 0:
		return nil, r.errf(where, "index has a name or descriptor")
	case flags != 0:
		return nil, r.errf(where, "unknown flags %#x", flags)
	case bodyLen != uint64(s.size-minSectionSize):
		return nil, r.errf(where, "body length %d does not match the %d bytes before the trailer", bodyLen, s.size-minSectionSize)
	case bodyLen%IndexEntrySize != 0:
		return nil, r.errf(where, "body length %d is not a multiple of %d", bodyLen, IndexEntrySize)
	}
	// Every listed section takes at least minSectionSize bytes before the
	// index, which bounds the index before it is read whole.
	count := int64(bodyLen / IndexEntrySize)
	if fit := min(MaxSections, (s.off-FileHeaderSize)/minSectionSize); count > fit {
		return nil, r.errf(where, "%d entries, but at most %d sections fit before the index", count, fit)
	}
	buf := make([]byte, s.size)
	if err := r.readAt(buf, s.off); err != nil {
		return nil, r.errf(where, "%v", err)
	}
	end := len(buf) - SectionCRCSize
	if got, want := crc32.Checksum(buf[:end], castagnoli), binary.LittleEndian.Uint32(buf[end:]); got != want {
		return nil, r.errf(where, "CRC mismatch (stored %08x, computed %08x)", want, got)
	}
	s.bodyLen = int64(bodyLen)
	s.crc = binary.LittleEndian.Uint32(buf[end:])
	body := buf[SectionHeaderSize:end]
	entries := make([]indexEntry, len(body)/IndexEntrySize)
	for i := range entries {
		e := body[i*IndexEntrySize:]
		off := binary.LittleEndian.Uint64(e[0:])
		size := binary.LittleEndian.Uint64(e[8:])
		if off > math.MaxInt64 || size > math.MaxInt64 {
			return nil, r.errf("index", "index entry %d: offset or size out of range", i)
		}
		if rs := binary.LittleEndian.Uint32(e[20:]); rs != 0 {
			return nil, r.errf("index", "index entry %d: reserved field %#x", i, rs)
		}
		entries[i] = indexEntry{off: int64(off), size: int64(size), kind: Kind(binary.LittleEndian.Uint32(e[16:]))}
	}
	return entries, nil
}

// verify reads section i's header, name and descriptor, streams its body
// through the CRC and validates its content.
func (r *Reader) verify(i int, s *section) error {
	where := func() string { return r.secWhere(i, s) }
	var hdr [SectionHeaderSize]byte
	if err := r.readAt(hdr[:], s.off); err != nil {
		return r.errf(where(), "%v", err)
	}
	kind := Kind(binary.LittleEndian.Uint32(hdr[0:]))
	nameLen := int64(binary.LittleEndian.Uint32(hdr[4:]))
	descLen := int64(binary.LittleEndian.Uint32(hdr[8:]))
	flags := binary.LittleEndian.Uint32(hdr[12:])
	bodyLen := binary.LittleEndian.Uint64(hdr[16:])
	if kind != s.kind {
		return r.errf(where(), "header says kind %s, index says %s", kind, s.kind)
	}
	if flags != 0 {
		return r.errf(where(), "unknown flags %#x", flags)
	}
	if nameLen > MaxNameLen || descLen > MaxDescriptorLen {
		return r.errf(where(), "name length %d or descriptor length %d over the limit", nameLen, descLen)
	}
	if bodyLen > uint64(s.size) || minSectionSize+nameLen+descLen+int64(bodyLen) != s.size {
		return r.errf(where(), "lengths (name %d, descriptor %d, body %d) do not add up to the section size %d", nameLen, descLen, bodyLen, s.size)
	}
	s.nameLen, s.descLen, s.bodyLen = nameLen, descLen, int64(bodyLen)
	nd := make([]byte, nameLen+descLen)
	if err := r.readAt(nd, s.off+SectionHeaderSize); err != nil {
		return r.errf(where(), "%v", err)
	}
	s.name = string(nd[:nameLen])
	desc := nd[nameLen:]

	crc := crc32.Update(0, castagnoli, hdr[:])
	crc = crc32.Update(crc, castagnoli, nd)

	// Parse before streaming so content checks that need body bytes can be
	// made in the same pass; a CRC failure still takes precedence.
	perr := r.parse(s, desc)
	var probes []probe
	if perr == nil {
		probes = s.probes()
	}
	crc, err := r.stream(s.bodyOff(), s.bodyLen, crc, probes)
	if err != nil {
		return r.errf(where(), "%v", err)
	}
	var c [SectionCRCSize]byte
	if err := r.readAt(c[:], s.off+s.size-SectionCRCSize); err != nil {
		return r.errf(where(), "%v", err)
	}
	if want := binary.LittleEndian.Uint32(c[:]); crc != want {
		return r.errf(where(), "CRC mismatch (stored %08x, computed %08x)", want, crc)
	}
	s.crc = crc
	if perr != nil {
		return r.errf(where(), "%v", perr)
	}
	for _, p := range probes {
		if p.got&^p.mask != 0 {
			return r.errf(where(), "array %q: unused bits of its last byte are not zero", p.array)
		}
	}
	return nil
}

// probe checks the padding bits in the last byte of a uint array.
type probe struct {
	at    int64 // offset within the body
	mask  byte  // bits that carry data
	got   byte
	array string
}

func (s *section) probes() []probe {
	if s.kind != KindGroup {
		return nil
	}
	var ps []probe
	var at int64
	for i, a := range s.group.Arrays {
		at += s.arrays[i]
		if a.Encoding != Uint {
			continue
		}
		if used := (int64(a.Count) * int64(a.Bits)) % 8; used != 0 {
			ps = append(ps, probe{at: at - 1, mask: byte(1)<<used - 1, array: a.Name})
		}
	}
	return ps
}

// stream hashes n bytes at off in bounded chunks, collecting probe bytes.
func (r *Reader) stream(off, n int64, crc uint32, probes []probe) (uint32, error) {
	if int64(len(r.scratch)) < min(n, 1<<20) {
		r.scratch = make([]byte, min(n, 1<<20))
	}
	buf := r.scratch
	var done int64
	for done < n {
		k := min(n-done, int64(len(buf)))
		if err := r.readAt(buf[:k], off+done); err != nil {
			return 0, err
		}
		for j := range probes {
			if p := &probes[j]; p.at >= done && p.at < done+k {
				p.got = buf[p.at-done]
			}
		}
		crc = crc32.Update(crc, castagnoli, buf[:k])
		done += k
	}
	return crc, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("descriptor: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("descriptor: trailing data after the JSON value")
	}
	return nil
}

// compact returns JSON in the compact form the writer stores, so that
// reading and rewriting a file is a fixed point whoever wrote it.
func compact(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return m
	}
	var b bytes.Buffer
	if json.Compact(&b, m) != nil {
		return m // cannot happen: the decoder has validated it
	}
	return b.Bytes()
}

// parse decodes and validates a section's name and descriptor against its
// body length.
func (r *Reader) parse(s *section, desc []byte) error {
	switch s.kind {
	case KindMeta:
		if s.name != "" {
			return fmt.Errorf("meta section has a name")
		}
		if s.bodyLen != 0 {
			return fmt.Errorf("meta section has a body of %d bytes", s.bodyLen)
		}
		var m Meta
		if err := decodeStrict(desc, &m); err != nil {
			return err
		}
		m.ModelConfig, m.Settings = compact(m.ModelConfig), compact(m.Settings)
		r.meta = m
	case KindGroup:
		if err := checkName("group", s.name, MaxNameLen); err != nil {
			return err
		}
		var d groupDesc
		if err := decodeStrict(desc, &d); err != nil {
			return err
		}
		w, sizes, err := validateGroup(&d)
		if err != nil {
			return err
		}
		var total int64
		for _, sz := range sizes {
			total += sz
		}
		if total != s.bodyLen {
			return fmt.Errorf("arrays need %d bytes, body has %d", total, s.bodyLen)
		}
		for i := range d.Members {
			if d.Members[i].Shape == nil {
				d.Members[i].Shape = []int{}
			}
			d.Members[i].Params = compact(d.Members[i].Params)
		}
		d.Params = compact(d.Params)
		s.group = &GroupInfo{Name: s.name, Method: d.Method, Params: d.Params, Members: d.Members, Arrays: d.Arrays}
		s.weights, s.arrays = w, sizes
	case KindRaw:
		if err := checkName("tensor", s.name, MaxNameLen); err != nil {
			return err
		}
		var d rawDesc
		if err := decodeStrict(desc, &d); err != nil {
			return err
		}
		n, size, err := validateRaw(&d)
		if err != nil {
			return err
		}
		if size != s.bodyLen {
			return fmt.Errorf("dtype %s shape %v needs %d bytes, body has %d", d.DType, d.Shape, size, s.bodyLen)
		}
		if d.Shape == nil {
			d.Shape = []int{}
		}
		s.raw = TensorInfo{Name: s.name, DType: d.DType, Shape: d.Shape}
		s.weights = n
	case KindSide:
		if err := checkSideName(s.name); err != nil {
			return err
		}
		var d sideDesc
		if err := decodeStrict(desc, &d); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unexpected section kind %s", s.kind)
	}
	return nil
}

// readSection reads a whole section and checks its CRC against the one
// verified at Open.
func (r *Reader) readSection(i int) ([]byte, error) {
	s := &r.sections[i]
	buf := make([]byte, s.size)
	if err := r.readAt(buf, s.off); err != nil {
		return nil, r.errf(r.secWhere(i, s), "%v", err)
	}
	end := len(buf) - SectionCRCSize
	got := crc32.Checksum(buf[:end], castagnoli)
	if got != binary.LittleEndian.Uint32(buf[end:]) || got != s.crc {
		return nil, r.errf(r.secWhere(i, s), "CRC mismatch (file changed since it was opened?)")
	}
	return buf, nil
}

func (r *Reader) body(i int, buf []byte) []byte {
	s := &r.sections[i]
	start := SectionHeaderSize + s.nameLen + s.descLen
	return buf[start : start+s.bodyLen]
}

// Meta returns the metadata record.
func (r *Reader) Meta() Meta { return r.meta }

// Groups describes the compressed groups in file order.
func (r *Reader) Groups() []GroupInfo {
	out := make([]GroupInfo, len(r.groups))
	for i, si := range r.groups {
		out[i] = *r.sections[si].group
	}
	return out
}

// ReadGroup reads group i (in the order of Groups) with its array data.
func (r *Reader) ReadGroup(i int) (Group, error) {
	if i < 0 || i >= len(r.groups) {
		return Group{}, fmt.Errorf("pllm: %s: group %d out of range [0, %d)", r.name, i, len(r.groups))
	}
	si := r.groups[i]
	buf, err := r.readSection(si)
	if err != nil {
		return Group{}, err
	}
	s := &r.sections[si]
	gi := s.group
	g := Group{Name: gi.Name, Method: gi.Method, Params: gi.Params, Members: gi.Members, Arrays: make([]Array, len(gi.Arrays))}
	body := r.body(si, buf)
	for k, a := range gi.Arrays {
		p := body[:s.arrays[k]]
		body = body[s.arrays[k]:]
		arr, err := decodeArray(a, p)
		if err != nil {
			return Group{}, r.errf(r.secWhere(si, s), "array %q: %v", a.Name, err)
		}
		g.Arrays[k] = arr
	}
	return g, nil
}

// decodeArray decodes the stored bytes p of array a; len(p) has been
// checked against a's encoding and count.
func decodeArray(a ArrayInfo, p []byte) (Array, error) {
	out := Array{Name: a.Name, Encoding: a.Encoding, Bits: a.Bits}
	switch a.Encoding {
	case F32:
		v := make([]float32, a.Count)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
		}
		out.Floats = v
	case F16:
		v := make([]float32, a.Count)
		fp16.DecodeF16(v, p)
		out.Floats = v
	case Uint:
		v := make([]uint32, a.Count)
		var acc uint64
		var nb uint
		width := uint(a.Bits)
		mask := uint64(1)<<width - 1
		k := 0
		for i := range v {
			for nb < width {
				acc |= uint64(p[k]) << nb
				k++
				nb += 8
			}
			v[i] = uint32(acc & mask)
			acc >>= width
			nb -= width
		}
		if acc != 0 {
			return Array{}, fmt.Errorf("unused bits of the last byte are not zero")
		}
		out.Uints = v
	case Bytes:
		out.Bytes = append([]byte{}, p...)
	default:
		return Array{}, fmt.Errorf("unknown encoding %q", a.Encoding)
	}
	return out, nil
}

// RawInfo describes the named uncompressed tensor; false when there is none.
func (r *Reader) RawInfo(name string) (TensorInfo, bool) {
	si, ok := r.rawIdx[name]
	if !ok {
		return TensorInfo{}, false
	}
	return r.sections[si].raw, true
}

// RawTensors describes the uncompressed tensors in file order.
func (r *Reader) RawTensors() []TensorInfo {
	out := make([]TensorInfo, len(r.raws))
	for i, si := range r.raws {
		out[i] = r.sections[si].raw
	}
	return out
}

// ReadRaw returns the exact stored bytes of an uncompressed tensor.
func (r *Reader) ReadRaw(name string) ([]byte, error) {
	si, ok := r.rawIdx[name]
	if !ok {
		return nil, fmt.Errorf("pllm: %s: no raw tensor %q", r.name, name)
	}
	buf, err := r.readSection(si)
	if err != nil {
		return nil, err
	}
	return r.body(si, buf), nil
}

// RawStream returns a reader of an uncompressed tensor's stored bytes and
// their count, for copying a tensor larger than one should hold. The
// section's CRC is checked as the reader reaches the end: the last Read
// returns an error instead of io.EOF when the bytes differ from those
// verified at Open.
func (r *Reader) RawStream(name string) (io.Reader, int64, error) {
	si, ok := r.rawIdx[name]
	if !ok {
		return nil, 0, fmt.Errorf("pllm: %s: no raw tensor %q", r.name, name)
	}
	s := &r.sections[si]
	// The CRC covers the header, name and descriptor before the body.
	head := make([]byte, s.bodyOff()-s.off)
	if err := r.readAt(head, s.off); err != nil {
		return nil, 0, r.errf(r.secWhere(si, s), "%v", err)
	}
	rs := &rawStream{r: r, si: si, pos: s.bodyOff(), end: s.bodyOff() + s.bodyLen,
		crc: crc32.Update(0, castagnoli, head)}
	return rs, s.bodyLen, nil
}

type rawStream struct {
	r        *Reader
	si       int
	pos, end int64
	crc      uint32
	err      error
}

func (s *rawStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	sec := &s.r.sections[s.si]
	n := int(min(int64(len(p)), s.end-s.pos))
	if err := s.r.readAt(p[:n], s.pos); err != nil {
		s.err = s.r.errf(s.r.secWhere(s.si, sec), "%v", err)
		return 0, s.err
	}
	s.crc = crc32.Update(s.crc, castagnoli, p[:n])
	s.pos += int64(n)
	if s.pos < s.end {
		return n, nil
	}
	// The check comes with the last bytes, since a reader of exactly the
	// tensor's length never asks for more.
	var c [SectionCRCSize]byte
	if err := s.r.readAt(c[:], s.end); err != nil {
		s.err = s.r.errf(s.r.secWhere(s.si, sec), "%v", err)
	} else if s.crc != binary.LittleEndian.Uint32(c[:]) || s.crc != sec.crc {
		s.err = s.r.errf(s.r.secWhere(s.si, sec), "CRC mismatch (file changed since it was opened?)")
	} else {
		s.err = io.EOF
	}
	if s.err == io.EOF {
		return n, nil
	}
	return n, s.err
}

// SideFileNames lists the side files in file order.
func (r *Reader) SideFileNames() []string {
	out := make([]string, len(r.sides))
	for i, si := range r.sides {
		out[i] = r.sections[si].name
	}
	return out
}

// ReadSideFile returns one side file's content.
func (r *Reader) ReadSideFile(name string) ([]byte, error) {
	si, ok := r.sideIdx[name]
	if !ok {
		return nil, fmt.Errorf("pllm: %s: no side file %q", r.name, name)
	}
	buf, err := r.readSection(si)
	if err != nil {
		return nil, err
	}
	return r.body(si, buf), nil
}

// SideFiles reads every side file, in file order.
func (r *Reader) SideFiles() ([]SideFile, error) {
	out := make([]SideFile, 0, len(r.sides))
	for _, name := range r.SideFileNames() {
		data, err := r.ReadSideFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, SideFile{Name: name, Data: data})
	}
	return out, nil
}
