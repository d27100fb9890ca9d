// Package testvectors holds golden inputs and outputs for every kernel of
// package bindings, for the small networks built from them (the encoder
// and decoder of METHOD.md section 2) and for one whole training step and
// epoch (section 4), together with the float64 oracle that produced them.
//
// The oracle is written from the documents, not from any backend, and shares
// no code with bindings (this package does not import it). The vectors live
// in data/<kernel>.json in a canonical text form (see Format) and are
// embedded, so a test binary carried to another machine brings them along.
// They change only through `go test ./testvectors -update`, and a change to
// them is reviewed like code.
package testvectors

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Kernel names, one data file each.
const (
	KAssign        = "assign"
	KCodebookStats = "codebook_stats"
	KMLPForward    = "mlp_forward"
	KMLPBackward   = "mlp_backward"
	KRLNForward    = "rln_forward"
	KRLNBackward   = "rln_backward"
	KAdam          = "adam"
	KDecode        = "decode"
	KEncoder       = "encoder"     // encoder network, forward and backward
	KDecoder       = "decoder"     // decoder network, forward and backward
	KTrainStep     = "train_step"  // one training step: forward, backward, Adam
	KTrainEpoch    = "train_epoch" // one training epoch: every batch, then the full pass
	KGemm          = "gemm"
)

// Kernels lists, in a fixed order, the data files of the kernels, which
// package bindings checks on every backend.
var Kernels = []string{KAssign, KCodebookStats, KMLPForward, KMLPBackward, KRLNForward, KRLNBackward, KAdam, KDecode, KGemm}

// Composed lists the data files of what training composes from the
// kernels: the encoder and decoder networks and one whole training step
// (checked by compress/metanet), one whole epoch (compress/pocketllm).
var Composed = []string{KEncoder, KDecoder, KTrainStep, KTrainEpoch}

// Files lists every data file: Kernels, then Composed.
var Files = append(Kernels[:len(Kernels):len(Kernels)], Composed...)

// Case is one golden vector: the arguments of one call and what the oracle
// says it must produce. Which keys a kernel uses is written beside its
// generator in gen.go; consumers look them up by name.
type Case struct {
	Name    string               `json:"name"`
	Ints    map[string]int       `json:"ints,omitempty"`     // sizes, flags, step counts
	Scalars map[string]float64   `json:"scalars,omitempty"`  // hyper-parameters (stored exactly as float32 values)
	F32     map[string][]float32 `json:"f32,omitempty"`      // float inputs
	I32     map[string][]int32   `json:"i32,omitempty"`      // index inputs
	Want    map[string][]float64 `json:"want,omitempty"`     // expected float outputs, float64
	WantInt map[string][]int64   `json:"want_int,omitempty"` // expected integer outputs
	Error   string               `json:"error,omitempty"`    // non-empty: the call must fail (the oracle's reason)
}

// File is the content of one data file.
type File struct {
	Kernel string `json:"kernel"`
	Cases  []Case `json:"cases"`
}

//go:embed data/*.json
var data embed.FS

// Load returns the embedded golden cases of one kernel.
func Load(kernel string) ([]Case, error) {
	name := "data/" + kernel + ".json"
	b, err := data.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("testvectors: %s: %v", name, err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("testvectors: %s: %v", name, err)
	}
	if f.Kernel != kernel {
		return nil, fmt.Errorf("testvectors: %s: holds kernel %q", name, f.Kernel)
	}
	return f.Cases, nil
}

// Parse reads a data file, refusing unknown fields.
func Parse(b []byte) (File, error) {
	var f File
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return File{}, err
	}
	return f, nil
}

// wantDigits is the number of significant digits kept of each float64
// expected value: far more than any tolerance in use, few enough to keep the
// files small.
const wantDigits = 12

// Format writes f in the canonical form: fixed key order (maps sorted), one
// array per line, float32 values in their shortest round-trip form, float64
// values with wantDigits significant digits. Parse followed by Format gives
// the same bytes.
func Format(f File) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n\"kernel\": %s,\n\"cases\": [", strconv.Quote(f.Kernel))
	for ci, c := range f.Cases {
		if ci > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n{\n\"name\": " + strconv.Quote(c.Name))
		writeMap(&b, "ints", c.Ints, func(v int) string { return strconv.Itoa(v) })
		writeMap(&b, "scalars", c.Scalars, func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 32) })
		writeArrays(&b, "f32", c.F32, func(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) })
		writeArrays(&b, "i32", c.I32, func(v int32) string { return strconv.Itoa(int(v)) })
		writeArrays(&b, "want", c.Want, func(v float64) string { return strconv.FormatFloat(v, 'g', wantDigits, 64) })
		writeArrays(&b, "want_int", c.WantInt, func(v int64) string { return strconv.FormatInt(v, 10) })
		if c.Error != "" {
			b.WriteString(",\n\"error\": " + strconv.Quote(c.Error))
		}
		b.WriteString("\n}")
	}
	b.WriteString("\n]\n}\n")
	return b.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func writeMap[V any](b *bytes.Buffer, name string, m map[string]V, f func(V) string) {
	if len(m) == 0 {
		return
	}
	b.WriteString(",\n" + strconv.Quote(name) + ": {")
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(k) + ": " + f(m[k]))
	}
	b.WriteString("}")
}

func writeArrays[V any](b *bytes.Buffer, name string, m map[string][]V, f func(V) string) {
	if len(m) == 0 {
		return
	}
	b.WriteString(",\n" + strconv.Quote(name) + ": {")
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n" + strconv.Quote(k) + ": [")
		for j, v := range m[k] {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(f(v))
		}
		b.WriteString("]")
	}
	b.WriteString("\n}")
}

// Int returns c.Ints[key]. A missing key is a bug in gen.go, not bad
// input, so it panics with the case's name.
func (c Case) Int(key string) int {
	v, ok := c.Ints[key]
	if !ok {
		panic(fmt.Sprintf("testvectors: case %q has no int %q", c.Name, key))
	}
	return v
}

// Has reports whether c carries the flag key with a non-zero value.
func (c Case) Has(key string) bool { return c.Ints[key] != 0 }
