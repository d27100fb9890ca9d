//go:build unix

package bench

import "syscall"

// processCPUSeconds is the user plus system time of every thread of this
// process so far (native library threads included), or 0 where unknown.
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
