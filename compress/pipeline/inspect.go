package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"

	"pocketllm-native/compress/pllm"
)

// Report describes a .pllm file. Every byte count comes from the file's own
// layout, so the bits per weight it states are the bytes on disk.
type Report struct {
	File         string          `json:"file"`
	FileBytes    int64           `json:"file_bytes"`
	SourceFormat string          `json:"source_format"`
	Settings     json.RawMessage `json:"settings,omitempty"`

	// Over the compressed tensors: every byte of their group sections, each
	// with its 24-byte entry in the section table (pllm.SectionLayout.Cost).
	CompressedWeights int64   `json:"compressed_weights"`
	CompressedBytes   int64   `json:"compressed_bytes"`
	BitsPerWeight     float64 `json:"bits_per_weight"`
	// CompressionRatioFP16 and FP32 compare the compressed tensors' stored
	// bytes with the same weights at 16 and 32 bits.
	CompressionRatioFP16 float64 `json:"compression_ratio_fp16"`
	CompressionRatioFP32 float64 `json:"compression_ratio_fp32"`

	// The rest of the file, each section with its section table entry as
	// well, so CompressedBytes + RawBytes + SideBytes + FramingBytes is the
	// file size.
	RawWeights   int64 `json:"raw_weights"`
	RawBytes     int64 `json:"raw_bytes"`
	SideBytes    int64 `json:"side_bytes"`
	FramingBytes int64 `json:"framing_bytes"` // header, metadata, section table frame, trailer
	// ModelBytesFP16 is the whole model (compressed and kept tensors) at 16
	// bits per weight; FileRatioFP16 is that over FileBytes.
	ModelBytesFP16 int64   `json:"model_bytes_fp16"`
	FileRatioFP16  float64 `json:"file_ratio_fp16"`

	Groups  []GroupReport  `json:"groups"`
	Tensors []TensorReport `json:"tensors"`
	Seconds float64        `json:"seconds,omitempty"`
}

// GroupReport is one compressed group.
type GroupReport struct {
	Name   string `json:"name"`
	Method string `json:"method"`
	// Params are the method's settings as stored (GroupParams, VQParams
	// or RTNParams).
	Params        json.RawMessage `json:"params"`
	Setting       string          `json:"setting"` // a short human form: "d=4 K=256", "4-bit g32"
	Members       int             `json:"members"`
	Weights       int64           `json:"weights"`
	Bytes         int64           `json:"bytes"` // its section and its section table entry
	BitsPerWeight float64         `json:"bits_per_weight"`
	Arrays        []ArrayBytes    `json:"arrays"`
}

// ArrayBytes is one stored array's size.
type ArrayBytes struct {
	Name     string `json:"name"`
	Encoding string `json:"encoding"`
	Count    int    `json:"count"`
	Bytes    int64  `json:"bytes"`
}

// TensorReport is one tensor of the model.
type TensorReport struct {
	Name   string `json:"name"`
	Shape  []int  `json:"shape"`
	DType  string `json:"dtype"`
	Method string `json:"method"` // "pocketllm" or "raw"
	Group  string `json:"group,omitempty"`
	// BitsPerWeight of a compressed tensor is its group's (a shared meta
	// network is paid for by all its members together).
	BitsPerWeight float64  `json:"bits_per_weight"`
	NMSE          *float64 `json:"nmse,omitempty"`
}

// Inspect reads and verifies a .pllm file and reports on it. Besides the
// container's own checks it reads every group as its method does (array
// counts, index ranges, finite floats), without reconstructing the weights.
func Inspect(path string) (*Report, error) {
	r, err := pllm.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return inspect(r, path)
}

// inspect is Inspect on an open file; Compress runs it on the written file
// before putting it in place.
func inspect(r *pllm.Reader, path string) (*Report, error) {
	l := r.Layout()
	if err := l.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := r.Meta()
	rep := &Report{File: path, FileBytes: l.FileSize, SourceFormat: m.SourceFormat, Settings: m.Settings}
	rep.FramingBytes = l.HeaderSize + l.TrailerSize
	groups := r.Groups()
	gi := 0
	for _, s := range l.Sections {
		switch s.Kind {
		case pllm.KindGroup:
			g := groups[gi]
			grp, err := r.ReadGroup(gi)
			if err != nil {
				return nil, err
			}
			if _, err := decodeGroup(path, grp); err != nil && !errors.Is(err, errUnknownMethod) {
				return nil, err
			}
			gi++
			var p struct{ Dim, K, Bits, GroupSize int }
			if err := json.Unmarshal(g.Params, &p); err != nil {
				return nil, fmt.Errorf("%s: group %s: settings: %v", path, g.Name, err)
			}
			setting := fmt.Sprintf("d=%d K=%d", p.Dim, p.K)
			if g.Method == MethodRTN {
				var rp RTNParams
				if err := json.Unmarshal(g.Params, &rp); err != nil {
					return nil, fmt.Errorf("%s: group %s: settings: %v", path, g.Name, err)
				}
				setting = fmt.Sprintf("%d-bit g%d", rp.Bits, rp.GroupSize)
			}
			gr := GroupReport{Name: g.Name, Method: g.Method, Params: g.Params, Setting: setting, Members: len(g.Members),
				Weights: s.Weights, Bytes: s.Cost(), BitsPerWeight: s.BitsPerWeight()}
			for _, a := range s.Arrays {
				gr.Arrays = append(gr.Arrays, ArrayBytes{Name: a.Name, Encoding: string(a.Encoding), Count: a.Count, Bytes: a.Size})
			}
			rep.Groups = append(rep.Groups, gr)
			rep.CompressedWeights += s.Weights
			rep.CompressedBytes += s.Cost()
			for _, mem := range g.Members {
				tr := TensorReport{Name: mem.Name, Shape: mem.Shape, DType: string(mem.DType), Method: g.Method,
					Group: g.Name, BitsPerWeight: s.BitsPerWeight()}
				var mp MemberParams
				if len(mem.Params) > 0 && json.Unmarshal(mem.Params, &mp) == nil {
					tr.NMSE = &mp.NMSE
				}
				rep.Tensors = append(rep.Tensors, tr)
			}
		case pllm.KindRaw:
			rep.RawWeights += s.Weights
			rep.RawBytes += s.Cost()
		case pllm.KindSide:
			rep.SideBytes += s.Cost()
		case pllm.KindIndex:
			// Every entry is charged to its section; the table's frame is framing.
			rep.FramingBytes += s.Size - pllm.IndexEntrySize*int64(len(l.Sections)-1)
		default:
			rep.FramingBytes += s.Cost()
		}
	}
	for _, t := range r.RawTensors() {
		bpw := 0.0
		for _, s := range l.Sections {
			if s.Kind == pllm.KindRaw && s.Name == t.Name {
				bpw = s.BitsPerWeight()
			}
		}
		rep.Tensors = append(rep.Tensors, TensorReport{Name: t.Name, Shape: t.Shape, DType: string(t.DType), Method: "raw", BitsPerWeight: bpw})
	}
	if rep.CompressedWeights > 0 {
		rep.BitsPerWeight = 8 * float64(rep.CompressedBytes) / float64(rep.CompressedWeights)
		rep.CompressionRatioFP16 = 16 / rep.BitsPerWeight
		rep.CompressionRatioFP32 = 32 / rep.BitsPerWeight
	}
	rep.ModelBytesFP16 = 2 * (rep.CompressedWeights + rep.RawWeights)
	rep.FileRatioFP16 = float64(rep.ModelBytesFP16) / float64(rep.FileBytes)
	return rep, nil
}
