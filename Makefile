# The targets people reach for. `make test` is what CI runs (.ci/run).
GO       ?= go
BUILD    ?= build
GOFLAGS_ := CGO_ENABLED=0
# The native libraries are searched only where POCKETLLM_LIB_DIR points, beside
# the executable and in ../lib beside it (never in the working directory), so
# the targets that run Go code point it at this checkout's build.
export POCKETLLM_LIB_DIR ?= $(abspath $(BUILD))/lib
FUZZTIME ?= 10s
# The fuzzer minimises every new interesting input for up to this long (Go's
# default, 60s, left both workers minimising for most of a short run).
FUZZMINTIME ?= 1s

.PHONY: build deps native llamacpp test test-go test-cluster fuzz bench vectors lint demo clean gpu-check-prepare gpu-check

# The binary goes to build/bin, so that the libraries in build/lib are its ../lib.
build: native
	$(GOFLAGS_) $(GO) build -o $(BUILD)/bin/pocketllm-native ./cli/pocketllm-native

# cmake, ninja and Debian's nvcc, installed with apt only when missing.
deps:
	.ci/install-deps

# The native kernel libraries: build/lib/libpocketllm_cpu.so always,
# build/lib/libpocketllm_cuda.so when a CUDA compiler is found.
native:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD)

# llama.cpp for checking GGUF outputs (node-llama-cpp's prebuilt CPU
# library, pinned in scripts/llamacpp) in $(BUILD)/llamacpp; Node.js comes
# from apt when missing. The llama.cpp test in compress/llamacpp runs this
# itself, so `make test` needs nothing more; this is for running it by hand.
llamacpp:
	scripts/llamacpp-setup $(abspath $(BUILD))/llamacpp

# Everything CI checks: the build tools (installed if missing), the native
# library and its C tests, then the Go tests with the native CPU backend
# required, a short fuzzing run per target, and the shipped Slurm job on a
# single-node cluster (skipped unless root with ../shared present).
test: deps native
	ctest --test-dir $(BUILD) --output-on-failure
	$(MAKE) test-go fuzz test-cluster

test-go:
	$(GOFLAGS_) $(GO) vet ./...
	POCKETLLM_REQUIRE_BACKENDS=go,cpu $(GOFLAGS_) $(GO) test -timeout 30m ./...

# deploy/slurm/compress.sbatch as a 4-shard array plus merge on a Slurm
# cluster started here (installs slurm-wlm and munge with apt if missing):
# shards killed, resubmitted, merged; the result must equal a single-process
# run. About 15 seconds on two cores once the CLI is built.
test-cluster:
	scripts/test-cluster

# FuzzContent frames its input with valid checksums, so it reaches the
# descriptor and body checks that FuzzOpen's random bytes rarely pass.
FUZZ_ = $(GOFLAGS_) $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME)
fuzz:
	$(FUZZ_) -fuzz '^FuzzParseHeader$$' ./compress/safetensors
	$(FUZZ_) -fuzz '^FuzzGGUF$$' ./compress/gguf
	$(FUZZ_) -fuzz '^FuzzOpen$$' ./compress/pllm
	$(FUZZ_) -fuzz '^FuzzContent$$' ./compress/pllm

bench: native
	$(GOFLAGS_) $(GO) test -run '^$$' -bench . -benchtime 3x ./compress/...

# Regenerate the golden kernel vectors from the float64 oracle (review the diff like code).
vectors:
	$(GOFLAGS_) $(GO) test ./testvectors -update

# The CUDA backend on a real GPU (scripts/gpu-check says what each phase
# needs): prepare where Go is, then run where the GPU is, with .dev/gpu
# carried over. Not part of `make test`: CI has no GPU.
gpu-check-prepare:
	scripts/gpu-check prepare

gpu-check:
	scripts/gpu-check run

lint:
	test -z "$$(gofmt -s -l $$(git ls-files '*.go'))" || (gofmt -s -l $$(git ls-files '*.go'); exit 1)
	$(GOFLAGS_) $(GO) vet ./...

demo:
	$(GOFLAGS_) $(GO) run ./cli/pocketllm-native demo

clean:
	rm -rf $(BUILD)
