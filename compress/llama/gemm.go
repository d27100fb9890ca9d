package llama

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Float is the element type of the sequence-level passes: float32 for
// fine-tuning, float64 for gradient checks.
type Float interface{ ~float32 | ~float64 }

// MatMul is where the sequence-level passes send their large matrix
// products, so that a native backend can take them over.
type MatMul[F Float] interface {
	// Gemm computes C = alpha*op(A)*op(B) + beta*C over row-major matrices:
	//	op(A) is [m,k]: A stored [m,k], or with transA the transpose of A stored [k,m]
	//	op(B) is [k,n]: B stored [k,n], or with transB the transpose of B stored [n,k]
	// With beta == 0, C is overwritten and never read.
	Gemm(transA, transB bool, m, n, k int, alpha F, a, b []F, beta F, c []F) error
}

// GoMatMul is the pure-Go MatMul. Every element of C is one sequential sum
// over k, whatever the tiling or the number of goroutines, so its results
// are the same bytes for any GOMAXPROCS.
type GoMatMul[F Float] struct{}

// Tile sizes of GoMatMul: a tile of C is computed from tileRows rows of
// op(A) and tileCols columns of op(B), which stay in cache together.
const (
	tileRows = 32
	tileCols = 64
)

// Gemm implements MatMul.
func (GoMatMul[F]) Gemm(transA, transB bool, m, n, k int, alpha F, a, b []F, beta F, c []F) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("llama: gemm dimensions m=%d n=%d k=%d must not be negative", m, n, k)
	}
	if len(a) < m*k || len(b) < k*n || len(c) < m*n {
		return fmt.Errorf("llama: gemm m=%d n=%d k=%d needs A of %d, B of %d and C of %d values (got %d, %d, %d)",
			m, n, k, m*k, k*n, m*n, len(a), len(b), len(c))
	}
	if m == 0 || n == 0 {
		return nil
	}
	// Both operands are brought to rows along k: A as [m,k], B as [n,k],
	// so that every element of C is a dot product of two contiguous rows.
	if transA {
		a = transpose(a[:m*k], k, m)
	}
	if !transB {
		b = transpose(b[:k*n], k, n)
	}
	rowTiles, colTiles := (m+tileRows-1)/tileRows, (n+tileCols-1)/tileCols
	parallelTasks(rowTiles*colTiles, m*n*k, func(t int) {
		i0, j0 := (t/colTiles)*tileRows, (t%colTiles)*tileCols
		gemmTile(a, b, c, n, k, i0, min(i0+tileRows, m), j0, min(j0+tileCols, n), alpha, beta)
	})
	return nil
}

// transpose returns the [cols, rows] transpose of x stored [rows, cols].
func transpose[F Float](x []F, rows, cols int) []F {
	out := make([]F, rows*cols)
	const block = 32 // square blocks keep both sides in cache
	for r0 := 0; r0 < rows; r0 += block {
		for c0 := 0; c0 < cols; c0 += block {
			for r := r0; r < min(r0+block, rows); r++ {
				row := x[r*cols : (r+1)*cols]
				for c := c0; c < min(c0+block, cols); c++ {
					out[c*rows+r] = row[c]
				}
			}
		}
	}
	return out
}

// gemmTile computes C[i0:i1, j0:j1] from a [m,k] and bt [n,k], two rows by
// four columns at a time (eight accumulators fit the registers), with a
// plain loop at the edges that sums in the same order.
func gemmTile[F Float](a, bt, c []F, n, k, i0, i1, j0, j1 int, alpha, beta F) {
	store := func(i, j int, acc F) {
		if beta == 0 {
			c[i*n+j] = alpha * acc
		} else {
			c[i*n+j] = alpha*acc + beta*c[i*n+j]
		}
	}
	i := i0
	for ; i+2 <= i1; i += 2 {
		a0 := a[i*k : i*k+k]
		a1 := a[(i+1)*k : (i+1)*k+k]
		j := j0
		for ; j+4 <= j1; j += 4 {
			b0 := bt[j*k : j*k+k]
			b1 := bt[(j+1)*k : (j+1)*k+k]
			b2 := bt[(j+2)*k : (j+2)*k+k]
			b3 := bt[(j+3)*k : (j+3)*k+k]
			a1 := a1[:len(a0)]
			b0, b1, b2, b3 = b0[:len(a0)], b1[:len(a0)], b2[:len(a0)], b3[:len(a0)]
			var c00, c01, c02, c03, c10, c11, c12, c13 F
			for p, x0 := range a0 {
				x1 := a1[p]
				y := b0[p]
				c00 += x0 * y
				c10 += x1 * y
				y = b1[p]
				c01 += x0 * y
				c11 += x1 * y
				y = b2[p]
				c02 += x0 * y
				c12 += x1 * y
				y = b3[p]
				c03 += x0 * y
				c13 += x1 * y
			}
			store(i, j, c00)
			store(i, j+1, c01)
			store(i, j+2, c02)
			store(i, j+3, c03)
			store(i+1, j, c10)
			store(i+1, j+1, c11)
			store(i+1, j+2, c12)
			store(i+1, j+3, c13)
		}
		for ; j < j1; j++ {
			store(i, j, dotSeq(a0, bt[j*k:j*k+k]))
			store(i+1, j, dotSeq(a1, bt[j*k:j*k+k]))
		}
	}
	for ; i < i1; i++ {
		for j := j0; j < j1; j++ {
			store(i, j, dotSeq(a[i*k:i*k+k], bt[j*k:j*k+k]))
		}
	}
}

// dotSeq is sum_p a[p]*b[p] summed in order, as gemmTile's accumulators do.
func dotSeq[F Float](a, b []F) F {
	b = b[:len(a)]
	var s F
	for p, x := range a {
		s += x * b[p]
	}
	return s
}

// parallelTasks runs fn(0..n-1), spread over GOMAXPROCS goroutines that
// take tasks in turn when work (a multiply-add count) is large enough.
// Tasks must write disjoint outputs; then the result does not depend on
// which goroutine ran which task.
func parallelTasks(n, work int, fn func(task int)) {
	p := runtime.GOMAXPROCS(0)
	if work < parallelMin || p < 2 || n < 2 {
		for t := 0; t < n; t++ {
			fn(t)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(p, n) {
		wg.Go(func() {
			for t := int(next.Add(1)) - 1; t < n; t = int(next.Add(1)) - 1 {
				fn(t)
			}
		})
	}
	wg.Wait()
}
