package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"pocketllm-native/internal/sharedtest"
)

type obj = map[string]any

// tok512JSON converts tok512 into a tokenizer.json the way transformers'
// SentencePiece converter does for Llama: spaces become "▁", and every way
// of splitting a vocabulary entry into two entries is a merge, ranked by
// the entry's score (highest first), ties by the parts' ids.
func tok512JSON(t *testing.T, normalizer, preTokenizer, decoder any) []byte {
	t.Helper()
	l := loadTok512(t)
	vocab := obj{}
	pieces := make([]string, l.VocabSize())
	for id := 0; id < l.VocabSize(); id++ {
		p := strings.ReplaceAll(l.Piece(id), " ", "▁")
		switch id {
		case 1:
			p = "<s>"
		case 2:
			p = "</s>"
		}
		pieces[id] = p
		vocab[p] = id
	}
	type merge struct {
		a, b   string
		ia, ib int
		score  float32
	}
	var merges []merge
	for id, p := range pieces {
		var local []merge
		for k := 1; k < len(p); k++ {
			a, b := p[:k], p[k:]
			ia, ok1 := vocab[a]
			ib, ok2 := vocab[b]
			if ok1 && ok2 {
				local = append(local, merge{a, b, ia.(int), ib.(int), l.Score(id)})
			}
		}
		sort.SliceStable(local, func(i, j int) bool {
			if local[i].ia != local[j].ia {
				return local[i].ia < local[j].ia
			}
			return local[i].ib < local[j].ib
		})
		merges = append(merges, local...)
	}
	sort.SliceStable(merges, func(i, j int) bool { return merges[i].score > merges[j].score })
	var ms []string
	for _, m := range merges {
		ms = append(ms, m.a+" "+m.b)
	}
	added := []obj{
		{"id": 0, "content": "<unk>", "special": true},
		{"id": 1, "content": "<s>", "special": true},
		{"id": 2, "content": "</s>", "special": true},
	}
	f := obj{
		"version": "1.0", "added_tokens": added,
		"normalizer": normalizer, "pre_tokenizer": preTokenizer, "decoder": decoder,
		"post_processor": obj{
			"type":           "TemplateProcessing",
			"single":         []obj{{"SpecialToken": obj{"id": "<s>", "type_id": 0}}, {"Sequence": obj{"id": "A", "type_id": 0}}},
			"special_tokens": obj{"<s>": obj{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"model": obj{
			"type": "BPE", "dropout": nil, "unk_token": "<unk>", "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true, "vocab": vocab, "merges": ms,
		},
	}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var (
	legacyNormalizer = obj{"type": "Sequence", "normalizers": []obj{
		{"type": "Prepend", "prepend": "▁"},
		{"type": "Replace", "pattern": obj{"String": " "}, "content": "▁"},
	}}
	legacyDecoder = obj{"type": "Sequence", "decoders": []obj{
		{"type": "Replace", "pattern": obj{"String": "▁"}, "content": " "},
		{"type": "ByteFallback"}, {"type": "Fuse"},
		{"type": "Strip", "content": " ", "start": 1, "stop": 0},
	}}
	metaFirst    = obj{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}
	metaOldSplit = obj{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}
)

// TestHFMatchesLlama2C checks that the tokenizer.json reader, given the
// converted tok512, encodes every sample line exactly as the llama2.c
// encoder does, under the normalizer and pre-tokenizer styles in use.
func TestHFMatchesLlama2C(t *testing.T) {
	ref := loadTok512(t)
	lines := append(sampleLines(t), "Hello  world", "中文 🙂 é", "x")
	configs := []struct {
		name          string
		norm, pre, dc any
	}{
		{"prepend+replace", legacyNormalizer, nil, legacyDecoder},
		{"metaspace first", nil, metaFirst, legacyDecoder},
		{"metaspace split", nil, metaOldSplit, obj{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			hf, err := ParseHF("tok512.json", tok512JSON(t, c.norm, c.pre, c.dc))
			if err != nil {
				t.Fatal(err)
			}
			if hf.BOS() != 1 || hf.EOS() != 2 || hf.VocabSize() != 512 {
				t.Fatalf("bos %d eos %d vocab %d", hf.BOS(), hf.EOS(), hf.VocabSize())
			}
			n := 0
			for _, line := range lines {
				want := ref.Encode(line, true)
				got := hf.Encode(line, true)
				if !slices.Equal(got, want) {
					t.Fatalf("Encode(%.50q):\n got %v\nwant %v", line, got, want)
				}
				n += len(got)
				if c.name == "metaspace split" && slices.ContainsFunc(got, func(id int) bool { return id >= 3 && id < 259 }) {
					continue // a Metaspace decoder has no byte fallback: <0xE4> stays as text
				}
				checkDecodes(t, hf, got, line)
			}
			t.Logf("%d lines, %d tokens identical to the llama2.c encoder", len(lines), n)
		})
	}
}

// smallHF builds a tokenizer.json over a tiny vocabulary.
func smallHF(t *testing.T, vocab []string, merges []any, mutate func(f, model obj)) *HF {
	t.Helper()
	v := obj{}
	for i, s := range vocab {
		v[s] = i
	}
	model := obj{"type": "BPE", "vocab": v, "merges": merges, "byte_fallback": true, "unk_token": "<unk>", "fuse_unk": true}
	f := obj{"model": model, "normalizer": legacyNormalizer, "decoder": legacyDecoder,
		"added_tokens": []obj{{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}}}
	if mutate != nil {
		mutate(f, model)
	}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHF("small.json", data)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHFSmall(t *testing.T) {
	vocab := []string{"<unk>", "<s>", "</s>", "▁", "a", "b", "c", "▁a", "ab", "▁ab", "bc", "<0x7A>", "<M>", "ca"}
	id := func(s string) int { return slices.Index(vocab, s) }
	// Merge order: "a b" before "▁ a", so "▁ab" needs "▁ ab".
	merges := []any{"a b", []string{"▁", "a"}, "▁ ab", "b c", "c a"}
	h := smallHF(t, vocab, merges, nil)
	check := func(h *HF, text string, bos bool, want ...string) {
		t.Helper()
		var ids []int
		for _, w := range want {
			ids = append(ids, id(w))
		}
		if got := h.Encode(text, bos); !slices.Equal(got, ids) {
			t.Errorf("Encode(%q) = %v, want %v %q", text, got, ids, want)
		}
	}
	check(h, "", true, "<s>")
	check(h, "ab", true, "<s>", "▁ab")
	// "abc": a b merges first (rank 0), then b c cannot; ▁ ab (rank 2).
	check(h, "abc", false, "▁ab", "c")
	// "bca": b c (rank 3) before c a (rank 4).
	check(h, "bca", false, "▁", "bc", "a")
	// z has a byte token; é has neither: <unk>, and two unknowns fuse.
	check(h, "zéé", false, "▁", "<0x7A>", "<unk>")
	// Added tokens are cut out before normalisation, and Prepend applies to
	// every remaining piece (the library's behaviour with this normalizer).
	check(h, "a<s>b", false, "▁a", "<s>", "▁", "b")

	// Metaspace "first" prefixes only the piece at the start of the text.
	hm := smallHF(t, vocab, merges, func(f, _ obj) { f["normalizer"] = nil; f["pre_tokenizer"] = metaFirst })
	check(hm, "a<s>b", false, "▁a", "<s>", "b")
	check(hm, " a", false, "▁a") // already starts with ▁: no second one

	// Without fuse_unk every unknown character is its own <unk>.
	hu := smallHF(t, vocab, merges, func(_, m obj) { m["fuse_unk"] = false })
	check(hu, "éé", false, "▁", "<unk>", "<unk>")

	// lstrip/rstrip swallow the spaces around an added token.
	hs := smallHF(t, vocab, merges, func(f, _ obj) {
		f["added_tokens"] = []obj{{"id": 12, "content": "<M>", "lstrip": true, "rstrip": true}}
	})
	check(hs, "a <M> b", false, "▁a", "<M>", "▁", "b")

	// ignore_merges takes a whole word that is in the vocabulary as is.
	hi := smallHF(t, []string{"<unk>", "<s>", "</s>", "▁", "x", "y", "▁x", "xy", "▁xy"}, []any{"▁ x", "x y"}, func(_, m obj) { m["ignore_merges"] = true })
	if got := hi.Encode("xy", false); !slices.Equal(got, []int{8}) {
		t.Errorf("ignore_merges: %v, want [8]", got)
	}

	// Decoding: ByteFallback turns invalid UTF-8 into U+FFFD in DecodeAll,
	// Decode gives raw bytes; Strip removes the first leading space.
	vocabB := append(slices.Clone(vocab), "<0xC3>", "<0xA9>", "<0xFF>")
	hb := smallHF(t, vocabB, merges, nil)
	idB := func(s string) int { return slices.Index(vocabB, s) }
	seq := []int{1, idB("▁ab"), idB("<0xC3>"), idB("<0xA9>"), idB("▁"), idB("<0xFF>"), 2}
	if got := hb.DecodeAll(seq); got != "abé \uFFFD" {
		t.Errorf("DecodeAll = %q, want %q", got, "abé \uFFFD")
	}
	var sb strings.Builder
	for i := 1; i < len(seq); i++ {
		if seq[i] != 2 {
			sb.WriteString(hb.Decode(seq[i-1], seq[i]))
		}
	}
	if sb.String() != "abé \xff" {
		t.Errorf("streamed Decode = %q, want %q", sb.String(), "abé \xff")
	}
}

func TestHFRefusals(t *testing.T) {
	base := func() (obj, obj) {
		model := obj{"type": "BPE", "vocab": obj{"a": 0, "b": 1, "ab": 2}, "merges": []string{"a b"}}
		return obj{"model": model}, model
	}
	cases := map[string]struct {
		mut  func(f, m obj)
		want string
	}{
		"wordpiece":     {func(_, m obj) { m["type"] = "WordPiece" }, `"WordPiece"`},
		"unigram":       {func(_, m obj) { m["type"] = "Unigram"; m["vocab"] = [][]any{{"a", 0.0}} }, `"Unigram"`},
		"bytelevel pre": {func(f, _ obj) { f["pre_tokenizer"] = obj{"type": "ByteLevel", "add_prefix_space": false} }, `"ByteLevel"`},
		"bytelevel dec": {func(f, _ obj) { f["decoder"] = obj{"type": "ByteLevel"} }, `"ByteLevel"`},
		"nfkc":          {func(f, _ obj) { f["normalizer"] = obj{"type": "NFKC"} }, `"NFKC"`},
		"regex replace": {func(f, _ obj) {
			f["normalizer"] = obj{"type": "Replace", "pattern": obj{"Regex": " +"}, "content": " "}
		}, "Regex"},
		"split pre": {func(f, _ obj) { f["pre_tokenizer"] = obj{"type": "Split", "pattern": obj{"Regex": "x"}} }, `"Split"`},
		"llama3 pre": {func(f, _ obj) {
			f["pre_tokenizer"] = obj{"type": "Sequence", "pretokenizers": []obj{{"type": "Split", "pattern": obj{"Regex": "x"}}, {"type": "ByteLevel"}}}
		}, `"Split"`},
		"dropout":          {func(_, m obj) { m["dropout"] = 0.1 }, "dropout"},
		"subword prefix":   {func(_, m obj) { m["continuing_subword_prefix"] = "##" }, "continuing_subword_prefix"},
		"merge not in voc": {func(_, m obj) { m["merges"] = []string{"a c"} }, "merges"},
		"bad merge":        {func(_, m obj) { m["merges"] = []string{"abc"} }, "merges"},
		"unk missing":      {func(_, m obj) { m["unk_token"] = "<unk>" }, "unk_token"},
		"shared id":        {func(_, m obj) { m["vocab"] = obj{"a": 0, "b": 0, "ab": 2} }, "share id"},
		"no model":         {func(f, _ obj) { delete(f, "model") }, "no model"},
	}
	for name, c := range cases {
		f, m := base()
		c.mut(f, m)
		data, _ := json.Marshal(f)
		_, err := ParseHF("dir/tokenizer.json", data)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "dir/tokenizer.json") || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q should name the file and %s on one line", name, msg, c.want)
		}
	}
	f, _ := base()
	data, _ := json.Marshal(f)
	if _, err := ParseHF("ok.json", data); err != nil {
		t.Errorf("minimal BPE refused: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	tok512 := sharedtest.Tokenizer(t)

	// A folder with tokenizer.json and a tokenizer_config.json naming EOS.
	hfDir := filepath.Join(dir, "hf")
	if err := os.Mkdir(hfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hfDir, "tokenizer.json"), tok512JSON(t, legacyNormalizer, nil, legacyDecoder), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `{"bos_token": {"content": "<s>"}, "eos_token": "<unk>"}`
	if err := os.WriteFile(filepath.Join(hfDir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(hfDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.(*HF); !ok || tok.BOS() != 1 || tok.EOS() != 0 {
		t.Errorf("Load(dir) = %T bos %d eos %d, want *HF 1 0", tok, tok.BOS(), tok.EOS())
	}

	if tok, err := Load(tok512); err != nil {
		t.Error(err)
	} else if _, ok := tok.(*Llama2C); !ok {
		t.Errorf("Load(tok512.bin) = %T", tok)
	}

	spm := filepath.Join(dir, "tokenizer.model")
	if err := os.WriteFile(spm, []byte{0x0a, 0x0b}, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{spm, filepath.Join(dir, "missing.bin"), dir} {
		if _, err := Load(p); err == nil {
			t.Errorf("Load(%s) accepted", p)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("Load(%s): error %q does not name the path", p, err)
		}
	}
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"model": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(broken); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Load(broken.json) = %v, want a tokenizer.json error", err)
	}
}
