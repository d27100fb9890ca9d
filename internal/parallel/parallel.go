// Package parallel splits loops over independent items among goroutines.
package parallel

import (
	"runtime"
	"sync"
)

// Range calls fn on contiguous parts of [0, n), one per goroutine, up to
// GOMAXPROCS of them, and returns when all are done. Each item is handled
// by exactly one call, so results written per item do not depend on the
// split.
func Range(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	step := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += step {
		wg.Add(1)
		go func(lo int) {
			defer wg.Done()
			fn(lo, min(n, lo+step))
		}(lo)
	}
	wg.Wait()
}
