// CPU implementations of the forward-pass operations, in float32.
#include "cpu/cpu_backend.h"

#include <cmath>
#include <cstring>

#include "cpu/matmul.h"

namespace orcd::cpu {
namespace {

// A session's KV cache: per layer, [max_context, kv_dim] keys and values.
struct CpuSession final : BackendSession {
    int kv_dim = 0;
    std::vector<std::vector<float>> k_cache, v_cache;
    std::vector<int32_t> ids, positions;
    std::vector<float> x, h, qkv, attn, gate_up, ffn, logits;
};

// A weight vector (norm, bias, factors) as floats, dequantised into tmp if needed.
const float* floats_of(const Weight& w, std::vector<float>& tmp) {
    if (w.type == gguf::TensorType::F32) return static_cast<const float*>(w.data);
    tmp.resize(size_t(w.cols) * w.rows);
    dequantize_row(w.type, static_cast<const uint8_t*>(w.data), tmp.data(), int64_t(tmp.size()));
    return tmp.data();
}

}  // namespace

bool CpuBackend::supports(gguf::TensorType type) const { return cpu::supports(type); }

std::vector<Weight> CpuBackend::load_weights(const gguf::File& file, const std::vector<const gguf::TensorInfo*>& tensors) {
    std::vector<Weight> out;
    for (const gguf::TensorInfo* t : tensors) {
        out.push_back({t->type, int64_t(t->dims[0]), int64_t(t->dims[1]), file.tensor_data(*t).data()});
        weight_bytes_ += t->nbytes;
    }
    return out;
}

Weight CpuBackend::upload_floats(const std::vector<float>& values) {
    owned_.push_back(values);
    return {gguf::TensorType::F32, int64_t(values.size()), 1, owned_.back().data()};
}

size_t CpuBackend::session_bytes(const ModelConfig& c, const SessionShape& s) const {
    size_t kv = size_t(2) * c.n_layers * s.max_context * c.n_kv_heads * c.head_dim * sizeof(float);
    size_t per_token = size_t(2) * c.n_embd + (c.n_heads + 2 * c.n_kv_heads) * c.head_dim + c.n_heads * c.head_dim + 3 * size_t(c.n_ff);
    return kv + (s.max_batch * per_token + size_t(s.logit_rows) * c.n_vocab) * sizeof(float);
}

std::unique_ptr<BackendSession> CpuBackend::create_session(const ModelConfig& c, const SessionShape& shape) {
    auto s = std::make_unique<CpuSession>();
    const int B = shape.max_batch, q_dim = c.n_heads * c.head_dim;
    s->kv_dim = c.n_kv_heads * c.head_dim;
    try {
        s->k_cache.assign(c.n_layers, std::vector<float>(size_t(shape.max_context) * s->kv_dim));
        s->v_cache.assign(c.n_layers, std::vector<float>(size_t(shape.max_context) * s->kv_dim));
        s->ids.resize(B);
        s->positions.resize(B);
        s->x.resize(size_t(B) * c.n_embd);
        s->h.resize(size_t(B) * c.n_embd);
        s->qkv.resize(size_t(B) * (q_dim + 2 * s->kv_dim));
        s->attn.resize(size_t(B) * q_dim);
        s->gate_up.resize(size_t(B) * 2 * c.n_ff);
        s->ffn.resize(size_t(B) * c.n_ff);
        s->logits.resize(size_t(shape.logit_rows) * c.n_vocab);
    } catch (const std::bad_alloc&) {
        throw Error(ErrorKind::OutOfMemory, "a CPU session with max_context " + std::to_string(shape.max_context) + " needs " +
                                                std::to_string(session_bytes(c, shape) >> 20) + " MiB of host memory, which could not be allocated");
    }
    s->kv_bytes = size_t(2) * c.n_layers * shape.max_context * s->kv_dim * sizeof(float);
    s->scratch_bytes = session_bytes(c, shape) - s->kv_bytes;
    s->act = {s->ids.data(), s->positions.data(), s->x.data(), s->h.data(), s->qkv.data(),
              s->attn.data(), s->gate_up.data(), s->ffn.data(), s->logits.data()};
    return s;
}

void CpuBackend::set_inputs(BackendSession& s, const int32_t* ids, int n, int pos0) {
    for (int i = 0; i < n; ++i) {
        s.act.ids[i] = ids[i];
        s.act.positions[i] = pos0 + i;
    }
}

void CpuBackend::embed(const Weight& table, const int32_t* ids, int n, float* out) {
    const uint64_t row = gguf::row_bytes(table.type, uint64_t(table.cols));
    for (int i = 0; i < n; ++i)
        dequantize_row(table.type, static_cast<const uint8_t*>(table.data) + row * uint64_t(ids[i]), out + int64_t(i) * table.cols, table.cols);
}

void CpuBackend::rms_norm(const float* x, const Weight& w, float eps, int n, int dim, float* out) {
    std::vector<float> tmp;
    const float* g = floats_of(w, tmp);
    for (int i = 0; i < n; ++i) {
        const float* xi = x + int64_t(i) * dim;
        double sum = 0;
        for (int j = 0; j < dim; ++j) sum += double(xi[j]) * xi[j];
        const float scale = float(1.0 / std::sqrt(sum / dim + eps));
        float* oi = out + int64_t(i) * dim;
        for (int j = 0; j < dim; ++j) oi[j] = xi[j] * scale * g[j];
    }
}

void CpuBackend::matmul(const Weight& w, const float* x, int n, float* out, int ldo, const Weight* bias, bool accumulate) {
    const int64_t rows = w.rows;
    const uint8_t* data = static_cast<const uint8_t*>(w.data);
    if (ldo == rows && !accumulate && !bias) {
        cpu::matmul(w.type, data, rows, w.cols, x, n, out, pool_);
        return;
    }
    // Reused across calls (one per calling thread, so concurrent sessions never share it):
    // most products of a step go through here, and a fresh buffer each time costs page faults.
    thread_local std::vector<float> product;
    product.resize(size_t(n) * rows);
    std::vector<float> tmp;
    cpu::matmul(w.type, data, rows, w.cols, x, n, product.data(), pool_);
    const float* b = bias ? floats_of(*bias, tmp) : nullptr;
    for (int i = 0; i < n; ++i) {
        float* o = out + int64_t(i) * ldo;
        const float* p = product.data() + int64_t(i) * rows;
        for (int64_t r = 0; r < rows; ++r) {
            float v = p[r] + (b ? b[r] : 0.0f);
            o[r] = accumulate ? o[r] + v : v;
        }
    }
}

void CpuBackend::rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p) {
    const int half = p.rope_dim / 2;
    std::vector<float> cos_t(half), sin_t(half);
    for (int i = 0; i < n; ++i) {
        for (int j = 0; j < half; ++j) {
            double freq = std::pow(double(p.freq_base), -2.0 * j / p.rope_dim);
            if (p.freq_factors) freq /= p.freq_factors[j];
            double theta = double(positions[i]) * p.freq_scale * freq;
            cos_t[j] = float(std::cos(theta) * p.attn_factor);
            sin_t[j] = float(std::sin(theta) * p.attn_factor);
        }
        float* row = qkv + int64_t(i) * ld;
        for (int head = 0; head < p.n_heads + p.n_kv_heads; ++head) {
            float* v = row + int64_t(head) * p.head_dim;  // k heads follow the q heads
            for (int j = 0; j < half; ++j) {
                // Normal RoPE rotates neighbours (2j, 2j+1); NeoX rotates (j, j + half).
                int a = p.style == RopeStyle::Normal ? 2 * j : j;
                int b = p.style == RopeStyle::Normal ? 2 * j + 1 : j + half;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cos_t[j] - x1 * sin_t[j];
                v[b] = x0 * sin_t[j] + x1 * cos_t[j];
            }
        }
    }
}

void CpuBackend::attention(BackendSession& base, int layer, const float* qkv, int ld, int n, const int32_t* positions, float* out) {
    auto& s = static_cast<CpuSession&>(base);
    const RopeParams& p = s.rope;
    const int hd = p.head_dim, q_dim = p.n_heads * hd, kv_dim = s.kv_dim, group = p.n_heads / p.n_kv_heads;
    float* K = s.k_cache[layer].data();
    float* V = s.v_cache[layer].data();
    for (int i = 0; i < n; ++i) {
        const float* row = qkv + int64_t(i) * ld;
        std::memcpy(K + int64_t(positions[i]) * kv_dim, row + q_dim, kv_dim * sizeof(float));
        std::memcpy(V + int64_t(positions[i]) * kv_dim, row + q_dim + kv_dim, kv_dim * sizeof(float));
    }
    const float scale = 1.0f / std::sqrt(float(hd));
    pool_.parallel_for(int64_t(n) * p.n_heads, [&](int64_t begin, int64_t end) {
        std::vector<float> scores;
        for (int64_t task = begin; task < end; ++task) {
            const int i = int(task / p.n_heads), head = int(task % p.n_heads), kv_head = head / group;
            const float* q = qkv + int64_t(i) * ld + int64_t(head) * hd;
            const int len = positions[i] + 1;  // causal: this token and all before it
            scores.resize(len);
            float max_score = -INFINITY;
            for (int j = 0; j < len; ++j) {
                const float* k = K + int64_t(j) * kv_dim + kv_head * hd;
                float dot = 0;
                for (int d = 0; d < hd; ++d) dot += q[d] * k[d];
                scores[j] = dot * scale;
                max_score = std::max(max_score, scores[j]);
            }
            double sum = 0;
            for (int j = 0; j < len; ++j) sum += scores[j] = std::exp(scores[j] - max_score);
            float* o = out + int64_t(i) * q_dim + int64_t(head) * hd;
            std::fill(o, o + hd, 0.0f);
            for (int j = 0; j < len; ++j) {
                const float weight = float(scores[j] / sum);
                const float* v = V + int64_t(j) * kv_dim + kv_head * hd;
                for (int d = 0; d < hd; ++d) o[d] += weight * v[d];
            }
        }
    });
}

void CpuBackend::swiglu(const float* gate_up, int n, int n_ff, float* out) {
    for (int i = 0; i < n; ++i) {
        const float* g = gate_up + int64_t(i) * 2 * n_ff;
        const float* u = g + n_ff;
        float* o = out + int64_t(i) * n_ff;
        for (int j = 0; j < n_ff; ++j) o[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
    }
}

void CpuBackend::download(const float* src, size_t count, float* dst) {
    if (src != dst) std::memcpy(dst, src, count * sizeof(float));
}

}  // namespace orcd::cpu
