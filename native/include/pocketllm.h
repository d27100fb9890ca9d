/*
 * pocketllm.h - the C ABI of the PocketLLM native kernels.
 *
 * This header is the whole contract between the Go module (package bindings,
 * which loads the library at run time with purego) and the two shared
 * libraries that implement it:
 *
 *   libpocketllm_cpu.so   C11, AVX-512 / AVX2+FMA / portable paths chosen at
 *                         run time from CPUID, OpenMP threads inside a call
 *   libpocketllm_cuda.so  the same kernels on an NVIDIA GPU; host buffers are
 *                         copied to the device and back inside each call
 *
 * Both export exactly the functions below. Each kernel equals the loop written
 * in the doc comment of the matching method of bindings.Kernels
 * (bindings/kernels.go); the comments here repeat those loops word for word.
 *
 * Usage:
 *
 *     if (pllm_abi_version() != PLLM_ABI_VERSION || pllm_backend_score() <= 0)
 *         return;                              // try the next backend
 *     pllm_ctx *ctx;
 *     if (pllm_ctx_create(&ctx) != PLLM_OK) return;
 *     int st = pllm_assign(ctx, z, n, dz, c, k, idx, NULL);
 *     if (st != PLLM_OK)
 *         fprintf(stderr, "assign: %s\n", pllm_ctx_error(ctx));
 *     pllm_ctx_destroy(ctx);
 *
 * Thread safety: the global functions (pllm_abi_version, pllm_backend_score,
 * pllm_backend_name, pllm_build_info, pllm_ctx_create) may be called from any
 * thread at any time; a pllm_ctx must be used by one thread at a time (calls
 * on it must not overlap, but consecutive calls may come from different OS
 * threads), and distinct contexts may be used concurrently.
 *
 * Conventions for every function that returns int:
 *   - the result is PLLM_OK (0) or one of the negative PLLM_ERR_* codes;
 *   - on an error, a one-line message is kept on the context and returned by
 *     pllm_ctx_error() until the next call on that context (never in
 *     thread-local storage); a NULL context gives PLLM_ERR_INVALID_ARG with
 *     nowhere to put a message;
 *   - all arguments are checked, and every index is range-checked, before any
 *     output is written: a call that fails leaves its outputs untouched,
 *     except PLLM_ERR_DEVICE and PLLM_ERR_NO_MEMORY failures in the middle of
 *     the CUDA backend's work, which may leave outputs partly written;
 *   - nothing aborts the process (allocation and CUDA failures are statuses);
 *   - all pointers are host memory, row-major float32 unless said otherwise,
 *     and the library keeps none of them after the call returns;
 *   - a count of 0 (n, rows, groups) is valid and does nothing beyond the
 *     overwrite of outputs that have a size independent of it (sums, counts);
 *     pointers whose buffer would be empty may then be NULL;
 *   - buffers must not overlap unless a comment says so.
 *
 * Parameter layouts (identical to bindings/kernels.go):
 *   MLP  p = W1 | B1 | W2 | B2, W1 [hidden,in], B1 [hidden], W2 [out,hidden],
 *        B2 [out]; PLLM_MLP_PARAMS(in,hidden,out) values.
 *   RLN  p = Gamma | Beta, each [width]; 2*width values.
 *   Decoder p = N1 | D1 | N2 | D2 | N3 | D0 where N1,N2,N3 are RLNs of width
 *        e*latent, D1,D2 are latent->hidden->latent MLPs and D0 is a
 *        latent->hidden->dim MLP; PLLM_DECODER_PARAMS(e,dim,latent,hidden).
 *   A gradient g has the shape of its p and is accumulated into (+=); every
 *   other output (y, pre, dx, mean, rstd, idx, dist, sums, counts, out) is
 *   overwritten.
 *
 * Numerics shared by all kernels:
 *   gelu(a) = 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))   (tanh form)
 *     (the CPU SIMD paths evaluate it as a / (1 + 2^y) with a polynomial 2^y
 *     and a refined reciprocal: within 2.5e-7 |a| of the exact value, and
 *     gelu' within 6e-7 (1 + |a|); the portable path and CUDA use tanhf)
 *   RLN epsilon = PLLM_RLN_EPS = 1e-5
 *   Reductions over rows (gradients of MLP and RLN) are summed in blocks of
 *   PLLM_REDUCE_BLOCK = 256 consecutive rows (or groups); within a block rows
 *   are added in row order, and the block partials are then added, block by
 *   block in row order, to g. The result therefore does not depend on the
 *   number of threads: a backend gives the same bytes for the same input on
 *   any machine with the same instruction set.
 */
#ifndef POCKETLLM_H
#define POCKETLLM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define PLLM_API __declspec(dllexport)
#elif defined(__GNUC__)
#  define PLLM_API __attribute__((visibility("default")))
#else
#  define PLLM_API
#endif

/* The version of this ABI. It changes whenever a signature or a documented
 * semantic changes; callers must refuse a library whose pllm_abi_version()
 * differs from the value they were written against. */
#define PLLM_ABI_VERSION 1

/* Status codes. */
#define PLLM_OK 0
#define PLLM_ERR_INVALID_ARG (-1)  /* NULL pointer, negative or zero size where one is needed, too large a size */
#define PLLM_ERR_INDEX_RANGE (-2)  /* an index in idx is outside [0, k) */
#define PLLM_ERR_NO_MEMORY (-3)    /* host or device allocation failed */
#define PLLM_ERR_DEVICE (-4)       /* a CUDA call failed (no device, launch failure, ...) */
#define PLLM_ERR_UNSUPPORTED (-5)  /* valid arguments this backend cannot handle (the message says which limit) */

#define PLLM_REDUCE_BLOCK 256
#define PLLM_RLN_EPS 1e-5f

#define PLLM_MLP_PARAMS(in, hidden, out) \
    ((int64_t)(hidden) * (in) + (hidden) + (int64_t)(out) * (hidden) + (out))
#define PLLM_DECODER_PARAMS(e, dim, latent, hidden)                 \
    (3 * 2 * (int64_t)(e) * (latent) +                              \
     2 * PLLM_MLP_PARAMS((latent), (hidden), (latent)) +            \
     PLLM_MLP_PARAMS((latent), (hidden), (dim)))

/* An opaque context: error text, scratch memory, thread and device settings.
 * Create one per goroutine/thread that calls kernels. */
typedef struct pllm_ctx pllm_ctx;

/* ---- library ----------------------------------------------------------- */

/* PLLM_ABI_VERSION of the library. */
PLLM_API int pllm_abi_version(void);

/* How well this backend can run here: 0 = unusable (the CUDA library without
 * a driver or device, say), otherwise > 0; higher is preferred. The CPU
 * library reports 10 (portable C), 20 (AVX2+FMA) or 30 (AVX-512); the CUDA
 * library 100. */
PLLM_API int pllm_backend_score(void);

/* "cpu" or "cuda". Static storage. */
PLLM_API const char *pllm_backend_name(void);

/* One line: compiler, SIMD paths compiled in, OpenMP version, CUDA runtime
 * version and architectures. Static storage. */
PLLM_API const char *pllm_build_info(void);

/* ---- contexts ---------------------------------------------------------- */

/* Creates a context in *out (set to NULL on failure). Returns PLLM_ERR_DEVICE
 * from the CUDA library when no usable device exists. The CPU library reads
 * two environment variables here: OMP_NUM_THREADS (threads per call) and
 * PLLM_CPU_ISA = avx512 | avx2 | generic (force a SIMD path, for tests and
 * benchmarks; an unknown name or a path this CPU cannot run gives
 * PLLM_ERR_UNSUPPORTED). The CUDA library reads PLLM_CUDA_DEVICE (device
 * ordinal, default 0). */
PLLM_API int pllm_ctx_create(pllm_ctx **out);

/* Frees a context and everything it holds. NULL is allowed. */
PLLM_API void pllm_ctx_destroy(pllm_ctx *ctx);

/* The message of the last failed call on ctx, or "" after a successful one.
 * Valid until the next call on ctx. Never NULL. */
PLLM_API const char *pllm_ctx_error(const pllm_ctx *ctx);

/* What the context runs on, for humans: "AVX-512, 2 threads" or
 * "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB, sm_90". Valid for the life of
 * ctx. Never NULL. */
PLLM_API const char *pllm_ctx_device(const pllm_ctx *ctx);

/* ---- kernels ----------------------------------------------------------- */

/* Assign finds the nearest codeword of each latent:
 *
 *	for i < n: idx[i] = argmin_j sum_t (z[i*dz+t] - c[j*dz+t])^2, ties to the lowest j
 *	           dist[i] = that minimum (dist may be nil)
 *
 * z is [n, dz], c is [k, dz]; dz >= 1, k >= 1; dist may be NULL.
 * The CPU library ranks codewords by ||c_j||^2 - 2 z.c_j in float32, so among
 * codewords whose distances differ by less than that rounding error it may
 * pick another than the lowest j; the chosen codeword's true distance is
 * then within (dz+2) * 2^-21 * (||z_i||^2 + max_j ||c_j||^2) of the true
 * minimum. The CUDA library ranks by sum_t (z-c)^2 itself. dist[i] is
 * computed directly, sum_t (z[i*dz+t]-c[j*dz+t])^2 in float32 in order of t,
 * for the chosen j. */
PLLM_API int pllm_assign(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz,
                         const float *c, int64_t k, int32_t *idx, float *dist);

/* CodebookStats sums the latents assigned to each codeword:
 *
 *	for j < k: counts[j] = #{i : idx[i] == j}
 *	           sums[j*dz+t] = sum over those i of z[i*dz+t]   (in float64)
 *
 * sums is [k, dz] float64 and counts [k] int64, both overwritten. Each sum is
 * taken in row order (the loop's order), so it is exact to the loop.
 * An idx outside [0, k) gives PLLM_ERR_INDEX_RANGE. */
PLLM_API int pllm_codebook_stats(pllm_ctx *ctx, const float *z, int64_t n, int32_t dz,
                                 const int32_t *idx, int64_t k, double *sums,
                                 int64_t *counts);

/* MLPForward runs an MLP over rows inputs and keeps the hidden
 * pre-activations for the backward pass:
 *
 *	pre[r*H+u] = B1[u] + sum_i W1[u*In+i] * x[r*In+i]
 *	y[r*Out+o] = B2[o] + sum_u W2[o*H+u] * gelu(pre[r*H+u])
 *
 * gelu is the tanh form: 0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3))).
 * x is [rows, in], pre [rows, hidden], y [rows, out]; in, hidden, out >= 1. */
PLLM_API int pllm_mlp_forward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out,
                              const float *p, const float *x, int64_t rows,
                              float *pre, float *y);

/* MLPBackward is the gradient of MLPForward. With a = gelu(pre):
 *
 *	gW2[o*H+u] += sum_r dy[r*Out+o] * a[r*H+u];   gB2[o] += sum_r dy[r*Out+o]
 *	da[r*H+u]   = sum_o dy[r*Out+o] * W2[o*H+u]
 *	dp[r*H+u]   = da[r*H+u] * gelu'(pre[r*H+u])
 *	gW1[u*In+i] += sum_r dp[r*H+u] * x[r*In+i];    gB1[u] += sum_r dp[r*H+u]
 *	dx[r*In+i]  = sum_u dp[r*H+u] * W1[u*In+i]     (overwritten; skipped if dx is nil)
 *
 * g has the shape of p and is accumulated into; sums over r are taken in
 * blocks of ReduceBlock rows. dx may be NULL. */
PLLM_API int pllm_mlp_backward(pllm_ctx *ctx, int32_t in, int32_t hidden, int32_t out,
                               const float *p, float *g, const float *x, const float *pre,
                               const float *dy, int64_t rows, float *dx);

/* RLNForward normalises each of groups rows of n.Width values:
 *
 *	mean[r] = sum_w x[r*W+w] / W
 *	rstd[r] = 1 / sqrt(sum_w (x[r*W+w]-mean[r])^2 / W + RLNEps)
 *	y[r*W+w] = (x[r*W+w]-mean[r]) * rstd[r] * Gamma[w] + Beta[w]
 *
 * x and y are [groups, width], mean and rstd [groups]; width >= 1. */
PLLM_API int pllm_rln_forward(pllm_ctx *ctx, int32_t width, const float *p, const float *x,
                              int64_t groups, float *y, float *mean, float *rstd);

/* RLNBackward is the gradient of RLNForward. With h = (x-mean)*rstd and
 * dh = dy*Gamma:
 *
 *	gGamma[w] += sum_r dy[r*W+w] * h[r*W+w];   gBeta[w] += sum_r dy[r*W+w]
 *	dx[r*W+w]   = rstd[r] * (dh[r*W+w] - mean_w(dh[r]) - h[r*W+w] * mean_w(dh[r]*h[r]))
 *
 * dx is overwritten; sums over r are taken in blocks of ReduceBlock rows.
 * mean and rstd are those written by pllm_rln_forward for the same x. */
PLLM_API int pllm_rln_backward(pllm_ctx *ctx, int32_t width, const float *p, float *g,
                               const float *x, const float *dy, int64_t groups,
                               const float *mean, const float *rstd, float *dx);

/* Adam takes one bias-corrected Adam step (step counts from 1):
 *
 *	m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
 *	p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps)
 *
 * p, g, m, v are [n]; p, m, v are updated in place. step >= 1. The two bias
 * corrections 1-b^step are computed in float64 and rounded to float32. */
PLLM_API int pllm_adam(pllm_ctx *ctx, float *p, const float *g, float *m, float *v, int64_t n,
                       float lr, float b1, float b2, float eps, int64_t step);

/* Decode reconstructs rows weight rows from their codeword indices with
 * the decoder (see Decoder): idx is [rows*E], out is [rows, E*Dim],
 * padding included and not yet multiplied by the matrix scale.
 *
 * The decoder (p, PLLM_DECODER_PARAMS(e, dim, latent, hidden) values) is
 *
 *	y = C[idx]
 *	y = y + D1(N1(y))
 *	y = N3(y + D2(N2(y)))
 *	x = D0(y)
 *
 * with every RLN taken over one weight row (e*latent values). c is
 * [k, latent]. An idx outside [0, k) gives PLLM_ERR_INDEX_RANGE and writes
 * nothing. */
PLLM_API int pllm_decode(pllm_ctx *ctx, int32_t e, int32_t dim, int32_t latent, int32_t hidden,
                         const float *p, const float *c, int64_t k, const int32_t *idx,
                         int64_t rows, float *out);

#ifdef __cplusplus
}
#endif

#endif /* POCKETLLM_H */
