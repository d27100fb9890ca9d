package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/compress/safetensors"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole job on a built-in model: write it, compress, inspect, decompress, compare",
		Description: "Writes a small Llama-shaped model with structured weights as a Hugging Face folder,\n" +
			"compresses it to --bits with one meta network per tensor kind, prints the report,\n" +
			"reconstructs it to safetensors and checks every tensor against the original.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "folder for the model, the .pllm file and the reconstruction (default: a new temporary folder)"},
			&cli.Float64Flag{Name: "bits", Value: 4, Usage: "target bits per weight"},
			&cli.IntFlag{Name: "epochs", Value: 15, Usage: "training epochs per group"},
			backendFlag,
		},
		Action: runDemo,
	}
}

// demoConfig is a small Llama: big enough that every tensor kind can pay for
// its shared meta network at 4 bits, small enough to train in about a minute
// on two cores, with an MLP width (344) that is not a multiple of the
// sub-vector length, as in real checkpoints.
var demoConfig = checkpoint.LlamaConfig{
	HiddenSize: 128, IntermediateSize: 344, NumHiddenLayers: 4, NumAttentionHeads: 8, NumKeyValueHeads: 4,
	VocabSize: 256, MaxPositionEmbeddings: 256, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true,
}

func runDemo(c *cli.Context) error {
	dir := c.String("dir")
	if dir == "" {
		d, err := os.MkdirTemp("", "pocketllm-demo-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out := c.App.Writer
	model := filepath.Join(dir, "model")
	if err := writeDemoModel(model, 1); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. wrote a %d-layer Llama-shaped model to %s\n", demoConfig.NumHiddenLayers, model)

	k, err := kernels(c)
	if err != nil {
		return err
	}
	st := pocketllm.DefaultSettings(0, 0)
	st.Epochs = c.Int("epochs")
	st.DecayEvery = max(1, st.Epochs*3/10)
	st.BatchVectors = 512
	file := filepath.Join(dir, "model.pllm")
	fmt.Fprintf(out, "2. compressing to %s at %.2g bits per weight (backend %s, %d epochs)\n", file, c.Float64("bits"), k.Name(), st.Epochs)
	rep, err := pipeline.Compress(pipeline.CompressOptions{
		In: model, Out: file, Force: true, Bits: c.Float64("bits"), Dims: plan.DefaultDims,
		Share: plan.ShareKind, Include: plan.DefaultInclude, Method: st, Kernels: k,
		Events: progressPrinter(c.App.ErrWriter, isTerminal(os.Stderr)),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "3. inspect %s\n", file)
	printReport(out, rep)

	rebuilt := filepath.Join(dir, "reconstructed")
	if err := pipeline.Decompress(pipeline.DecompressOptions{In: file, Out: rebuilt, Force: true, Kernels: k}); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n4. decompressed to %s; comparing with the original:\n", rebuilt)
	return compareFolders(out, model, rebuilt, rep)
}

// compareFolders checks that the reconstruction has every tensor of the
// original with the same shape, that kept tensors are identical and that
// compressed ones have the error the report states.
func compareFolders(w interface{ Write([]byte) (int, error) }, orig, rebuilt string, rep *pipeline.Report) error {
	a, err := checkpoint.Open(orig)
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := checkpoint.Open(rebuilt)
	if err != nil {
		return err
	}
	defer b.Close()
	reported := map[string]float64{}
	for _, t := range rep.Tensors {
		if t.NMSE != nil {
			reported[t.Name] = *t.NMSE
		}
	}
	same, compressed := 0, 0
	for _, t := range a.Tensors {
		u, ok := b.Info(t.Name)
		if !ok || fmt.Sprint(u.Shape) != fmt.Sprint(t.Shape) {
			return fmt.Errorf("%s: tensor %s missing or reshaped in the reconstruction", rebuilt, t.Name)
		}
		x, err := a.Float32(t.Name)
		if err != nil {
			return err
		}
		y, err := b.Float32(t.Name)
		if err != nil {
			return err
		}
		got := matrix.NMSE(x, y)
		want, isCompressed := reported[t.Name]
		switch {
		case !isCompressed && got != 0:
			return fmt.Errorf("%s: kept tensor %s changed (NMSE %g)", rebuilt, t.Name, got)
		case isCompressed && math.Abs(got-want) > 1e-6+1e-3*want:
			return fmt.Errorf("%s: tensor %s has NMSE %g, the report says %g", rebuilt, t.Name, got, want)
		case isCompressed:
			compressed++
		default:
			same++
		}
	}
	fmt.Fprintf(w, "   %d compressed tensors match their reported NMSE, %d kept tensors are bit-identical\n", compressed, same)
	return nil
}

// writeDemoModel writes a Hugging Face folder whose projections have the
// kind of structure trained weights have (a few strong directions plus
// noise, rows of varying norm), so compression has something to find.
func writeDemoModel(dir string, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := demoConfig
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	type tensor struct {
		info checkpoint.TensorInfo
		data []float32
	}
	var ts []tensor
	add := func(name string, rows, cols int, f func(r, c int) float32) {
		shape := []int{rows}
		if cols > 0 {
			shape = append(shape, cols)
		} else {
			cols = 1
		}
		d := make([]float32, rows*cols)
		for r := 0; r < rows; r++ {
			for c := 0; c < cols; c++ {
				d[r*cols+c] = f(r, c)
			}
		}
		ts = append(ts, tensor{checkpoint.TensorInfo{Name: name, DType: "F32", Shape: shape}, d})
	}
	projection := func(name string, rows, cols int) {
		const rank = 4
		u := make([]float64, rows*rank)
		v := make([]float64, cols*rank)
		norm := make([]float64, rows)
		for i := range u {
			u[i] = rng.NormFloat64()
		}
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		for i := range norm {
			norm[i] = 0.5 + rng.Float64()
		}
		std := 1 / math.Sqrt(float64(cols))
		add(name, rows, cols, func(r, c int) float32 {
			var s float64
			for k := 0; k < rank; k++ {
				s += u[r*rank+k] * v[c*rank+k]
			}
			return float32(std * norm[r] * (0.5*s + 0.3*rng.NormFloat64()))
		})
	}
	ones := func(r, _ int) float32 { return 1 }
	add("model.embed_tokens.weight", cfg.VocabSize, cfg.HiddenSize, func(int, int) float32 { return float32(rng.NormFloat64()) })
	kv := cfg.HiddenSize / cfg.NumAttentionHeads * cfg.NumKeyValueHeads
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", cfg.HiddenSize, 0, ones)
		projection(p+"self_attn.q_proj.weight", cfg.HiddenSize, cfg.HiddenSize)
		projection(p+"self_attn.k_proj.weight", kv, cfg.HiddenSize)
		projection(p+"self_attn.v_proj.weight", kv, cfg.HiddenSize)
		projection(p+"self_attn.o_proj.weight", cfg.HiddenSize, cfg.HiddenSize)
		add(p+"post_attention_layernorm.weight", cfg.HiddenSize, 0, ones)
		projection(p+"mlp.gate_proj.weight", cfg.IntermediateSize, cfg.HiddenSize)
		projection(p+"mlp.up_proj.weight", cfg.IntermediateSize, cfg.HiddenSize)
		projection(p+"mlp.down_proj.weight", cfg.HiddenSize, cfg.IntermediateSize)
	}
	add("model.norm.weight", cfg.HiddenSize, 0, ones)

	infos := make([]checkpoint.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = t.info
	}
	// The demo folder is the demo's own: a second run replaces its files.
	w, err := safetensors.CreateWith(filepath.Join(dir, "model.safetensors"), infos, map[string]string{"format": "pt"},
		checkpoint.WriteOptions{Overwrite: true})
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := w.WriteFloat32(t.info.Name, t.data); err != nil {
			w.Abort()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	conf := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_act": "silu",
		"hidden_size": cfg.HiddenSize, "intermediate_size": cfg.IntermediateSize,
		"num_hidden_layers": cfg.NumHiddenLayers, "num_attention_heads": cfg.NumAttentionHeads,
		"num_key_value_heads": cfg.NumKeyValueHeads, "vocab_size": cfg.VocabSize,
		"max_position_embeddings": cfg.MaxPositionEmbeddings, "rms_norm_eps": cfg.RMSNormEps,
		"rope_theta": cfg.RopeTheta, "tie_word_embeddings": cfg.TieWordEmbeddings, "torch_dtype": "float32",
	}
	b, _ := json.MarshalIndent(conf, "", "  ")
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644)
}
