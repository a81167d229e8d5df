// SwiGLU: silu(gate) * up, elementwise over [n, n_ff] with gate and up side by side.
// One row per grid row and four elements per thread (float4 when n_ff allows):
// a flat index would need a 64-bit division per element, which made this
// memory-bound kernel compute-bound on 2048-token steps.
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/silu.cuh"

namespace orcd::cuda {

__global__ void swiglu_kernel(const float* gate_up, int n_ff, float* out) {
    pdl_enter();
    const float* gate = gate_up + size_t(blockIdx.y) * 2 * n_ff;
    const float* up = gate + n_ff;
    float* o = out + size_t(blockIdx.y) * n_ff;
    const int j = 4 * (blockIdx.x * blockDim.x + threadIdx.x);
    if (j >= n_ff) return;
    if (n_ff % 4 == 0) {
        const float4 g = *reinterpret_cast<const float4*>(gate + j), u = *reinterpret_cast<const float4*>(up + j);
        *reinterpret_cast<float4*>(o + j) = make_float4(silu(g.x) * u.x, silu(g.y) * u.y, silu(g.z) * u.z, silu(g.w) * u.w);
    } else {
        for (int k = j; k < min(j + 4, n_ff); ++k) o[k] = silu(gate[k]) * up[k];
    }
}

void launch_swiglu(const float* gate_up, int n, int n_ff, float* out, cudaStream_t stream) {
    if (n == 0 || n_ff == 0) return;
    const int threads = 256, quads = (n_ff + 3) / 4;
    launch_pdl(swiglu_kernel, dim3(unsigned((quads + threads - 1) / threads), unsigned(n)), threads, 0, stream,
               gate_up, n_ff, out);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
