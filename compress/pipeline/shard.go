package pipeline

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"pocketllm-native/bindings"
	"pocketllm-native/internal/atomicfile"
	"pocketllm-native/internal/faultpoint"
)

// Shard is one share of a job's groups: Index from 0, of Count.
type Shard struct{ Index, Count int }

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

func (s Shard) check() error {
	if s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("--shard %d/%d: want I/N with 0 <= I < N", s.Index, s.Count)
	}
	return nil
}

// PartPath is where shard s of the job writing out puts its part file.
func PartPath(out string, s Shard) string {
	return fmt.Sprintf("%s.part-%d-of-%d", out, s.Index, s.Count)
}

// groupWork is a group's training cost in the units that matter: weights
// times passes times codebook entries (each pass scores every sub-vector
// against every codeword).
func groupWork(g plannedGroup, o CompressOptions) float64 {
	w := float64(g.Weights())
	switch g.method {
	case MethodPocketLLM:
		return w * float64(max(o.Method.Epochs, 1)) * float64(g.set.K)
	case MethodVQ:
		iters := o.VQIters
		if iters == 0 {
			iters = 25
		}
		return w * float64(iters) * float64(g.set.K)
	}
	return w
}

// assignShards deals the groups to count shards, largest work first, each
// to the shard with the least work so far (ties: the lower shard, then the
// earlier group): deterministic, and balanced by work, not by count.
func assignShards(planned []plannedGroup, o CompressOptions, count int) [][]int {
	order := make([]int, len(planned))
	work := make([]float64, len(planned))
	for i, g := range planned {
		order[i], work[i] = i, groupWork(g, o)
	}
	sort.SliceStable(order, func(a, b int) bool { return work[order[a]] > work[order[b]] })
	load := make([]float64, count)
	shards := make([][]int, count)
	for _, i := range order {
		best := 0
		for s := 1; s < count; s++ {
			if load[s] < load[best] {
				best = s
			}
		}
		load[best] += work[i]
		shards[best] = append(shards[best], i)
	}
	for _, s := range shards {
		sort.Ints(s)
	}
	return shards
}

// PartReport says what a shard run wrote.
type PartReport struct {
	File    string   `json:"file"`
	Shard   string   `json:"shard"`
	Groups  []string `json:"groups"`
	Of      int      `json:"of"` // groups in the whole job
	Reused  int      `json:"reused"`
	Bytes   int64    `json:"bytes"`
	Seconds float64  `json:"seconds"`
}

// CompressShard trains shard o.Shard's groups of the job and writes them
// to the part file o.Out (PartPath of the final output), for Merge. It
// keeps finished groups in o.WorkDir (default: o.Out + ".work") like a
// resumable Compress. With tuning, the stages that need every group run
// in Merge.
func CompressShard(o CompressOptions) (*PartReport, error) {
	start := time.Now()
	if o.Shard.Count == 0 {
		return nil, fmt.Errorf("CompressShard needs a shard")
	}
	if o.WorkDir == "" {
		o.WorkDir = o.Out + ".work"
	}
	j, err := startJob(o, nil)
	if err != nil {
		return nil, err
	}
	defer j.close()
	mine := assignShards(j.planned, j.o, o.Shard.Count)[o.Shard.Index]
	rep := &PartReport{File: o.Out, Shard: o.Shard.String(), Of: len(j.planned), Reused: j.work.reused}
	var work float64
	for _, i := range mine {
		rep.Groups = append(rep.Groups, j.planned[i].Name)
		work += groupWork(j.planned[i], j.o)
	}
	j.o.emit(Event{Kind: "notice", Stage: fmt.Sprintf("shard %s: %d of %d groups (%s)", o.Shard, len(mine), len(j.planned), strings.Join(rep.Groups, ", "))})
	for _, i := range mine {
		if _, err := j.obtain(i); err != nil {
			return nil, err
		}
	}
	if rep.Bytes, err = j.writePart(mine); err != nil {
		return nil, err
	}
	if err := j.work.removeGroups(mine); err != nil {
		j.o.emit(Event{Kind: "notice", Stage: err.Error()})
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// A part file (FORMAT.md):
//
//	magic "PLLMPRT1" | u32 header length | header (JSON) | u32 CRC-32C of
//	the bytes before it | then per group: u64 record length | group record
var partMagic = [8]byte{'P', 'L', 'L', 'M', 'P', 'R', 'T', '1'}

// partHeader is a part file's header.
type partHeader struct {
	jobRecord
	Shard   string `json:"shard"`
	Records []int  `json:"records"` // group indices, in file order
}

// writePart copies the work folder's records of groups into the part file.
func (j *job) writePart(groups []int) (int64, error) {
	hdr, err := json.Marshal(partHeader{jobRecord: j.rec, Shard: j.o.Shard.String(), Records: groups})
	if err != nil {
		return 0, fmt.Errorf("%s: %v", j.o.Out, err)
	}
	f, err := atomicfile.Create(j.o.Out, j.o.Force)
	if err != nil {
		return 0, atomicfile.ForceHint(err, j.o.Out)
	}
	ok := false
	defer func() {
		if !ok {
			f.Abort()
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	head := append(partMagic[:], binary.LittleEndian.AppendUint32(nil, uint32(len(hdr)))...)
	head = append(head, hdr...)
	head = binary.LittleEndian.AppendUint32(head, crc32.Checksum(head, castagnoli))
	bw.Write(head)
	n := int64(len(head))
	for _, i := range groups {
		b, err := os.ReadFile(filepath.Join(j.work.path, recordName(i)))
		if err != nil {
			return 0, fmt.Errorf("work folder %s: %v", j.work.path, err)
		}
		bw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(b))))
		if _, err := bw.Write(b); err != nil {
			return 0, fmt.Errorf("%s: %v", j.o.Out, err)
		}
		n += 8 + int64(len(b))
		faultpoint.Hit("part-record")
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("%s: %v", j.o.Out, err)
	}
	if err := f.Commit(); err != nil {
		return 0, atomicfile.ForceHint(err, j.o.Out)
	}
	ok = true
	return n, nil
}

// partSet is the part files being merged: where each group's record is.
type partSet struct {
	rec   jobRecord
	files []*os.File
	names []string
	at    map[int]partRecord
}

type partRecord struct {
	file     int
	off, len int64
}

func (p *partSet) first() string { return p.names[0] }

func (p *partSet) close() {
	for _, f := range p.files {
		f.Close()
	}
}

// openParts reads the parts' headers and checks that they are of one job
// and hold every group exactly once.
func openParts(names []string) (_ *partSet, err error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("merge: no part files given")
	}
	p := &partSet{at: map[int]partRecord{}}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	var headers []partHeader
	for k, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		p.files, p.names = append(p.files, f), append(p.names, name)
		h, off, err := readPartHeader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		if k == 0 {
			p.rec = h.jobRecord
		} else if why := p.rec.mismatch(h.jobRecord); why != "" {
			return nil, fmt.Errorf("%s is not of the same job as %s: %s", name, names[0], why)
		}
		headers = append(headers, h)
		for _, i := range h.Records {
			var lb [8]byte
			if _, err := f.ReadAt(lb[:], off); err != nil {
				return nil, fmt.Errorf("%s: cut short: %v", name, err)
			}
			n := int64(binary.LittleEndian.Uint64(lb[:]))
			if i < 0 || i >= len(h.Groups) {
				return nil, fmt.Errorf("%s: record of group %d of a job of %d groups", name, i+1, len(h.Groups))
			}
			if was, dup := p.at[i]; dup {
				return nil, fmt.Errorf("group %s is in both %s and %s: give each shard's part once", h.Groups[i], names[was.file], name)
			}
			p.at[i] = partRecord{file: k, off: off + 8, len: n}
			off += 8 + n
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != off {
			return nil, fmt.Errorf("%s: %d bytes where its records end at %d (cut short or damaged)", name, sizeOf(fi), off)
		}
	}
	var missing []string
	for i, g := range p.rec.Groups {
		if _, ok := p.at[i]; !ok {
			missing = append(missing, g)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no part holds group%s %s (%d of %d groups missing; %s)", plural(len(missing)), strings.Join(missing, ", "), len(missing), len(p.rec.Groups), shardsSeen(headers, names[0]))
	}
	return p, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

// shardsSeen names the shards given and, when they are of one count, the
// part files not given (named after the first part's name).
func shardsSeen(h []partHeader, first string) string {
	base := "OUT"
	if i := strings.LastIndex(first, ".part-"); i > 0 {
		base = first[:i]
	}
	var seen []string
	given := map[string]bool{}
	count := -1
	for _, x := range h {
		seen = append(seen, x.Shard)
		given[x.Shard] = true
		var i, n int
		if _, err := fmt.Sscanf(x.Shard, "%d/%d", &i, &n); err != nil || count >= 0 && n != count {
			count = -2
		} else if count != -2 {
			count = n
		}
	}
	out := "shards given: " + strings.Join(seen, ", ")
	if count > 0 {
		var absent []string
		for i := range count {
			if s := (Shard{i, count}).String(); !given[s] {
				absent = append(absent, PartPath(base, Shard{i, count}))
			}
		}
		if len(absent) > 0 {
			out += "; not given: " + strings.Join(absent, ", ")
		}
	}
	return out
}

func readPartHeader(f *os.File) (partHeader, int64, error) {
	var h partHeader
	var head [12]byte
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, 12), head[:]); err != nil || [8]byte(head[:8]) != partMagic {
		return h, 0, errors.New("not a part file (written by compress --shard)")
	}
	n := int64(binary.LittleEndian.Uint32(head[8:]))
	if n > 1<<30 {
		return h, 0, fmt.Errorf("part header of %d bytes: damaged", n)
	}
	buf := make([]byte, 12+n+4)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return h, 0, fmt.Errorf("cut short in its header: %v", err)
	}
	if crc32.Checksum(buf[:12+n], castagnoli) != binary.LittleEndian.Uint32(buf[12+n:]) {
		return h, 0, errors.New("part header fails its CRC-32C check: damaged")
	}
	if err := json.Unmarshal(buf[12:12+n], &h); err != nil {
		return h, 0, fmt.Errorf("part header: %v", err)
	}
	return h, 12 + n + 4, nil
}

// load reads and checks group i's record from its part.
func (p *partSet) load(i int, g plannedGroup, job [32]byte, count int) (*trained, error) {
	r := p.at[i]
	b := make([]byte, r.len)
	if _, err := p.files[r.file].ReadAt(b, r.off); err != nil {
		return nil, fmt.Errorf("%s: group %s: %v", p.names[r.file], g.Name, err)
	}
	t, err := decodeRecord(b, job, g, i, count)
	if err != nil {
		return nil, fmt.Errorf("%s: group %s: %v; run its shard again", p.names[r.file], g.Name, err)
	}
	return t, nil
}

// MergeOptions describe a merge of part files into one .pllm file.
type MergeOptions struct {
	Parts      []string
	Out        string
	In         string // "" : the input the parts record
	Force      bool
	Kernels    bindings.Kernels
	KernelPath string
	Events     func(Event)
}

// Merge checks that the parts are of one job and hold every group once,
// then runs what remains of the job (the tuning stages that need every
// group, and the writing) exactly as Compress would: the file has the same
// bytes as a single-process run. It reopens the input: the parts' own
// record of it unless In is given; its fingerprint must match.
func Merge(m MergeOptions) (*Report, error) {
	start := time.Now()
	parts, err := openParts(m.Parts)
	if err != nil {
		return nil, err
	}
	var s jobSettings
	if err := json.Unmarshal(parts.rec.Settings, &s); err != nil {
		parts.close()
		return nil, fmt.Errorf("%s: its settings do not read back: %v", parts.first(), err)
	}
	o := CompressOptions{In: m.In, Out: m.Out, Force: m.Force, Kernels: m.Kernels, KernelPath: m.KernelPath, Events: m.Events}
	if o.In == "" {
		o.In = parts.rec.Input
	}
	s.apply(&o)
	return runJob(o, parts, start)
}
