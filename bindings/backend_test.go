package bindings

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The loader's refusal paths and the argument marshalling are tested
// against small fake libraries compiled here with the system C compiler:
// each exports the ABI (or part of it) with a chosen version, name and
// score, and its kernels echo their arguments into the output buffers.

const fakeLib = `
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef struct { char err[128]; } ctx;
int pllm_abi_version(void) { return ABI; }
int pllm_backend_score(void) { return SCORE; }
const char *pllm_backend_name(void) { return NAME; }
const char *pllm_build_info(void) { return "fake build"; }
int pllm_ctx_create(ctx **out) {
#ifdef CTX_FAIL
	*out = NULL; return -4;
#else
	*out = calloc(1, sizeof(ctx)); return 0;
#endif
}
void pllm_ctx_destroy(ctx *c) { free(c); }
const char *pllm_ctx_error(const ctx *c) { return c->err; }
const char *pllm_ctx_device(const ctx *c) { (void)c; return "fake device"; }
int pllm_assign(ctx *c, const float *z, int64_t n, int32_t dz, const float *cb, int64_t k, int32_t *idx, float *dist) {
	for (int64_t i = 0; i < n; i++) { idx[i] = (int32_t)((i * dz) % k); if (dist) dist[i] = z[i * dz] + cb[0]; }
	c->err[0] = 0; return 0;
}
int pllm_codebook_stats(ctx *c, const float *z, int64_t n, int32_t dz, const int32_t *idx, int64_t k, double *sums, int64_t *counts) {
	(void)z; (void)n; (void)dz; (void)idx; (void)k; (void)sums; (void)counts;
	strcpy(c->err, "fake stats failure"); return -2;
}
int pllm_mlp_forward(ctx *c, int32_t in, int32_t hidden, int32_t out, const float *p, const float *x, int64_t rows, float *pre, float *y) {
	(void)c; pre[0] = (float)rows; y[0] = (float)(in * 100 + hidden * 10 + out); y[1] = p[0]; y[2] = x[0]; return 0;
}
int pllm_mlp_backward(ctx *c, int32_t in, int32_t hidden, int32_t out, const float *p, float *g, const float *x, const float *pre, const float *dy, int64_t rows, float *dx) {
	(void)c; g[0] += (float)(in * 100 + hidden * 10 + out); g[1] = (float)rows; g[2] = p[0] + x[0] + pre[0] + dy[0]; g[3] = dx ? 1.0f : -1.0f; return 0;
}
int pllm_rln_forward(ctx *c, int32_t width, const float *p, const float *x, int64_t groups, float *y, float *mean, float *rstd) {
	(void)c; y[0] = (float)width; mean[0] = (float)groups; rstd[0] = p[0] + x[0]; return 0;
}
int pllm_rln_backward(ctx *c, int32_t width, const float *p, float *g, const float *x, const float *dy, int64_t groups, const float *mean, const float *rstd, float *dx) {
	(void)c; (void)p; (void)x; (void)dy; dx[0] = (float)width; dx[1] = (float)groups; dx[2] = mean[0]; dx[3] = rstd[0]; g[0] += 1; return 0;
}
int pllm_adam(ctx *c, float *p, const float *g, float *m, float *v, int64_t n, float lr, float b1, float b2, float eps, int64_t step) {
	(void)c; p[0] = lr; p[1] = eps; p[2] = (float)step; p[3] = (float)n; m[0] = b1; v[0] = b2 + g[0]; return 0;
}
#ifndef OMIT_DECODE
int pllm_decode(ctx *c, int32_t e, int32_t dim, int32_t latent, int32_t hidden, const float *p, const float *cb, int64_t k, const int32_t *idx, int64_t rows, float *out) {
	(void)c; out[0] = (float)e; out[1] = (float)dim; out[2] = (float)latent; out[3] = (float)hidden;
	out[4] = (float)k; out[5] = (float)rows; out[6] = (float)idx[0]; out[7] = p[0]; out[8] = cb[0]; return 0;
}
#endif
#ifndef OMIT_GEMM
int pllm_gemm(ctx *c, int32_t ta, int32_t tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, const float *b, float beta, float *cc) {
	(void)c; cc[0] = (float)(ta * 10 + tb); cc[1] = (float)m; cc[2] = (float)n; cc[3] = (float)k;
	cc[4] = alpha; cc[5] = beta; cc[6] = a[0]; cc[7] = b[0]; return 0;
}
#endif
int pllm_train_create(ctx *c, const int64_t *io, int32_t ni, const double *dd, int32_t nd, void **out) {
	(void)io; (void)ni; (void)dd; (void)nd; *out = NULL; strcpy(c->err, "fake: no training"); return -5;
}
int64_t pllm_train_params(const void *t) { (void)t; return 0; }
int pllm_train_upload(void *t, const float *x, const float *w, const float *p, int32_t ic) { (void)t; (void)x; (void)w; (void)p; (void)ic; return -5; }
int pllm_train_epoch(void *t, const int32_t *o, float lr, int64_t s, int32_t r, double *l, double *m, int64_t *b) {
	(void)t; (void)o; (void)lr; (void)s; (void)r; (void)l; (void)m; (void)b; return -5;
}
int pllm_train_kmeans_refresh(void *t) { (void)t; return -5; }
int pllm_train_download(void *t, float *p, int32_t *i, double *m, int64_t *e) { (void)t; (void)p; (void)i; (void)m; (void)e; return -5; }
void pllm_train_destroy(void *t) { (void)t; }
`

type fakeOpts struct {
	abi, score  int
	name        string
	omitDecode  bool
	omitGemm    bool
	ctxFail     bool
	backendFile string // "cpu" or "cuda": which library file name to build
}

// buildFake compiles a fake library into dir under the backend's file name.
func buildFake(t *testing.T, dir string, o fakeOpts) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("fake libraries are built for Linux only")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler to build fake libraries")
	}
	src := filepath.Join(t.TempDir(), "fake.c")
	if err := os.WriteFile(src, []byte(fakeLib), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, LibraryFile(o.backendFile))
	args := []string{"-shared", "-fPIC", "-O1", "-o", out, src,
		"-DABI=" + strconv.Itoa(o.abi), "-DSCORE=" + strconv.Itoa(o.score), `-DNAME="` + o.name + `"`}
	if o.omitDecode {
		args = append(args, "-DOMIT_DECODE")
	}
	if o.omitGemm {
		args = append(args, "-DOMIT_GEMM")
	}
	if o.ctxFail {
		args = append(args, "-DCTX_FAIL")
	}
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, b)
	}
	return out
}

func good(backend string) fakeOpts {
	return fakeOpts{abi: abiVersion, score: 20, name: backend, backendFile: backend}
}

func TestSelectGoAndEnv(t *testing.T) {
	dirs := SearchDirs{Env: t.TempDir()}
	k, r, err := selectWith("go", "cpu", dirs)
	if err != nil || k.Name() != "go" || r.Chosen != "go" || r.From != "argument" {
		t.Fatalf("explicit go: %v %v %+v", k, err, r)
	}
	k, r, err = selectWith("", "go", dirs)
	if err != nil || k.Name() != "go" || r.Asked != "go" || r.From != EnvBackend {
		t.Fatalf("go from the environment: %v %+v", err, r)
	}
	if _, r, err = selectWith("tpu", "", dirs); err == nil || !strings.Contains(err.Error(), `"tpu"`) || r == nil {
		t.Fatalf("unknown backend: %v", err)
	}
	if _, _, err = selectWith("auto", "tpu", dirs); err == nil || !strings.Contains(err.Error(), EnvBackend) {
		t.Fatalf("unknown backend from the environment: %v", err)
	}
}

// An explicit native backend that is not there is an error naming every
// path tried, never the go kernels.
func TestSelectExplicitNoFallback(t *testing.T) {
	env := t.TempDir()
	for _, name := range []string{BackendCPU, BackendCUDA} {
		k, r, err := selectWith(name, "", SearchDirs{Env: env})
		if err == nil {
			t.Skipf("a %s library is on the system loader's path; cannot test its absence", name)
		}
		if k != nil {
			t.Fatalf("%s: kernels returned with error %v", name, err)
		}
		if want := filepath.Join(env, LibraryFile(name)); !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not name %s", name, err, want)
		}
		if r.Chosen != "" || len(r.Candidates) != 1 || !strings.HasPrefix(r.Candidates[0].Refused, "not found at") {
			t.Errorf("%s: report %+v", name, r)
		}
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		want    string // backend asked for
		opts    fakeOpts
		garbage bool
		reason  string
	}{
		{"missing symbol", BackendCPU, fakeOpts{abi: abiVersion, score: 20, name: "cpu", backendFile: "cpu", omitDecode: true}, false, "missing symbol pllm_decode"},
		{"missing gemm", BackendCPU, fakeOpts{abi: abiVersion, score: 20, name: "cpu", backendFile: "cpu", omitGemm: true}, false, "missing symbol pllm_gemm"},
		{"ABI mismatch", BackendCPU, fakeOpts{abi: abiVersion + 98, score: 20, name: "cpu", backendFile: "cpu"}, false, "ABI version " + strconv.Itoa(abiVersion+98) + ", this build needs " + strconv.Itoa(abiVersion)},
		// An older library lacks symbols this build binds; the version is
		// read first, so the refusal names the version, not a symbol.
		{"old ABI lacking newer symbols", BackendCPU, fakeOpts{abi: abiVersion - 1, score: 20, name: "cpu", backendFile: "cpu", omitDecode: true}, false, "ABI version " + strconv.Itoa(abiVersion-1) + ", this build needs " + strconv.Itoa(abiVersion)},
		{"wrong backend name", BackendCPU, fakeOpts{abi: abiVersion, score: 20, name: "cuda", backendFile: "cpu"}, false, `reports backend "cuda"`},
		{"score 0", BackendCUDA, fakeOpts{abi: abiVersion, score: 0, name: "cuda", backendFile: "cuda"}, false, "score 0: the library cannot run on this machine (no CUDA driver or device)"},
		{"context creation fails", BackendCUDA, fakeOpts{abi: abiVersion, score: 100, name: "cuda", backendFile: "cuda", ctxFail: true}, false, "pllm_ctx_create failed with PLLM_ERR_DEVICE"},
		{"not a library", BackendCPU, fakeOpts{}, true, "dlopen: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := t.TempDir()
			path := filepath.Join(env, LibraryFile(tc.want))
			if tc.garbage {
				if err := os.WriteFile(path, []byte("not an ELF file"), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				buildFake(t, env, tc.opts)
			}
			k, r, err := selectWith(tc.want, "", SearchDirs{Env: env})
			if err == nil || k != nil {
				t.Fatalf("accepted: %v", r)
			}
			if !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not say %q at %s", err, tc.reason, path)
			}
			if s := r.String(); !strings.Contains(s, tc.reason) {
				t.Errorf("report does not say %q:\n%s", tc.reason, s)
			}
		})
	}
}

// auto skips a CUDA library with score 0 for a usable CPU one and records
// why; the report then prints all three candidates.
func TestAutoRecordsRefusals(t *testing.T) {
	env := t.TempDir()
	buildFake(t, env, fakeOpts{abi: abiVersion, score: 0, name: "cuda", backendFile: "cuda"})
	buildFake(t, env, good("cpu"))
	k, r, err := selectWith("", "", SearchDirs{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	defer Close(k)
	if k.Name() != "cpu" || r.Chosen != "cpu" || r.Asked != "auto" || r.Device != "fake device" || r.BuildInfo != "fake build" {
		t.Fatalf("report %+v", r)
	}
	if len(r.Candidates) != 3 || !strings.Contains(r.Candidates[0].Refused, "score 0") || r.Candidates[2].Tried {
		t.Fatalf("candidates %+v", r.Candidates)
	}
	s := r.String()
	for _, want := range []string{"chosen: cpu (" + filepath.Join(env, "libpocketllm_cpu.so") + ")", "cuda: refused: ", "go: not tried", "device: fake device"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// The fake kernels echo their arguments: every integer, float (register
// and stack) and pointer argument must arrive where the header says.
func TestNativeArgumentPassing(t *testing.T) {
	env := t.TempDir()
	buildFake(t, env, good("cpu"))
	k, _, err := selectWith("cpu", "", SearchDirs{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	idx, dist := make([]int32, 4), make([]float32, 4)
	z := []float32{1, 2, 3, 4, 5, 6, 7, 8}
	if err := k.Assign(z, 4, 2, []float32{0.5, 0, 0, 0, 0, 0}, 3, idx, dist); err != nil {
		t.Fatal(err)
	}
	if idx[1] != 2 || idx[2] != 1 || dist[3] != 7.5 {
		t.Errorf("assign: idx %v dist %v", idx, dist)
	}
	err = k.CodebookStats(z, 4, 2, idx, 3, make([]float64, 6), make([]int64, 3))
	if err == nil || !strings.Contains(err.Error(), "fake stats failure") || !strings.Contains(err.Error(), "PLLM_ERR_INDEX_RANGE") {
		t.Errorf("codebook stats error = %v", err)
	}
	m := MLP{In: 3, Hidden: 5, Out: 2, P: make([]float32, MLPParams(3, 5, 2))}
	m.P[0] = 0.25
	pre, y := make([]float32, 7*5), make([]float32, 7*2)
	x := make([]float32, 7*3)
	x[0] = 9
	if err := k.MLPForward(m, x, 7, pre, y); err != nil || pre[0] != 7 || y[0] != 352 || y[1] != 0.25 || y[2] != 9 {
		t.Errorf("mlp forward: %v pre %v y %v", err, pre[:1], y[:3])
	}
	g := MLP{In: 3, Hidden: 5, Out: 2, P: make([]float32, m.NumParams())}
	g.P[0] = 1000
	if err := k.MLPBackward(m, g, x, pre, y, 7, nil); err != nil || g.P[0] != 1352 || g.P[1] != 7 || g.P[2] != 0.25+9+7+352 || g.P[3] != -1 {
		t.Errorf("mlp backward: %v g %v", err, g.P[:4])
	}
	n := RLN{Width: 4, P: []float32{0.5, 0, 0, 0, 0, 0, 0, 0}}
	ry, mean, rstd := make([]float32, 12), make([]float32, 3), make([]float32, 3)
	if err := k.RLNForward(n, []float32{2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 3, ry, mean, rstd); err != nil || ry[0] != 4 || mean[0] != 3 || rstd[0] != 2.5 {
		t.Errorf("rln forward: %v %v %v %v", err, ry[0], mean[0], rstd[0])
	}
	rg := RLN{Width: 4, P: make([]float32, 8)}
	rdx := make([]float32, 12)
	if err := k.RLNBackward(n, rg, ry, ry, 3, []float32{6, 0, 0}, []float32{8, 0, 0}, rdx); err != nil || rdx[0] != 4 || rdx[1] != 3 || rdx[2] != 6 || rdx[3] != 8 || rg.P[0] != 1 {
		t.Errorf("rln backward: %v dx %v g %v", err, rdx[:4], rg.P[0])
	}
	p, ag, am, av := make([]float32, 5), []float32{0.125, 0, 0, 0, 0}, make([]float32, 5), make([]float32, 5)
	b2 := float32(0.999)
	if err := k.Adam(p, ag, am, av, 0.016, 0.9, b2, 1e-8, 123456789); err != nil ||
		p[0] != 0.016 || p[1] != 1e-8 || p[2] != float32(123456789) || p[3] != 5 || am[0] != 0.9 || av[0] != b2+ag[0] {
		t.Errorf("adam: %v p %v m %v v %v", err, p, am[0], av[0])
	}
	dec := Decoder{E: 2, Dim: 3, Latent: 4, Hidden: 5}
	dec.P = make([]float32, DecoderParams(2, 3, 4, 5))
	dec.P[0] = 0.75
	out := make([]float32, 6*2*3)
	cb := make([]float32, 7*4)
	cb[0] = -2
	if err := k.Decode(dec, cb, []int32{6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 6, out); err != nil ||
		out[0] != 2 || out[1] != 3 || out[2] != 4 || out[3] != 5 || out[4] != 7 || out[5] != 6 || out[6] != 6 || out[7] != 0.75 || out[8] != -2 {
		t.Errorf("decode: %v out %v", err, out[:9])
	}
	ga, gb, gc := []float32{0.5, 0, 0, 0, 0, 0}, []float32{-3, 0, 0, 0, 0, 0, 0, 0}, make([]float32, 12)
	if err := k.Gemm(true, false, 3, 4, 2, 0.25, ga, gb, -1.5, gc); err != nil ||
		gc[0] != 10 || gc[1] != 3 || gc[2] != 4 || gc[3] != 2 || gc[4] != 0.25 || gc[5] != -1.5 || gc[6] != 0.5 || gc[7] != -3 {
		t.Errorf("gemm: %v c %v", err, gc[:8])
	}
	if err := k.Gemm(false, true, 3, 4, 2, 1, ga, gb, 0, gc); err != nil || gc[0] != 1 {
		t.Errorf("gemm transB: %v c %v", err, gc[:1])
	}
	// A short buffer never reaches the library (whose fake kernels would
	// write past it).
	if err := k.Assign(z, 4, 2, []float32{0.5}, 3, idx, dist); err == nil || !strings.Contains(err.Error(), "codebook holds 1 values, need 6") {
		t.Errorf("short codebook: %v", err)
	}
	if err := Close(k); err != nil {
		t.Fatal(err)
	}
	if err := Close(k); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := k.Assign(z, 4, 2, cb, 3, idx, nil); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("call after Close: %v", err)
	}
}

func TestProbe(t *testing.T) {
	env := t.TempDir()
	buildFake(t, env, good("cpu"))
	t.Setenv(EnvLibDir, env)
	r := Probe()
	if len(r.Candidates) != 3 {
		t.Fatalf("candidates %+v", r.Candidates)
	}
	for _, c := range r.Candidates {
		if !c.Tried {
			t.Errorf("%s not tried", c.Backend)
		}
	}
	if r.Candidates[1].Refused != "" || r.Candidates[2].Refused != "" {
		t.Errorf("cpu or go refused: %+v", r.Candidates)
	}
	if r.Chosen == "" {
		t.Errorf("no backend chosen: %s", r)
	}
}
