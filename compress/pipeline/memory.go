package pipeline

import (
	"math"
	"os"
	"runtime/debug"

	"pocketllm-native/compress/pllm"
)

// Memory bound of a job: a compress or decompress holds one group at a
// time, so its peak should be a small multiple of the largest group's fp32
// size, whatever the model's size (BENCHMARKS.md, "Memory").
const (
	memoryGroupFactor = 3
	memoryOverhead    = 160 << 20 // binary, stacks, native kernels' and I/O buffers
)

// limitMemory sets the Go runtime's soft memory limit to
// memoryGroupFactor x groupBytes + memoryOverhead for the rest of a job and
// returns what restores the previous limit. It does nothing when a limit is
// already set (GOMEMLIMIT, or a caller's).
//
// Why: the collector's default pacing (GOGC=100) lets the heap grow to
// twice what was live after the last collection. Training a group holds
// its scaled weights, latents and decoded rows at once (about 3.5 times
// its fp32 size at d=4), so without a limit the heap, and the resident
// set, would reach about 7 times the group before a collection. With the
// limit the collector runs, and returns memory to the system, as the heap
// nears it. Should the live data ever exceed it, the runtime caps the
// collector's share of the CPU: the job slows down rather than fails.
func limitMemory(groupBytes int64) (restore func()) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set || groupBytes <= 0 {
		return func() {}
	}
	prev := debug.SetMemoryLimit(-1)
	if prev != math.MaxInt64 {
		return func() {}
	}
	limit := memoryOverhead + memoryGroupFactor*groupBytes
	if groupBytes > (math.MaxInt64-memoryOverhead)/memoryGroupFactor {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	return func() { debug.SetMemoryLimit(prev) }
}

// largestPlanned is the fp32 size of the largest planned group.
func largestPlanned(planned []plannedGroup) int64 {
	var most int64
	for _, g := range planned {
		most = max(most, 4*g.Weights())
	}
	return most
}

// largestStored is the fp32 size of the largest group of a .pllm file.
func largestStored(groups []pllm.GroupInfo) int64 {
	var most int64
	for _, g := range groups {
		var n int64
		for _, m := range g.Members {
			e := int64(1)
			for _, d := range m.Shape {
				e *= int64(d)
			}
			n += e
		}
		most = max(most, 4*n)
	}
	return most
}
