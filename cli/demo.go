package cli

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/compress/matrix"
	"pocketllm-native/compress/pipeline"
	"pocketllm-native/compress/plan"
	"pocketllm-native/compress/pocketllm"
	"pocketllm-native/internal/demomodel"
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
	if err := demomodel.Write(model, demomodel.Config, 1); err != nil {
		return err
	}
	fmt.Fprintf(out, "1. wrote a %d-layer Llama-shaped model to %s\n", demomodel.Config.NumHiddenLayers, model)

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
