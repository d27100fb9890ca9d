// Command pocketllm-native compresses LLM weights to 2-4 bits per weight with
// the PocketLLM method and reconstructs them. Run it without arguments for help.
package main

import (
	"os"

	"pocketllm-native/cli"
)

func main() { os.Exit(cli.Main(os.Args)) }
