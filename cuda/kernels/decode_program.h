// The decode step as a program: the ops the forward pass asks for at one token
// (embedding, products, attention) recorded once as a list, then run by one
// persistent kernel whose blocks stay resident for the whole step and meet at
// grid-wide barriers only where an op reads what the one before wrote. It
// replaces ~180 kernel launches per token (each a few microseconds of launch
// and ramp-up latency at this size) with one.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

namespace orcd::cuda {

enum class ProgramOpKind : int32_t { Embed, Matvec, Attention };

// How a product's input row is formed, once per block, into shared memory.
enum class ProgramInput : int32_t {
    Plain,   // x
    Norm,    // rms_norm(x) * norm_w (eps)
    Swiglu,  // silu(x[c]) * x[cols + c]: x holds gate then up
};

struct alignas(16) ProgramOp {
    ProgramOpKind kind = ProgramOpKind::Matvec;
    bool sync_before = false;  // grid barrier first: it reads what the previous op wrote
    bool same_input = false;   // the input row is the previous op's (parts of one product)
    // Embed and Matvec: the weight.
    gguf::TensorType type = gguf::TensorType::F32;
    const uint8_t* w = nullptr;
    int64_t row_bytes = 0, rows = 0, cols = 0;
    int32_t rows_per_unit = 1;  // rows a warp takes at a time (1 or 4)
    int32_t first_unit = 0;     // units of the same phase before this op's (spreads them over the warps)
    // Matvec: out[r] (+)= input . W[r] (+ bias[r]).
    ProgramInput input = ProgramInput::Plain;
    const float* x = nullptr;
    const float* norm_w = nullptr;
    float eps = 0.0f;
    float* out = nullptr;
    const float* bias = nullptr;
    bool accumulate = false;
    // Embed: out = row ids[0] of W.
    const int32_t* ids = nullptr;
    // Attention.
    DecodeAttentionArgs attn{};
};

// Threads per block of the program kernel: one block per multiprocessor (fewer
// blocks make cheaper grid barriers; 16 warps keep enough weight copies in flight).
constexpr int kProgramThreads = 512;

// Launch geometry and shared memory of a recorded program on one device.
struct ProgramPlan {
    int blocks = 0;     // resident blocks (0: the program cannot run on this device)
    size_t smem = 0;    // dynamic shared memory per block
    size_t slot = 0;    // bytes of one weight staging slot (kProgramSlots per warp)
    size_t xs_bytes = 0;  // the products' input row, at the start of the dynamic shared memory
    int barriers = 0;     // grid barriers per run
};

// Picks rows_per_unit and first_unit of every op (in place) and the launch
// geometry for `device`; blocks == 0 when some op does not fit the kernel.
ProgramPlan plan_program(std::vector<ProgramOp>& ops, int device);

// Runs the program (ops already in device memory) on `stream`: one cooperative
// launch. `barrier` counts the blocks' arrivals at grid barriers over all runs
// (zero before the first); barrier_base is its value when this run starts
// (runs * barriers * blocks, modulo 2^32). With `trace` (2 * n_ops values),
// each op's start and end time in ns.
void launch_program(const ProgramOp* ops, int n_ops, const ProgramPlan& plan, unsigned* barrier,
                    unsigned barrier_base, unsigned long long* trace, cudaStream_t stream);

}  // namespace orcd::cuda
