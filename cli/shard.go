package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/pipeline"
)

// Environment variables schedulers set for each task of an array.
const (
	envSlurmTaskID    = "SLURM_ARRAY_TASK_ID"
	envSlurmTaskMin   = "SLURM_ARRAY_TASK_MIN"
	envSlurmTaskCount = "SLURM_ARRAY_TASK_COUNT"
	envK8sIndex       = "JOB_COMPLETION_INDEX"
)

// shardOf reads --shard: "I/N", or "auto" for the task index a scheduler
// gives (a Slurm array, or a Kubernetes Indexed Job with --shards N).
func shardOf(arg string, shards int, env func(string) (string, bool)) (pipeline.Shard, error) {
	if arg != "auto" {
		i, n, ok := strings.Cut(arg, "/")
		s := pipeline.Shard{Index: -1}
		var err1, err2 error
		s.Index, err1 = strconv.Atoi(i)
		s.Count, err2 = strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil || s.Count < 1 || s.Index < 0 || s.Index >= s.Count {
			return s, fmt.Errorf("--shard %q: want I/N with 0 <= I < N (e.g. 0/4), or auto", arg)
		}
		if shards != 0 && shards != s.Count {
			return s, fmt.Errorf("--shard %s and --shards %d disagree", arg, shards)
		}
		return s, nil
	}
	num := func(name string) (int, error) {
		v, _ := env(name)
		x, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || x < 0 {
			return 0, fmt.Errorf("--shard auto: %s=%q is not a task number", name, v)
		}
		return x, nil
	}
	var s pipeline.Shard
	var err error
	if _, slurm := env(envSlurmTaskID); slurm {
		if s.Index, err = num(envSlurmTaskID); err != nil {
			return s, err
		}
		if _, ok := env(envSlurmTaskMin); ok {
			lo, err := num(envSlurmTaskMin)
			if err != nil {
				return s, err
			}
			s.Index -= lo
		}
		if _, ok := env(envSlurmTaskCount); !ok {
			return s, fmt.Errorf("--shard auto: %s is set but %s is not", envSlurmTaskID, envSlurmTaskCount)
		}
		if s.Count, err = num(envSlurmTaskCount); err != nil {
			return s, err
		}
		if shards != 0 && shards != s.Count {
			return s, fmt.Errorf("--shard auto: the Slurm array has %d tasks but --shards says %d", s.Count, shards)
		}
		if s.Index < 0 || s.Index >= s.Count {
			return s, fmt.Errorf("--shard auto: task %d of an array of %d: give the array as a contiguous range (e.g. --array=0-%d)", s.Index, s.Count, s.Count-1)
		}
		return s, nil
	}
	if _, k8s := env(envK8sIndex); k8s {
		if s.Index, err = num(envK8sIndex); err != nil {
			return s, err
		}
		if shards < 1 {
			return s, fmt.Errorf("--shard auto under a Kubernetes Indexed Job needs --shards N (the Job's completions)")
		}
		s.Count = shards
		if s.Index >= s.Count {
			return s, fmt.Errorf("--shard auto: %s=%d but --shards is %d", envK8sIndex, s.Index, s.Count)
		}
		return s, nil
	}
	return s, fmt.Errorf("--shard auto: neither %s (a Slurm array job) nor %s (a Kubernetes Indexed Job) is set; give --shard I/N", envSlurmTaskID, envK8sIndex)
}

// kernelsAndPath selects the backend and names what of it changes the
// bytes: the cpu library's instruction-set path, the GPU model.
func kernelsAndPath(c *cli.Context) (bindings.Kernels, string, error) {
	k, rep, err := bindings.Select(c.String("backend"))
	if err != nil {
		return nil, "", err
	}
	path := ""
	if rep != nil {
		switch rep.Chosen {
		case bindings.BackendCPU:
			// "avx2, 2 threads": the thread count does not change the bytes.
			path, _, _ = strings.Cut(rep.Device, ",")
		case bindings.BackendCUDA:
			path = rep.Device
		}
	}
	return k, path, nil
}

func mergeCommand() *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "join the part files of compress --shard into one .pllm file",
		UsageText: "pocketllm-native merge FILE.pllm.part-0-of-N ... --out FILE.pllm [--in MODEL] [--force]",
		Description: "Checks that the parts come from one job (same input, settings, backend and tool) and hold every\n" +
			"group exactly once, runs the stages that need every group (the tuning of the default settings)\n" +
			"on the input the parts record (or --in), and writes the bytes a single compress would.\n" +
			"Exit status: 0 written, 1 any error (a missing or foreign part, a changed input), 128+n on signal n.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "the .pllm file to write"},
			&cli.StringFlag{Name: "in", Usage: "the input model, where it is not at the path the parts record (it must be the same model)"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite --out if it exists"},
			backendFlag,
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing but errors"},
			&cli.BoolFlag{Name: "progress-json", Usage: "write progress as JSON lines on stderr"},
			jsonFlag,
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return fmt.Errorf("merge: give the part files (compress --shard I/N writes OUT.part-I-of-N)")
			}
			out := c.String("out")
			if !strings.HasSuffix(out, ".pllm") {
				return fmt.Errorf("--out %s: the output file name must end in .pllm", out)
			}
			k, path, err := kernelsAndPath(c)
			if err != nil {
				return err
			}
			rep, err := pipeline.Merge(pipeline.MergeOptions{
				Parts: c.Args().Slice(), Out: out, In: c.String("in"), Force: c.Bool("force"),
				Kernels: k, KernelPath: path, Events: progressEvents(c),
			})
			if err != nil {
				return err
			}
			return printReportAs(c, rep)
		},
	}
}

// flagsFirst moves a command's flags ahead of its arguments: urfave/cli
// stops reading flags at the first argument, and merge is naturally
// written "merge PARTS... --out FILE".
func flagsFirst(cmd *cli.Command, args []string) []string {
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		flags = append(flags, a)
		if name := strings.TrimLeft(a, "-"); !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(rest) == 0 {
		return flags
	}
	return append(append(flags, "--"), rest...)
}
