// Kernel launch with programmatic dependent launch (PDL, Hopper and later).
//
// A decode step is hundreds of short kernels; between two of them the GPU would
// otherwise drain the first grid before it even schedules the second. With PDL
// the next kernel's blocks are scheduled while the previous kernel still runs
// (each kernel calls pdl_launch_dependents() early), run their prologue, and
// wait in pdl_wait() until the previous grid has completed and its writes are
// visible. Rule for every kernel launched this way: nothing written by an
// earlier kernel is read, and nothing an earlier kernel reads is written,
// before pdl_wait(). Reading weights (constant during a step) before it is fine.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "cuda_check.h"

namespace orcd::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Both, at the top of a kernel that reads nothing before waiting.
__device__ __forceinline__ void pdl_enter() {
    pdl_wait();
    pdl_launch_dependents();
}

// Brings a range of read-only memory (weights) towards L2 before pdl_wait(), so
// that the loads after it do not pay the full DRAM latency. One 128-byte line
// per thread and step over [p, p + bytes) with `stride` threads.
__device__ __forceinline__ void prefetch_l2(const void* p, size_t bytes, int thread, int stride) {
    const char* c = static_cast<const char*>(p);
    for (size_t off = size_t(thread) * 128; off < bytes; off += size_t(stride) * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

// Launches kernel<<<grid, block, smem, stream>>>(args...) allowing it to overlap
// the previous kernel on the stream as described above.
template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    ORCD_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

}  // namespace orcd::cuda
