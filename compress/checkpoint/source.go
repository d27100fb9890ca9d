package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"pocketllm-native/compress/checkpoint/formatbase"
	"pocketllm-native/compress/gguf"
	"pocketllm-native/compress/llama2c"
	"pocketllm-native/compress/safetensors"
	"pocketllm-native/internal/regularfile"
)

// Source formats.
const (
	FormatSafetensors = "safetensors"
	FormatLlama2c     = "llama2c"
)

// File names with a meaning in a Hugging Face model folder.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
	ConfigFileName = "config.json"
)

// MaxSideFileSize bounds each side file, which is held in memory.
const MaxSideFileSize = 64 << 20

// weightExts are the extensions of weight files in any format. They are
// never side files: the weights come from the safetensors files, and other
// formats' copies of them must not ride along into the output.
var weightExts = map[string]bool{
	".safetensors": true, ".bin": true, ".pt": true, ".pth": true, ".ckpt": true,
	".h5": true, ".msgpack": true, ".gguf": true, ".onnx": true,
}

// Source is an opened checkpoint. Tensors are read one at a time, with
// positioned reads, so memory does not grow with model size, and the read
// methods are safe for concurrent use.
type Source struct {
	Format  string       // FormatSafetensors, FormatLlama2c or FormatGGUF
	Path    string       // as given to Open
	Tensors []TensorInfo // in file order (shards in name order)
	// Config holds config.json's Llama fields; nil when there is no
	// config.json or it does not parse. For llama2c it comes from the
	// header, for GGUF from the metadata.
	Config *LlamaConfig
	// ConfigJSON is the raw config.json when present (llama2c, GGUF:
	// synthesized from the header or metadata).
	ConfigJSON []byte
	// SideFiles are, for a model folder, every regular non-weight file
	// beside the weights (config.json, tokenizer files, ...), sorted by
	// name, each at most MaxSideFileSize; hidden files, subfolders, weight
	// files of any format and weight indexes are left out. A single file
	// or a llama2c checkpoint has none.
	SideFiles []SideFile
	// Notices say what was changed on reading, for the report (a GGUF
	// file's Q8_0 tensors dequantized to F32).
	Notices []string

	index  map[string]entry
	closer []io.Closer
}

// entry locates a tensor: its position in Tensors and the file holding it.
// One map of both, sized up front, keeps a header of millions of tiny
// tensors from costing many times its size.
type entry struct {
	at    int
	owner rawReader
}

type rawReader interface {
	Raw(name string) ([]byte, error)
	Stream(name string) (io.Reader, int64, error)
}

// Open opens path as a checkpoint:
//   - a directory is a Hugging Face model folder: model.safetensors if
//     present (as transformers prefers it), otherwise the shards listed in
//     model.safetensors.index.json, which must agree exactly with the
//     shards' contents;
//   - a .safetensors file is read as safetensors, a .bin file as a llama2c
//     legacy checkpoint, a .gguf file (or any file that starts with the
//     GGUF magic) as GGUF;
//   - any other file is tried as safetensors, then as llama2c, which is
//     accepted only if its size is exactly what its header implies.
func Open(path string) (*Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openFolder(path)
	}
	if !st.Mode().IsRegular() {
		return nil, regularfile.NotRegular(path, st.Mode())
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".safetensors":
		return openSafetensors(path)
	case ".bin":
		s, err := openLlama2c(path)
		if err != nil {
			return nil, pytorchHint(path, err)
		}
		return s, nil
	case ".gguf":
		return openGGUF(path)
	}
	if gguf.IsGGUF(path) {
		return openGGUF(path)
	}
	s, sterr := openSafetensors(path)
	if sterr == nil {
		return s, nil
	}
	s, l2err := openLlama2c(path)
	if l2err == nil {
		return s, nil
	}
	trim := func(err error) string { return strings.TrimPrefix(err.Error(), path+": ") }
	return nil, pytorchHint(path, fmt.Errorf("%s: not a checkpoint: as %s; as %s", path, trim(sterr), trim(l2err)))
}

// pytorchHint replaces err with a clearer one for a PyTorch checkpoint
// (a zip archive or a bare pickle), the usual content of a .bin file.
func pytorchHint(path string, err error) error {
	f, oerr := regularfile.Open(path)
	if oerr != nil {
		return err
	}
	defer f.Close()
	var magic [4]byte
	if n, _ := io.ReadFull(f, magic[:]); n < 2 {
		return err
	}
	if bytes.Equal(magic[:], []byte("PK\x03\x04")) || (magic[0] == 0x80 && magic[1] >= 2 && magic[1] <= 5) {
		return fmt.Errorf("%s: a PyTorch checkpoint (zip or pickle), which is not supported; convert it to safetensors", path)
	}
	return err
}

func openSafetensors(path string) (*Source, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	s := newSource(FormatSafetensors, path, len(f.Tensors()))
	s.closer = append(s.closer, f)
	for _, t := range f.Tensors() {
		s.add(t.TensorInfo, f)
	}
	return s, nil
}

func openLlama2c(path string) (*Source, error) {
	f, err := llama2c.Open(path)
	if err != nil {
		return nil, err
	}
	s := newSource(FormatLlama2c, path, len(f.Tensors()))
	s.closer = append(s.closer, f)
	for _, info := range f.Tensors() {
		s.add(info, f)
	}
	cfg := f.LlamaConfig()
	s.Config = &cfg
	s.ConfigJSON = f.ConfigJSON()
	return s, nil
}

// newSource returns an empty source with room for n tensors.
func newSource(format, path string, n int) *Source {
	return &Source{Format: format, Path: path, Tensors: make([]TensorInfo, 0, n), index: make(map[string]entry, n)}
}

func (s *Source) add(info TensorInfo, r rawReader) {
	s.index[info.Name] = entry{at: len(s.Tensors), owner: r}
	s.Tensors = append(s.Tensors, info)
}

func openFolder(dir string) (*Source, error) {
	single := filepath.Join(dir, SingleFileName)
	index := filepath.Join(dir, IndexFileName)
	var s *Source
	var err error
	switch {
	case exists(single): // anything there but a regular file is refused by name
		s, err = openSafetensors(single)
	case exists(index):
		s, err = openSharded(dir, index)
	default:
		return nil, fmt.Errorf("%s: model folder has neither %s nor %s", dir, SingleFileName, IndexFileName)
	}
	if err != nil {
		return nil, err
	}
	s.Path = dir
	if s.SideFiles, err = readSideFiles(dir); err != nil {
		s.Close()
		return nil, err
	}
	for _, sf := range s.SideFiles {
		if sf.Name == ConfigFileName {
			s.ConfigJSON = sf.Data
			var c LlamaConfig
			if json.Unmarshal(sf.Data, &c) == nil {
				s.Config = &c
			}
		}
	}
	return s, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// readSideFiles reads every side file of a model folder. Symbolic links are
// followed, since Hugging Face's cache builds snapshot folders of links.
func readSideFiles(dir string) ([]SideFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []SideFile // ReadDir sorts by name
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || weightExts[strings.ToLower(filepath.Ext(name))] || strings.HasSuffix(name, ".index.json") {
			continue
		}
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			continue
		}
		if st.Size() > MaxSideFileSize {
			return nil, fmt.Errorf("%s: side file is %d bytes, more than the %d-byte limit for non-weight files", p, st.Size(), MaxSideFileSize)
		}
		data, err := readBounded(p, "side file")
		if err != nil {
			return nil, err
		}
		out = append(out, SideFile{Name: name, Data: data})
	}
	return out, nil
}

// readBounded reads a file of at most MaxSideFileSize bytes, even if it
// grows after being checked; what says in errors which file it is (a side
// file, the shard index).
func readBounded(path, what string) ([]byte, error) {
	f, err := regularfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSideFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxSideFileSize {
		return nil, fmt.Errorf("%s: %s is more than the %d-byte limit for non-weight files", path, what, MaxSideFileSize)
	}
	return data, nil
}

// openSharded opens the shards an index lists and checks that the index and
// the shards agree exactly: every listed shard exists, every tensor listed
// is in the shard named for it, every shard tensor is listed, and no tensor
// is in two shards.
func openSharded(dir, indexPath string) (*Source, error) {
	raw, err := readBounded(indexPath, "shard index")
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s: invalid index: %v", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: index has no weight_map entries", indexPath)
	}
	// Sorted names keep error messages deterministic.
	names := make([]string, 0, len(idx.WeightMap))
	for name := range idx.WeightMap {
		names = append(names, name)
	}
	sort.Strings(names)
	shardSet := map[string]bool{}
	for _, name := range names {
		shard := idx.WeightMap[name]
		if shard == "" || shard != filepath.Base(shard) || shard == "." || shard == ".." || strings.ContainsAny(shard, `/\`) {
			return nil, fmt.Errorf("%s: tensor %q maps to %q, which is not a file name in the folder", indexPath, name, shard)
		}
		shardSet[shard] = true
	}
	shards := make([]string, 0, len(shardSet))
	for sh := range shardSet {
		shards = append(shards, sh)
	}
	sort.Strings(shards)

	s := newSource(FormatSafetensors, dir, len(names))
	if err := s.addShards(dir, shards, names, idx.WeightMap); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// addShards opens the shards in order and checks them against the index's
// weight map; errors are deterministic, duplicates reported first.
func (s *Source) addShards(dir string, shards, names []string, weightMap map[string]string) error {
	files := make([]*safetensors.File, len(shards))
	where := map[string]string{} // tensor -> shard holding it
	for i, sh := range shards {
		p := filepath.Join(dir, sh)
		if !exists(p) { // a shard that is not a regular file is refused by safetensors.Open
			return fmt.Errorf("%s: shard %s is listed in the index but missing", dir, sh)
		}
		f, err := safetensors.Open(p)
		if err != nil {
			return err
		}
		s.closer = append(s.closer, f)
		files[i] = f
		for _, t := range f.Tensors() {
			if other, dup := where[t.Name]; dup {
				return fmt.Errorf("%s: tensor %q is in both %s and %s", dir, t.Name, other, sh)
			}
			where[t.Name] = sh
		}
	}
	for i, f := range files {
		for _, t := range f.Tensors() {
			info := t.TensorInfo
			switch listed, ok := weightMap[info.Name]; {
			case !ok:
				return fmt.Errorf("%s: tensor %q of %s is not in the index's weight_map", dir, info.Name, shards[i])
			case listed != shards[i]:
				return fmt.Errorf("%s: index puts tensor %q in %s, but it is in %s", dir, info.Name, listed, shards[i])
			}
			s.add(info, f)
		}
	}
	for _, name := range names {
		if _, ok := where[name]; !ok {
			return fmt.Errorf("%s: index puts tensor %q in %s, which does not contain it", dir, name, weightMap[name])
		}
	}
	return nil
}

// Info returns the named tensor's description.
func (s *Source) Info(name string) (TensorInfo, bool) {
	e, ok := s.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return s.Tensors[e.at], true
}

// Raw returns the named tensor's stored bytes, little-endian and
// row-major (for llama2c, F32 in the Hugging Face layout).
func (s *Source) Raw(name string) ([]byte, error) {
	e, ok := s.index[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", s.Path, name)
	}
	return e.owner.Raw(name)
}

// Stream returns a reader of the named tensor's stored bytes (as Raw
// returns them) and their count, for copying a tensor without holding it.
func (s *Source) Stream(name string) (io.Reader, int64, error) {
	e, ok := s.index[name]
	if !ok {
		return nil, 0, fmt.Errorf("%s: no tensor %q", s.Path, name)
	}
	return e.owner.Stream(name)
}

// Float32 returns the named tensor converted to float32. F32, F16 and BF16
// convert exactly; any other dtype is an error. The stored bytes are read
// in pieces into the result, so the tensor is held once, not twice.
func (s *Source) Float32(name string) ([]float32, error) {
	info, ok := s.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", s.Path, name)
	}
	out := make([]float32, info.NumElements())
	if err := s.Float32Into(name, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32Into is Float32 into dst, which must hold exactly the tensor's
// elements: a caller can reuse memory it already has.
func (s *Source) Float32Into(name string, dst []float32) error {
	info, ok := s.Info(name)
	if !ok {
		return fmt.Errorf("%s: no tensor %q", s.Path, name)
	}
	size, err := formatbase.FloatSize(info.DType)
	if err != nil {
		return fmt.Errorf("%s: tensor %q has dtype %s: %w", s.Path, name, info.DType, formatbase.ErrNotFloat)
	}
	if len(dst) != info.NumElements() {
		return fmt.Errorf("%s: tensor %q has %d elements, not %d", s.Path, name, info.NumElements(), len(dst))
	}
	src, n, err := s.Stream(name)
	if err != nil {
		return err
	}
	if n != int64(size)*int64(len(dst)) {
		return fmt.Errorf("%s: tensor %q: %d bytes for %d elements of %s", s.Path, name, n, len(dst), info.DType)
	}
	buf := make([]byte, min(n, 1<<20))
	for done := 0; done < len(dst); {
		k := min(len(dst)-done, len(buf)/size)
		if _, err := io.ReadFull(src, buf[:k*size]); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				err = fmt.Errorf("%s: reading tensor %q: %w", s.Path, name, io.ErrUnexpectedEOF)
			}
			return err
		}
		if err := formatbase.DecodeFloat32Into(dst[done:done+k], info.DType, buf[:k*size]); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", s.Path, name, err)
		}
		done += k
	}
	return nil
}

// Close closes every file of the source.
func (s *Source) Close() error {
	var errs []error
	for _, c := range s.closer {
		errs = append(errs, c.Close())
	}
	s.closer = nil
	return errors.Join(errs...)
}
