// The CUDA backend: weights in one VRAM arena, each session's KV cache (fp16)
// and activations (fp32) in one more, and the decode step recorded once as a
// CUDA graph and replayed for every later token. Each session owns its stream
// and its pinned staging buffers, so sessions can run on different threads at
// once; a session's calls bind it (Backend::bind) for the calling thread.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "arena.h"
#include "cuda_check.h"
#include "kernels/kernels.h"
#include "model/backend.h"

namespace orcd::cuda {

namespace {

bool is_supported(gguf::TensorType t) {
    using T = gguf::TensorType;
    switch (t) {
        case T::F32: case T::F16: case T::BF16: case T::Q4_0: case T::Q4_1: case T::Q5_0: case T::Q5_1:
        case T::Q8_0: case T::Q2_K: case T::Q3_K: case T::Q4_K: case T::Q5_K: case T::Q6_K: case T::IQ4_NL:
        case T::IQ4_XS:
            return true;
        default:
            return false;
    }
}

// Pinned host memory, freed with the owner.
struct PinnedBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
    explicit PinnedBuffer(size_t n = 0) {
        if (n) {
            ORCD_CUDA_CHECK(cudaMallocHost(&ptr, n));
            bytes = n;
        }
    }
    ~PinnedBuffer() {
        if (ptr) cudaFreeHost(ptr);
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;
};

// Where argmax and top-k leave their results, on the device and staged on the host.
struct PickBuffers {
    int32_t* indices = nullptr;  // [kMaxTopK]; argmax uses the first
    float* values = nullptr;     // [kMaxTopK]
    unsigned long long* argmax_state = nullptr;  // [2], zero between calls
};

class CudaSession final : public BackendSession {
public:
    DeviceArena arena;
    cudaStream_t stream = nullptr;
    std::vector<__half*> k_cache, v_cache;  // per layer: [n_kv_heads, max_context, head_dim]
    float* attn_partials = nullptr;         // split-K decode partial results
    unsigned* attn_counters = nullptr;      // per query head: splits published, mergers done (decode)
    void* gemm_scratch = nullptr;           // prefill products: fp16 activations, split-K partials
    size_t gemm_scratch_bytes = 0;
    PickBuffers picks;
    AttentionShape attn_shape;
    std::unique_ptr<PinnedBuffer> inputs;   // staged ids and positions
    std::unique_ptr<PinnedBuffer> outputs;  // one row of logits, or picked (index, value) pairs
    cudaGraphExec_t decode_graph = nullptr;
    bool capturing = false;

    ~CudaSession() override {
        if (stream) cudaStreamSynchronize(stream);
        if (decode_graph) cudaGraphExecDestroy(decode_graph);
        if (stream) cudaStreamDestroy(stream);
    }
};

// The session bound to the calling thread (Backend::bind), if any.
thread_local CudaSession* t_bound = nullptr;

// Where a session's buffers sit inside its arena.
struct SessionLayout {
    size_t ids, positions, x, h, qkv, attn, gate_up, ffn, logits, partials, counters, pick_indices, pick_values,
        pick_state, gemm, kv;
    size_t gemm_bytes = 0;
    size_t kv_bytes = 0, scratch_bytes = 0, total = 0;
    size_t kv_layer_bytes = 0;  // one of K or V for one layer
};

SessionLayout plan_session(const ModelConfig& c, const SessionShape& s) {
    SessionLayout L{};
    ArenaLayout a;
    const size_t B = size_t(s.max_batch), f = sizeof(float);
    const size_t q_dim = size_t(c.n_heads) * c.head_dim, kv_dim = size_t(c.n_kv_heads) * c.head_dim;
    L.ids = a.add(B * sizeof(int32_t));
    L.positions = a.add(B * sizeof(int32_t));
    L.x = a.add(B * c.n_embd * f);
    L.h = a.add(B * c.n_embd * f);
    L.qkv = a.add(B * (q_dim + 2 * kv_dim) * f);
    L.attn = a.add(B * q_dim * f);
    L.gate_up = a.add(B * 2 * c.n_ff * f);
    L.ffn = a.add(B * c.n_ff * f);
    L.logits = a.add(size_t(std::max(1, s.logit_rows)) * c.n_vocab * f);
    const AttentionShape shape{c.n_heads, c.n_kv_heads, c.head_dim, s.max_context};
    L.partials = a.add(attention_decode_partial_floats(shape) * f);
    L.counters = a.add(attention_decode_counters(shape) * sizeof(unsigned));
    L.pick_indices = a.add(size_t(Backend::kMaxTopK) * sizeof(int32_t));
    L.pick_values = a.add(size_t(Backend::kMaxTopK) * f);
    L.pick_state = a.add(2 * sizeof(unsigned long long));
    // The tensor-core products (steps of more than kMatvecMaxTokens tokens); their
    // inputs are n_embd (qkv, gate/up, output), q_dim (o) or n_ff (down) wide.
    if (s.max_batch > kMatvecMaxTokens)
        L.gemm_bytes = gemm_scratch_bytes(s.max_batch, std::max({int64_t(c.n_embd), int64_t(q_dim), int64_t(c.n_ff)}));
    L.gemm = a.add(L.gemm_bytes);
    L.scratch_bytes = a.total();
    L.kv_layer_bytes = align_up(size_t(s.max_context) * kv_dim * sizeof(__half));
    L.kv = a.add(2 * size_t(c.n_layers) * L.kv_layer_bytes);
    L.kv_bytes = 2 * size_t(c.n_layers) * L.kv_layer_bytes;
    L.total = a.total();
    return L;
}

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device) : device_(device) {
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
            cudaGetLastError();
            throw Error(ErrorKind::InvalidArgument, "device cuda:" + std::to_string(device) +
                                                        " was asked for, but no CUDA GPU is usable (no driver or no device)");
        }
        if (device < 0 || device >= count)
            throw Error(ErrorKind::InvalidArgument, "device cuda:" + std::to_string(device) + " does not exist: " +
                                                        std::to_string(count) + " CUDA device(s) present");
        ORCD_CUDA_CHECK(cudaSetDevice(device));
        ORCD_CUDA_CHECK(cudaGetDeviceProperties(&prop_, device));
        ORCD_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        ORCD_CUDA_CHECK(cudaMalloc(&picks_.indices, Backend::kMaxTopK * sizeof(int32_t)));
        ORCD_CUDA_CHECK(cudaMalloc(&picks_.values, Backend::kMaxTopK * sizeof(float)));
        ORCD_CUDA_CHECK(cudaMalloc(&picks_.argmax_state, 2 * sizeof(unsigned long long)));
        ORCD_CUDA_CHECK(cudaMemset(picks_.argmax_state, 0, 2 * sizeof(unsigned long long)));
    }

    ~CudaBackend() override {
        cudaSetDevice(device_);
        for (void* p : extra_) cudaFree(p);
        cudaFree(gemm_scratch_);
        cudaFree(picks_.indices);
        cudaFree(picks_.values);
        cudaFree(picks_.argmax_state);
        cudaStreamDestroy(stream_);
    }

    // Ops run on the bound session's stream; unbound (the op tests), on the backend's own.
    void bind(BackendSession* s) override {
        t_bound = static_cast<CudaSession*>(s);
        if (s) ORCD_CUDA_CHECK(cudaSetDevice(device_));  // a new thread starts on device 0
    }

    std::string device_name() const override {
        return "cuda:" + std::to_string(device_) + " (" + prop_.name + ")";
    }
    bool supports(gguf::TensorType type) const override { return is_supported(type); }

    std::vector<Weight> load_weights(const gguf::File& file,
                                     const std::vector<const gguf::TensorInfo*>& tensors) override {
        ArenaLayout layout;
        std::vector<size_t> offsets;
        for (const gguf::TensorInfo* t : tensors) {
            if (!is_supported(t->type))
                throw Error(ErrorKind::Unsupported, "tensor '" + std::string(t->name) + "' has type " +
                                                        gguf::traits(t->type).name + ", which the CUDA backend does not support");
            if (t->dims[1] > 1 && t->dims[0] % 8 != 0)
                throw Error(ErrorKind::Unsupported, "tensor '" + std::string(t->name) + "' has rows of " +
                                                        std::to_string(t->dims[0]) +
                                                        " elements; the CUDA backend needs a multiple of 8");
            offsets.push_back(layout.add(t->nbytes));
        }
        weights_ = DeviceArena(device_, layout.total(), "the model's weights (" + file.path() + ")");
        upload(file, tensors, offsets);
        std::vector<Weight> out;
        for (size_t i = 0; i < tensors.size(); ++i) {
            const gguf::TensorInfo* t = tensors[i];
            Weight w;
            w.type = t->type;
            w.cols = int64_t(t->dims[0]);
            w.rows = int64_t(t->n_elements() / t->dims[0]);
            w.data = weights_.base() + offsets[i];
            out.push_back(w);
        }
        return out;
    }

    Weight upload_floats(const std::vector<float>& values) override {
        ORCD_CUDA_CHECK(cudaSetDevice(device_));
        void* p = nullptr;
        ORCD_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(1, values.size()) * sizeof(float)));
        extra_.push_back(p);
        ORCD_CUDA_CHECK(cudaMemcpy(p, values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice));
        // From pageable memory the copy may still be in flight here; the sessions'
        // non-blocking streams would not wait for it.
        ORCD_CUDA_CHECK(cudaDeviceSynchronize());
        extra_bytes_ += values.size() * sizeof(float);
        Weight w;
        w.type = gguf::TensorType::F32;
        w.cols = int64_t(values.size());
        w.rows = 1;
        w.data = p;
        return w;
    }

    // Steps of 2048 tokens: the prefill products of a 0.5B model have 4x the tiles
    // of 512-token steps (no split-K reduction for the narrow ones) and a quarter of
    // the launches, for ~74 KB of activations per token of the step (bench/NOTES.md).
    int preferred_step() const override { return 2048; }

    size_t weight_bytes() const override { return weights_.size() + extra_bytes_; }

    size_t session_bytes(const ModelConfig& config, const SessionShape& shape) const override {
        return plan_session(config, shape).total;
    }

    std::unique_ptr<BackendSession> create_session(const ModelConfig& c, const SessionShape& shape) override {
        const int group = c.n_kv_heads > 0 ? c.n_heads / c.n_kv_heads : 0;
        if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || group > 8)
            throw Error(ErrorKind::Unsupported, "the CUDA backend handles 1 to 8 query heads per KV head; this model has " +
                                                    std::to_string(c.n_heads) + " and " + std::to_string(c.n_kv_heads));
        if (c.head_dim % 16 != 0 || c.head_dim > 128 || c.head_dim == 48 || c.head_dim == 112 || c.head_dim == 16)
            throw Error(ErrorKind::Unsupported, "the CUDA backend handles head_dim 32, 64, 80, 96 or 128; this model has " +
                                                    std::to_string(c.head_dim));
        const SessionLayout L = plan_session(c, shape);
        ORCD_CUDA_CHECK(cudaSetDevice(device_));
        auto s = std::make_unique<CudaSession>();
        s->arena = DeviceArena(device_, L.total, "a session of max_context " + std::to_string(shape.max_context));
        ORCD_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
        char* base = s->arena.base();
        s->shape = shape;
        s->act.ids = reinterpret_cast<int32_t*>(base + L.ids);
        s->act.positions = reinterpret_cast<int32_t*>(base + L.positions);
        s->act.x = reinterpret_cast<float*>(base + L.x);
        s->act.h = reinterpret_cast<float*>(base + L.h);
        s->act.qkv = reinterpret_cast<float*>(base + L.qkv);
        s->act.attn = reinterpret_cast<float*>(base + L.attn);
        s->act.gate_up = reinterpret_cast<float*>(base + L.gate_up);
        s->act.ffn = reinterpret_cast<float*>(base + L.ffn);
        s->act.logits = reinterpret_cast<float*>(base + L.logits);
        s->attn_partials = reinterpret_cast<float*>(base + L.partials);
        s->attn_counters = reinterpret_cast<unsigned*>(base + L.counters);
        s->picks.indices = reinterpret_cast<int32_t*>(base + L.pick_indices);
        s->picks.values = reinterpret_cast<float*>(base + L.pick_values);
        s->picks.argmax_state = reinterpret_cast<unsigned long long*>(base + L.pick_state);
        s->gemm_scratch = L.gemm_bytes ? base + L.gemm : nullptr;
        s->gemm_scratch_bytes = L.gemm_bytes;
        for (int l = 0; l < c.n_layers; ++l) {
            s->k_cache.push_back(reinterpret_cast<__half*>(base + L.kv + (2 * size_t(l)) * L.kv_layer_bytes));
            s->v_cache.push_back(reinterpret_cast<__half*>(base + L.kv + (2 * size_t(l) + 1) * L.kv_layer_bytes));
        }
        // Zeroed once: attention never reads a cache entry nothing wrote, but a
        // defined initial state keeps sanitizer runs and debugging simple.
        ORCD_CUDA_CHECK(cudaMemsetAsync(base, 0, L.total, s->stream));
        s->attn_shape = {c.n_heads, c.n_kv_heads, c.head_dim, shape.max_context};
        s->kv_bytes = L.kv_bytes;
        s->scratch_bytes = L.scratch_bytes;
        s->inputs = std::make_unique<PinnedBuffer>(2 * size_t(shape.max_batch) * sizeof(int32_t));
        s->outputs = std::make_unique<PinnedBuffer>(
            std::max(size_t(c.n_vocab) * sizeof(float), size_t(Backend::kMaxTopK) * (sizeof(int32_t) + sizeof(float))));
        ORCD_CUDA_CHECK(cudaStreamSynchronize(s->stream));
        return s;
    }

    void set_inputs(BackendSession& base, const int32_t* ids, int n, int pos0) override {
        auto& s = static_cast<CudaSession&>(base);
        abandon_capture(s);
        auto* staged = static_cast<int32_t*>(s.inputs->ptr);
        // The previous step ended with a synchronising download, so the staging is free.
        std::memcpy(staged, ids, size_t(n) * sizeof(int32_t));
        for (int i = 0; i < n; ++i) staged[s.shape.max_batch + i] = pos0 + i;
        ORCD_CUDA_CHECK(cudaMemcpyAsync(s.act.ids, staged, size_t(n) * sizeof(int32_t), cudaMemcpyHostToDevice, stream()));
        ORCD_CUDA_CHECK(cudaMemcpyAsync(s.act.positions, staged + s.shape.max_batch, size_t(n) * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, stream()));
    }

    // Decode steps (n == 1) are recorded on first use and replayed afterwards:
    // every kernel reads the position from device memory, so one recording
    // serves all positions. Prefill steps run their kernels directly.
    bool begin_step(BackendSession& base, int n) override {
        auto& s = static_cast<CudaSession&>(base);
        if (n != 1) return false;
        if (s.decode_graph) {
            ORCD_CUDA_CHECK(cudaGraphLaunch(s.decode_graph, stream()));
            return true;
        }
        ORCD_CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
        s.capturing = true;
        return false;
    }

    void end_step(BackendSession& base, int /*n*/) override {
        auto& s = static_cast<CudaSession&>(base);
        if (!s.capturing) return;
        cudaGraph_t graph = nullptr;
        s.capturing = false;
        ORCD_CUDA_CHECK(cudaStreamEndCapture(stream(), &graph));
        const cudaError_t err = cudaGraphInstantiate(&s.decode_graph, graph, 0);
        cudaGraphDestroy(graph);
        ORCD_CUDA_CHECK(err);
        ORCD_CUDA_CHECK(cudaGraphLaunch(s.decode_graph, stream()));
    }

    void embed(const Weight& table, const int32_t* ids, int n, float* out) override {
        launch_embed(table, ids, n, out, stream());
    }

    void rms_norm(const float* x, const Weight& w, float eps, int n, int dim, float* out) override {
        launch_rms_norm(x, static_cast<const float*>(w.data), eps, n, dim, out, stream());
    }

    void matmul(const Weight& w, const float* x, int n, float* out, int ldo, const Weight* bias,
                bool accumulate) override {
        const float* b = bias ? static_cast<const float*>(bias->data) : nullptr;
        if (n <= kMatvecMaxTokens) {
            launch_matvec(w, x, n, out, ldo, b, accumulate, stream());
        } else {
            const auto [scratch, bytes] = gemm_scratch(n, w.cols);
            launch_gemm(w, x, n, out, ldo, b, accumulate, scratch, bytes, stream());
        }
    }

    // One token: the norm is computed inside the products (MatvecInput::Norm), by
    // every block, and all parts run in one launch; for a product of many blocks
    // (the output layer, 19k blocks) that costs more than the separate norm kernel
    // it saves (ncu: 168 vs 112 us).
    void normed_matmuls(const float* x, const Weight& norm, float eps, int n, int dim, float* h,
                        const std::vector<Projection>& parts, float* out, int ldo) override {
        if (n > kMatvecMaxTokens && norm.type == gguf::TensorType::F32) {
            // Tensor-core products: the norm writes the fp16 operand they read straight
            // into their scratch, once for all parts (h is left unwritten).
            const auto [scratch, bytes] = gemm_scratch(n, dim);
            launch_rms_norm_half(x, static_cast<const float*>(norm.data), eps, n, dim, static_cast<__half*>(scratch),
                                 stream());
            for (const Projection& p : parts)
                launch_gemm(p.w, nullptr, n, out + p.offset, ldo, p.bias ? static_cast<const float*>(p.bias.data) : nullptr,
                            false, scratch, bytes, stream(), /*x_staged=*/true);
            return;
        }
        if (!fold_norm(norm, n)) {
            Backend::normed_matmuls(x, norm, eps, n, dim, h, parts, out, ldo);
            return;
        }
        std::vector<MatvecPart> list;
        for (const Projection& p : parts) list.push_back(part_of(p, out + p.offset));
        launch_matvec1_parts(list, dim, MatvecInput::Norm, {x, static_cast<const float*>(norm.data), eps}, stream());
    }

    // One token: gate, up and SwiGLU in one launch (the norm folded in as above).
    void normed_swiglu(const float* x, const Weight& norm, float eps, int n, int dim, float* h,
                       const std::vector<Projection>& parts, float* gate_up, int n_ff, float* ffn) override {
        if (fold_norm(norm, n)) {
            MatvecPart gate, up;
            if (parts.size() == 2 && parts[0].offset == 0 && parts[1].offset == n_ff) {
                gate = part_of(parts[0], ffn);
                up = part_of(parts[1], nullptr);
            } else if (parts.size() == 1 && parts[0].w.rows == 2 * int64_t(n_ff)) {  // one fused gate/up tensor
                gate = up = part_of(parts[0], ffn);
                gate.rows = up.rows = n_ff;
                up.w += size_t(n_ff) * size_t(up.row_bytes);
                if (up.bias) up.bias += n_ff;
            }
            if (gate.w && launch_matvec1_swiglu(gate, up, dim, MatvecInput::Norm,
                                                {x, static_cast<const float*>(norm.data), eps}, stream()))
                return;
        }
        Backend::normed_swiglu(x, norm, eps, n, dim, h, parts, gate_up, n_ff, ffn);
    }

    void rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p) override {
        launch_rope(qkv, n, ld, positions, p, stream());
    }

    void attention(BackendSession& base, int layer, const float* qkv, int ld, int n, const int32_t* positions,
                   float* out) override {
        auto& s = static_cast<CudaSession&>(base);
        const AttentionShape& a = s.attn_shape;
        launch_kv_store(qkv, ld, n, positions, a.n_heads, a.n_kv_heads, a.head_dim, a.max_context, s.k_cache[layer],
                        s.v_cache[layer], stream());
        if (n == 1)
            launch_attention_decode(decode_attention_args(qkv, positions, s.k_cache[layer], s.v_cache[layer], a,
                                                          s.attn_partials, s.attn_counters, out, nullptr),
                                    stream());
        else
            launch_attention_prefill(qkv, ld, n, positions, s.k_cache[layer], s.v_cache[layer], a, out, stream());
    }

    // One token: the rotation and the cache store inside the decode attention.
    void rope_attention(BackendSession& base, int layer, float* qkv, int ld, int n, const int32_t* positions,
                        float* out) override {
        auto& s = static_cast<CudaSession&>(base);
        if (n != 1) {
            Backend::rope_attention(base, layer, qkv, ld, n, positions, out);
            return;
        }
        const DecodeAttentionArgs args = decode_attention_args(qkv, positions, s.k_cache[layer], s.v_cache[layer],
                                                               s.attn_shape, s.attn_partials, s.attn_counters, out,
                                                               &s.rope);
        launch_attention_decode(args, stream());
    }

    void swiglu(const float* gate_up, int n, int n_ff, float* out) override {
        launch_swiglu(gate_up, n, n_ff, out, stream());
    }

    void download(const float* src, size_t count, float* dst) override {
        // Through the session's pinned staging when it fits (one row of logits):
        // a pageable destination makes the copy slower. Larger copies go direct.
        const size_t bytes = count * sizeof(float);
        PinnedBuffer* staging = t_bound ? t_bound->outputs.get() : nullptr;
        if (staging && bytes <= staging->bytes) {
            ORCD_CUDA_CHECK(cudaMemcpyAsync(staging->ptr, src, bytes, cudaMemcpyDeviceToHost, stream()));
            ORCD_CUDA_CHECK(cudaStreamSynchronize(stream()));
            std::memcpy(dst, staging->ptr, bytes);
        } else {
            ORCD_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
            ORCD_CUDA_CHECK(cudaStreamSynchronize(stream()));
        }
    }

    int32_t argmax(const float* x, int n) override {
        const PickBuffers& p = picks();
        launch_argmax(x, n, p.indices, p.argmax_state, stream());
        int32_t host = 0;
        int32_t* staged = t_bound ? static_cast<int32_t*>(t_bound->outputs->ptr) : &host;
        ORCD_CUDA_CHECK(cudaMemcpyAsync(staged, p.indices, sizeof(int32_t), cudaMemcpyDeviceToHost, stream()));
        ORCD_CUDA_CHECK(cudaStreamSynchronize(stream()));
        return *staged;
    }

    std::vector<std::pair<int32_t, float>> top_k(const float* x, int n, int k) override {
        if (k < 1 || k > n || k > kMaxTopK)
            throw Error(ErrorKind::InvalidArgument, "top-k of " + std::to_string(n) + " values needs 1 <= k <= " +
                                                        std::to_string(std::min(n, kMaxTopK)) + ", got " + std::to_string(k));
        const PickBuffers& p = picks();
        launch_top_k(x, n, k, p.indices, p.values, stream());
        std::vector<int32_t> idx_host(static_cast<size_t>(k));
        std::vector<float> val_host(static_cast<size_t>(k));
        int32_t* idx = idx_host.data();
        float* val = val_host.data();
        if (t_bound) {  // pinned staging: indices, then values
            idx = static_cast<int32_t*>(t_bound->outputs->ptr);
            val = reinterpret_cast<float*>(idx + kMaxTopK);
        }
        ORCD_CUDA_CHECK(cudaMemcpyAsync(idx, p.indices, size_t(k) * sizeof(int32_t), cudaMemcpyDeviceToHost, stream()));
        ORCD_CUDA_CHECK(cudaMemcpyAsync(val, p.values, size_t(k) * sizeof(float), cudaMemcpyDeviceToHost, stream()));
        ORCD_CUDA_CHECK(cudaStreamSynchronize(stream()));
        std::vector<std::pair<int32_t, float>> out(static_cast<size_t>(k));
        for (int i = 0; i < k; ++i) out[size_t(i)] = {idx[i], val[i]};
        std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
            return a.second > b.second || (a.second == b.second && a.first < b.first);
        });
        return out;
    }

private:
    cudaStream_t stream() const { return t_bound ? t_bound->stream : stream_; }

    // Scratch for a tensor-core product of n tokens of `cols` inputs: the bound
    // session's; unbound calls (the op tests) use the backend's own, grown on demand.
    std::pair<void*, size_t> gemm_scratch(int n, int64_t cols) {
        if (t_bound) return {t_bound->gemm_scratch, t_bound->gemm_scratch_bytes};
        const size_t need = gemm_scratch_bytes(n, cols);
        if (gemm_scratch_bytes_ < need) {
            ORCD_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the kernels using the old one are done
            if (gemm_scratch_) ORCD_CUDA_CHECK(cudaFree(gemm_scratch_));
            gemm_scratch_ = nullptr;
            gemm_scratch_bytes_ = 0;
            ORCD_CUDA_CHECK(cudaMalloc(&gemm_scratch_, need));
            gemm_scratch_bytes_ = need;
        }
        return {gemm_scratch_, gemm_scratch_bytes_};
    }

    // One token with an F32 norm: the norm is folded into the products. Each block
    // then reads the input and the norm weight (from L2) while its weight rows are
    // being copied, which costs less than a norm kernel even for the output layer.
    static bool fold_norm(const Weight& norm, int n) { return n == 1 && norm.type == gguf::TensorType::F32; }

    static MatvecPart part_of(const Projection& p, float* out) {
        return matvec_part(p.w, out, p.bias ? static_cast<const float*>(p.bias.data) : nullptr, false);
    }

    const PickBuffers& picks() const { return t_bound ? t_bound->picks : picks_; }

    // A capture left open by an op that threw is ended and dropped.
    void abandon_capture(CudaSession& s) {
        if (!s.capturing) return;
        cudaGraph_t graph = nullptr;
        cudaStreamEndCapture(s.stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        s.capturing = false;
    }

    // Copies the tensors from the mapped file into the arena through two pinned
    // staging buffers: the host copy of one chunk overlaps the DMA of the other.
    void upload(const gguf::File& file, const std::vector<const gguf::TensorInfo*>& tensors,
                const std::vector<size_t>& offsets) {
        constexpr size_t kChunk = 32u << 20;
        PinnedBuffer stage[2] = {PinnedBuffer(kChunk), PinnedBuffer(kChunk)};
        cudaEvent_t done[2];
        for (auto& e : done) ORCD_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        int slot = 0;
        bool used[2] = {false, false};
        for (size_t i = 0; i < tensors.size(); ++i) {
            const auto src = file.tensor_data(*tensors[i]);
            for (size_t off = 0; off < src.size(); off += kChunk) {
                const size_t n = std::min(kChunk, src.size() - off);
                if (used[slot]) ORCD_CUDA_CHECK(cudaEventSynchronize(done[slot]));
                std::memcpy(stage[slot].ptr, src.data() + off, n);
                ORCD_CUDA_CHECK(cudaMemcpyAsync(weights_.base() + offsets[i] + off, stage[slot].ptr, n,
                                                cudaMemcpyHostToDevice, stream_));
                ORCD_CUDA_CHECK(cudaEventRecord(done[slot], stream_));
                used[slot] = true;
                slot ^= 1;
            }
        }
        ORCD_CUDA_CHECK(cudaStreamSynchronize(stream_));
        for (auto& e : done) cudaEventDestroy(e);
    }

    int device_;
    cudaDeviceProp prop_{};
    cudaStream_t stream_ = nullptr;
    DeviceArena weights_;
    std::vector<void*> extra_;  // upload_floats buffers
    size_t extra_bytes_ = 0;
    PickBuffers picks_;  // argmax / top-k results of unbound calls
    void* gemm_scratch_ = nullptr;  // GEMM scratch of unbound calls
    size_t gemm_scratch_bytes_ = 0;
};

}  // namespace

}  // namespace orcd::cuda

namespace orcd {

std::unique_ptr<Backend> make_cuda_backend(const ModelOptions& options) {
    return std::make_unique<cuda::CudaBackend>(options.device.index);
}

}  // namespace orcd
