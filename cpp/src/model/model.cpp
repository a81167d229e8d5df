// Model and Session: validation of every caller value, then the forward pass.
#include <algorithm>
#include <atomic>
#include <string>

#include "model/arch.h"
#include "model/backend.h"
#include "model/forward.h"
#include "orcd/gguf.h"
#include "orcd/model.h"

namespace orcd {
namespace {

constexpr int kDefaultMaxContext = 4096;
constexpr int kLogitRows = 32;   // rows of logits per output step when all are wanted

class ModelImpl;

// b continues a in memory: the same type and row length, b's rows (and bias)
// starting where a's end. Then [a; b] is one weight.
bool adjacent(const Projection& a, const Projection& b) {
    if (a.w.type != b.w.type || a.w.cols != b.w.cols || bool(a.bias) != bool(b.bias)) return false;
    const auto* end = static_cast<const char*>(a.w.data) + gguf::row_bytes(a.w.type, a.w.cols) * size_t(a.w.rows);
    if (end != b.w.data || b.offset != a.offset + a.w.rows) return false;
    if (!a.bias) return true;
    if (a.bias.type != gguf::TensorType::F32 || b.bias.type != gguf::TensorType::F32) return false;
    return static_cast<const char*>(a.bias.data) + sizeof(float) * size_t(a.bias.cols) == b.bias.data;
}

// Merges runs of adjacent blocks (fewer, larger matrix products).
std::vector<Projection> merge_adjacent(const std::vector<Projection>& parts) {
    std::vector<Projection> out;
    for (const Projection& p : parts) {
        if (!out.empty() && adjacent(out.back(), p)) {
            out.back().w.rows += p.w.rows;
            if (p.bias) out.back().bias.cols += p.bias.cols;
        } else {
            out.push_back(p);
        }
    }
    return out;
}

void plan_projections(const ModelConfig& c, LayerWeights& L) {
    const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
    L.qkv_parts = L.wqkv ? std::vector<Projection>{{L.wqkv, {}, 0}}
                         : merge_adjacent({{L.wq, L.bq, 0}, {L.wk, L.bk, q_dim}, {L.wv, L.bv, q_dim + kv_dim}});
    L.gate_up_parts = L.w_gate_up ? std::vector<Projection>{{L.w_gate_up, {}, 0}}
                                  : merge_adjacent({{L.w_gate, {}, 0}, {L.w_up, {}, c.n_ff}});
}

class SessionImpl final : public Session {
public:
    SessionImpl(std::shared_ptr<ModelImpl> model, std::unique_ptr<BackendSession> state);
    ~SessionImpl() override;

    std::span<const float> prefill(std::span<const int32_t> ids) override { return run(ids, false); }
    std::span<const float> prefill_all(std::span<const int32_t> ids) override { return run(ids, true); }
    std::span<const float> decode(int32_t id) override { return run({&id, 1}, false); }
    int32_t prefill_greedy(std::span<const int32_t> ids) override { return greedy(ids); }
    int32_t decode_greedy(int32_t id) override { return greedy({&id, 1}); }
    std::vector<std::pair<int32_t, float>> prefill_top_k(std::span<const int32_t> ids, int k) override {
        return top_k(ids, k);
    }
    std::vector<std::pair<int32_t, float>> decode_top_k(int32_t id, int k) override { return top_k({&id, 1}, k); }
    int n_past() const override { return n_past_; }
    int max_context() const override { return state_->shape.max_context; }
    void rewind(int n) override;
    void reset() override;

private:
    std::span<const float> run(std::span<const int32_t> ids, bool all_rows);
    int32_t greedy(std::span<const int32_t> ids);
    std::vector<std::pair<int32_t, float>> top_k(std::span<const int32_t> ids, int k);
    // Checks ids, then runs them; the last position's logits end in dst (the
    // host), or stay on the backend when dst is null and !all_rows.
    void advance(std::span<const int32_t> ids, bool all_rows, float* dst);

    std::shared_ptr<ModelImpl> model_;
    std::unique_ptr<BackendSession> state_;
    int n_past_ = 0;
    std::vector<float> logits_;
};

class ModelImpl final : public Model, public std::enable_shared_from_this<ModelImpl> {
public:
    ModelImpl(const std::string& path, const ModelOptions& options) : options_(options) {
        file_ = gguf::File::open(path);
        config_ = read_config(*file_);
        std::vector<TensorSlot> slots = bind_tensors(config_, *file_, weights_);
        backend_ = make_backend(options);
        std::vector<const gguf::TensorInfo*> tensors;
        for (const auto& s : slots) {
            const gguf::TensorInfo* t = file_->find_tensor(s.name);
            if (!backend_->supports(t->type))
                throw Error(ErrorKind::Unsupported, path + ": tensor '" + s.name + "' has type " + gguf::traits(t->type).name +
                                                        ", which the " + options.device.str() + " backend does not support");
            tensors.push_back(t);
        }
        std::vector<Weight> placed = backend_->load_weights(*file_, tensors);
        for (size_t i = 0; i < slots.size(); ++i) *slots[i].slot = placed[i];
        if (config_.tied_output) weights_.output = weights_.tok_embd;
        for (LayerWeights& L : weights_.layers) plan_projections(config_, L);
        if (!weights_.rope_freq_factors_long) {
            std::vector<float> factors = llama3_rope_factors(config_, *file_);
            if (!factors.empty()) weights_.rope_freq_factors_long = backend_->upload_floats(factors);
        }
    }

    const ModelConfig& config() const override { return config_; }
    Device device() const override { return options_.device; }

    std::unique_ptr<Session> create_session(const SessionOptions& options) override {
        check_open();
        int max_context = options.max_context;
        if (max_context < 0) throw Error(ErrorKind::InvalidArgument, "max_context must be positive, got " + std::to_string(max_context));
        if (max_context == 0) max_context = std::min(config_.context_length, kDefaultMaxContext);
        if (max_context > config_.context_length && !options.allow_beyond_model_context)
            throw Error(ErrorKind::InvalidArgument,
                        "max_context " + std::to_string(max_context) + " exceeds the model's context length " +
                            std::to_string(config_.context_length) + "; ask for at most that, or allow it explicitly");
        if (max_context > (1 << 24)) throw Error(ErrorKind::InvalidArgument, "max_context " + std::to_string(max_context) + " is larger than 2^24");
        // Prompts longer than the backend's step run in steps (Backend::preferred_step).
        SessionShape shape{max_context, std::min(backend_->preferred_step(), max_context), kLogitRows};
        auto state = backend_->create_session(config_, shape);
        state->shape = shape;
        state->rope = rope_params(config_, *file_, weights_, max_context);
        kv_bytes_ += state->kv_bytes;
        scratch_bytes_ += state->scratch_bytes;
        return std::make_unique<SessionImpl>(shared_from_this(), std::move(state));
    }

    MemoryReport memory_report() const override {
        return {backend_->device_name(), backend_->weight_bytes(), kv_bytes_.load(), scratch_bytes_.load()};
    }
    void close() override { closed_ = true; }
    bool closed() const override { return closed_; }

    void check_open() const {
        if (closed_) throw Error(ErrorKind::Closed, "the model was closed; load it again to use it");
    }
    void release(const BackendSession& s) {
        kv_bytes_ -= s.kv_bytes;
        scratch_bytes_ -= s.scratch_bytes;
    }
    Backend& backend() { return *backend_; }
    const ModelWeights& weights() const { return weights_; }

private:
    ModelOptions options_;
    std::shared_ptr<gguf::File> file_;  // the CPU backend reads weights straight from this mapping
    ModelConfig config_;
    ModelWeights weights_;
    std::unique_ptr<Backend> backend_;
    std::atomic<bool> closed_{false};
    std::atomic<size_t> kv_bytes_{0}, scratch_bytes_{0};
};

SessionImpl::SessionImpl(std::shared_ptr<ModelImpl> model, std::unique_ptr<BackendSession> state)
    : model_(std::move(model)), state_(std::move(state)) {}

SessionImpl::~SessionImpl() { model_->release(*state_); }

void SessionImpl::rewind(int n) {
    model_->check_open();
    if (n < 0 || n > n_past_)
        throw Error(ErrorKind::InvalidArgument, "cannot rewind " + std::to_string(n) + " tokens: the context holds " + std::to_string(n_past_));
    n_past_ -= n;  // cache entries past n_past are overwritten by later steps
}

void SessionImpl::reset() {
    model_->check_open();
    n_past_ = 0;
}

void SessionImpl::advance(std::span<const int32_t> ids, bool all_rows, float* dst) {
    model_->check_open();
    const ModelConfig& c = model_->config();
    const int n = static_cast<int>(ids.size());
    if (ids.empty()) throw Error(ErrorKind::InvalidArgument, "the prompt is empty: give at least one token id");
    for (size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= c.n_vocab)
            throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                                                        " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
    if (ids.size() > size_t(max_context() - n_past_))
        throw Error(ErrorKind::InvalidArgument, "context overflow: " + std::to_string(n_past_) + " tokens in the context + " +
                                                    std::to_string(ids.size()) + " new exceed max_context " +
                                                    std::to_string(max_context()) + "; rewind, reset, or use a session with a larger max_context");
    const int step = state_->shape.max_batch;
    for (int first = 0; first < n; first += step) {
        int count = std::min(step, n - first);
        // Without all_rows only the last chunk needs logits.
        const bool last = first + count == n;
        const StepLogits which = all_rows ? StepLogits::All : last ? StepLogits::Last : StepLogits::None;
        float* out = all_rows ? dst + size_t(first) * c.n_vocab : dst;
        forward_step(c, model_->weights(), model_->backend(), *state_, ids.data() + first, count, n_past_ + first, which, out);
    }
    n_past_ += n;
}

std::span<const float> SessionImpl::run(std::span<const int32_t> ids, bool all_rows) {
    model_->check_open();
    BoundSession bound(model_->backend(), *state_);
    logits_.resize(size_t(all_rows ? std::max<size_t>(ids.size(), 1) : 1) * model_->config().n_vocab);
    advance(ids, all_rows, logits_.data());
    return logits_;
}

int32_t SessionImpl::greedy(std::span<const int32_t> ids) {
    model_->check_open();
    BoundSession bound(model_->backend(), *state_);
    advance(ids, false, nullptr);
    return model_->backend().argmax(state_->act.logits, model_->config().n_vocab);
}

std::vector<std::pair<int32_t, float>> SessionImpl::top_k(std::span<const int32_t> ids, int k) {
    model_->check_open();
    const int limit = std::min(model_->config().n_vocab, kMaxTopK);
    if (k < 1 || k > limit)
        throw Error(ErrorKind::InvalidArgument, "top-k needs 1 <= k <= " + std::to_string(limit) + " (min of the vocabulary and " +
                                                    std::to_string(kMaxTopK) + "), got " + std::to_string(k) +
                                                    "; for more, use decode() and select on the host");
    BoundSession bound(model_->backend(), *state_);
    advance(ids, false, nullptr);
    return model_->backend().top_k(state_->act.logits, model_->config().n_vocab, k);
}

}  // namespace

Device Device::parse(std::string_view text) {
    if (text == "cpu") return cpu();
    if (text == "cuda") return cuda(0);
    if (text.substr(0, 5) == "cuda:" && text.size() > 5 && text.size() < 9) {
        int index = 0;
        for (char ch : text.substr(5)) {
            if (ch < '0' || ch > '9') index = -1;
            if (index >= 0) index = index * 10 + (ch - '0');
        }
        if (index >= 0) return cuda(index);
    }
    throw Error(ErrorKind::InvalidArgument, "unknown device '" + std::string(text) + "' (use cpu, cuda or cuda:N)");
}

std::string Device::str() const { return kind == Kind::CPU ? "cpu" : "cuda:" + std::to_string(index); }

std::shared_ptr<Model> Model::load(const std::string& path, const ModelOptions& options) {
    return std::make_shared<ModelImpl>(path, options);
}

}  // namespace orcd
