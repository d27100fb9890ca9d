package tokenizer

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"pocketllm-native/internal/regularfile"
)

// HF is a Hugging Face tokenizer.json with a SentencePiece-style BPE model,
// encoded as the tokenizers library does for that configuration.
//
// Supported:
//   - model.type "BPE" with a vocab object and merges (either "a b" strings
//     or [a, b] pairs), byte_fallback, unk_token with fuse_unk, ignore_merges;
//     dropout must be null or 0, continuing_subword_prefix and
//     end_of_word_suffix must be empty;
//   - normalizer null, "Prepend", "Replace" with a literal String pattern,
//     or a "Sequence" of those (Llama 2's Prepend("▁") + Replace(" ", "▁"));
//   - pre_tokenizer null or "Metaspace" (replacement, prepend_scheme
//     always/first/never or the older add_prefix_space, split), alone or as
//     the only element of a "Sequence";
//   - decoder null (pieces concatenated unchanged), "Replace" (String
//     pattern), "ByteFallback", "Fuse", "Strip", "Metaspace", or a
//     "Sequence" of those;
//   - added_tokens, split out of the text before normalisation (leftmost
//     longest match, with lstrip, rstrip and single_word). Tokens marked
//     normalized are matched against the raw text too, which differs from
//     the library only for added tokens that the normalizer would change.
//
// Anything else (WordPiece, Unigram, WordLevel, ByteLevel, regex patterns,
// Unicode normalizers, ...) is refused by ParseHF with an error naming the
// file and the unsupported component. The post_processor is read only to
// find the BOS id; Encode adds BOS itself when asked and never adds EOS.
type HF struct {
	path string

	vocab  map[string]int
	pieces []string // id -> string, "" for ids not in the vocabulary
	merges map[[2]int]hfMerge

	byteFallback bool
	unk          int // -1 when the model has no unk_token
	fuseUnk      bool
	ignoreMerges bool

	added   []hfAddedToken // sorted by content length, longest first
	special map[int]bool

	norm []hfNormStep
	meta *hfMetaspace // nil: no pre-tokenizer
	dec  []hfDecStep

	bos, eos int
}

type hfMerge struct{ rank, id int }

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// hfNormStep is Prepend (replace == false) or Replace.
type hfNormStep struct {
	replace  bool
	from, to string
}

type hfMetaspace struct {
	repl    string
	prepend string // "always", "first" or "never"
	split   bool
}

type hfDecKind int

const (
	decReplace hfDecKind = iota
	decByteFallback
	decFuse
	decStrip
	decMetaspace
)

type hfDecStep struct {
	kind        hfDecKind
	from, to    string // Replace
	content     rune   // Strip
	start, stop int    // Strip
	repl        string // Metaspace
	prependMeta bool   // Metaspace: first token loses its replacement chars
}

type hfFile struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type hfModel struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// component is the common shape of normalizers, pre-tokenizers and decoders.
type component map[string]json.RawMessage

func (c component) typ() string {
	var s string
	_ = json.Unmarshal(c["type"], &s)
	return s
}

func (c component) str(key string) (string, bool) {
	var s string
	raw, ok := c[key]
	if !ok || string(raw) == "null" {
		return "", false
	}
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func (c component) boolean(key string, def bool) bool {
	var b bool
	raw, ok := c[key]
	if !ok || json.Unmarshal(raw, &b) != nil {
		return def
	}
	return b
}

func (c component) integer(key string) int {
	var n int
	_ = json.Unmarshal(c[key], &n)
	return n
}

// literalPattern returns the String of a {"String": "..."} pattern and
// refuses {"Regex": ...}.
func (c component) literalPattern() (string, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if err := json.Unmarshal(c["pattern"], &p); err != nil || (p.String == nil && p.Regex == nil) {
		return "", fmt.Errorf("pattern is not a {\"String\": ...} object")
	}
	if p.String == nil {
		return "", fmt.Errorf("Regex patterns are not supported (only String)")
	}
	return *p.String, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// ParseHF reads a tokenizer.json from data; path is used in errors.
func ParseHF(path string, data []byte) (*HF, error) {
	fail := func(format string, a ...any) (*HF, error) {
		return nil, fmt.Errorf("tokenizer: %s: %s", path, fmt.Sprintf(format, a...))
	}
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fail("not a valid tokenizer.json: %v", err)
	}
	if isNull(f.Model) {
		return fail("no model")
	}
	var m hfModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return fail("model: %v", err)
	}
	if m.Type != "BPE" {
		if m.Type == "" {
			return fail("model has no type; only BPE models are supported")
		}
		return fail("model type %q is not supported (only SentencePiece-style BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return fail("BPE dropout %g is not supported (encoding must be deterministic)", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return fail("BPE continuing_subword_prefix %q is not supported", *m.ContinuingSubwordPrefix)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return fail("BPE end_of_word_suffix %q is not supported", *m.EndOfWordSuffix)
	}
	t := &HF{
		path: path, byteFallback: m.ByteFallback, fuseUnk: m.FuseUnk, ignoreMerges: m.IgnoreMerges,
		unk: -1, bos: -1, eos: -1, special: map[int]bool{},
	}
	if err := json.Unmarshal(m.Vocab, &t.vocab); err != nil || t.vocab == nil {
		return fail("model.vocab is not an object of token -> id")
	}
	size := 0
	for s, id := range t.vocab {
		if id < 0 {
			return fail("model.vocab: token %q has negative id %d", s, id)
		}
		size = max(size, id+1)
	}
	for i, a := range f.AddedTokens {
		if a.ID < 0 {
			return fail("added_tokens[%d] %q has negative id %d", i, a.Content, a.ID)
		}
		if a.Content == "" {
			return fail("added_tokens[%d] (id %d) has empty content", i, a.ID)
		}
		size = max(size, a.ID+1)
	}
	t.pieces = make([]string, size)
	owner := make([]string, size)
	seen := make([]bool, size)
	for s, id := range t.vocab {
		if seen[id] {
			a, b := owner[id], s
			if a > b {
				a, b = b, a
			}
			return fail("model.vocab: tokens %q and %q share id %d", a, b, id)
		}
		seen[id], owner[id], t.pieces[id] = true, s, s
	}
	for _, a := range f.AddedTokens {
		// The library looks up added tokens before the model's vocabulary.
		t.pieces[a.ID] = a.Content
		if a.Special {
			t.special[a.ID] = true
		}
	}
	t.added = append(t.added, f.AddedTokens...)
	sort.SliceStable(t.added, func(i, j int) bool { return len(t.added[i].Content) > len(t.added[j].Content) })

	if m.UnkToken != nil {
		id, ok := t.vocab[*m.UnkToken]
		if !ok {
			return fail("model.unk_token %q is not in the vocabulary", *m.UnkToken)
		}
		t.unk = id
	}
	if err := t.parseMerges(m.Merges); err != nil {
		return fail("model.merges: %v", err)
	}
	if err := t.parseNormalizer(f.Normalizer); err != nil {
		return fail("normalizer: %v", err)
	}
	if err := t.parsePreTokenizer(f.PreTokenizer); err != nil {
		return fail("pre_tokenizer: %v", err)
	}
	if err := t.parseDecoder(f.Decoder); err != nil {
		return fail("decoder: %v", err)
	}
	t.findSpecial(f.PostProcessor)
	return t, nil
}

func (t *HF) parseMerges(raw json.RawMessage) error {
	t.merges = map[[2]int]hfMerge{}
	if isNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("not a list")
	}
	for i, it := range items {
		var a, b string
		var s string
		var pair []string
		switch {
		case json.Unmarshal(it, &s) == nil:
			parts := strings.Split(s, " ")
			if len(parts) != 2 {
				return fmt.Errorf("entry %d %q is not two tokens separated by one space", i, s)
			}
			a, b = parts[0], parts[1]
		case json.Unmarshal(it, &pair) == nil && len(pair) == 2:
			a, b = pair[0], pair[1]
		default:
			return fmt.Errorf("entry %d is neither \"a b\" nor [a, b]", i)
		}
		ai, ok1 := t.vocab[a]
		bi, ok2 := t.vocab[b]
		ni, ok3 := t.vocab[a+b]
		if !ok1 || !ok2 || !ok3 {
			return fmt.Errorf("entry %d (%q, %q): token or merged token not in the vocabulary", i, a, b)
		}
		// A repeated pair keeps its last rank, as the library's map does.
		t.merges[[2]int{ai, bi}] = hfMerge{rank: i, id: ni}
	}
	return nil
}

// parseComponent reads a normalizer, pre-tokenizer or decoder. An absent or
// null one is a nil component with no error: that step does nothing.
func parseComponent(raw json.RawMessage) (component, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("not an object")
	}
	return c, nil
}

// eachInSequence calls parse on every component of a Sequence, listed under
// key ("normalizers", "pretokenizers" or "decoders"), in order.
func (c component) eachInSequence(key string, parse func(json.RawMessage) error) error {
	var subs []json.RawMessage
	if err := json.Unmarshal(c[key], &subs); err != nil {
		return fmt.Errorf("Sequence without a %s list", key)
	}
	for _, s := range subs {
		if err := parse(s); err != nil {
			return err
		}
	}
	return nil
}

func (t *HF) parseNormalizer(raw json.RawMessage) error {
	c, err := parseComponent(raw)
	if c == nil || err != nil {
		return err
	}
	switch c.typ() {
	case "Sequence":
		return c.eachInSequence("normalizers", t.parseNormalizer)
	case "Prepend":
		p, ok := c.str("prepend")
		if !ok {
			return fmt.Errorf("Prepend without a prepend string")
		}
		t.norm = append(t.norm, hfNormStep{to: p})
	case "Replace":
		from, err := c.literalPattern()
		if err != nil {
			return fmt.Errorf("Replace: %v", err)
		}
		to, ok := c.str("content")
		if !ok {
			return fmt.Errorf("Replace without content")
		}
		if from == "" {
			return fmt.Errorf("Replace with an empty pattern")
		}
		t.norm = append(t.norm, hfNormStep{replace: true, from: from, to: to})
	default:
		return fmt.Errorf("type %q is not supported (only Prepend, Replace and Sequence)", c.typ())
	}
	return nil
}

func parseMetaspace(c component) (*hfMetaspace, error) {
	repl, ok := c.str("replacement")
	if !ok || utf8.RuneCountInString(repl) != 1 {
		return nil, fmt.Errorf("Metaspace replacement must be one character")
	}
	ms := &hfMetaspace{repl: repl, split: c.boolean("split", true)}
	if s, ok := c.str("prepend_scheme"); ok {
		switch s {
		case "always", "first", "never":
			ms.prepend = s
		default:
			return nil, fmt.Errorf("Metaspace prepend_scheme %q is not always, first or never", s)
		}
	} else if c.boolean("add_prefix_space", true) {
		ms.prepend = "always"
	} else {
		ms.prepend = "never"
	}
	return ms, nil
}

func (t *HF) parsePreTokenizer(raw json.RawMessage) error {
	c, err := parseComponent(raw)
	if c == nil || err != nil {
		return err
	}
	switch c.typ() {
	case "Sequence":
		return c.eachInSequence("pretokenizers", func(s json.RawMessage) error {
			had := t.meta != nil
			if err := t.parsePreTokenizer(s); err != nil {
				return err
			}
			if had {
				return fmt.Errorf("a Sequence of several Metaspace pre-tokenizers is not supported")
			}
			return nil
		})
	case "Metaspace":
		ms, err := parseMetaspace(c)
		if err != nil {
			return err
		}
		t.meta = ms
	default:
		return fmt.Errorf("type %q is not supported (only Metaspace)", c.typ())
	}
	return nil
}

func (t *HF) parseDecoder(raw json.RawMessage) error {
	c, err := parseComponent(raw)
	if c == nil || err != nil {
		return err
	}
	switch c.typ() {
	case "Sequence":
		return c.eachInSequence("decoders", t.parseDecoder)
	case "Replace":
		from, err := c.literalPattern()
		if err != nil {
			return fmt.Errorf("Replace: %v", err)
		}
		to, ok := c.str("content")
		if !ok || from == "" {
			return fmt.Errorf("Replace needs a non-empty pattern and content")
		}
		t.dec = append(t.dec, hfDecStep{kind: decReplace, from: from, to: to})
	case "ByteFallback":
		t.dec = append(t.dec, hfDecStep{kind: decByteFallback})
	case "Fuse":
		t.dec = append(t.dec, hfDecStep{kind: decFuse})
	case "Strip":
		content, ok := c.str("content")
		if !ok || utf8.RuneCountInString(content) != 1 {
			return fmt.Errorf("Strip content must be one character")
		}
		r, _ := utf8.DecodeRuneInString(content)
		t.dec = append(t.dec, hfDecStep{kind: decStrip, content: r, start: c.integer("start"), stop: c.integer("stop")})
	case "Metaspace":
		ms, err := parseMetaspace(c)
		if err != nil {
			return err
		}
		t.dec = append(t.dec, hfDecStep{kind: decMetaspace, repl: ms.repl, prependMeta: ms.prepend != "never"})
	default:
		return fmt.Errorf("type %q is not supported (only Replace, ByteFallback, Fuse, Strip, Metaspace and Sequence)", c.typ())
	}
	return nil
}

// findSpecial sets BOS from the post-processor's template when it starts
// with a special token, else from "<s>"; EOS is "</s>". SetSpecial can
// override both (Load does, from tokenizer_config.json).
func (t *HF) findSpecial(post json.RawMessage) {
	t.bos, t.eos = t.idOf("<s>"), t.idOf("</s>")
	if isNull(post) {
		return
	}
	var tp struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
	}
	if json.Unmarshal(post, &tp) != nil || tp.Type != "TemplateProcessing" || len(tp.Single) == 0 || tp.Single[0].SpecialToken == nil {
		return
	}
	if st, ok := tp.SpecialTokens[tp.Single[0].SpecialToken.ID]; ok && len(st.IDs) == 1 && st.IDs[0] >= 0 && st.IDs[0] < len(t.pieces) {
		t.bos = st.IDs[0]
	}
}

// idOf is the id of an added token or vocabulary entry, or -1.
func (t *HF) idOf(s string) int {
	for _, a := range t.added {
		if a.Content == s {
			return a.ID
		}
	}
	if id, ok := t.vocab[s]; ok {
		return id
	}
	return -1
}

// SetSpecial sets BOS and EOS by their token strings (as tokenizer_config.json
// names them); an empty string leaves that id unchanged.
func (t *HF) SetSpecial(bos, eos string) error {
	for _, x := range []struct {
		s   string
		dst *int
	}{{bos, &t.bos}, {eos, &t.eos}} {
		if x.s == "" {
			continue
		}
		id := t.idOf(x.s)
		if id < 0 {
			return fmt.Errorf("tokenizer: %s: special token %q is not in the vocabulary", t.path, x.s)
		}
		*x.dst = id
	}
	return nil
}

// applyTokenizerConfig reads bos_token and eos_token from a
// tokenizer_config.json beside the tokenizer.json, when there is one.
func (t *HF) applyTokenizerConfig() error {
	cfgPath := filepath.Join(filepath.Dir(t.path), "tokenizer_config.json")
	data, err := regularfile.ReadFile(cfgPath)
	if err != nil {
		return nil // optional file (and never a FIFO to wait on)
	}
	var cfg map[string]json.RawMessage
	if json.Unmarshal(data, &cfg) != nil {
		return fmt.Errorf("tokenizer: %s: not a JSON object", cfgPath)
	}
	name := func(key string) string {
		var s string
		if json.Unmarshal(cfg[key], &s) == nil {
			return s
		}
		var obj struct {
			Content string `json:"content"`
		}
		if json.Unmarshal(cfg[key], &obj) == nil {
			return obj.Content
		}
		return ""
	}
	if err := t.SetSpecial(name("bos_token"), name("eos_token")); err != nil {
		return fmt.Errorf("%v (named by %s)", err, cfgPath)
	}
	return nil
}

// BOS is the begin-of-sequence id, or -1.
func (t *HF) BOS() int { return t.bos }

// EOS is the end-of-sequence id, or -1.
func (t *HF) EOS() int { return t.eos }

// VocabSize is one more than the largest id of the vocabulary and added tokens.
func (t *HF) VocabSize() int { return len(t.pieces) }

// Unknown is the model's unk_token id, or -1 when it has none.
func (t *HF) Unknown() int { return t.unk }

// Piece is the string of token id ("" when no token has that id).
func (t *HF) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

type hfSegment struct {
	added int // token id, or -1 for text
	text  string
	start int // byte offset in the original text
}

// splitAdded cuts text at added tokens, as the library does before
// normalisation: leftmost match, longest at that position.
func (t *HF) splitAdded(text string) []hfSegment {
	var segs []hfSegment
	last := 0 // end of what has been emitted
	for i := 0; i < len(text); {
		var hit *hfAddedToken
		for k := range t.added { // longest first
			a := &t.added[k]
			if !strings.HasPrefix(text[i:], a.Content) {
				continue
			}
			if a.SingleWord {
				stop := i + len(a.Content)
				if endsWithWord(text[:i]) || startsWithWord(text[stop:]) {
					continue
				}
			}
			hit = a
			break
		}
		if hit == nil {
			_, w := utf8.DecodeRuneInString(text[i:])
			i += w
			continue
		}
		start, stop := i, i+len(hit.Content)
		if hit.LStrip {
			start = max(len(strings.TrimRightFunc(text[:start], unicode.IsSpace)), last)
		}
		if hit.RStrip {
			stop = len(text) - len(strings.TrimLeftFunc(text[stop:], unicode.IsSpace))
		}
		if last < start {
			segs = append(segs, hfSegment{added: -1, text: text[last:start], start: last})
		}
		segs = append(segs, hfSegment{added: hit.ID})
		last = stop
		i = stop
	}
	if last < len(text) {
		segs = append(segs, hfSegment{added: -1, text: text[last:], start: last})
	}
	return segs
}

func isWordChar(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}

// Encode splits out added tokens, normalises each remaining piece of text,
// pre-tokenizes it with Metaspace when configured, and runs BPE on each
// word. BOS is prepended when bos is true and the tokenizer has one. An
// empty text gives no tokens besides BOS.
func (t *HF) Encode(text string, bos bool) []int {
	var ids []int
	if bos && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	for _, seg := range t.splitAdded(text) {
		if seg.added >= 0 {
			ids = append(ids, seg.added)
			continue
		}
		s := seg.text
		for _, st := range t.norm {
			if st.replace {
				s = strings.ReplaceAll(s, st.from, st.to)
			} else if s != "" {
				s = st.to + s
			}
		}
		if s == "" {
			continue
		}
		if t.meta == nil {
			ids = t.bpe(s, ids)
			continue
		}
		s = strings.ReplaceAll(s, " ", t.meta.repl)
		if !strings.HasPrefix(s, t.meta.repl) &&
			(t.meta.prepend == "always" || (t.meta.prepend == "first" && seg.start == 0)) {
			s = t.meta.repl + s
		}
		if !t.meta.split {
			ids = t.bpe(s, ids)
			continue
		}
		// Split before every replacement character, which stays with the
		// word it starts (the library's MergedWithNext).
		from := 0
		for off := 0; ; {
			k := strings.Index(s[off:], t.meta.repl)
			if k < 0 {
				break
			}
			if pos := off + k; pos > from {
				ids = t.bpe(s[from:pos], ids)
				from = pos
			}
			off += k + len(t.meta.repl)
		}
		ids = t.bpe(s[from:], ids)
	}
	return ids
}

type hfSymbol struct {
	id         int
	prev, next int
	alive      bool
}

type hfQueued struct{ rank, pos, id int }

type hfQueue []hfQueued

func (q hfQueue) Len() int { return len(q) }
func (q hfQueue) Less(i, j int) bool {
	if q[i].rank != q[j].rank {
		return q[i].rank < q[j].rank
	}
	return q[i].pos < q[j].pos
}
func (q hfQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *hfQueue) Push(x any)   { *q = append(*q, x.(hfQueued)) }
func (q *hfQueue) Pop() any     { old := *q; x := old[len(old)-1]; *q = old[:len(old)-1]; return x }

// bpe appends the ids of one word, following the library's BPE.merge_word
// and Word.merge_all, including where a pending unknown token is placed
// when byte fallback fails for some characters and succeeds for others.
func (t *HF) bpe(word string, out []int) []int {
	if word == "" {
		return out
	}
	if t.ignoreMerges {
		if id, ok := t.vocab[word]; ok {
			return append(out, id)
		}
	}
	var syms []hfSymbol
	add := func(id int) {
		syms = append(syms, hfSymbol{id: id, prev: len(syms) - 1, next: len(syms) + 1, alive: true})
	}
	pendingUnk := false
	for i := 0; i < len(word); {
		_, w := utf8.DecodeRuneInString(word[i:])
		ch := word[i : i+w]
		i += w
		if id, ok := t.vocab[ch]; ok {
			if pendingUnk {
				add(t.unk)
				pendingUnk = false
			}
			add(id)
			continue
		}
		if t.byteFallback {
			var bs []int
			for _, b := range []byte(ch) {
				id, ok := t.vocab[fmt.Sprintf("<0x%02X>", b)]
				if !ok {
					bs = nil
					break
				}
				bs = append(bs, id)
			}
			if bs != nil {
				for _, id := range bs {
					add(id)
				}
				continue
			}
		}
		if t.unk >= 0 {
			if pendingUnk && !t.fuseUnk {
				add(t.unk)
			}
			pendingUnk = true
		}
	}
	if pendingUnk {
		add(t.unk)
	}
	if len(syms) == 0 {
		return out
	}
	syms[len(syms)-1].next = -1

	q := &hfQueue{}
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := t.merges[[2]int{syms[i].id, syms[i+1].id}]; ok {
			*q = append(*q, hfQueued{rank: m.rank, pos: i, id: m.id})
		}
	}
	heap.Init(q)
	for q.Len() > 0 {
		top := heap.Pop(q).(hfQueued)
		cur := &syms[top.pos]
		if !cur.alive || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		if m, ok := t.merges[[2]int{cur.id, right.id}]; !ok || m.id != top.id {
			continue // stale entry
		}
		cur.id = top.id
		syms[cur.next].alive = false
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if m, ok := t.merges[[2]int{syms[cur.prev].id, cur.id}]; ok {
				heap.Push(q, hfQueued{rank: m.rank, pos: cur.prev, id: m.id})
			}
		}
		if cur.next >= 0 {
			if m, ok := t.merges[[2]int{cur.id, syms[cur.next].id}]; ok {
				heap.Push(q, hfQueued{rank: m.rank, pos: top.pos, id: m.id})
			}
		}
	}
	for _, s := range syms {
		if s.alive {
			out = append(out, s.id)
		}
	}
	return out
}

// hfByte is the library's ByteFallback test: exactly "<0xHH>".
func hfByte(piece string) (byte, bool) {
	if len(piece) != 6 || !strings.HasPrefix(piece, "<0x") || piece[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(piece[3])
	lo, ok2 := hexDigit(piece[4])
	return byte(hi<<4 | lo), ok1 && ok2
}

func (t *HF) hasDecoder(k hfDecKind) bool {
	for _, d := range t.dec {
		if d.kind == k {
			return true
		}
	}
	return false
}

// Decode gives the text of one token following prev. The decoder's
// per-token steps are applied; the steps that act on the start of the
// text (Strip, and Metaspace's removal of the prefix) apply only when prev
// is BOS. A byte token gives its raw byte when the decoder has
// ByteFallback. Special tokens give their content.
func (t *HF) Decode(prev, tok int) string {
	if tok < 0 || tok >= len(t.pieces) {
		return ""
	}
	piece := t.pieces[tok]
	if t.special[tok] {
		return piece
	}
	if b, ok := hfByte(piece); ok && t.hasDecoder(decByteFallback) {
		return string([]byte{b})
	}
	out := t.decodeChain([]string{piece}, prev == t.bos && t.bos >= 0)
	return strings.Join(out, "")
}

// DecodeAll decodes ids as the library's decode with skip_special_tokens:
// special tokens are dropped and the decoder runs over the rest. As in
// the library, byte tokens that do not form valid UTF-8 become U+FFFD.
func (t *HF) DecodeAll(ids []int) string {
	var pieces []string
	for _, id := range ids {
		if id < 0 || id >= len(t.pieces) || t.special[id] {
			continue
		}
		pieces = append(pieces, t.pieces[id])
	}
	if len(pieces) == 0 {
		return ""
	}
	return strings.Join(t.decodeChain(pieces, true), "")
}

// decodeChain runs the decoder steps over tokens; atStart says whether the
// first token begins the text.
func (t *HF) decodeChain(tokens []string, atStart bool) []string {
	for _, d := range t.dec {
		switch d.kind {
		case decReplace:
			for i := range tokens {
				tokens[i] = strings.ReplaceAll(tokens[i], d.from, d.to)
			}
		case decByteFallback:
			tokens = byteFallbackTokens(tokens)
		case decFuse:
			tokens = []string{strings.Join(tokens, "")}
		case decStrip:
			if !atStart {
				continue
			}
			for i := range tokens {
				tokens[i] = stripRunes(tokens[i], d.content, d.start, d.stop)
			}
		case decMetaspace:
			for i := range tokens {
				if i == 0 && atStart && d.prependMeta {
					tokens[i] = strings.ReplaceAll(tokens[i], d.repl, "")
				} else {
					tokens[i] = strings.ReplaceAll(tokens[i], d.repl, " ")
				}
			}
		}
	}
	return tokens
}

func byteFallbackTokens(tokens []string) []string {
	var out []string
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, tok := range tokens {
		if b, ok := hfByte(tok); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, tok)
	}
	flush()
	return out
}

// stripRunes removes up to start leading and stop trailing c characters.
func stripRunes(s string, c rune, start, stop int) string {
	for ; start > 0; start-- {
		r, n := utf8.DecodeRuneInString(s)
		if n == 0 || r != c {
			break
		}
		s = s[n:]
	}
	for ; stop > 0; stop-- {
		r, n := utf8.DecodeLastRuneInString(s)
		if n == 0 || r != c {
			break
		}
		s = s[:len(s)-n]
	}
	return s
}
