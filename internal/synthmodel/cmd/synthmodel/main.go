// Command synthmodel writes a deterministic synthetic Llama-shaped model
// folder (package synthmodel), for measuring memory on a model of real
// size without downloading one:
//
//	go run ./internal/synthmodel/cmd/synthmodel --size large --out /tmp/synth-large
//
// large is 4.3 GB (four layers at hidden 4096, MLP 11008), medium 0.75 GB.
// The output is never committed.
package main

import (
	"flag"
	"fmt"
	"os"

	"pocketllm-native/compress/checkpoint"
	"pocketllm-native/internal/synthmodel"
)

func main() {
	size := flag.String("size", "large", "large (4.3 GB) or medium (0.75 GB)")
	out := flag.String("out", "", "the model folder to write")
	seed := flag.Uint64("seed", 1, "random seed; the same seed and size give the same bytes")
	flag.Parse()
	var cfg checkpoint.LlamaConfig
	switch *size {
	case "large":
		cfg = synthmodel.Large
	case "medium":
		cfg = synthmodel.Medium
	default:
		fmt.Fprintf(os.Stderr, "synthmodel: --size %q: want large or medium\n", *size)
		os.Exit(2)
	}
	if *out == "" {
		fmt.Fprintln(os.Stderr, "synthmodel: --out is required")
		os.Exit(2)
	}
	if err := synthmodel.Write(*out, cfg, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "synthmodel:", err)
		os.Exit(1)
	}
}
