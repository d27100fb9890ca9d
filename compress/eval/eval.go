// Package eval measures a language model on text: perplexity, and how far
// a compressed model's predictions are from the original's.
//
// The scoring convention is the one ../shared/data/README.md defines: each
// line is one sequence, encoded with BOS prepended and no EOS; the model
// predicts every token after BOS; the score is the mean negative
// log-likelihood in nats per predicted token over all lines, and perplexity
// is its exp. A sequence longer than the window (512 tokens by default) is
// cut into windows overlapping by one token: window k holds tokens
// (W-1)k .. (W-1)k+W-1, the model starts fresh at position 0 in every
// window, and every token after the first of a window is scored, so every
// token after BOS is scored exactly once.
//
// Log-probabilities are computed in float64 from the float32 logits.
// Sequences are scored in parallel, each on its own model state, and the
// per-sequence sums are added in line order, so results do not depend on
// the number of processors.
package eval

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"pocketllm-native/compress/llama"
	"pocketllm-native/compress/tokenizer"
	"pocketllm-native/internal/regularfile"
)

// DefaultWindow is the scoring window of the convention, in tokens.
const DefaultWindow = 512

// Options adjusts scoring. The zero value is the convention.
type Options struct {
	// Window is the window length in tokens (>= 2); 0 means DefaultWindow,
	// or the model's context length when that is shorter. A window given
	// may not exceed the context length.
	Window int
	// Workers is the number of sequences scored at once; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each sequence with the number of
	// tokens scored so far and in total. Calls are serialised.
	Progress func(done, total int)
}

// Result is a model's score on a text.
type Result struct {
	Tokens    int     `json:"tokens"`    // scored (predicted) tokens
	Sequences int     `json:"sequences"` // lines given
	Windows   int     `json:"windows"`   // model runs from position 0
	NLL       float64 `json:"nll"`       // mean negative log-likelihood, nats per token
	PPL       float64 `json:"ppl"`       // exp(NLL)
	// UnknownTokens is how many scored tokens are the tokenizer's <unk>:
	// text a vocabulary without byte fallback could not represent. Each
	// is scored like any token, so a high count flatters the perplexity.
	UnknownTokens int `json:"unknown_tokens"`
}

// Comparison is an original and a compressed model scored on the same
// tokens, with the per-token divergence of their predictions.
type Comparison struct {
	Tokens        int     `json:"tokens"`
	Sequences     int     `json:"sequences"`
	Windows       int     `json:"windows"`
	UnknownTokens int     `json:"unknown_tokens"` // as in Result
	NLLOriginal   float64 `json:"nll_original"`
	PPLOriginal   float64 `json:"ppl_original"`
	NLLCompressed float64 `json:"nll_compressed"`
	PPLCompressed float64 `json:"ppl_compressed"`
	// KLMean is the mean over scored tokens of KL(original || compressed)
	// of the next-token distributions, in nats.
	KLMean float64 `json:"kl_mean"`
	// KLMax is the largest per-token KL divergence.
	KLMax float64 `json:"kl_max"`
	// Top1Agreement is the fraction of scored tokens where both models'
	// most likely next token (lowest id on ties) is the same.
	Top1Agreement float64 `json:"top1_agreement"`
}

// Lines splits text into the sequences to score: the text is cut at every
// "\n" and empty pieces are skipped. A "\r" before the "\n" stays part of
// the line: the sample file has "\r\n" endings, and the reference
// perplexity of stories260K on it (about 5.55) scores that "\r" as a token
// (stripping it gives about 5.39).
func Lines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// ReadLines reads a text file and splits it with Lines. Its errors name the
// file but no stage: evaluation and calibration both read text, and the
// caller says which.
func ReadLines(path string) ([]string, error) {
	data, err := regularfile.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := Lines(string(data))
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s: no non-empty lines", path)
	}
	return lines, nil
}

// Windows returns the windows of a token sequence under the convention:
// consecutive slices of at most w tokens overlapping by one, covering
// every token; sequences of fewer than two tokens have none.
func Windows(ids []int, w int) [][]int {
	var out [][]int
	for start := 0; start < len(ids)-1; start += w - 1 {
		out = append(out, ids[start:min(start+w, len(ids))])
	}
	return out
}

// logSoftmax writes log p_i = l_i - logsumexp(l) in float64 to dst. It
// reports false, leaving dst unspecified, when a logit is NaN or infinite.
func logSoftmax(dst []float64, logits []float32) bool {
	mx := math.Inf(-1)
	for _, l := range logits {
		if l != l || math.IsInf(float64(l), 0) {
			return false
		}
		mx = max(mx, float64(l))
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l) - mx)
	}
	lz := mx + math.Log(sum)
	for i, l := range logits {
		dst[i] = float64(l) - lz
	}
	return true
}

// LogProbs feeds ids to m as one sequence from position 0 and returns the
// log-probability of every vocabulary entry as the next token at every
// position: row p (vocab values from p*vocab) conditions on ids[0..p]. No
// BOS is added. It is what another implementation's outputs are checked
// against, so it is the plain forward pass, one fresh state, no windows.
func LogProbs(m *llama.Model, ids []int) ([]float64, error) {
	st, err := m.NewState(len(ids))
	if err != nil {
		return nil, err
	}
	vocab := m.VocabSize()
	out := make([]float64, len(ids)*vocab)
	for pos, id := range ids {
		logits, err := st.Forward(id, pos)
		if err != nil {
			return nil, err
		}
		if !logSoftmax(out[pos*vocab:(pos+1)*vocab], logits) {
			return nil, fmt.Errorf("eval: a non-finite logit at position %d", pos)
		}
	}
	return out, nil
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// encoded is the text as token sequences, with the counts reported.
type encoded struct {
	seqs    [][]int
	scored  int // tokens after BOS
	unknown int // of those, the tokenizer's <unk>
}

// encodeAll tokenizes every line with BOS and checks the ids fit the model.
func encodeAll(tok tokenizer.Tokenizer, lines []string, vocab int) (encoded, error) {
	if tok.BOS() < 0 {
		return encoded{}, errors.New("eval: the tokenizer has no BOS token, which the scoring convention prepends")
	}
	e := encoded{seqs: make([][]int, len(lines))}
	unk := tok.Unknown()
	for i, l := range lines {
		ids := tok.Encode(l, true)
		for j, id := range ids {
			if id >= vocab {
				return encoded{}, fmt.Errorf("eval: line %d encodes to token %d, outside the model's vocabulary of %d", i+1, id, vocab)
			}
			if j > 0 && id == unk {
				e.unknown++
			}
		}
		e.seqs[i] = ids
		e.scored += max(len(ids)-1, 0)
	}
	return e, nil
}

func windowFor(opt Options, models ...*llama.Model) (int, error) {
	w := opt.Window
	if w == 0 {
		// The convention's window, or a shorter model's whole context.
		w = DefaultWindow
		for _, m := range models {
			if c := m.ContextLength(); c > 0 {
				w = min(w, c)
			}
		}
	}
	if w < 2 {
		return 0, fmt.Errorf("eval: window %d is too short; need at least 2 tokens", w)
	}
	for _, m := range models {
		if c := m.ContextLength(); c > 0 && w > c {
			return 0, fmt.Errorf("eval: window %d exceeds the model's context length %d", w, c)
		}
	}
	return w, nil
}

// seqStats are the sums over one sequence, added in line order at the end.
type seqStats struct {
	tokens, windows, agree int
	nllA, nllB, kl, klMax  float64
}

// run scores every sequence with one model (b nil) or two, in parallel
// over sequences.
// It also returns how many scored tokens are <unk>.
func run(a, b *llama.Model, tok tokenizer.Tokenizer, lines []string, opt Options) ([]seqStats, int, error) {
	models := []*llama.Model{a}
	if b != nil {
		models = append(models, b)
		if a.VocabSize() != b.VocabSize() {
			return nil, 0, fmt.Errorf("eval: vocabulary sizes differ: original %d, compressed %d", a.VocabSize(), b.VocabSize())
		}
	}
	w, err := windowFor(opt, models...)
	if err != nil {
		return nil, 0, err
	}
	enc, err := encodeAll(tok, lines, a.VocabSize())
	if err != nil {
		return nil, 0, err
	}
	seqs, total := enc.seqs, enc.scored
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(seqs)))

	stats := make([]seqStats, len(seqs))
	errs := make([]error, len(seqs)) // by line, so the first failing line is reported
	var failed atomic.Bool
	next := make(chan int)
	var mu sync.Mutex
	done := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc, err := newScorer(a, b, w)
			for i := range next {
				if err != nil {
					errs[i] = err
					failed.Store(true)
				}
				if failed.Load() {
					continue // drain, so the feeder never blocks
				}
				if stats[i], errs[i] = sc.sequence(seqs[i]); errs[i] != nil {
					errs[i] = fmt.Errorf("eval: line %d: %w", i+1, errs[i])
					failed.Store(true)
					continue
				}
				if opt.Progress != nil {
					mu.Lock()
					done += stats[i].tokens
					opt.Progress(done, total)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range seqs {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, 0, err
		}
	}
	return stats, enc.unknown, nil
}

type scorer struct {
	a, b   *llama.State
	w      int
	la, lb []float64
	nameA  string // for errors
}

func newScorer(a, b *llama.Model, w int) (*scorer, error) {
	sa, err := a.NewState(w)
	if err != nil {
		return nil, err
	}
	sc := &scorer{a: sa, w: w, la: make([]float64, a.VocabSize()), nameA: "the"}
	if b != nil {
		if sc.b, err = b.NewState(w); err != nil {
			return nil, err
		}
		sc.lb = make([]float64, b.VocabSize())
		sc.nameA = "the original"
	}
	return sc, nil
}

func (sc *scorer) sequence(ids []int) (seqStats, error) {
	var st seqStats
	for k, win := range Windows(ids, sc.w) {
		start := k * (sc.w - 1)
		st.windows++
		sc.a.Reset()
		if sc.b != nil {
			sc.b.Reset()
		}
		for pos := 0; pos+1 < len(win); pos++ {
			target := win[pos+1]
			la, err := sc.a.Forward(win[pos], pos)
			if err != nil {
				return st, err
			}
			if !logSoftmax(sc.la, la) {
				return st, fmt.Errorf("%s model gave a non-finite logit at token %d of the line", sc.nameA, start+pos+1)
			}
			st.nllA -= sc.la[target]
			st.tokens++
			if sc.b == nil {
				continue
			}
			topA := argmax(la)
			lb, err := sc.b.Forward(win[pos], pos)
			if err != nil {
				return st, err
			}
			if !logSoftmax(sc.lb, lb) {
				return st, fmt.Errorf("the compressed model gave a non-finite logit at token %d of the line", start+pos+1)
			}
			st.nllB -= sc.lb[target]
			var kl float64
			for i, lp := range sc.la {
				kl += math.Exp(lp) * (lp - sc.lb[i])
			}
			st.kl += kl
			st.klMax = max(st.klMax, kl)
			if argmax(lb) == topA {
				st.agree++
			}
		}
	}
	return st, nil
}

// Perplexity scores one model on lines under the convention.
func Perplexity(m *llama.Model, tok tokenizer.Tokenizer, lines []string, opt Options) (Result, error) {
	stats, unknown, err := run(m, nil, tok, lines, opt)
	if err != nil {
		return Result{}, err
	}
	r := Result{UnknownTokens: unknown}
	var nll float64
	for _, s := range stats {
		r.Tokens += s.tokens
		r.Windows += s.windows
		nll += s.nllA
	}
	r.Sequences = len(stats)
	if r.Tokens == 0 {
		return r, errors.New("eval: no tokens to score (every line encodes to BOS alone)")
	}
	r.NLL = nll / float64(r.Tokens)
	r.PPL = math.Exp(r.NLL)
	return r, nil
}

// Compare scores an original and a compressed model on the same tokens in
// one pass and measures how their next-token distributions differ.
func Compare(original, compressed *llama.Model, tok tokenizer.Tokenizer, lines []string, opt Options) (Comparison, error) {
	stats, unknown, err := run(original, compressed, tok, lines, opt)
	if err != nil {
		return Comparison{}, err
	}
	c := Comparison{UnknownTokens: unknown}
	var nllA, nllB, kl float64
	agree := 0
	for _, s := range stats {
		c.Tokens += s.tokens
		c.Windows += s.windows
		nllA += s.nllA
		nllB += s.nllB
		kl += s.kl
		c.KLMax = max(c.KLMax, s.klMax)
		agree += s.agree
	}
	c.Sequences = len(stats)
	if c.Tokens == 0 {
		return c, errors.New("eval: no tokens to score (every line encodes to BOS alone)")
	}
	n := float64(c.Tokens)
	c.NLLOriginal, c.NLLCompressed = nllA/n, nllB/n
	c.PPLOriginal, c.PPLCompressed = math.Exp(c.NLLOriginal), math.Exp(c.NLLCompressed)
	c.KLMean = kl / n
	c.Top1Agreement = float64(agree) / n
	return c, nil
}
