// Bulk copies from global to shared memory through Hopper's copy engine
// (cp.async.bulk), each completing on an mbarrier: one instruction per copy
// instead of one 8-byte asynchronous copy per lane and step. The output layer's
// streaming product stages its rows this way (77.8 -> 71.3 us per token); the
// short products do not (each got 0.2-0.8 us slower with it: bench/NOTES.md, round 22).
//
// Use: one thread initialises a barrier (bulk_barrier_init) and, per phase,
// arms it with the phase's byte count (bulk_arm) and issues its copies
// (bulk_copy); the readers wait for the phase (bulk_wait with its parity:
// 0 for the barrier's first phase, then 1, 0, ...).
#pragma once

#include <cstdint>

namespace orcd::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void bulk_barrier_init(uint64_t* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(shared_address(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// The phase completes when `bytes` have arrived (0: at once).
__device__ __forceinline__ void bulk_arm(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(bar)), "r"(bytes)
                 : "memory");
}

// bytes: a multiple of 16; dst and src 16-byte aligned. The proxy fence orders
// this block's earlier reads of dst before the copy engine overwrites it.
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(shared_address(dst)), "l"(src), "r"(bytes), "r"(shared_address(bar))
                 : "memory");
}

__device__ __forceinline__ void bulk_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\tselp.u32 %0, 1, 0, p;\n\t}"
            : "=r"(done)
            : "r"(shared_address(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

// The 16-byte-aligned range holding `bytes` from `p`: copy from p - lead, lead + bytes
// rounded up to 16 (at most 15 bytes either side of the range).
struct AlignedRange {
    const uint8_t* from;
    int lead;
    uint32_t bytes;
};
__device__ __forceinline__ AlignedRange aligned_range(const uint8_t* p, int bytes) {
    const int lead = int(reinterpret_cast<uintptr_t>(p) & 15);
    return {p - lead, lead, bytes > 0 ? uint32_t(lead + bytes + 15) & ~15u : 0u};
}

}  // namespace orcd::cuda
