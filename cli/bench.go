package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/bench"
)

func backendsCommand() *cli.Command {
	return &cli.Command{
		Name:  "backends",
		Usage: "show which kernel backends load here, from where, and why any is refused",
		Action: func(c *cli.Context) error {
			fmt.Fprint(c.App.Writer, bindings.Probe().String())
			return nil
		},
	}
}

// benchRow is one line of `bench --json`.
type benchRow struct {
	Kernel      string  `json:"kernel"`
	Backend     string  `json:"backend"`
	Shape       string  `json:"shape"`
	Seconds     float64 `json:"seconds"`
	GFLOPS      float64 `json:"gflops,omitempty"`
	ItemsPerSec float64 `json:"items_per_s"`
	VsNaive     float64 `json:"vs_naive,omitempty"`
}

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure the kernels and one training epoch on every available backend, side by side",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "backends", Value: "all", Usage: "comma-separated backends to measure (go, cpu, cuda), or all that load"},
			&cli.BoolFlag{Name: "short", Usage: "only the smaller sizes"},
			&cli.BoolFlag{Name: "ladder", Value: true, Usage: "measure the standard ladder of kernel sizes (--ladder=false: only --case and the epoch)"},
			&cli.StringSliceFlag{Name: "case", Usage: "one more kernel size to measure, e.g. assign:n=16777216,k=32768,dz=8 or decode:n=16777216,k=32768,dim=8,hidden=16,e=512 (repeatable)"},
			&cli.BoolFlag{Name: "naive", Value: true, Usage: "also time the naive single-thread assignment loop, for the vs-naive column"},
			&cli.DurationFlag{Name: "min-time", Value: time.Second, Usage: "run each measurement at least this long"},
			&cli.IntFlag{Name: "epoch-rows", Value: 4096, Usage: "rows of the matrix for the training-epoch measurement (0: skip it)"},
			&cli.IntFlag{Name: "epoch-cols", Value: 4096, Usage: "columns of that matrix"},
			&cli.IntFlag{Name: "epoch-k", Value: 4096, Usage: "codebook size for the training epoch (d = 8)"},
			&cli.IntFlag{Name: "epoch-count", Value: 1, Usage: "epochs to train in that measurement: the first (with the run's setup) is row epoch, the mean of the others row epoch_next"},
			jsonFlag,
		},
		Action: runBench,
	}
}

func benchKernels(list string) ([]bindings.Kernels, error) {
	var names []string
	if list == "all" {
		for _, cand := range bindings.Probe().Candidates {
			if cand.Refused == "" {
				names = append(names, cand.Backend)
			}
		}
	} else {
		names = strings.Split(list, ",")
	}
	var ks []bindings.Kernels
	for _, n := range names {
		k, _, err := bindings.Select(strings.TrimSpace(n))
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	return ks, nil
}

func runBench(c *cli.Context) error {
	if n := c.Int("epoch-count"); n < 1 {
		return fmt.Errorf("bench --epoch-count %d: need at least 1", n)
	}
	ks, err := benchKernels(c.String("backends"))
	if err != nil {
		return err
	}
	defer func() {
		for _, k := range ks {
			bindings.Close(k)
		}
	}()
	var cases []bench.Case
	if c.Bool("ladder") {
		cases = bench.Ladder(c.Bool("short"))
	}
	for _, spec := range c.StringSlice("case") {
		bc, err := bench.ParseCase(spec)
		if err != nil {
			return fmt.Errorf("bench --case: %v", err)
		}
		cases = append(cases, bc)
	}
	rows, err := bench.Run(ks, cases, c.Duration("min-time"), c.Bool("naive"))
	if err != nil {
		return err
	}
	if er, ec := c.Int("epoch-rows"), c.Int("epoch-cols"); er > 0 && ec > 0 {
		epochs, err := bench.Epochs(ks, er, ec, c.Int("epoch-k"), c.Int("epoch-count"))
		if err != nil {
			return err
		}
		rows = append(rows, epochs...)
	}
	out := make([]benchRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, benchRow{Kernel: r.Kernel, Backend: r.Backend, Shape: r.Shape, Seconds: r.Seconds,
			GFLOPS: r.GFLOPS, ItemsPerSec: r.ItemsPerSec, VsNaive: r.VsNaive})
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, out)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kernel\tbackend\tshape\tseconds/call\tGFLOP/s\titems/s\tvs naive\t")
	for _, r := range out {
		g, v := "-", "-"
		if r.GFLOPS > 0 {
			g = fmt.Sprintf("%.2f", r.GFLOPS)
		}
		if r.VsNaive > 0 {
			v = fmt.Sprintf("%.1fx", r.VsNaive)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.4g\t%s\t%.4g\t%s\t\n", r.Kernel, r.Backend, r.Shape, r.Seconds, g, r.ItemsPerSec, v)
	}
	return tw.Flush()
}
