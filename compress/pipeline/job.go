package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"strings"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/pllm"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/rtn"
	"pocketllm-native/internal/regularfile"
)

// ToolVersion changes whenever the same input and settings may give other
// bytes (a change of method, planner or encoding): work folders and part
// files of another version are refused, never mixed in.
const ToolVersion = "pocketllm-native 1"

// jobSettings are the options of a run that change its bytes, as given
// (before the run resolves auto values): what a part file carries so that
// merge can run the global stages exactly as a single process would.
type jobSettings struct {
	Bits        float64            `json:"bits"`
	Dims        []int              `json:"dims"`
	Dim         int                `json:"dim"`
	K           int                `json:"k"`
	Share       string             `json:"share"`
	Include     string             `json:"include"`
	Exclude     string             `json:"exclude"`
	Method      string             `json:"method"`
	Training    pocketllm.Settings `json:"training"`
	VQIters     int                `json:"vq_iters"`
	RTN         rtn.Settings       `json:"rtn"`
	Calibration Calibration        `json:"calibration"`
	Tuning      Tuning             `json:"tuning"`
	// Contents of the files Calibration names, which change the bytes
	// while their names stay the same.
	CalibrationTextSHA256 string `json:"calibration_text_sha256,omitempty"`
	TokenizerSHA256       string `json:"tokenizer_sha256,omitempty"`
}

func settingsOf(o CompressOptions) (jobSettings, error) {
	s := jobSettings{
		Bits: o.Bits, Dims: o.Dims, Dim: o.Dim, K: o.K, Share: o.Share, Include: o.Include, Exclude: o.Exclude,
		Method: o.MethodName, Training: o.Method, VQIters: o.VQIters, RTN: o.RTN,
		Calibration: o.Calibration, Tuning: o.Tuning,
	}
	// PerCall runs the same steps (pocketllm.Settings): not a setting of the bytes.
	s.Training.PerCall = false
	var err error
	if s.CalibrationTextSHA256, err = fileSHA256(o.Calibration.Text, "calibration"); err != nil {
		return s, err
	}
	if s.TokenizerSHA256, err = fileSHA256(o.Calibration.Tokenizer, "calibration tokenizer"); err != nil {
		return s, err
	}
	return s, nil
}

// apply sets o's byte-changing options to s.
func (s jobSettings) apply(o *CompressOptions) {
	o.Bits, o.Dims, o.Dim, o.K, o.Share, o.Include, o.Exclude = s.Bits, s.Dims, s.Dim, s.K, s.Share, s.Include, s.Exclude
	o.MethodName, o.Method, o.VQIters, o.RTN = s.Method, s.Training, s.VQIters, s.RTN
	o.Calibration, o.Tuning = s.Calibration, s.Tuning
}

// fileSHA256 hashes a file or, for a folder (a tokenizer folder), nothing:
// a folder's own files are the input's side files when it is the input.
// what names the file's use in errors, as calibration's own errors do.
func fileSHA256(path, what string) (string, error) {
	if path == "" {
		return "", nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return "", nil
	}
	data, err := regularfile.ReadFile(path) // never waits on a FIFO; names the path
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// Fingerprint identifies a job: the same fingerprint means the same bytes.
// It is kept in three parts so that a mismatch can say what differs.
type Fingerprint struct {
	Input    string `json:"input"`    // SHA-256 of the input's tensors (names, dtypes, shapes, data), config and side files
	Settings string `json:"settings"` // SHA-256 of the byte-changing settings (jobSettings as JSON)
	Tool     string `json:"tool"`     // SHA-256 of the tool version, format version and backend (with its instruction-set path)
	// Job is the SHA-256 of the three: what records carry.
	Job string `json:"job"`
}

// jobID is the fingerprint as records carry it.
func (f Fingerprint) jobID() [32]byte {
	var id [32]byte
	b, _ := hex.DecodeString(f.Job)
	copy(id[:], b)
	return id
}

// backendID names the kernels whose arithmetic the bytes depend on.
func backendID(o CompressOptions) string {
	id := o.Kernels.Name()
	if o.KernelPath != "" {
		id += "/" + o.KernelPath
	}
	return id
}

func fingerprint(src *checkpoint.Source, o CompressOptions, s jobSettings) (Fingerprint, error) {
	var f Fingerprint
	in, err := inputHash(src)
	if err != nil {
		return f, err
	}
	sj, err := json.Marshal(s)
	if err != nil {
		return f, fmt.Errorf("recording the settings: %v", err)
	}
	st := sha256.Sum256(sj)
	tool := sha256.Sum256(fmt.Appendf(nil, "%s\x00pllm format %d\x00backend %s", ToolVersion, pllm.Version, backendID(o)))
	f.Input, f.Settings, f.Tool = hex.EncodeToString(in), hex.EncodeToString(st[:]), hex.EncodeToString(tool[:])
	job := sha256.Sum256([]byte(f.Input + f.Settings + f.Tool))
	f.Job = hex.EncodeToString(job[:])
	return f, nil
}

// inputHash reads every tensor of the input once. Every field is framed by
// its length, so that no two inputs hash alike by shifting bytes between
// fields.
func inputHash(src *checkpoint.Source) ([]byte, error) {
	h := sha256.New()
	field(h, []byte(src.Format))
	field(h, src.ConfigJSON)
	for _, t := range src.Tensors {
		// Streamed through the hash (as field frames it): a tensor larger
		// than a group is never held.
		raw, n, err := src.Stream(t.Name)
		if err != nil {
			return nil, err
		}
		field(h, []byte(t.Name))
		field(h, []byte(t.DType))
		for _, d := range t.Shape {
			binary.Write(h, binary.LittleEndian, int64(d))
		}
		binary.Write(h, binary.LittleEndian, uint64(n))
		if got, err := io.Copy(h, io.LimitReader(raw, n)); err != nil {
			return nil, err
		} else if got != n {
			return nil, fmt.Errorf("%s: tensor %s: %d of %d bytes", src.Path, t.Name, got, n)
		}
	}
	for _, sf := range src.SideFiles {
		field(h, []byte(sf.Name))
		field(h, sf.Data)
	}
	return h.Sum(nil), nil
}

func field(h hash.Hash, b []byte) {
	binary.Write(h, binary.LittleEndian, uint64(len(b)))
	h.Write(b)
}

// jobRecord is what a work folder's job.json and a part file's header say
// about the job.
type jobRecord struct {
	Fingerprint Fingerprint     `json:"fingerprint"`
	Tool        string          `json:"tool"`
	Backend     string          `json:"backend"`
	Input       string          `json:"input"` // the input as given; merge reopens it unless --in says otherwise
	Settings    json.RawMessage `json:"settings"`
	Groups      []string        `json:"groups"` // every planned group, in order
}

// mismatch says in one line how a job recorded at where differs from this
// one, or "" when it does not.
func (r jobRecord) mismatch(now jobRecord) string {
	f, g := r.Fingerprint, now.Fingerprint
	if f.Job == g.Job {
		return ""
	}
	var what []string
	if f.Input != g.Input {
		what = append(what, fmt.Sprintf("the input changed (%s now differs from the input %s it was made from)", now.Input, r.Input))
	}
	if f.Settings != g.Settings {
		what = append(what, settingsDiff(r.Settings, now.Settings))
	}
	if f.Tool != g.Tool {
		if r.Backend != now.Backend {
			what = append(what, fmt.Sprintf("the backend changed (%s, now %s)", r.Backend, now.Backend))
		} else {
			what = append(what, fmt.Sprintf("the tool changed (%s, now %s)", r.Tool, now.Tool))
		}
	}
	if len(what) == 0 {
		what = append(what, "its fingerprint differs")
	}
	return strings.Join(what, "; ")
}

// settingsDiff names the settings that differ between two jobSettings
// JSON objects, with their values.
func settingsDiff(was, now json.RawMessage) string {
	a, b := flatten(was), flatten(now)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diff []string
	for k := range keys {
		if a[k] != b[k] {
			diff = append(diff, fmt.Sprintf("%s was %s, now %s", k, orNone(a[k]), orNone(b[k])))
		}
	}
	sort.Strings(diff)
	if len(diff) == 0 {
		return "the settings changed"
	}
	return "settings changed: " + strings.Join(diff, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

// flatten maps a JSON object's leaves to their JSON text by dotted path.
func flatten(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, x := range m {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, x)
			}
			return
		}
		b, _ := json.Marshal(v)
		out[prefix] = string(b)
	}
	walk("", v)
	return out
}
