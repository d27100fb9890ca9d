package pllm

import "fmt"

// Layout is the exact byte accounting of a file: FileHeaderSize, plus the
// Size of every section, plus TrailerSize, equals FileSize.
type Layout struct {
	FileSize    int64
	HeaderSize  int64 // the fixed file header
	TrailerSize int64 // the fixed trailer
	Sections    []SectionLayout
}

// SectionLayout is where one section lies and what its bytes are spent on.
// Size = FrameSize + DescriptorSize + BodySize.
type SectionLayout struct {
	Kind   Kind
	Name   string
	Offset int64
	// Size is every byte of the section on disk: header, name, descriptor,
	// body and CRC.
	Size int64
	// FrameSize is the fixed header, the name and the CRC.
	FrameSize      int64
	DescriptorSize int64
	BodySize       int64
	// Weights is the real number of weights stored: the members' elements
	// for a group, the tensor's elements for a raw tensor, 0 otherwise.
	Weights int64
	// Arrays lists a group's arrays; their sizes add up to BodySize.
	Arrays []ArrayLayout
}

// ArrayLayout is where one group array's stored values lie.
type ArrayLayout struct {
	ArrayInfo
	Offset int64 // absolute file offset
	Size   int64
}

// Cost is every byte the section adds to the file: its Size plus its
// IndexEntrySize-byte entry in the section table. The section table's own
// frame (header and CRC, 28 bytes) is charged to no section: it is framing,
// as the file header and trailer are. So FileSize = HeaderSize + Σ Cost +
// 28 + TrailerSize.
func (s SectionLayout) Cost() int64 {
	if s.Kind == KindIndex {
		return 0
	}
	return s.Size + IndexEntrySize
}

// BitsPerWeight is 8 x Cost / Weights: every byte the section adds to the
// file over its real weight count (what GroupSize plans for a group); 0 when
// the section stores no weights.
func (s SectionLayout) BitsPerWeight() float64 {
	if s.Weights == 0 {
		return 0
	}
	return 8 * float64(s.Cost()) / float64(s.Weights)
}

// Layout returns the file's byte accounting, the section table included
// (as the last section, of kind index).
func (r *Reader) Layout() Layout {
	l := Layout{FileSize: r.size, HeaderSize: FileHeaderSize, TrailerSize: TrailerSize}
	for i := range r.sections {
		s := &r.sections[i]
		sl := SectionLayout{
			Kind: s.kind, Name: s.name, Offset: s.off, Size: s.size,
			FrameSize:      SectionHeaderSize + s.nameLen + SectionCRCSize,
			DescriptorSize: s.descLen,
			BodySize:       s.bodyLen,
			Weights:        s.weights,
		}
		if s.group != nil {
			at := s.bodyOff()
			for k, a := range s.group.Arrays {
				sl.Arrays = append(sl.Arrays, ArrayLayout{ArrayInfo: a, Offset: at, Size: s.arrays[k]})
				at += s.arrays[k]
			}
		}
		l.Sections = append(l.Sections, sl)
	}
	return l
}

// Check verifies the accounting identities: sections are contiguous, each
// section's parts add up to its size, a group's arrays fill its body, and
// header + sections + trailer is the file size.
func (l Layout) Check() error {
	pos := l.HeaderSize
	for i, s := range l.Sections {
		if s.Offset != pos {
			return fmt.Errorf("section %d (%s %q) at %d, expected %d", i, s.Kind, s.Name, s.Offset, pos)
		}
		if s.FrameSize+s.DescriptorSize+s.BodySize != s.Size {
			return fmt.Errorf("section %d (%s %q): parts %d+%d+%d != size %d", i, s.Kind, s.Name, s.FrameSize, s.DescriptorSize, s.BodySize, s.Size)
		}
		if s.Kind == KindGroup {
			at := s.Offset + s.Size - SectionCRCSize - s.BodySize
			for _, a := range s.Arrays {
				if a.Offset != at {
					return fmt.Errorf("section %d (%s %q): array %q at %d, expected %d", i, s.Kind, s.Name, a.Name, a.Offset, at)
				}
				at += a.Size
			}
			if at != s.Offset+s.Size-SectionCRCSize {
				return fmt.Errorf("section %d (%s %q): arrays do not fill the body", i, s.Kind, s.Name)
			}
		}
		pos += s.Size
	}
	if pos+l.TrailerSize != l.FileSize {
		return fmt.Errorf("header, sections and trailer add up to %d, file size is %d", pos+l.TrailerSize, l.FileSize)
	}
	return nil
}

// GroupSize is the number of bytes WriteGroup will spend on g, its entry in
// the section table included (the SectionLayout.Cost of the written group),
// computed from the group's description alone (array counts and encodings,
// no data): what a planner counts against a bits-per-weight budget before
// the arrays exist.
func GroupSize(g GroupInfo) (int64, error) {
	d := groupDesc{Method: g.Method, Params: g.Params, Members: g.Members, Arrays: g.Arrays}
	_, sizes, err := validateGroup(&d)
	if err != nil {
		return 0, err
	}
	desc, err := marshal(d)
	if err != nil {
		return 0, err
	}
	n := int64(SectionHeaderSize+SectionCRCSize+IndexEntrySize) + int64(len(g.Name)) + int64(len(desc))
	for _, s := range sizes {
		n += s
	}
	return n, nil
}
