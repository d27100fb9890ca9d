// fp32-rate: the GPU's dense FP32 matrix rate, measured with cuBLAS SGEMM
// (no TF32: CUBLAS_DEFAULT_MATH keeps every product in FP32), as the
// ceiling scripts/gpu-check sets the assignment kernel's GFLOP/s against.
//
//   nvcc -O2 -o fp32-rate scripts/fp32-rate.cu -lcublas
//   ./fp32-rate [n]        # C = A B, n x n x n (default 8192)
//
// Prints one line of key=value pairs: the device, n, and the best and mean
// TFLOP/s (2 n^3 per product) of 10 products timed with CUDA events after 3
// warm-up products. Exit 1 on any CUDA or cuBLAS error.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                          \
    do {                                                                               \
        cudaError_t e_ = (x);                                                          \
        if (e_ != cudaSuccess) {                                                       \
            fprintf(stderr, "fp32-rate: %s: %s\n", #x, cudaGetErrorString(e_));        \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)
#define CB(x)                                                                          \
    do {                                                                               \
        cublasStatus_t s_ = (x);                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                             \
            fprintf(stderr, "fp32-rate: %s: cuBLAS status %d\n", #x, (int)s_);         \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

// fill writes a deterministic pattern in [-1, 1): random-like data, since
// all-zero operands run faster than real ones on some parts.
__global__ void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        p[i] = (float)(h >> 8) * (1.0f / 8388608.0f) - 1.0f;
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 8192;
    if (n < 256 || n > 32768) {
        fprintf(stderr, "fp32-rate: n=%d outside [256, 32768]\n", n);
        return 1;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    size_t elems = (size_t)n * n;
    float *a, *b, *c;
    CK(cudaMalloc(&a, elems * sizeof(float)));
    CK(cudaMalloc(&b, elems * sizeof(float)));
    CK(cudaMalloc(&c, elems * sizeof(float)));
    fill<<<1024, 256>>>(a, elems, 1u);
    fill<<<1024, 256>>>(b, elems, 2u);
    CK(cudaGetLastError());
    cublasHandle_t h;
    CB(cublasCreate(&h));
    CB(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    const float one = 1, zero = 0;
    for (int i = 0; i < 3; i++) CB(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n));
    CK(cudaDeviceSynchronize());
    cudaEvent_t t0, t1;
    CK(cudaEventCreate(&t0));
    CK(cudaEventCreate(&t1));
    double best = 0, sum = 0, flops = 2.0 * n * (double)n * n;
    const int reps = 10;
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(t0));
        CB(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n));
        CK(cudaEventRecord(t1));
        CK(cudaEventSynchronize(t1));
        float ms;
        CK(cudaEventElapsedTime(&ms, t0, t1));
        double tf = flops / (ms * 1e-3) / 1e12;
        sum += tf;
        if (tf > best) best = tf;
    }
    printf("device=\"%s\" sm=%d.%d n=%d best_tflops=%.3f mean_tflops=%.3f\n", prop.name, prop.major, prop.minor, n, best,
           sum / reps);
    cublasDestroy(h);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return 0;
}
