// SwiGLU: silu(gate) * up, elementwise over [n, n_ff] with gate and up side by side.
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

__global__ void swiglu_kernel(const float* gate_up, int n_ff, int64_t total, float* out) {
    pdl_enter();
    const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const int64_t i = idx / n_ff, j = idx % n_ff;
    const float g = gate_up[i * 2 * n_ff + j];
    const float u = gate_up[i * 2 * n_ff + n_ff + j];
    out[idx] = g / (1.0f + expf(-g)) * u;
}

void launch_swiglu(const float* gate_up, int n, int n_ff, float* out, cudaStream_t stream) {
    const int64_t total = int64_t(n) * n_ff;
    if (total == 0) return;
    launch_pdl(swiglu_kernel, unsigned((total + 255) / 256), 256, 0, stream, gate_up, n_ff, total, out);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
