package tokenizer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/internal/sharedtest"
)

func loadTok512(t testing.TB) *Llama2C {
	t.Helper()
	p := sharedtest.Tokenizer(t)
	tok, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	l, ok := tok.(*Llama2C)
	if !ok {
		t.Fatalf("Load(%s) gave %T, want *Llama2C", p, tok)
	}
	return l
}

func sampleLines(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(sharedtest.ValidText(t))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// naiveEncode is a line-by-line transcription of run.c's encode (with its
// quadratic merge loop), kept apart from the priority-queue version.
func naiveEncode(t *Llama2C, text string, bos bool) []int {
	var tokens []int
	if bos {
		tokens = append(tokens, 1)
	}
	if text != "" {
		id, ok := t.lookup[" "]
		if !ok {
			id = ' ' + 3
		}
		tokens = append(tokens, id)
	}
	buf := []byte{}
	for i := 0; i < len(text); i++ {
		if text[i]&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, text[i])
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		if id, ok := t.lookup[string(buf)]; ok {
			tokens = append(tokens, id)
		} else {
			for _, b := range buf {
				tokens = append(tokens, int(b)+3)
			}
		}
		buf = buf[:0]
	}
	for {
		best, bestID, bestIdx := float32(-1e10), -1, -1
		for i := 0; i < len(tokens)-1; i++ {
			id, ok := t.lookup[t.vocab[tokens[i]]+t.vocab[tokens[i+1]]]
			if ok && t.scores[id] > best {
				best, bestID, bestIdx = t.scores[id], id, i
			}
		}
		if bestIdx == -1 {
			break
		}
		tokens[bestIdx] = bestID
		tokens = append(tokens[:bestIdx+1], tokens[bestIdx+2:]...)
	}
	return tokens
}

func TestLlama2CHeader(t *testing.T) {
	tok := loadTok512(t)
	if tok.VocabSize() != 512 || tok.BOS() != 1 || tok.EOS() != 2 || tok.MaxTokenLength() != 7 {
		t.Fatalf("vocab %d bos %d eos %d maxlen %d, want 512 1 2 7", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.MaxTokenLength())
	}
}

func TestLlama2CEncodeKnown(t *testing.T) {
	tok := loadTok512(t)
	// Worked by hand from tok512's scores: " " and the characters first,
	// then the best merges " O"+"n"... are applied; checked against the
	// transcription of run.c and by decoding.
	cases := []struct {
		text string
		bos  bool
		want []string // pieces
	}{
		{"", true, []string{"\n<s>\n"}},
		{"", false, nil},
		{"a", false, []string{" a"}},
		{"the", true, []string{"\n<s>\n", " the"}},
		// U+4E2D is not in the vocabulary: three byte tokens.
		{"中", false, []string{" ", "<0xE4>", "<0xB8>", "<0xAD>"}},
		// é is in the vocabulary as one token.
		{"é", false, []string{" ", "é"}},
	}
	for _, c := range cases {
		got := tok.Encode(c.text, c.bos)
		var pieces []string
		for _, id := range got {
			pieces = append(pieces, tok.Piece(id))
		}
		if !slices.Equal(pieces, c.want) {
			t.Errorf("Encode(%q, %v) = %q, want %q", c.text, c.bos, pieces, c.want)
		}
	}
}

func TestLlama2CEncodeMatchesRunC(t *testing.T) {
	tok := loadTok512(t)
	extra := []string{"Once upon a time", "  two  spaces ", "tab\tand\nnewline", "中文 and émoji 🙂!",
		"\xff\xfe broken \x80 utf8", "a\x00b", "<0x41> <s>", strings.Repeat("ab", 300)}
	inputs := append(sampleLines(t), extra...)
	total := 0
	for k, in := range inputs {
		for _, bos := range []bool{true, false} {
			if !bos && k < len(inputs)-len(extra) {
				continue // the long lines once is enough for the quadratic reference
			}
			got := tok.Encode(in, bos)
			want := naiveEncode(tok, in, bos)
			if !slices.Equal(got, want) {
				t.Fatalf("Encode(%.40q, %v):\n got %v\nwant %v", in, bos, got, want)
			}
			total += len(got)
		}
	}
	t.Logf("%d inputs, %d tokens identical to the run.c transcription", len(inputs), total)
}

func TestLlama2CRoundTrip(t *testing.T) {
	tok := loadTok512(t)
	for _, in := range append(sampleLines(t), "x", "中文 🙂 \xff", "  lead") {
		checkDecodes(t, tok, tok.Encode(in, true), in)
	}
}

// checkDecodes checks that ids, the encoding of text, decode back to text
// both whole (DecodeAll) and streamed one token at a time after the first,
// as a generator prints them (Decode).
func checkDecodes(t *testing.T, tok Tokenizer, ids []int, text string) {
	t.Helper()
	if got := tok.DecodeAll(ids); got != text {
		t.Errorf("DecodeAll(Encode(%.50q)) = %.50q", text, got)
	}
	var sb strings.Builder
	for i := 1; i < len(ids); i++ {
		sb.WriteString(tok.Decode(ids[i-1], ids[i]))
	}
	if sb.String() != text {
		t.Errorf("streamed Decode of %.50q = %.50q", text, sb.String())
	}
}

func TestLlama2CDecode(t *testing.T) {
	tok := loadTok512(t)
	the := tok.lookup[" the"]
	if got := tok.Decode(1, the); got != "the" {
		t.Errorf("Decode(BOS, ' the') = %q, want %q (leading space dropped after BOS)", got, "the")
	}
	if got := tok.Decode(the, the); got != " the" {
		t.Errorf("Decode(' the', ' the') = %q", got)
	}
	if got := tok.Decode(-1, 3+0x41); got != "A" {
		t.Errorf("Decode(<0x41>) = %q, want A", got)
	}
	if got := tok.Decode(-1, 1); got != "\n<s>\n" {
		t.Errorf("Decode(BOS) = %q, want the stored piece", got)
	}
	if got := tok.Decode(-1, 512); got != "" {
		t.Errorf("Decode(out of range) = %q", got)
	}
	for _, c := range []struct {
		in   string
		b    byte
		isOK bool
	}{{"<0x0A>", 10, true}, {"<0xff>", 255, true}, {"<0x7>", 7, true}, {"<0x>", 0, false}, {"0x41", 0, false}} {
		b, ok := parseByteToken(c.in)
		if ok != c.isOK || (ok && b != c.b) {
			t.Errorf("parseByteToken(%q) = %d, %v", c.in, b, ok)
		}
	}
}

// buildLlama2C writes a llama2.c tokenizer file from pieces and scores.
func buildLlama2C(maxLen int32, pieces []string, scores []float32) []byte {
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, maxLen)
	for i, p := range pieces {
		_ = binary.Write(&buf, binary.LittleEndian, math.Float32bits(scores[i]))
		_ = binary.Write(&buf, binary.LittleEndian, int32(len(p)))
		buf.WriteString(p)
	}
	return buf.Bytes()
}

func basePieces() ([]string, []float32) {
	pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	for b := 0; b < 256; b++ {
		pieces = append(pieces, fmt.Sprintf("<0x%02X>", b))
	}
	return pieces, make([]float32, len(pieces))
}

func TestLlama2CSynthetic(t *testing.T) {
	pieces, scores := basePieces()
	// No " " in the vocabulary; ties between equal scores go to the left.
	add := func(p string, s float32) { pieces = append(pieces, p); scores = append(scores, s) }
	add("a", -1)
	add("b", -1)
	add("ab", -5)
	add("ba", -5)
	add("aba", -2)
	add("low", -1e10) // never merged: run.c needs a score above -1e10
	add("l", -1)
	add("o", -1)
	add("w", -1)
	add("lo", -20)
	tok, err := ParseLlama2C("synthetic.bin", buildLlama2C(7, pieces, scores))
	if err != nil {
		t.Fatal(err)
	}
	id := func(p string) int { return tok.lookup[p] }
	check := func(text string, want ...int) {
		t.Helper()
		got := tok.Encode(text, false)
		if !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v", text, got, want)
		}
		if n := naiveEncode(tok, text, false); !slices.Equal(n, got) {
			t.Errorf("Encode(%q) = %v, run.c transcription %v", text, got, n)
		}
	}
	sp := 3 + int(' ')
	// "bab": "ba" (pos 0) and "ab" (pos 1) tie at -5: the left one wins,
	// then "ba"+"b" is not a token.
	check("bab", sp, id("ba"), id("b"))
	// "aba": "ab" wins the tie, then "ab"+"a" = "aba".
	check("aba", sp, id("aba"))
	check("low", sp, id("lo"), id("w"))
}

func TestParseLlama2CErrors(t *testing.T) {
	pieces, scores := basePieces()
	good := buildLlama2C(7, pieces, scores)
	bad := map[string][]byte{
		"short":           good[:3],
		"zero maxlen":     append([]byte{0, 0, 0, 0}, good[4:]...),
		"truncated entry": good[:len(good)-3],
		"dangling bytes":  append(append([]byte{}, good...), 1, 2, 3),
		"too few tokens":  buildLlama2C(7, pieces[:100], scores[:100]),
		"too long token":  buildLlama2C(3, pieces, scores),
	}
	swapped := slices.Clone(pieces)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	bad["byte tokens out of order"] = buildLlama2C(7, swapped, scores)
	for name, data := range bad {
		_, err := ParseLlama2C("x/tok.bin", data)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), "x/tok.bin") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q should name the file on one line", name, err)
		}
	}
	if _, err := ParseLlama2C("ok.bin", good); err != nil {
		t.Errorf("good file: %v", err)
	}
}

func FuzzLlama2CEncode(f *testing.F) {
	tok := loadTok512(f)
	for _, s := range []string{"", "Once upon a time", "中文 🙂", "\xff\x80", "  x  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := tok.Encode(s, true)
		if want := naiveEncode(tok, s, true); !slices.Equal(got, want) {
			t.Fatalf("Encode(%q) = %v, run.c transcription %v", s, got, want)
		}
		if back := tok.DecodeAll(got); back != s {
			t.Fatalf("DecodeAll(Encode(%q)) = %q", s, back)
		}
	})
}

// charPieces is a character-level vocabulary trained without byte
// fallback: <unk>, <s>, </s> as llama2.c's exporter writes them, " ", and
// a few letters and merges.
func charPieces() ([]string, []float32) {
	pieces := []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "c", "é", "ab", " ab"}
	scores := []float32{0, 0, 0, -1, -1, -1, -1, -1, -2, -3}
	return pieces, scores
}

func TestLlama2CWithoutByteFallback(t *testing.T) {
	pieces, scores := charPieces()
	tok, err := ParseLlama2C("chars.bin", buildLlama2C(6, pieces, scores))
	if err != nil {
		t.Fatal(err)
	}
	if tok.ByteFallback() || tok.Unknown() != 0 || tok.VocabSize() != len(pieces) {
		t.Fatalf("ByteFallback %v, Unknown %d, VocabSize %d", tok.ByteFallback(), tok.Unknown(), tok.VocabSize())
	}
	id := func(p string) int { return tok.lookup[p] }
	for _, c := range []struct {
		text string
		want []int
	}{
		// "ab" then " "+"ab": the merges still apply around known pieces.
		{"ab", []int{1, id(" ab")}},
		{"cé", []int{1, id(" "), id("c"), id("é")}},
		// x and the 4-byte emoji have no token: one <unk> per code point,
		// and an <unk> never merges with its neighbours.
		{"xab", []int{1, id(" "), 0, id("ab")}},
		{"a🙂b", []int{1, id(" "), id("a"), 0, id("b")}},
		// Invalid UTF-8: each stray byte is its own unknown piece.
		{"\xff\xfe", []int{1, id(" "), 0, 0}},
	} {
		got := tok.Encode(c.text, true)
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.text, got, c.want)
		}
	}
	if got := tok.DecodeAll(tok.Encode("ab cé", true)); got != "ab cé" {
		t.Errorf("round trip of known text gave %q", got)
	}

	// A vocabulary without " " has no dummy-prefix token: it is unknown.
	noSpace := slices.Clone(pieces)
	noSpace[3] = "d"
	tok2, err := ParseLlama2C("nospace.bin", buildLlama2C(6, noSpace, scores))
	if err != nil {
		t.Fatal(err)
	}
	if got := tok2.Encode("a", false); !slices.Equal(got, []int{0, 4}) {
		t.Errorf("Encode without a space token = %v, want [0 4]", got)
	}
	// The plain spellings of <s> and </s> are accepted too.
	plain := slices.Clone(pieces)
	plain[1], plain[2] = "<s>", "</s>"
	if _, err := ParseLlama2C("plain.bin", buildLlama2C(6, plain, scores)); err != nil {
		t.Errorf("<s> and </s> spelled plainly: %v", err)
	}
}

func TestLlama2CWithoutByteFallbackErrors(t *testing.T) {
	pieces, scores := charPieces()
	bad := map[string][]byte{}
	for i, name := range []string{"no <unk>", "no <s>", "no </s>"} {
		p := slices.Clone(pieces)
		p[i] = "z"
		bad[name] = buildLlama2C(6, p, scores)
	}
	bad["two tokens"] = buildLlama2C(6, pieces[:2], scores[:2])
	// One byte token where run.c expects them means byte fallback was
	// meant, and then all 256 are required.
	p := slices.Clone(pieces)
	p[4] = "<0x01>"
	bad["a stray byte token"] = buildLlama2C(6, p, scores)
	for name, data := range bad {
		_, err := ParseLlama2C("x/chars.bin", data)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !strings.Contains(err.Error(), "x/chars.bin") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q should name the file on one line", name, err)
		}
	}
}

func TestUnknownWithByteFallback(t *testing.T) {
	pieces, scores := basePieces()
	tok, err := ParseLlama2C("bytes.bin", buildLlama2C(7, pieces, scores))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ByteFallback() {
		t.Fatal("a vocabulary with the 256 byte tokens should use byte fallback")
	}
	// Characters without a token are still spelled in bytes, never <unk>.
	if got := tok.Encode("é", false); !slices.Equal(got, []int{3 + ' ', 3 + 0xC3, 3 + 0xA9}) {
		t.Errorf("Encode(é) = %v", got)
	}
}
