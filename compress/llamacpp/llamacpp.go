// Package llamacpp runs GGUF files through a real llama.cpp, so that what the
// tool writes is checked by the program people load it with rather than by
// the tool's own reader alone.
//
// llama.cpp comes from the node-llama-cpp npm package, whose prebuilt CPU
// library needs no compiler: scripts/llamacpp-setup installs the pinned
// version into build/llamacpp (once; later runs return at once), and
// scripts/llamacpp-logprobs.mjs evaluates token sequences and writes the
// next-token log-probabilities over the whole vocabulary at every position.
// Node.js 20 or later is the only thing this needs at run time (the setup
// script finds or installs one); no cgo.
package llamacpp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrRegistryUnreachable is returned by Setup when llama.cpp is not yet
// installed and the npm registry cannot be reached to install it: the one
// failure a test may treat as a reason to skip.
var ErrRegistryUnreachable = errors.New("the npm registry is unreachable")

// setupUnreachable is scripts/llamacpp-setup's exit status for an
// unreachable registry.
const setupUnreachable = 3

// Runner evaluates GGUF files with the llama.cpp installed under a checkout.
type Runner struct {
	root string // module root: scripts/ and build/ are below it
	node string // the Node.js binary setup chose (20 or later)
	// Threads is the number of CPU threads llama.cpp uses. Its results do
	// not depend on it in practice, but a fixed count rules that out.
	Threads int
	// KVType is the type of llama.cpp's key/value cache: "" or "F32" keeps
	// it in float32 like the tool's forward pass; "F16" is llama.cpp's own
	// default, which rounds every cached key and value.
	KVType string
}

// Setup installs llama.cpp under root/build/llamacpp when it is missing
// (scripts/llamacpp-setup; Node.js comes from apt when absent) and returns a
// Runner for it. The error wraps ErrRegistryUnreachable when npm could not
// reach its registry, and carries the script's message otherwise.
func Setup(root string) (*Runner, error) {
	// Read here, not only by node, so that go test's cache sees a changed
	// script or pin and runs the tests again.
	for _, f := range []string{"llamacpp-logprobs.mjs", filepath.Join("llamacpp", "package-lock.json")} {
		if _, err := os.ReadFile(filepath.Join(root, "scripts", f)); err != nil {
			return nil, fmt.Errorf("llamacpp: %w", err)
		}
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "llamacpp-setup"), filepath.Join(root, "build", "llamacpp"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == setupUnreachable {
			return nil, fmt.Errorf("llamacpp: %w: %s", ErrRegistryUnreachable, msg)
		}
		return nil, fmt.Errorf("llamacpp: scripts/llamacpp-setup: %v: %s", err, msg)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	node := lines[len(lines)-1]
	if !filepath.IsAbs(node) {
		return nil, fmt.Errorf("llamacpp: scripts/llamacpp-setup named no node binary (output %q)", stdout.String())
	}
	return &Runner{root: root, node: node, Threads: 1}, nil
}

// Summary is what the script reports about a run besides the numbers.
type Summary struct {
	Positions    int    `json:"positions"` // over all sequences
	Vocab        int    `json:"vocab"`
	Architecture string `json:"architecture"`
	NodeLlamaCpp string `json:"nodeLlamaCpp"` // the npm package's version
	LlamaCpp     struct {
		Repo    string `json:"repo"`
		Release string `json:"release"`
	} `json:"llamaCpp"`
	Sequences int    `json:"sequences"`
	KVType    string `json:"kvType"`
	Threads   int    `json:"threads"`
}

// LogProbs holds next-token log-probabilities: Data[r*Vocab+i] is log p(token
// i | what came before) at row r, the rows being every position of every
// sequence fed, one sequence after another.
type LogProbs struct {
	Summary
	Data []float32
}

// script runs scripts/llamacpp-logprobs.mjs on model with input (marshalled
// to JSON) as the file after inFlag, decodes its one-line summary into
// summary and returns what it wrote to its --out file.
func (r *Runner) script(model, inFlag string, input any, summary any, extra ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "llamacpp-")
	if err != nil {
		return nil, fmt.Errorf("llamacpp: %w", err)
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "in.json"), filepath.Join(dir, "out")
	js, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("llamacpp: %w", err)
	}
	if err := os.WriteFile(in, js, 0o644); err != nil {
		return nil, fmt.Errorf("llamacpp: %w", err)
	}
	args := append([]string{filepath.Join(r.root, "scripts", "llamacpp-logprobs.mjs"),
		"--model", model, inFlag, in, "--out", out}, extra...)
	cmd := exec.Command(r.node, args...)
	cmd.Env = append(os.Environ(), "NODE_LLAMA_CPP_DIR="+filepath.Join(r.root, "build", "llamacpp"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("llamacpp: %s: %v: %s", model, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal([]byte(stdout.String()), summary); err != nil {
		return nil, fmt.Errorf("llamacpp: %s: unreadable summary %q: %v", model, stdout.String(), err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("llamacpp: %w", err)
	}
	return data, nil
}

// LogProbs feeds each sequence of ids to model (a GGUF file) from position 0
// with an empty cache, exactly as given (no BOS is added), and returns
// llama.cpp's next-token log-probabilities at every position, computed by
// log-softmax from its raw logits.
func (r *Runner) LogProbs(model string, seqs ...[]int) (*LogProbs, error) {
	extra := []string{"--threads", fmt.Sprint(max(r.Threads, 1))}
	if r.KVType != "" {
		extra = append(extra, "--kv-type", r.KVType)
	}
	positions := 0
	for _, ids := range seqs {
		positions += len(ids)
	}
	var lp LogProbs
	raw, err := r.script(model, "--tokens", seqs, &lp.Summary, extra...)
	if err != nil {
		return nil, err
	}
	if lp.Positions != positions || lp.Vocab <= 0 || len(raw) != 4*lp.Positions*lp.Vocab {
		return nil, fmt.Errorf("llamacpp: %s: %d bytes of log-probabilities for %d positions x %d vocabulary, %d tokens fed",
			model, len(raw), lp.Positions, lp.Vocab, positions)
	}
	lp.Data = make([]float32, len(raw)/4)
	for i := range lp.Data {
		lp.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return &lp, nil
}

// Tokenize returns llama.cpp's tokenization of each text with the tokenizer
// stored in model (a GGUF file): no BOS, and text that spells a special
// token ("<s>") stays text, as the tool's Encode(text, false) does.
func (r *Runner) Tokenize(model string, texts []string) ([][]int, error) {
	var summary Summary
	raw, err := r.script(model, "--texts", texts, &summary)
	if err != nil {
		return nil, err
	}
	var out struct {
		Tokens [][]int `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Tokens) != len(texts) {
		return nil, fmt.Errorf("llamacpp: %s: unreadable tokenization of %d texts (%v)", model, len(texts), err)
	}
	return out.Tokens, nil
}

// Difference says how far two tables of next-token log-probabilities over
// the same positions and vocabulary are apart.
type Difference struct {
	Positions int
	// MaxAbs is the largest |a - b| over every position and vocabulary
	// entry; MaxAt is the position where it occurs.
	MaxAbs float64
	MaxAt  int
	// Top1Agree counts the positions whose most likely next token is the
	// same in both; FirstTop1Disagreement is the first position where it is
	// not, -1 when there is none.
	Top1Agree             int
	FirstTop1Disagreement int
}

func (d Difference) String() string {
	return fmt.Sprintf("max |log p diff| %.3g (position %d), top-1 identical at %d of %d positions",
		d.MaxAbs, d.MaxAt, d.Top1Agree, d.Positions)
}

// Compare measures the difference between ours (eval.LogProbs of each
// sequence, one after another) and theirs (llama.cpp's), which must have the
// same vocabulary and number of positions.
func Compare(ours []float64, theirs *LogProbs) (Difference, error) {
	v := theirs.Vocab
	if v <= 0 || len(ours) != len(theirs.Data) {
		return Difference{}, fmt.Errorf("llamacpp: %d of our log-probabilities against %d positions x %d vocabulary of llama.cpp's",
			len(ours), theirs.Positions, v)
	}
	d := Difference{Positions: len(ours) / v, FirstTop1Disagreement: -1}
	for p := 0; p < d.Positions; p++ {
		a, b := ours[p*v:(p+1)*v], theirs.Data[p*v:(p+1)*v]
		topA, topB := 0, 0
		for i := range a {
			if diff := math.Abs(a[i] - float64(b[i])); diff > d.MaxAbs || diff != diff {
				d.MaxAbs, d.MaxAt = diff, p
			}
			if a[i] > a[topA] {
				topA = i
			}
			if b[i] > b[topB] {
				topB = i
			}
		}
		if topA == topB {
			d.Top1Agree++
		} else if d.FirstTop1Disagreement < 0 {
			d.FirstTop1Disagreement = p
		}
	}
	return d, nil
}
