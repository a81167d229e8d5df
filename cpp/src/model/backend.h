// The operations the forward pass needs. The CPU and CUDA backends implement
// them; the forward pass (forward.cpp) is written once against this interface.
//
// All activation pointers are in the backend's memory (host for CPU, device for
// CUDA) and are float32. Row-major [n tokens, width] layouts, with an explicit
// row stride `ld` where a buffer holds several parts (the QKV buffer holds q, k
// and v side by side, so fused and split projections share one layout).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/rope.h"
#include "model/weights.h"
#include "orcd/gguf.h"
#include "orcd/model.h"

namespace orcd {

// Buffers of one session, sized for `max_batch` tokens per step.
struct Activations {
    int32_t* ids = nullptr;        // [max_batch]
    int32_t* positions = nullptr;  // [max_batch]
    float* x = nullptr;            // residual stream [B, n_embd]
    float* h = nullptr;            // normalised [B, n_embd]
    float* qkv = nullptr;          // [B, q_dim + 2 kv_dim]
    float* attn = nullptr;         // [B, q_dim]
    float* gate_up = nullptr;      // [B, 2 n_ff]: gate then up
    float* ffn = nullptr;          // [B, n_ff]
    float* logits = nullptr;       // [logit_rows, n_vocab]
};

// Sizes that fix a session's buffers.
struct SessionShape {
    int max_context = 0;
    int max_batch = 0;   // tokens per forward step (prompts are split into steps)
    int logit_rows = 0;  // rows of logits computed per output step
};

// Per-session state a backend owns: KV cache and activations.
class BackendSession {
public:
    virtual ~BackendSession() = default;
    Activations act;
    SessionShape shape;
    RopeParams rope;
    size_t kv_bytes = 0;
    size_t scratch_bytes = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual std::string device_name() const = 0;
    virtual bool supports(gguf::TensorType type) const = 0;

    // Places the given tensors (all weights the model uses) and returns a handle for each, in order.
    // Called once; throws OutOfMemory (before allocating) when they do not fit.
    virtual std::vector<Weight> load_weights(const gguf::File& file, const std::vector<const gguf::TensorInfo*>& tensors) = 0;
    // A float32 vector owned by the backend (derived data such as computed RoPE factors).
    virtual Weight upload_floats(const std::vector<float>& values) = 0;
    virtual size_t weight_bytes() const = 0;

    // Tokens per forward step that suit this backend: a prompt runs in steps of
    // at most this many (each step's buffers are sized for it).
    virtual int preferred_step() const { return 512; }

    // Bytes a session of this shape would take (KV cache, scratch), for reporting and checks.
    virtual size_t session_bytes(const ModelConfig& config, const SessionShape& shape) const = 0;
    // Allocates a session's KV cache and buffers; throws OutOfMemory before allocating.
    virtual std::unique_ptr<BackendSession> create_session(const ModelConfig& config, const SessionShape& shape) = 0;

    // Copies n token ids and their positions pos0.. into act.ids / act.positions.
    virtual void set_inputs(BackendSession& s, const int32_t* ids, int n, int pos0) = 0;

    // A step of n tokens may be recorded once and replayed (CUDA graphs). If
    // begin_step returns true, a recording was replayed and the ops are skipped.
    virtual bool begin_step(BackendSession&, int /*n*/) { return false; }
    virtual void end_step(BackendSession&, int /*n*/) {}

    // out[i, :] = dequantised row ids[i] of the table, i < n.
    virtual void embed(const Weight& table, const int32_t* ids, int n, float* out) = 0;
    // out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * w, i < n rows of `dim`.
    virtual void rms_norm(const float* x, const Weight& w, float eps, int n, int dim, float* out) = 0;
    // out[i, r] (+)= sum_c x[i, c] * W[r, c] (+ bias[r]), i < n, r < W.rows; out row stride ldo.
    virtual void matmul(const Weight& w, const float* x, int n, float* out, int ldo, const Weight* bias, bool accumulate) = 0;
    // Rotates the q and k parts of qkv ([n, ld]: q at 0, k at n_heads*head_dim) in place.
    virtual void rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p) = 0;
    // Stores k and v of the n tokens into layer's cache at their positions, then
    // out[i] = causal softmax(q k^T / sqrt(head_dim)) v over positions 0..positions[i].
    virtual void attention(BackendSession& s, int layer, const float* qkv, int ld, int n, const int32_t* positions, float* out) = 0;
    // out[i, j] = silu(gate_up[i, j]) * gate_up[i, n_ff + j].
    virtual void swiglu(const float* gate_up, int n, int n_ff, float* out) = 0;

    // Fused sequences the forward pass asks for; a backend that can fold the first
    // op into the products overrides them (CUDA, one token: no launch, no round
    // trip through h or ffn). The defaults run the ops one after the other.
    //
    // h = rms_norm(x) * norm (n rows of dim; h is scratch that a fusing backend may
    // leave unwritten), then for each part:
    // out[:, offset..] = h . part.w^T (+ part.bias), out row stride ldo.
    virtual void normed_matmuls(const float* x, const Weight& norm, float eps, int n, int dim, float* h,
                                const std::vector<Projection>& parts, float* out, int ldo) {
        rms_norm(x, norm, eps, n, dim, h);
        for (const Projection& p : parts)
            matmul(p.w, h, n, out + p.offset, ldo, p.bias ? &p.bias : nullptr, false);
    }
    // rope(qkv) with the session's parameters, then attention (which stores k and v).
    // Afterwards the q and k parts of qkv are unspecified: a fusing backend rotates copies.
    virtual void rope_attention(BackendSession& s, int layer, float* qkv, int ld, int n, const int32_t* positions,
                                float* out) {
        rope(qkv, n, ld, positions, s.rope);
        attention(s, layer, qkv, ld, n, positions, out);
    }
    // ffn = swiglu(gate_up) where gate_up = normed_matmuls(x, parts) holds the n_ff
    // gate columns, then the n_ff up columns (scratch a fusing backend may leave unwritten).
    virtual void normed_swiglu(const float* x, const Weight& norm, float eps, int n, int dim, float* h,
                               const std::vector<Projection>& parts, float* gate_up, int n_ff, float* ffn) {
        normed_matmuls(x, norm, eps, n, dim, h, parts, gate_up, 2 * n_ff);
        swiglu(gate_up, n, n_ff, ffn);
    }

    // Copies count floats from the backend's memory to the host (waits for the work before it).
    virtual void download(const float* src, size_t count, float* dst) = 0;

    // Makes s the session whose stream and buffers the following calls on this
    // thread use (nullptr: none). Sessions of one model may then run on
    // different threads at once. The CPU backend needs nothing.
    virtual void bind(BackendSession* /*s*/) {}

    // Index of the largest of n values in the backend's memory (the first on ties):
    // greedy decoding then copies one int to the host instead of the logits.
    virtual int32_t argmax(const float* x, int n) {
        std::vector<float> host(static_cast<size_t>(n));
        download(x, size_t(n), host.data());
        return argmax_host(host.data(), n);
    }

    // The k largest of n values in the backend's memory as (index, value), largest
    // first, equal values by lower index; 1 <= k <= min(n, kMaxTopK) (the caller checks).
    static constexpr int kMaxTopK = Session::kMaxTopK;
    virtual std::vector<std::pair<int32_t, float>> top_k(const float* x, int n, int k) {
        std::vector<float> host(static_cast<size_t>(n));
        download(x, size_t(n), host.data());
        return top_k_host(host.data(), n, k);
    }

    // The host versions (exact), also used to order a device's candidates.
    static int32_t argmax_host(const float* x, int n);
    static std::vector<std::pair<int32_t, float>> top_k_host(const float* x, int n, int k);
};

// Binds a session to its backend for one call on this thread (Backend::bind).
class BoundSession {
public:
    BoundSession(Backend& b, BackendSession& s) : b_(b) { b_.bind(&s); }
    ~BoundSession() { b_.bind(nullptr); }
    BoundSession(const BoundSession&) = delete;
    BoundSession& operator=(const BoundSession&) = delete;

private:
    Backend& b_;
};

// The backend for a device; throws InvalidArgument / Unsupported when it cannot be had.
std::unique_ptr<Backend> make_backend(const ModelOptions& options);

}  // namespace orcd

#ifdef ORCD_WITH_CUDA
namespace orcd {
// The CUDA backend on device options.device.index (cuda/cuda_backend.cu).
std::unique_ptr<Backend> make_cuda_backend(const ModelOptions& options);
}  // namespace orcd
#endif
