// silu(g) = g * sigmoid(g), as the CPU backend computes it (shared by the SwiGLU kernels).
#pragma once

namespace orcd::cuda {

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

}  // namespace orcd::cuda
