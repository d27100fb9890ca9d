package tokenizer

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Llama2C is a tokenizer in llama2.c's format: an int32 max_token_length,
// then for every token a float32 score, an int32 byte length and the bytes.
// The file does not store the vocabulary size (run.c takes it from the
// model), so the whole file is read and its length must add up exactly.
//
// Encoding and decoding follow run.c's encode and decode: BOS is id 1 and
// EOS id 2. A vocabulary with byte fallback has the byte tokens
// <0x00>..<0xFF> at ids 3..258, as run.c assumes. A vocabulary trained
// without byte fallback (no byte tokens at all) is valid too when ids 0, 1
// and 2 are <unk>, <s> and </s> (llama2.c's exporter writes the last two as
// "\n<s>\n" and "\n</s>\n"): a character with no token then becomes <unk>
// (id 0), as SentencePiece does, where run.c would index past its table.
type Llama2C struct {
	path           string
	maxTokenLength int
	vocab          []string
	scores         []float32
	lookup         map[string]int
	// byteFallback: ids 3..258 are the byte tokens, and a character with
	// no token is spelled in bytes; otherwise it is <unk>.
	byteFallback bool
}

// llama2cBOS and llama2cEOS are hard-coded in run.c, whatever the file holds.
const (
	llama2cBOS = 1
	llama2cEOS = 2
	// byteTokenBase is the id of <0x00>: run.c's "+3" for <unk>, <s>, </s>.
	byteTokenBase = 3
	// llama2cUnk is SentencePiece's default <unk> id, which llama2.c's
	// exporter keeps at 0.
	llama2cUnk = 0
)

// ParseLlama2C reads a llama2.c tokenizer from data; path is used in errors.
func ParseLlama2C(path string, data []byte) (*Llama2C, error) {
	fail := func(format string, a ...any) (*Llama2C, error) {
		return nil, fmt.Errorf("tokenizer: %s: llama2.c tokenizer: %s", path, fmt.Sprintf(format, a...))
	}
	if len(data) < 4 {
		return fail("file is %d bytes, too short for the max_token_length header", len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 {
		return fail("max_token_length is %d, want > 0", maxLen)
	}
	t := &Llama2C{path: path, maxTokenLength: int(maxLen), lookup: map[string]int{}}
	off := 4
	for off < len(data) {
		id := len(t.vocab)
		if len(data)-off < 8 {
			return fail("token %d: %d bytes left at offset %d, need 8 for score and length", id, len(data)-off, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || n > maxLen {
			return fail("token %d: length %d outside 0..max_token_length %d", id, n, maxLen)
		}
		if int(n) > len(data)-off {
			return fail("token %d: length %d runs past the end of the file", id, n)
		}
		s := string(data[off : off+int(n)])
		off += int(n)
		t.vocab = append(t.vocab, s)
		t.scores = append(t.scores, score)
		// run.c's bsearch over a sorted copy picks an arbitrary one of
		// equal strings; the lowest id is a deterministic choice.
		if _, dup := t.lookup[s]; !dup {
			t.lookup[s] = id
		}
	}
	// Any byte token where run.c expects them means the vocabulary was
	// trained with byte fallback, so all 256 must be in place; a vocabulary
	// with none of them is one trained without it.
	hasByteTokens := false
	for id := byteTokenBase; id < min(len(t.vocab), byteTokenBase+256); id++ {
		if isExactByteToken(t.vocab[id]) {
			hasByteTokens = true
			break
		}
	}
	if !hasByteTokens {
		if err := checkSpecialPieces(t.vocab); err != nil {
			return fail("no byte-fallback tokens at ids 3..258, so ids 0..2 must be <unk>, <s>, </s>: %v", err)
		}
		return t, nil
	}
	if len(t.vocab) < byteTokenBase+256 {
		return fail("%d tokens, need at least %d (<unk>, <s>, </s> and 256 byte tokens)", len(t.vocab), byteTokenBase+256)
	}
	for b := 0; b < 256; b++ {
		if want := fmt.Sprintf("<0x%02X>", b); t.vocab[byteTokenBase+b] != want {
			return fail("token %d is %q, want byte token %q (run.c's byte fallback assumes ids 3..258 are <0x00>..<0xFF>)", byteTokenBase+b, t.vocab[byteTokenBase+b], want)
		}
	}
	t.byteFallback = true
	return t, nil
}

// isExactByteToken reports whether piece is "<0xHH>" with two upper-case
// hex digits, the form SentencePiece gives its byte tokens.
func isExactByteToken(piece string) bool {
	if len(piece) != 6 || !strings.HasPrefix(piece, "<0x") || piece[5] != '>' {
		return false
	}
	for _, c := range []byte(piece[3:5]) {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// checkSpecialPieces checks ids 0..2 of a vocabulary without byte fallback.
func checkSpecialPieces(vocab []string) error {
	want := [][]string{{"<unk>"}, {"<s>", "\n<s>\n"}, {"</s>", "\n</s>\n"}}
	if len(vocab) < len(want) {
		return fmt.Errorf("the file has only %d tokens", len(vocab))
	}
	for id, ok := range want {
		if !slices.Contains(ok, vocab[id]) {
			return fmt.Errorf("token %d is %q, want %q", id, vocab[id], ok[0])
		}
	}
	return nil
}

// BOS is 1, as in run.c.
func (t *Llama2C) BOS() int { return llama2cBOS }

// EOS is 2, as in run.c.
func (t *Llama2C) EOS() int { return llama2cEOS }

// Unknown is the id characters without a token become: 0 (<unk>) for a
// vocabulary without byte fallback. With byte fallback Encode never emits
// it, but the id still stands for <unk>.
func (t *Llama2C) Unknown() int { return llama2cUnk }

// ByteFallback reports whether the vocabulary has the 256 byte tokens.
func (t *Llama2C) ByteFallback() bool { return t.byteFallback }

// VocabSize is the number of tokens in the file.
func (t *Llama2C) VocabSize() int { return len(t.vocab) }

// MaxTokenLength is the header's max_token_length.
func (t *Llama2C) MaxTokenLength() int { return t.maxTokenLength }

// Piece is the stored string of token id.
func (t *Llama2C) Piece(id int) string { return t.vocab[id] }

// Score is the stored merge score of token id.
func (t *Llama2C) Score(id int) float32 { return t.scores[id] }

// Encode follows run.c's encode: optional BOS; a " " token (the dummy
// prefix) when text is not empty; each UTF-8 code point (at most 4 bytes)
// looked up as a token, or else spelled as byte tokens; then, while any
// adjacent pair concatenates to a vocabulary string, merge the pair whose
// result has the highest score, the leftmost on ties. The BOS token takes
// part in that search just as in run.c.
//
// Two cases where run.c would misbehave are given a defined meaning: a
// vocabulary without " " uses the byte token for the space as the prefix
// (run.c would emit id -1), and a NUL byte, which ends a C string, is
// encoded as a byte (or vocabulary) token instead of ending the text.
//
// Without byte fallback, a code point with no token (and a missing " "
// prefix) is one <unk>, which takes no part in merges, as in SentencePiece.
//
// The merge loop uses a priority queue instead of run.c's rescans, which
// picks the same pair at every step: the highest score, then the lowest
// position.
func (t *Llama2C) Encode(text string, bos bool) []int {
	ids := make([]int, 0, len(text)+2)
	if bos {
		ids = append(ids, llama2cBOS)
	}
	if text != "" {
		id, ok := t.lookup[" "]
		if !ok {
			id = t.missing(" ")[0]
		}
		ids = append(ids, id)
	}
	var buf []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, c)
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		if id, ok := t.lookup[string(buf)]; ok {
			ids = append(ids, id)
		} else {
			ids = append(ids, t.missing(string(buf))...)
		}
		buf = buf[:0]
	}
	return t.merge(ids)
}

// missing returns the ids for a code point (or stray bytes) with no token:
// its byte tokens, or one <unk> without byte fallback.
func (t *Llama2C) missing(s string) []int {
	if !t.byteFallback {
		return []int{llama2cUnk}
	}
	ids := make([]int, len(s))
	for i := range len(s) {
		ids[i] = byteTokenBase + int(s[i])
	}
	return ids
}

// minMergeScore is run.c's initial best_score (-1e10 stored in a float):
// a pair must score strictly above it to be merged.
var minMergeScore = float32(-1e10)

type scoredPair struct {
	score       float32
	left, right int // node indices
	lid, rid    int // token ids when the pair was queued
	merged      int
}

type pairQueue []scoredPair

func (q pairQueue) Len() int { return len(q) }
func (q pairQueue) Less(i, j int) bool {
	if q[i].score != q[j].score {
		return q[i].score > q[j].score
	}
	return q[i].left < q[j].left
}
func (q pairQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *pairQueue) Push(x any)        { *q = append(*q, x.(scoredPair)) }
func (q *pairQueue) Pop() any          { old := *q; x := old[len(old)-1]; *q = old[:len(old)-1]; return x }
func (q *pairQueue) push(p scoredPair) { heap.Push(q, p) }

func (t *Llama2C) merge(ids []int) []int {
	n := len(ids)
	if n < 2 {
		return ids
	}
	next := make([]int, n)
	prev := make([]int, n)
	alive := make([]bool, n)
	for i := range ids {
		next[i], prev[i], alive[i] = i+1, i-1, true
	}
	next[n-1] = -1
	q := &pairQueue{}
	var sb strings.Builder
	try := func(l, r int) {
		if !t.byteFallback && (ids[l] == llama2cUnk || ids[r] == llama2cUnk) {
			return // an unknown character has no string to merge with
		}
		sb.Reset()
		sb.WriteString(t.vocab[ids[l]])
		sb.WriteString(t.vocab[ids[r]])
		id, ok := t.lookup[sb.String()]
		if !ok {
			return
		}
		s := t.scores[id]
		if !(s > minMergeScore) { // also rejects NaN, as run.c's comparison does
			return
		}
		q.push(scoredPair{score: s, left: l, right: r, lid: ids[l], rid: ids[r], merged: id})
	}
	for i := 0; i+1 < n; i++ {
		try(i, i+1)
	}
	for q.Len() > 0 {
		p := heap.Pop(q).(scoredPair)
		if !alive[p.left] || !alive[p.right] || next[p.left] != p.right || ids[p.left] != p.lid || ids[p.right] != p.rid {
			continue // stale: one side has been merged since it was queued
		}
		ids[p.left] = p.merged
		alive[p.right] = false
		nr := next[p.right]
		next[p.left] = nr
		if nr >= 0 {
			prev[nr] = p.left
		}
		if pl := prev[p.left]; pl >= 0 {
			try(pl, p.left)
		}
		if nr >= 0 {
			try(p.left, nr)
		}
	}
	out := ids[:0]
	for i := 0; i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}

// Decode follows run.c's decode: after BOS a leading space is dropped, and
// a piece of the form <0xHH> stands for that raw byte. Ids outside the
// vocabulary decode to "".
func (t *Llama2C) Decode(prev, tok int) string {
	if tok < 0 || tok >= len(t.vocab) {
		return ""
	}
	piece := t.vocab[tok]
	if prev == llama2cBOS && strings.HasPrefix(piece, " ") {
		piece = piece[1:]
	}
	if b, ok := parseByteToken(piece); ok {
		return string([]byte{b})
	}
	return piece
}

// DecodeAll concatenates Decode over ids; BOS and EOS give no text.
func (t *Llama2C) DecodeAll(ids []int) string {
	var sb strings.Builder
	prev := -1
	for _, id := range ids {
		if id != llama2cBOS && id != llama2cEOS {
			sb.WriteString(t.Decode(prev, id))
		}
		prev = id
	}
	return sb.String()
}

// parseByteToken matches what run.c's sscanf(piece, "<0x%02hhX>") accepts
// for real vocabularies: "<0x" and one or two hex digits (either case).
func parseByteToken(piece string) (byte, bool) {
	if !strings.HasPrefix(piece, "<0x") {
		return 0, false
	}
	v, n := 0, 0
	for _, c := range []byte(piece[3:]) {
		if n == 2 {
			break
		}
		d, ok := hexDigit(c)
		if !ok {
			break
		}
		v = v*16 + d
		n++
	}
	return byte(v), n > 0
}

func hexDigit(c byte) (int, bool) {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0'), true
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10, true
	}
	return 0, false
}
