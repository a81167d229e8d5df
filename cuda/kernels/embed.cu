// Embedding lookup straight from the quantised table: one thread per group of 8.
#include "cuda_check.h"
#include "kernels/dequant.cuh"
#include "kernels/kernels.h"
#include "kernels/launch.cuh"

namespace orcd::cuda {

template <TensorType T>
__global__ void embed_kernel(const uint8_t* table, size_t row_bytes, int64_t dim, const int32_t* ids, float* out) {
    pdl_enter();
    const int i = blockIdx.y;
    const int64_t g = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (8 * g >= dim) return;
    float v[8];
    decode_group<T>(table + size_t(ids[i]) * row_bytes, g, v);
    float4* o = reinterpret_cast<float4*>(out + i * dim + 8 * g);
    o[0] = make_float4(v[0], v[1], v[2], v[3]);
    o[1] = make_float4(v[4], v[5], v[6], v[7]);
}

void launch_embed(const Weight& table, const int32_t* ids, int n, float* out, cudaStream_t stream) {
    if (n == 0) return;
    const size_t row_bytes = gguf::row_bytes(table.type, table.cols);
    const int threads = 128;
    const dim3 grid(unsigned((table.cols / 8 + threads - 1) / threads), unsigned(n));
    dispatch_type(table.type, [&]<TensorType T>() {
        launch_pdl(embed_kernel<T>, grid, threads, 0, stream, static_cast<const uint8_t*>(table.data), row_bytes,
                   table.cols, ids, out);
    });
    ORCD_CUDA_CHECK_LAUNCH();
}

}  // namespace orcd::cuda
