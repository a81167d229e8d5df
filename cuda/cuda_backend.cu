// The CUDA backend: weights in one VRAM arena, each session's KV cache (fp16)
// and activations (fp32) in one more, and the decode step recorded once as a
// CUDA graph and replayed for every later token. ORCD_CUDA_DECODE=program
// records it as a decode program too (kernels/decode_program.h) and replays
// that instead: one persistent kernel per token. It is not the default: on the
// 0.5B model it is slower than the graph (bench/NOTES.md, round 5).
// ORCD_CUDA_TRACE=1 prints the program's per-op times of a session's last
// decode step when the session closes (bench/NOTES.md reads them). Each session owns its stream
// and its pinned staging buffers, so sessions can run on different threads at
// once; a session's calls bind it (Backend::bind) for the calling thread.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "arena.h"
#include "cuda_check.h"
#include "kernels/decode_program.h"
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
};

class CudaSession final : public BackendSession {
public:
    DeviceArena arena;
    cudaStream_t stream = nullptr;
    std::vector<__half*> k_cache, v_cache;  // per layer: [n_kv_heads, max_context, head_dim]
    float* attn_partials = nullptr;         // split-K decode partial results
    unsigned* attn_counters = nullptr;      // per KV head: splits done (decode merge)
    void* gemm_scratch = nullptr;           // prefill products: fp16 activations, split-K partials
    size_t gemm_scratch_bytes = 0;
    PickBuffers picks;
    AttentionShape attn_shape;
    std::unique_ptr<PinnedBuffer> inputs;   // staged ids and positions
    std::unique_ptr<PinnedBuffer> outputs;  // one row of logits, or picked (index, value) pairs
    cudaGraphExec_t decode_graph = nullptr;
    bool capturing = false;
    // The decode program: recorded beside the graph on the first decode step.
    std::vector<ProgramOp> program;
    ProgramOp* program_ops = nullptr;  // in the arena, program_capacity ops
    size_t program_capacity = 0;
    ProgramPlan program_plan;
    bool recording = false;      // the ops of this step also go into `program`
    bool recordable = false;     // every op of the step so far has a program form
    bool program_ready = false;  // later decode steps run the program
    unsigned long long* program_trace = nullptr;  // with ORCD_CUDA_TRACE: per-op start and end times
    unsigned* program_barrier = nullptr;           // grid-barrier arrivals, over all runs
    unsigned program_runs = 0;

    void print_trace() const;

    ~CudaSession() override {
        if (stream) cudaStreamSynchronize(stream);
        if (program_trace && program_ready) print_trace();
        if (decode_graph) cudaGraphExecDestroy(decode_graph);
        if (stream) cudaStreamDestroy(stream);
    }
};

void CudaSession::print_trace() const {
    std::vector<unsigned long long> t(2 * program.size());
    if (cudaMemcpy(t.data(), program_trace, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost) != cudaSuccess) return;
    static const char* kinds[] = {"embed", "matvec", "attention"};
    std::fprintf(stderr, "decode program: %zu ops on %d blocks, %.1f us from the first op's start to the last op's end\n",
                 program.size(), program_plan.blocks, (t.back() - t[0]) * 1e-3);
    std::fprintf(stderr, "op kind      type   rows x cols   barrier_us  work_us\n");
    for (size_t i = 0; i < program.size(); ++i) {
        const ProgramOp& op = program[i];
        const double barrier = i > 0 ? (double(t[2 * i]) - double(t[2 * i - 1])) * 1e-3 : 0.0;
        std::fprintf(stderr, "%3zu %-9s %-6s %6lld x %-6lld %8.2f %9.2f\n", i, kinds[int(op.kind)],
                     gguf::traits(op.type).name, (long long)op.rows, (long long)op.cols, barrier,
                     (double(t[2 * i + 1]) - double(t[2 * i])) * 1e-3);
    }
}

// The session bound to the calling thread (Backend::bind), if any.
thread_local CudaSession* t_bound = nullptr;

// Where a session's buffers sit inside its arena.
struct SessionLayout {
    size_t ids, positions, x, h, qkv, attn, gate_up, ffn, logits, partials, counters, pick_indices, pick_values, program,
        trace, barrier, gemm, kv;
    size_t program_capacity = 0;  // ops
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
    L.partials = a.add(size_t(c.n_heads) * attention_decode_splits(shape) * (c.head_dim + 2) * f);
    L.counters = a.add(size_t(c.n_kv_heads) * sizeof(unsigned));
    L.pick_indices = a.add(size_t(Backend::kMaxTopK) * sizeof(int32_t));
    L.pick_values = a.add(size_t(Backend::kMaxTopK) * f);
    L.program_capacity = size_t(c.n_layers) * 8 + 8;  // a layer records 6 ops (3 QKV parts)
    L.program = a.add(L.program_capacity * sizeof(ProgramOp));
    L.trace = a.add(2 * L.program_capacity * sizeof(unsigned long long));
    L.barrier = a.add(sizeof(unsigned));
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
        const char* decode = std::getenv("ORCD_CUDA_DECODE");
        use_program_ = decode && std::string(decode) == "program";
        const char* trace = std::getenv("ORCD_CUDA_TRACE");
        trace_ = trace && std::string(trace) == "1";
    }

    ~CudaBackend() override {
        cudaSetDevice(device_);
        for (void* p : extra_) cudaFree(p);
        cudaFree(gemm_scratch_);
        cudaFree(picks_.indices);
        cudaFree(picks_.values);
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
        s->program_ops = reinterpret_cast<ProgramOp*>(base + L.program);
        s->program_capacity = L.program_capacity;
        if (trace_) s->program_trace = reinterpret_cast<unsigned long long*>(base + L.trace);
        s->program_barrier = reinterpret_cast<unsigned*>(base + L.barrier);
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
        if (s.program_ready) {
            const unsigned base = s.program_runs++ * unsigned(s.program_plan.barriers) * unsigned(s.program_plan.blocks);
            launch_program(s.program_ops, int(s.program.size()), s.program_plan, s.program_barrier, base,
                           s.program_trace, stream());
            return true;
        }
        if (s.decode_graph) {
            ORCD_CUDA_CHECK(cudaGraphLaunch(s.decode_graph, stream()));
            return true;
        }
        ORCD_CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
        s.capturing = true;
        s.recording = use_program_;
        s.recordable = true;
        s.program.clear();
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
        if (s.recording && s.recordable && !s.program.empty() && s.program.size() <= s.program_capacity) {
            s.program_plan = plan_program(s.program, device_);
            if (s.program_plan.blocks > 0) {
                ORCD_CUDA_CHECK(cudaMemcpyAsync(s.program_ops, s.program.data(), s.program.size() * sizeof(ProgramOp),
                                                cudaMemcpyHostToDevice, stream()));
                ORCD_CUDA_CHECK(cudaStreamSynchronize(stream()));  // from pageable memory
                s.program_ready = true;
            }
        }
        s.recording = false;
    }

    void embed(const Weight& table, const int32_t* ids, int n, float* out) override {
        if (CudaSession* r = recorder()) {
            ProgramOp op = weight_op(ProgramOpKind::Embed, table);
            op.sync_before = !r->program.empty();
            op.ids = ids;
            op.out = out;
            r->program.push_back(op);
        }
        launch_embed(table, ids, n, out, stream());
    }

    void rms_norm(const float* x, const Weight& w, float eps, int n, int dim, float* out) override {
        if (CudaSession* r = recorder()) r->recordable = false;
        launch_rms_norm(x, static_cast<const float*>(w.data), eps, n, dim, out, stream());
    }

    void matmul(const Weight& w, const float* x, int n, float* out, int ldo, const Weight* bias,
                bool accumulate) override {
        const float* b = bias ? static_cast<const float*>(bias->data) : nullptr;
        if (CudaSession* r = recorder()) record_matvec(*r, w, ProgramInput::Plain, x, nullptr, 0.0f, out, b, accumulate, true);
        if (n <= kMatvecMaxTokens) {
            launch_matvec(w, x, n, out, ldo, b, accumulate, stream());
        } else {
            const auto [scratch, bytes] = gemm_scratch(n, w.cols);
            launch_gemm(w, x, n, out, ldo, b, accumulate, scratch, bytes, stream());
        }
    }

    // One token: the norm is computed inside each product (launch_matvec1, Norm),
    // by every block; for a product of many blocks (the output layer, 19k blocks)
    // that costs more than the separate norm kernel it saves (ncu: 168 vs 112 us).
    void normed_matmuls(const float* x, const Weight& norm, float eps, int n, int dim, float* h,
                        const std::vector<Projection>& parts, float* out, int ldo) override {
        constexpr int64_t kFoldMaxRows = 16384;
        bool fold = n == 1 && norm.type == gguf::TensorType::F32;
        for (const Projection& p : parts) fold = fold && p.w.rows <= kFoldMaxRows;
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
        if (!fold) {
            // The program folds the norm into every product (once per block, not per row).
            CudaSession* r = recorder();
            if (r && norm.type == gguf::TensorType::F32) {
                for (size_t i = 0; i < parts.size(); ++i)
                    record_matvec(*r, parts[i].w, ProgramInput::Norm, x, static_cast<const float*>(norm.data), eps,
                                  out + parts[i].offset,
                                  parts[i].bias ? static_cast<const float*>(parts[i].bias.data) : nullptr, false, i == 0);
                r->recording = false;  // the ops below are the graph's only
                Backend::normed_matmuls(x, norm, eps, n, dim, h, parts, out, ldo);
                r->recording = true;
                return;
            }
            if (r) r->recordable = false;
            Backend::normed_matmuls(x, norm, eps, n, dim, h, parts, out, ldo);
            return;
        }
        const MatvecIn in{x, static_cast<const float*>(norm.data), eps};
        if (CudaSession* r = recorder()) {
            for (size_t i = 0; i < parts.size(); ++i)
                record_matvec(*r, parts[i].w, ProgramInput::Norm, x, in.norm_w, eps, out + parts[i].offset,
                              parts[i].bias ? static_cast<const float*>(parts[i].bias.data) : nullptr, false, i == 0);
        }
        for (const Projection& p : parts)
            launch_matvec1(p.w, MatvecInput::Norm, in, out + p.offset, ldo,
                           p.bias ? static_cast<const float*>(p.bias.data) : nullptr, false, stream());
    }

    void rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p) override {
        if (CudaSession* r = recorder()) r->recordable = false;
        launch_rope(qkv, n, ld, positions, p, stream());
    }

    void attention(BackendSession& base, int layer, const float* qkv, int ld, int n, const int32_t* positions,
                   float* out) override {
        auto& s = static_cast<CudaSession&>(base);
        if (CudaSession* r = recorder()) r->recordable = false;
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
        if (CudaSession* r = recorder()) {
            ProgramOp op;
            op.kind = ProgramOpKind::Attention;
            op.sync_before = true;
            op.attn = args;
            r->program.push_back(op);
        }
        launch_attention_decode(args, stream());
    }

    void swiglu(const float* gate_up, int n, int n_ff, float* out) override {
        if (CudaSession* r = recorder()) r->recordable = false;
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
        launch_argmax(x, n, p.indices, stream());
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

    // silu(gate) * up goes into the down product's input (the program), or through ffn.
    void swiglu_matmul(const float* gate_up, int n, int n_ff, float* ffn, const Weight& w, float* out, int ldo,
                       bool accumulate) override {
        CudaSession* r = recorder();
        if (r) {
            record_matvec(*r, w, ProgramInput::Swiglu, gate_up, nullptr, 0.0f, out, nullptr, accumulate, true);
            r->recording = false;  // the two ops below are the graph's only
        }
        Backend::swiglu_matmul(gate_up, n, n_ff, ffn, w, out, ldo, accumulate);
        if (r) r->recording = true;
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

    // The bound session while its decode step is being recorded as a program.
    CudaSession* recorder() const { return t_bound && t_bound->recording ? t_bound : nullptr; }

    static ProgramOp weight_op(ProgramOpKind kind, const Weight& w) {
        ProgramOp op;
        op.kind = kind;
        op.type = w.type;
        op.w = static_cast<const uint8_t*>(w.data);
        op.rows = w.rows;
        op.cols = w.cols;
        op.row_bytes = int64_t(gguf::row_bytes(w.type, w.cols));
        return op;
    }

    // A product of one token; `first` starts a phase (a grid barrier before it),
    // later parts of the same product share its input row.
    static void record_matvec(CudaSession& r, const Weight& w, ProgramInput input, const float* x, const float* norm_w,
                              float eps, float* out, const float* bias, bool accumulate, bool first) {
        ProgramOp op = weight_op(ProgramOpKind::Matvec, w);
        op.sync_before = first;
        op.same_input = !first;
        op.input = input;
        op.x = x;
        op.norm_w = norm_w;
        op.eps = eps;
        op.out = out;
        op.bias = bias;
        op.accumulate = accumulate;
        r.program.push_back(op);
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
        s.recording = false;
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
    bool use_program_ = false;
    bool trace_ = false;
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
