// The persistent decode kernel (decode_program.h): every block walks the op
// list; an op's work is spread over all blocks (products: units of rows per
// warp; attention: (KV head, split) items per block; embedding: groups per
// thread), and a grid barrier separates an op from the one whose output it reads.
//
// Products stage their input row once per block in shared memory (normalised,
// or SwiGLU'd from gate and up: the ops before them fold away at the cost of a
// few thousand floats per block, loaded all at once: one L2 round trip), and
// copy each unit's weight rows into shared memory with 8-byte asynchronous
// copies, kSlots units in flight per warp (later units' copies overlap this
// unit's arithmetic). Before a barrier each warp asks L2 for the first rows it
// will read after it.
//
// Coherence: L1 is not coherent between blocks, and activations are rewritten
// by other blocks between ops, so every activation is read with __ldcg (L2);
// only weights and the step's inputs (ids, positions) go through L1.
#include <cuda_pipeline.h>

#include <algorithm>

#include "arena.h"
#include "cuda_check.h"
#include "kernels/attention_decode.cuh"
#include "kernels/decode_program.h"
#include "kernels/dequant.cuh"
#include "kernels/launch.cuh"
#include "kernels/reduce.cuh"

namespace orcd::cuda {

namespace {

constexpr int kWarps = kProgramThreads / 32;
constexpr int kMaxRowsPerUnit = 4;
constexpr int kSlots = 3;  // weight copies in flight per warp

struct Smem {
    float* xs;       // the product's input row [cols]
    uint8_t* stage;  // per warp: kSlots slots of `slot` bytes
    size_t slot;
};

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// xs = the op's input row, by the whole block: each thread's float4 loads are
// all issued before any is used (the row comes from L2, written by other blocks).
__device__ void stage_input(const ProgramOp& op, float* xs) {
    constexpr int kPer = 4;  // float4s per thread and round: 8 K floats per round
    const int64_t n4 = op.cols / 4;
    const float4* x = reinterpret_cast<const float4*>(op.x);
    const float4* up = reinterpret_cast<const float4*>(op.x + op.cols);
    const float4* nw = reinterpret_cast<const float4*>(op.norm_w);
    float4* out = reinterpret_cast<float4*>(xs);
    float ss = 0.0f;
    for (int64_t base = 0; base < n4; base += int64_t(kPer) * kProgramThreads) {
        float4 v[kPer], u[kPer];
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int64_t c = base + k * kProgramThreads + threadIdx.x;
            if (c < n4) {
                v[k] = __ldcg(x + c);
                if (op.input == ProgramInput::Swiglu) u[k] = __ldcg(up + c);
            }
        }
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int64_t c = base + k * kProgramThreads + threadIdx.x;
            if (c >= n4) continue;
            float4 o = v[k];
            if (op.input == ProgramInput::Swiglu) {
                o = make_float4(silu(v[k].x) * u[k].x, silu(v[k].y) * u[k].y, silu(v[k].z) * u[k].z,
                                silu(v[k].w) * u[k].w);
            } else if (op.input == ProgramInput::Norm) {
                ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
                const float4 w = nw[c];
                o = make_float4(v[k].x * w.x, v[k].y * w.y, v[k].z * w.z, v[k].w * w.w);
            }
            out[c] = o;
        }
    }
    if (op.input == ProgramInput::Norm) {
        const float scale = rsqrtf(block_sum(ss) / float(op.cols) + op.eps);  // synchronises the block
        for (int64_t c = threadIdx.x; c < n4; c += kProgramThreads) {
            float4 o = out[c];
            out[c] = make_float4(o.x * scale, o.y * scale, o.z * scale, o.w * scale);
        }
    }
    __syncthreads();
}

// The first unit of an op that warp `warp` of `n_warps` takes (units of one
// phase are numbered across its ops, so small products land on different warps).
__device__ __forceinline__ int64_t first_unit_of(const ProgramOp& op, int warp, int n_warps) {
    return ((int64_t(warp) - op.first_unit) % n_warps + n_warps) % n_warps;
}

// Copies the rows of unit u into a slot; returns the offset of the first row in it.
__device__ __forceinline__ int copy_unit(const ProgramOp& op, int64_t u, uint8_t* slot, int lane) {
    const int64_t r0 = u * op.rows_per_unit;
    const int nr = int(min(int64_t(op.rows_per_unit), op.rows - r0));
    // From the 8-byte boundary at or below the first row: at most 7 bytes before
    // it (a tensor starts 256-aligned, so still the same tensor) and 7 after the
    // last row (inside the 256-aligned arena).
    const uintptr_t a = reinterpret_cast<uintptr_t>(op.w + size_t(r0) * op.row_bytes);
    const uint8_t* from = reinterpret_cast<const uint8_t*>(a & ~uintptr_t(7));
    const int lead = int(a & 7);
    const int n8 = (lead + int(op.row_bytes) * nr + 7) / 8;
    for (int i = lane; i < n8; i += 32) __pipeline_memcpy_async(slot + 8 * i, from + 8 * i, 8);
    return lead;
}

template <TensorType T, int R>
__device__ void run_matvec(const ProgramOp& op, const Smem& sm, int warp, int n_warps) {
    const int lane = threadIdx.x % 32;
    uint8_t* stage = sm.stage + size_t(threadIdx.x / 32) * kSlots * sm.slot;
    const int64_t units = (op.rows + R - 1) / R;
    const int64_t groups = op.cols / 8;
    const int64_t u0 = first_unit_of(op, warp, n_warps);
    if (u0 >= units) return;
    // A ring of kSlots copies: unit k's rows land in slot k % kSlots; the copy
    // of unit k + kSlots - 1 is issued before unit k is computed.
#pragma unroll
    for (int k = 0; k < kSlots - 1; ++k) {
        const int64_t u = u0 + k * int64_t(n_warps);
        if (u < units) copy_unit(op, u, stage + k * sm.slot, lane);
        __pipeline_commit();
    }
    int k = 0;
    for (int64_t u = u0; u < units; u += n_warps, ++k) {
        const int ahead = (k + kSlots - 1) % kSlots;
        const int64_t u_ahead = u + int64_t(kSlots - 1) * n_warps;
        if (u_ahead < units) copy_unit(op, u_ahead, stage + ahead * sm.slot, lane);
        __pipeline_commit();
        const int64_t r0 = u * R;
        const int nr = int(min(int64_t(R), op.rows - r0));
        // What the epilogue adds to, loaded now so that its L2 round trip overlaps the arithmetic.
        float prev = 0.0f;
        if (lane < nr) prev = (op.accumulate ? __ldcg(op.out + r0 + lane) : 0.0f) + (op.bias ? op.bias[r0 + lane] : 0.0f);
        __pipeline_wait_prior(kSlots - 1);  // unit k's copy has landed; later ones may still fly
        __syncwarp();
        const int lead = int(reinterpret_cast<uintptr_t>(op.w + size_t(r0) * op.row_bytes) & 7);  // as copy_unit
        const uint8_t* src = stage + (k % kSlots) * sm.slot + lead;
        float acc[R];
#pragma unroll
        for (int j = 0; j < R; ++j) acc[j] = 0.0f;
#pragma unroll 2
        for (int64_t g = lane; g < groups; g += 32) {
            const float4 x0 = *reinterpret_cast<const float4*>(sm.xs + 8 * g);
            const float4 x1 = *reinterpret_cast<const float4*>(sm.xs + 8 * g + 4);
#pragma unroll
            for (int j = 0; j < R; ++j) {
                if (j < nr) {
                    float v[8];
                    decode_group<T>(src + size_t(j) * op.row_bytes, g, v);
                    acc[j] += v[0] * x0.x + v[1] * x0.y + v[2] * x0.z + v[3] * x0.w + v[4] * x1.x + v[5] * x1.y +
                              v[6] * x1.z + v[7] * x1.w;
                }
            }
        }
#pragma unroll
        for (int j = 0; j < R; ++j) {
            const float sum = warp_sum(acc[j]);
            if (lane == j && j < nr) op.out[r0 + j] = prev + sum;
        }
        __syncwarp();  // the slot is refilled kSlots - 1 units later
    }
}

template <TensorType T>
__device__ void run_embed(const ProgramOp& op) {
    const uint8_t* row = op.w + size_t(op.ids[0]) * op.row_bytes;
    for (int64_t g = int64_t(blockIdx.x) * kProgramThreads + threadIdx.x; g < op.cols / 8;
         g += int64_t(gridDim.x) * kProgramThreads) {
        float v[8];
        decode_group<T>(row, g, v);
        float4* o = reinterpret_cast<float4*>(op.out + 8 * g);
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
}

// Calls f.template operator()<T>() for the run-time type, on the device.
template <typename F>
__device__ __forceinline__ void device_dispatch(TensorType t, F&& f) {
    switch (t) {
#define ORCD_CASE(name) case TensorType::name: f.template operator()<TensorType::name>(); break;
        ORCD_CASE(F32) ORCD_CASE(F16) ORCD_CASE(BF16) ORCD_CASE(Q4_0) ORCD_CASE(Q4_1) ORCD_CASE(Q5_0)
        ORCD_CASE(Q5_1) ORCD_CASE(Q8_0) ORCD_CASE(Q2_K) ORCD_CASE(Q3_K) ORCD_CASE(Q4_K) ORCD_CASE(Q5_K)
        ORCD_CASE(Q6_K) ORCD_CASE(IQ4_NL) ORCD_CASE(IQ4_XS)
#undef ORCD_CASE
        default: break;
    }
}

// Warms L2 with the first rows a warp reads in a product that follows a barrier.
__device__ void prefetch_first_units(const ProgramOp& op, int warp, int n_warps) {
    const int lane = threadIdx.x % 32;
    const int64_t units = (op.rows + op.rows_per_unit - 1) / op.rows_per_unit;
    int64_t u = first_unit_of(op, warp, n_warps);
    for (int i = 0; i < 2 && u < units; ++i, u += n_warps) {
        const int64_t r0 = u * op.rows_per_unit;
        const int nr = int(min(int64_t(op.rows_per_unit), op.rows - r0));
        prefetch_l2(op.w + size_t(r0) * op.row_bytes, size_t(nr) * op.row_bytes, lane, 32);
    }
}

// Grid barrier on a counter that only grows: every block adds one when it
// arrives and waits until the count reaches `target` (this barrier's arrivals
// in this launch and all before it; unsigned differences survive the wrap).
// Release on arrival and acquire while waiting order the blocks' writes around
// it (the block barrier before hands its threads' writes to thread 0).
__device__ __forceinline__ void grid_barrier(unsigned* count, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(count) : "memory");
        unsigned seen;
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(count) : "memory");
        } while (int(seen - target) < 0);
    }
    __syncthreads();
}

__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// One block per multiprocessor: 128 registers per thread at most. With a
// trace, op i's start (block 0, after its barrier) goes to trace[2i] and the
// time the last block finished it to trace[2i + 1] (trace zeroed before).
__global__ void __launch_bounds__(kProgramThreads, 1) program_kernel(const ProgramOp* ops, int n_ops, size_t slot,
                                                                      size_t xs_bytes, unsigned* barrier,
                                                                      unsigned barrier_base, unsigned long long* trace) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ __align__(16) uint8_t op_bytes[sizeof(ProgramOp)];  // raw: a __shared__ object cannot have a constructor
    const ProgramOp& op = *reinterpret_cast<const ProgramOp*>(op_bytes);
    const Smem sm{reinterpret_cast<float*>(smem), smem + xs_bytes, slot};
    const int n_warps = int(gridDim.x) * kWarps;
    const int warp = int(blockIdx.x) * kWarps + int(threadIdx.x) / 32;
    unsigned arrivals = barrier_base;
    for (int i = 0; i < n_ops; ++i) {
        __syncthreads();  // every thread is done with the previous op and with smem
        static_assert(sizeof(ProgramOp) % 16 == 0 && sizeof(ProgramOp) / 16 <= kProgramThreads);
        if (threadIdx.x < sizeof(ProgramOp) / 16)
            reinterpret_cast<int4*>(op_bytes)[threadIdx.x] = reinterpret_cast<const int4*>(ops + i)[threadIdx.x];
        __syncthreads();
        if (op.sync_before) grid_barrier(barrier, arrivals += gridDim.x);
        if (trace && blockIdx.x == 0 && threadIdx.x == 0) trace[2 * i] = global_ns();
        switch (op.kind) {
            case ProgramOpKind::Embed:
                device_dispatch(op.type, [&]<TensorType T>() { run_embed<T>(op); });
                break;
            case ProgramOpKind::Matvec:
                if (!op.same_input) stage_input(op, sm.xs);
                device_dispatch(op.type, [&]<TensorType T>() {
                    if (op.rows_per_unit == kMaxRowsPerUnit)
                        run_matvec<T, kMaxRowsPerUnit>(op, sm, warp, n_warps);
                    else
                        run_matvec<T, 1>(op, sm, warp, n_warps);
                });
                break;
            case ProgramOpKind::Attention: {
                // Items (KV head, query-head set, split), KV heads innermost; the item
                // decides from the KV length whether its set and split have work.
                const int kv = op.attn.n_kv_heads, group = op.attn.n_heads / kv;
                const int items = kv * group * op.attn.splits;
                for (int item = blockIdx.x; item < items; item += gridDim.x) {
                    attention_decode_item<kProgramThreads>(op.attn, item % kv, (item / kv) % group,
                                                           item / (kv * group), reinterpret_cast<float*>(smem));
                    __syncthreads();
                }
                break;
            }
        }
        if (trace) {
            __syncthreads();
            if (threadIdx.x == 0) atomicMax(trace + 2 * i + 1, global_ns());
        }
        if (i + 1 < n_ops && ops[i + 1].kind == ProgramOpKind::Matvec && ops[i + 1].sync_before)
            prefetch_first_units(ops[i + 1], warp, n_warps);
    }
}

}  // namespace

ProgramPlan plan_program(std::vector<ProgramOp>& ops, int device) {
    ProgramPlan plan;
    int sms = 0, optin = 0;
    ORCD_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    ORCD_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const int64_t nominal_warps = int64_t(sms) * kWarps;
    size_t xs_floats = 0, attn_bytes = 0;
    int64_t phase_units = 0;
    for (ProgramOp& op : ops) {
        plan.barriers += op.sync_before ? 1 : 0;
        if (op.kind == ProgramOpKind::Matvec) {
            // Four rows per unit where that still gives at least half the warps a unit.
            op.rows_per_unit = 2 * op.rows >= kMaxRowsPerUnit * nominal_warps ? kMaxRowsPerUnit : 1;
            if (op.sync_before) phase_units = 0;
            op.first_unit = int32_t(phase_units % nominal_warps);
            phase_units += (op.rows + op.rows_per_unit - 1) / op.rows_per_unit;
            xs_floats = std::max(xs_floats, size_t(op.cols));
            plan.slot = std::max(plan.slot, align_up(size_t(op.rows_per_unit) * op.row_bytes + 16, 16));
        } else if (op.kind == ProgramOpKind::Attention) {
            attn_bytes = std::max(attn_bytes, attn_item_smem_bytes(op.attn.n_heads / op.attn.n_kv_heads,
                                                                    op.attn.head_dim));
        }
    }
    plan.xs_bytes = align_up(xs_floats * sizeof(float), 16);
    plan.smem = std::max(attn_bytes, plan.xs_bytes + size_t(kWarps) * kSlots * plan.slot);
    // Static shared memory (the op, reductions, the attention merge) comes on top.
    cudaFuncAttributes attr{};
    ORCD_CUDA_CHECK(cudaFuncGetAttributes(&attr, program_kernel));
    if (plan.smem + attr.sharedSizeBytes > size_t(optin)) return plan;
    ORCD_CUDA_CHECK(cudaFuncSetAttribute(program_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(plan.smem)));
    int per_sm = 0;
    ORCD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, program_kernel, kProgramThreads, plan.smem));
    plan.blocks = sms * std::min(per_sm, 1);
    return plan;
}

void launch_program(const ProgramOp* ops, int n_ops, const ProgramPlan& plan, unsigned* barrier,
                    unsigned barrier_base, unsigned long long* trace, cudaStream_t stream) {
    if (trace) ORCD_CUDA_CHECK(cudaMemsetAsync(trace, 0, 2 * size_t(n_ops) * sizeof(unsigned long long), stream));
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(unsigned(plan.blocks));
    cfg.blockDim = dim3(kProgramThreads);
    cfg.dynamicSmemBytes = plan.smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    ORCD_CUDA_CHECK(cudaLaunchKernelEx(&cfg, program_kernel, ops, n_ops, plan.slot, plan.xs_bytes, barrier,
                                       barrier_base, trace));
}

}  // namespace orcd::cuda
