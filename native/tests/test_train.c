/*
 * test_train.c - the resident training run (pllm_train_*) of one backend
 * library against the same epoch composed here from the library's per-call
 * kernels, written out step by step from the Go trainer
 * (compress/metanet/pass.go Step, compress/pocketllm train.go, fullpass.go).
 * On the CPU library both run the same kernels on the same values and sum in
 * the same order, so they must agree bit for bit; on CUDA the resident run's
 * float64 sums are blocked, so they must agree to a tolerance.
 *
 *   pllm_test_train_<backend> exit 0 pass, 1 fail, 77 skipped
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pocketllm.h"

static int failures, checks;
#define CHECK(cond, ...)                                         \
    do {                                                         \
        checks++;                                                \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)
static pllm_ctx *ctx;
#define OK(expr)                                                                                    \
    do {                                                                                            \
        int st_ = (expr);                                                                           \
        if (st_ != PLLM_OK) {                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: %d %s\n", __FILE__, __LINE__, #expr, st_, pllm_ctx_error(ctx)); \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

static uint64_t rs = 12345;
static double unif(void) {
    uint64_t z = (rs += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}
static float *fa(int64_t n) { float *p = calloc((size_t)(n ? n : 1), sizeof(float)); if (!p) exit(2); return p; }

/* the group */
enum { ROWS = 45, E = 3, DIM = 4, LAT = 4, HID = 5, K = 48, RPB = 8 };
static const double LAMBDA = 0.4, BETA = 0.3;
#define W_ (E * LAT)
#define N_ (ROWS * E)

typedef struct { float *e0, *ne1, *e1, *ne2, *e2, *ne3, *dec, *n1, *d1, *n2, *d2, *n3, *d0, *c; } views;
static int64_t NP;
static views view(float *p) {
    int64_t pe0 = PLLM_MLP_PARAMS(DIM, HID, LAT), pl = PLLM_MLP_PARAMS(LAT, HID, LAT);
    views v;
    v.e0 = p; v.ne1 = v.e0 + pe0; v.e1 = v.ne1 + 2 * W_; v.ne2 = v.e1 + pl; v.e2 = v.ne2 + 2 * W_; v.ne3 = v.e2 + pl;
    v.dec = v.n1 = v.ne3 + 2 * W_; v.d1 = v.n1 + 2 * W_; v.n2 = v.d1 + pl; v.d2 = v.n2 + 2 * W_; v.n3 = v.d2 + pl;
    v.d0 = v.n3 + 2 * W_; v.c = v.d0 + PLLM_MLP_PARAMS(LAT, HID, DIM);
    NP = (v.c - p) + K * LAT;
    return v;
}

/* activations of one batch (up to RPB rows) */
#define B_ (RPB * E)
static float pre0[B_ * HID], pre1[B_ * HID], pre2[B_ * HID], pd1[B_ * HID], pd2[B_ * HID], pd0[B_ * HID];
static float z0[B_ * LAT], t1[B_ * LAT], u1[B_ * LAT], z1[B_ * LAT], t2[B_ * LAT], u2[B_ * LAT], s2[B_ * LAT],
    z[B_ * LAT], y0[B_ * LAT], a1[B_ * LAT], v1[B_ * LAT], y1[B_ * LAT], a2[B_ * LAT], v2[B_ * LAT], sd[B_ * LAT],
    y3[B_ * LAT], g0[B_ * LAT], g1[B_ * LAT], g2[B_ * LAT], g3[B_ * LAT], gt[B_ * LAT];
static float st[12][RPB], xhat[B_ * DIM], dxh[B_ * DIM], dist[B_];
static int32_t idx[B_];
static double sums[K * LAT];
static int64_t counts[K];

static void encode(int skip, views v, const float *x, int rows, float *zout) {
    int b = rows * E;
    OK(pllm_mlp_forward(ctx, DIM, HID, LAT, v.e0, x, b, pre0, z0));
    if (skip) for (int i = 0; i < b * LAT; i++) z0[i] += x[i];
    OK(pllm_rln_forward(ctx, W_, v.ne1, z0, rows, t1, st[0], st[1]));
    OK(pllm_mlp_forward(ctx, LAT, HID, LAT, v.e1, t1, b, pre1, u1));
    for (int i = 0; i < b * LAT; i++) z1[i] = z0[i] + u1[i];
    OK(pllm_rln_forward(ctx, W_, v.ne2, z1, rows, t2, st[2], st[3]));
    OK(pllm_mlp_forward(ctx, LAT, HID, LAT, v.e2, t2, b, pre2, u2));
    for (int i = 0; i < b * LAT; i++) s2[i] = z1[i] + u2[i];
    if (skip) memcpy(zout, s2, sizeof(float) * b * LAT);
    else OK(pllm_rln_forward(ctx, W_, v.ne3, s2, rows, zout, st[4], st[5]));
}

/* One batch: the gradient into g (cleared), the loss added to *loss. */
static void step(int skip, float *p, float *g, const float *x, const float *w, int rows, double *loss) {
    views v = view(p), gv = view(g);
    int b = rows * E, n = b * DIM;
    memset(g, 0, sizeof(float) * NP);
    encode(skip, v, x, rows, z);
    OK(pllm_assign(ctx, z, b, LAT, v.c, K, idx, dist));
    for (int i = 0; i < b; i++) memcpy(y0 + i * LAT, v.c + idx[i] * LAT, sizeof(float) * LAT);
    OK(pllm_rln_forward(ctx, W_, v.n1, y0, rows, a1, st[6], st[7]));
    OK(pllm_mlp_forward(ctx, LAT, HID, LAT, v.d1, a1, b, pd1, v1));
    for (int i = 0; i < b * LAT; i++) y1[i] = y0[i] + v1[i];
    OK(pllm_rln_forward(ctx, W_, v.n2, y1, rows, a2, st[8], st[9]));
    OK(pllm_mlp_forward(ctx, LAT, HID, LAT, v.d2, a2, b, pd2, v2));
    for (int i = 0; i < b * LAT; i++) sd[i] = y1[i] + v2[i];
    OK(pllm_rln_forward(ctx, W_, v.n3, sd, rows, y3, st[10], st[11]));
    OK(pllm_mlp_forward(ctx, LAT, HID, DIM, v.d0, y3, b, pd0, xhat));
    if (skip) for (int i = 0; i < n; i++) xhat[i] += y0[i];
    double se = 0, sw = 0, cb = 0;
    for (int i = 0; i < n; i++) sw += w[i];
    float inv = (float)(2 / sw);
    for (int i = 0; i < n; i++) {
        float e = xhat[i] - x[i];
        se += (double)w[i] * e * e;
        dxh[i] = inv * w[i] * e;
    }
    OK(pllm_mlp_backward(ctx, LAT, HID, DIM, v.d0, gv.d0, y3, pd0, dxh, b, g3));
    OK(pllm_rln_backward(ctx, W_, v.n3, gv.n3, sd, g3, rows, st[10], st[11], g2));
    OK(pllm_mlp_backward(ctx, LAT, HID, LAT, v.d2, gv.d2, a2, pd2, g2, b, gt));
    OK(pllm_rln_backward(ctx, W_, v.n2, gv.n2, y1, gt, rows, st[8], st[9], g1));
    for (int i = 0; i < b * LAT; i++) g1[i] += g2[i];
    OK(pllm_mlp_backward(ctx, LAT, HID, LAT, v.d1, gv.d1, a1, pd1, g1, b, gt));
    OK(pllm_rln_backward(ctx, W_, v.n1, gv.n1, y0, gt, rows, st[6], st[7], g0));
    for (int i = 0; i < b * LAT; i++) g0[i] += g1[i];
    if (skip) for (int i = 0; i < b * LAT; i++) g0[i] += dxh[i];
    for (int i = 0; i < b; i++) cb += dist[i];
    float c = (float)(2 * BETA / (double)(b * LAT));
    for (int i = 0; i < b * LAT; i++) g0[i] += c * (z[i] - v.c[idx[i / LAT] * LAT + i % LAT]);
    OK(pllm_codebook_stats(ctx, z, b, LAT, idx, K, sums, counts));
    double coef = 2 * LAMBDA / (double)(b * LAT);
    for (int j = 0; j < K; j++)
        if (counts[j])
            for (int t = 0; t < LAT; t++) gv.c[j * LAT + t] += (float)(coef * ((double)counts[j] * v.c[j * LAT + t] - sums[j * LAT + t]));
    if (skip) memcpy(g2, g0, sizeof(float) * b * LAT);
    else OK(pllm_rln_backward(ctx, W_, v.ne3, gv.ne3, s2, g0, rows, st[4], st[5], g2));
    OK(pllm_mlp_backward(ctx, LAT, HID, LAT, v.e2, gv.e2, t2, pre2, g2, b, gt));
    OK(pllm_rln_backward(ctx, W_, v.ne2, gv.ne2, z1, gt, rows, st[2], st[3], g1));
    for (int i = 0; i < b * LAT; i++) g1[i] += g2[i];
    OK(pllm_mlp_backward(ctx, LAT, HID, LAT, v.e1, gv.e1, t1, pre1, g1, b, gt));
    OK(pllm_rln_backward(ctx, W_, v.ne1, gv.ne1, z0, gt, rows, st[0], st[1], g3));
    for (int i = 0; i < b * LAT; i++) g3[i] += g1[i];
    OK(pllm_mlp_backward(ctx, DIM, HID, LAT, v.e0, gv.e0, x, pre0, g3, b, NULL));
    *loss += se / sw + LAMBDA * (cb / (double)(b * LAT));
}

static float zall[N_ * LAT], dall[N_], outall[N_ * DIM];
static int32_t iall[N_];

static void encode_assign_all(int skip, float *p, const float *x) {
    views v = view(p);
    for (int r0 = 0; r0 < ROWS; r0 += RPB) {
        int nr = ROWS - r0 < RPB ? ROWS - r0 : RPB;
        encode(skip, v, x + r0 * E * DIM, nr, zall + r0 * E * LAT);
    }
    OK(pllm_assign(ctx, zall, N_, LAT, v.c, K, iall, dall));
}

static double full_pass(int skip, float *p, const float *x, const float *w) {
    views v = view(p);
    encode_assign_all(skip, p, x);
    OK(pllm_decode(ctx, E, DIM, LAT, HID, v.dec, v.c, K, iall, ROWS, outall));
    if (skip) for (int i = 0; i < N_ * DIM; i++) outall[i] += v.c[iall[i / DIM] * DIM + i % DIM];
    double se = 0, sw = 0;
    for (int i = 0; i < N_ * DIM; i++) {
        double d = (double)outall[i] - (double)x[i];
        se += (double)w[i] * d * d;
        sw += w[i];
    }
    return se / sw;
}

static void refresh(int skip, float *p, float *m, float *vv, const float *x) {
    views v = view(p);
    encode_assign_all(skip, p, x);
    OK(pllm_codebook_stats(ctx, zall, N_, LAT, iall, K, sums, counts));
    int dead[K], nd = 0;
    for (int j = 0; j < K; j++) {
        if (!counts[j]) { dead[nd++] = j; continue; }
        for (int t = 0; t < LAT; t++) v.c[j * LAT + t] = (float)(sums[j * LAT + t] / (double)counts[j]);
    }
    /* selection by largest distance, lowest position first */
    static char used[N_];
    memset(used, 0, sizeof used);
    for (int q = 0; q < nd; q++) {
        int best = -1;
        for (int i = 0; i < N_; i++)
            if (!used[i] && (best < 0 || dall[i] > dall[best])) best = i;
        used[best] = 1;
        memcpy(v.c + dead[q] * LAT, zall + best * LAT, sizeof(float) * LAT);
    }
    int64_t off = v.c - p;
    memset(m + off, 0, sizeof(float) * (NP - off));
    memset(vv + off, 0, sizeof(float) * (NP - off));
}

static void run_case(int skip, int exact) {
    float *p0 = fa(4096);
    view(p0);
    free(p0);
    float *x = fa(N_ * DIM), *w = fa(N_ * DIM), *p = fa(NP), *g = fa(NP), *m = fa(NP), *vv = fa(NP), *got = fa(NP);
    float *xb = fa(B_ * DIM), *wb = fa(B_ * DIM);
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < E * DIM; c++) {
            int pad = c >= E * DIM - 2; /* the last two columns are padding */
            x[r * E * DIM + c] = pad ? 0 : (float)(2 * unif() - 1);
            w[r * E * DIM + c] = pad ? 0 : (float)(0.5 + (c % 3));
        }
    for (int64_t i = 0; i < NP; i++) p[i] = (float)(0.6 * (2 * unif() - 1));
    views v = view(p);
    for (int i = 0; i < W_; i++) v.ne1[i] = v.ne2[i] = v.ne3[i] = v.n1[i] = v.n2[i] = v.n3[i] = 1 + 0.1f * (float)unif();
    int32_t order[ROWS];
    for (int i = 0; i < ROWS; i++) order[i] = (i * 17 + 5) % ROWS;

    int64_t io[PLLM_TRAIN_NI] = {ROWS, E, DIM, LAT, HID, K, skip, RPB};
    double dd[PLLM_TRAIN_ND] = {LAMBDA, BETA, 0.9f, 0.999f, 1e-8f};
    pllm_train *tr;
    OK(pllm_train_create(ctx, io, PLLM_TRAIN_NI, dd, PLLM_TRAIN_ND, &tr));
    CHECK(pllm_train_params(tr) == NP, "params %lld, want %lld", (long long)pllm_train_params(tr), (long long)NP);
    OK(pllm_train_upload(tr, x, w, p, 0));
    CHECK(pllm_train_download(tr, got, NULL, NULL, NULL) == PLLM_ERR_INVALID_ARG, "download before any epoch");

    for (int epoch = 0; epoch < 2; epoch++) {
        const float lr = epoch ? 0.01f : 0.02f;
        int64_t first = 1 + epoch * ((ROWS + RPB - 1) / RPB);
        double loss = 0, want_mse, mse, mean;
        int64_t best_epoch;
        int64_t s = first, nb = 0;
        for (int b0 = 0; b0 < ROWS; b0 += RPB, nb++) {
            int nr = ROWS - b0 < RPB ? ROWS - b0 : RPB;
            for (int i = 0; i < nr; i++) {
                memcpy(xb + i * E * DIM, x + order[b0 + i] * E * DIM, sizeof(float) * E * DIM);
                memcpy(wb + i * E * DIM, w + order[b0 + i] * E * DIM, sizeof(float) * E * DIM);
            }
            step(skip, p, g, xb, wb, nr, &loss);
            OK(pllm_adam(ctx, p, g, m, vv, NP, lr, 0.9f, 0.999f, 1e-8f, s++));
        }
        if (epoch == 1) refresh(skip, p, m, vv, x);
        want_mse = full_pass(skip, p, x, w);
        OK(pllm_train_epoch(tr, order, lr, first, epoch == 1, &mean, &mse, &best_epoch));
        double tol = exact ? 0 : 1e-9;
        CHECK(fabs(mean - loss / nb) <= tol * fabs(mean), "skip %d epoch %d: mean loss %.17g, want %.17g", skip, epoch + 1, mean, loss / nb);
        CHECK(fabs(mse - want_mse) <= tol * want_mse, "skip %d epoch %d: MSE %.17g, want %.17g", skip, epoch + 1, mse, want_mse);
        CHECK(best_epoch >= 1 && best_epoch <= epoch + 1, "best epoch %lld", (long long)best_epoch);
        for (int i = 0; i < ROWS; i++) order[i] = (order[i] * 7 + 3) % ROWS;
    }
    /* continue the run's parameters: the best is the epoch-2 set only when it won */
    double bm;
    int64_t be;
    int32_t *gi = malloc(sizeof(int32_t) * N_);
    OK(pllm_train_download(tr, got, gi, &bm, &be));
    if (be == 2) {
        int64_t diff = 0;
        double worst = 0;
        for (int64_t i = 0; i < NP; i++) {
            if (got[i] != p[i]) diff++;
            double d = fabs((double)got[i] - p[i]) / (1e-3 + fabs((double)p[i]));
            if (d > worst) worst = d;
        }
        CHECK(exact ? diff == 0 : worst < 1e-3, "skip %d: %lld parameters differ (worst relative %.3g)", skip, (long long)diff, worst);
        int id = 0;
        for (int i = 0; i < N_; i++) id += gi[i] != iall[i];
        CHECK(exact ? id == 0 : id <= N_ / 20, "skip %d: %d indices differ", skip, id);
    }
    /* errors are statuses with messages */
    order[3] = ROWS;
    CHECK(pllm_train_epoch(tr, order, 0.01f, 1, 0, NULL, NULL, NULL) == PLLM_ERR_INDEX_RANGE && strstr(pllm_ctx_error(ctx), "order[3]"),
          "bad order: %s", pllm_ctx_error(ctx));
    io[PLLM_TRAIN_ROWS_PER_BATCH] = ROWS + 1;
    pllm_train *bad = NULL;
    CHECK(pllm_train_create(ctx, io, PLLM_TRAIN_NI, dd, PLLM_TRAIN_ND, &bad) == PLLM_ERR_INVALID_ARG && !bad, "bad rows per batch");
    pllm_train_destroy(tr);
    free(x), free(w), free(p), free(g), free(m), free(vv), free(got), free(xb), free(wb), free(gi);
}

int main(void) {
    if (pllm_abi_version() != PLLM_ABI_VERSION) {
        fprintf(stderr, "ABI version %d, header %d\n", pllm_abi_version(), PLLM_ABI_VERSION);
        return 1;
    }
    if (pllm_backend_score() <= 0) {
        printf("SKIPPED: backend %s is unusable here (score 0)\n", pllm_backend_name());
        return 77;
    }
    int st = pllm_ctx_create(&ctx);
    if (st == PLLM_ERR_UNSUPPORTED) {
        printf("SKIPPED: this CPU cannot run the path PLLM_CPU_ISA asks for\n");
        return 77;
    }
    if (st != PLLM_OK) {
        fprintf(stderr, "pllm_ctx_create: %d\n", st);
        return 1;
    }
    int exact = !strcmp(pllm_backend_name(), "cpu");
    run_case(0, exact);
    run_case(1, exact);
    pllm_ctx_destroy(ctx);
    printf("train: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
