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
 * Besides the kernels of the compression method, both export a general
 * matrix product (pllm_gemm, ABI 3) for model-level forward and backward
 * passes, and a resident training run
 * (pllm_train_*, end of this header): one tensor group's data and
 * parameters are uploaded once, every epoch runs in the library's own memory
 * (device memory for CUDA), and the best parameters are downloaded once.
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
#define PLLM_ABI_VERSION 3 /* 2 added the pllm_train_* functions, 3 pllm_gemm; nothing earlier changed */

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

/* Gemm computes C = alpha*op(A)*op(B) + beta*C over row-major matrices:
 *
 *	op(A) is [m,k]: A stored [m,k], or with transA the transpose of A stored [k,m]
 *	op(B) is [k,n]: B stored [k,n], or with transB the transpose of B stored [n,k]
 *	for i < m, j < n: c[i*n+j] = alpha * sum_t opA[i,t]*opB[t,j] + beta*c[i*n+j]
 *
 * With beta == 0, C is overwritten and never read (NaN in C does not propagate).
 *
 * (ABI 3.) trans_a and trans_b are 0 or 1 (ints: a C bool has no portable
 * place in a foreign call). m, n, k >= 0, each at most 2^31-1, and each of
 * m*k, k*n and m*n at most 2^40. m == 0 or n == 0 does nothing; k == 0 gives
 * C = alpha*0 + beta*C (zeros when beta == 0). a may be NULL when m*k == 0,
 * b when k*n == 0. A and B are never written and may overlap each other;
 * C must overlap neither.
 *
 * Every output's sum is taken in float32 over t = 0, 1, ..., k-1 in that
 * order, one accumulator per output (the CPU library's SIMD paths and the
 * CUDA library with fused multiply-adds, the portable path with a multiply
 * and an add), and then alpha*sum + beta*c: a backend gives the same bytes
 * for any number of threads. The CPU library packs op(A) and op(B) into its
 * scratch memory first, so a call holds about (m + n) * k extra floats. */
PLLM_API int pllm_gemm(pllm_ctx *ctx, int32_t trans_a, int32_t trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, const float *b, float beta, float *c);

/* ---- resident training run (ABI 2) -------------------------------------
 *
 * One training run of one tensor group, composed in the library from the
 * kernels above with exactly the Go trainer's step (compress/metanet
 * Workspace.Step, compress/pocketllm trainer.run): the data and parameters
 * live in the library's memory (GPU memory for the CUDA library) from
 * pllm_train_upload to pllm_train_download; an epoch copies in only the row
 * order and copies out two numbers.
 *
 *     int64_t io[PLLM_TRAIN_NI] = {rows, e, dim, latent, hidden, k, skip, rows_per_batch};
 *     double  dd[PLLM_TRAIN_ND] = {lambda, beta, 0.9, 0.999, 1e-8};
 *     pllm_train *tr;
 *     pllm_train_create(ctx, io, PLLM_TRAIN_NI, dd, PLLM_TRAIN_ND, &tr);
 *     pllm_train_upload(tr, x, wts, params, 0);
 *     for (epoch ...) pllm_train_epoch(tr, order, lr, step0, refresh, &loss, &mse, &best);
 *     pllm_train_download(tr, best_params, best_idx, &best_mse, &best_epoch);
 *     pllm_train_destroy(tr);
 *
 * A run belongs to the context it was created on: it reports its errors
 * there (pllm_ctx_error), must be destroyed before the context, and must not
 * be used while another call on that context runs.
 *
 * Parameter vector (params, best_params): encoder | decoder | codebook, as
 * compress/metanet Shape.ViewsOf lays it out:
 *   encoder  E0 (dim->hidden->latent MLP) | Ne1 (RLN) | E1 (latent->hidden->latent)
 *            | Ne2 | E2 (latent->hidden->latent) | Ne3, RLNs of width e*latent
 *   decoder  the Decoder layout above (PLLM_DECODER_PARAMS)
 *   codebook [k, latent]
 * pllm_train_params() gives its length.
 *
 * One step, on the rows order[b0 .. b0+nr) of the epoch's order (nr =
 * rows_per_batch, less for the last batch), with B = nr*e sub-vectors:
 *   encoder   z = E0(x) (+ x when skip); z += E1(Ne1(z));
 *             z = Ne3(z + E2(Ne2(z)))   (skip: z + E2(Ne2(z)), no Ne3)
 *   assign    idx = nearest codeword of each z; y0 = C[idx]
 *   decoder   the Decoder on y0, plus y0 when skip
 *   loss      sw = sum wts; recon = sum wts*(x_hat-x)^2 / sw (float64 sums);
 *             dL/dx_hat = float(2/sw) * wts * (x_hat-x)
 *   backward  through the decoder to y0, handed to z (straight-through);
 *             beta != 0: += float(2 beta/(B latent)) * (z - C[idx]);
 *             lambda != 0: the codebook's gradient is
 *             float(2 lambda/(B latent) * (count_j C_j - sum_{idx=j} z)) from
 *             pllm_codebook_stats; then through the encoder
 *   update    one pllm_adam step over the whole vector (gradient cleared
 *             before each batch), Adam step numbers first_step, first_step+1, ...
 *   loss sum  += recon + lambda * sum(dist)/(B latent); mean_loss = sum/batches
 * The full pass then encodes every row (in chunks of rows_per_batch), assigns
 * every latent, decodes every row (plus the codeword when skip) and measures
 * sum wts*(x_hat-x)^2 / sum wts over all elements in float64.
 *
 * The CPU library sums every float64 scalar in element order and calls the
 * same kernels with the same sizes as the Go trainer does, so it gives the
 * same bytes as the per-call path; the CUDA library takes those sums in
 * blocks of PLLM_REDUCE_BLOCK elements added in block order (deterministic,
 * not identical), and copies to the host only the epoch's two numbers, the
 * k-means refresh's per-codeword counts (and, when a codeword is dead, the
 * latents' distances) and the downloads.
 */
typedef struct pllm_train pllm_train;

/* Slots of the integer options of pllm_train_create. */
#define PLLM_TRAIN_ROWS 0           /* weight rows of the group, >= 1 */
#define PLLM_TRAIN_E 1              /* sub-vectors per row */
#define PLLM_TRAIN_DIM 2            /* sub-vector length */
#define PLLM_TRAIN_LATENT 3         /* latent size (must equal dim when skip) */
#define PLLM_TRAIN_HIDDEN 4         /* MLP hidden width */
#define PLLM_TRAIN_K 5              /* codebook entries */
#define PLLM_TRAIN_SKIP 6           /* 1: metanet Shape.Skip (identity paths, no Ne3); 0: not */
#define PLLM_TRAIN_ROWS_PER_BATCH 7 /* rows per optimizer step, in [1, rows] */
#define PLLM_TRAIN_NI 8
/* Slots of the float64 options. */
#define PLLM_TRAIN_LAMBDA 0   /* codebook term weight, >= 0 */
#define PLLM_TRAIN_BETA 1     /* commitment term weight, >= 0 */
#define PLLM_TRAIN_ADAM_B1 2  /* Adam's b1, b2 and eps, used as float32 */
#define PLLM_TRAIN_ADAM_B2 3
#define PLLM_TRAIN_ADAM_EPS 4
#define PLLM_TRAIN_ND 5

/* Creates a run in *out (NULL on failure) and allocates all its memory.
 * iopt holds ni >= PLLM_TRAIN_NI values and dopt nd >= PLLM_TRAIN_ND values
 * (slots above; extra slots must be 0). PLLM_ERR_NO_MEMORY when the group
 * does not fit. */
PLLM_API int pllm_train_create(pllm_ctx *ctx, const int64_t *iopt, int32_t ni, const double *dopt, int32_t nd,
                               pllm_train **out);

/* The length of the run's parameter vector; 0 for NULL. */
PLLM_API int64_t pllm_train_params(const pllm_train *train);

/* Copies the group in: x and wts are [rows*e*dim] (the scaled, zero-padded
 * sub-vectors and each element's loss weight, 0 on padding), params the
 * initial parameter vector. Adam's moments are cleared, the step counter is
 * the caller's. initial_candidate != 0 makes these parameters the epoch-0
 * candidate for the best (a full pass measures them now); otherwise the first
 * epoch with a finite full-pass MSE is always taken. May be called again to
 * start over. */
PLLM_API int pllm_train_upload(pllm_train *train, const float *x, const float *wts, const float *params,
                               int32_t initial_candidate);

/* Runs one epoch: every batch of order (rows int32 row numbers, normally a
 * permutation, each in [0, rows)) with learning rate lr and Adam steps from
 * first_step (>= 1); then, when kmeans_refresh != 0, pllm_train_kmeans_refresh;
 * then the full pass. The epoch's parameters and indices become the best when
 * its full-pass MSE is finite and lower than the best so far (or there is
 * none yet): a diverged epoch (NaN or infinite MSE) is never the best.
 * Writes the mean batch loss, the full-pass MSE and the best epoch so far
 * (epochs count from 1 per upload; 0 is the initial candidate). Any output
 * pointer may be NULL. */
PLLM_API int pllm_train_epoch(pllm_train *train, const int32_t *order, float lr, int64_t first_step,
                              int32_t kmeans_refresh, double *mean_loss, double *full_pass_mse,
                              int64_t *best_epoch);

/* One exact Lloyd step on the current parameters: encode every row, assign,
 * each codeword with latents assigned becomes their mean (float64 sums,
 * rounded), and the n-th dead codeword (in codeword order) becomes the
 * latent with the n-th largest distance to its codeword (ties to the lower
 * position; a NaN distance counts as largest). Adam's moments of the codebook
 * are cleared. PLLM_ERR_UNSUPPORTED when there are more dead codewords than
 * latents. */
PLLM_API int pllm_train_kmeans_refresh(pllm_train *train);

/* Copies out the best parameters (pllm_train_params values), the indices of
 * their full pass ([rows*e]), its MSE and its epoch. Any output may be NULL.
 * PLLM_ERR_INVALID_ARG before there is a best (no epoch and no candidate with
 * a finite MSE). */
PLLM_API int pllm_train_download(pllm_train *train, float *best_params, int32_t *best_indices, double *best_mse,
                                 int64_t *best_epoch);

/* Frees a run and all its memory. NULL is allowed. */
PLLM_API void pllm_train_destroy(pllm_train *train);

#ifdef __cplusplus
}
#endif

#endif /* POCKETLLM_H */
