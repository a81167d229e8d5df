// RMSNorm: one block per row; the sum of squares in fp32 through a block reduction.
// The fp16 output feeds the tensor-core products directly (no conversion pass).
#include <type_traits>

#include "cuda_check.h"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

template <typename Out>
__global__ void rms_norm_kernel(const float* x, const float* w, float eps, int dim, Out* out) {
    pdl_enter();
    const float* xr = x + size_t(blockIdx.x) * dim;
    Out* orow = out + size_t(blockIdx.x) * dim;
    float sum = 0.0f;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) sum += xr[c] * xr[c];
    sum = block_sum(sum);
    const float scale = rsqrtf(sum / float(dim) + eps);
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        const float v = xr[c] * scale * w[c];
        if constexpr (std::is_same_v<Out, __half>)
            orow[c] = __float2half_rn(v);
        else
            orow[c] = v;
    }
}

void launch_rms_norm(const float* x, const float* w, float eps, int n, int dim, float* out, cudaStream_t stream) {
    if (n == 0) return;
    launch_pdl(rms_norm_kernel<float>, n, 256, 0, stream, x, w, eps, dim, out);
    ORCD_CUDA_CHECK_LAUNCH();
}

void launch_rms_norm_half(const float* x, const float* w, float eps, int n, int dim, __half* out, cudaStream_t stream) {
    if (n == 0) return;
    launch_pdl(rms_norm_kernel<__half>, n, 256, 0, stream, x, w, eps, dim, out);
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
