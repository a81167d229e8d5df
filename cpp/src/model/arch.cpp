// qwen2, llama and phi3 as data: which metadata they read, which tensors they
// need, and their few differences (biases, RoPE style, fused projections).
#include "model/arch.h"

#include <cmath>
#include <string>

namespace orcd {
namespace {

struct ArchTraits {
    const char* name;
    RopeStyle rope_style;
    bool requires_qkv_bias;  // Qwen2 always has Q/K/V biases
    bool fused_gate_up;      // Phi-3 packs gate and up into ffn_up
};

constexpr ArchTraits kArchitectures[] = {
    {"qwen2", RopeStyle::NeoX, true, false},
    {"llama", RopeStyle::Normal, false, false},
    {"phi3", RopeStyle::NeoX, false, true},
};

const ArchTraits& arch_traits(const std::string& arch) {
    for (const auto& a : kArchitectures)
        if (arch == a.name) return a;
    throw Error(ErrorKind::Unsupported, "architecture '" + arch + "' is not supported (supported: qwen2, llama, phi3)");
}

// An integer hyper-parameter, checked against a plausible range so no value
// read from the file can size a giant allocation.
int int_param(const gguf::File& f, const std::string& key, int64_t lo, int64_t hi, const int* fallback = nullptr) {
    const gguf::Value* v = f.find(key);
    if (!v) {
        if (fallback) return *fallback;
        throw Error(ErrorKind::InvalidFile, f.path() + ": required metadata key '" + key + "' is missing");
    }
    int64_t x;
    try {
        x = v->as_int();
    } catch (const Error& e) {
        throw Error(ErrorKind::InvalidFile, f.path() + ": metadata key '" + key + "': " + e.what());
    }
    if (x < lo || x > hi)
        throw Error(ErrorKind::InvalidFile, f.path() + ": metadata key '" + key + "' = " + std::to_string(x) +
                                                " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<int>(x);
}

float float_param(const gguf::File& f, const std::string& key, float fallback) {
    const gguf::Value* v = f.find(key);
    if (!v) return fallback;
    double x = v->as_float();
    if (!std::isfinite(x) || x <= 0)
        throw Error(ErrorKind::InvalidFile, f.path() + ": metadata key '" + key + "' = " + std::to_string(x) + " must be positive");
    return static_cast<float>(x);
}

std::string shape_str(int64_t cols, int64_t rows) {
    return rows == 1 ? "[" + std::to_string(cols) + "]" : "[" + std::to_string(cols) + ", " + std::to_string(rows) + "]";
}

}  // namespace

ModelConfig read_config(const gguf::File& f) {
    ModelConfig c;
    c.architecture = std::string(f.get("general.architecture").as_string());
    const ArchTraits& traits = arch_traits(c.architecture);
    if (const gguf::Value* name = f.find("general.name"); name && name->type == gguf::ValueType::STRING)
        c.name = std::string(name->as_string());
    const std::string a = c.architecture + ".";
    c.n_layers = int_param(f, a + "block_count", 1, 1024);
    c.n_embd = int_param(f, a + "embedding_length", 1, 1 << 16);
    c.n_ff = int_param(f, a + "feed_forward_length", 1, 1 << 18);
    c.n_heads = int_param(f, a + "attention.head_count", 1, 1024);
    c.n_kv_heads = int_param(f, a + "attention.head_count_kv", 1, 1024, &c.n_heads);
    if (c.n_heads % c.n_kv_heads != 0)
        throw Error(ErrorKind::InvalidFile, f.path() + ": head_count " + std::to_string(c.n_heads) +
                                                " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
    int default_head_dim = c.n_embd / c.n_heads;
    c.head_dim = int_param(f, a + "attention.key_length", 1, 1024, &default_head_dim);
    c.rope_dim = int_param(f, a + "rope.dimension_count", 2, c.head_dim, &c.head_dim);
    if (c.rope_dim % 2 != 0) throw Error(ErrorKind::InvalidFile, f.path() + ": rope.dimension_count must be even");
    c.context_length = int_param(f, a + "context_length", 1, 1 << 24);
    c.rope_freq_base = float_param(f, a + "rope.freq_base", 10000.0f);
    c.rms_eps = float_param(f, a + "attention.layer_norm_rms_epsilon", 1e-5f);
    c.rope_style = traits.rope_style;
    const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
    if (!embd)
        throw Error(ErrorKind::Unsupported, f.path() + ": tensor 'token_embd.weight' of shape [" + std::to_string(c.n_embd) +
                                                ", n_vocab] is missing");
    if (embd->dims[1] < 1 || embd->dims[1] > (1u << 24))
        throw Error(ErrorKind::InvalidFile, f.path() + ": token_embd.weight has an implausible vocabulary of " + std::to_string(embd->dims[1]));
    c.n_vocab = static_cast<int>(embd->dims[1]);
    c.attention_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.tied_output = f.find_tensor("output.weight") == nullptr;
    return c;
}

std::vector<TensorSlot> bind_tensors(const ModelConfig& c, const gguf::File& f, ModelWeights& w) {
    const ArchTraits& traits = arch_traits(c.architecture);
    const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
    std::vector<TensorSlot> slots;
    auto add = [&](const std::string& name, int64_t cols, int64_t rows, Weight* slot, bool required = true) {
        if (!required && !f.find_tensor(name)) return;
        slots.push_back({name, cols, rows, required, slot});
    };
    w.layers.assign(c.n_layers, {});
    add("token_embd.weight", c.n_embd, c.n_vocab, &w.tok_embd);
    add("output_norm.weight", c.n_embd, 1, &w.output_norm);
    add("output.weight", c.n_embd, c.n_vocab, &w.output, false);
    add("rope_freqs.weight", c.rope_dim / 2, 1, &w.rope_freq_factors_long, false);
    add("rope_factors_long.weight", c.rope_dim / 2, 1, &w.rope_freq_factors_long, false);
    add("rope_factors_short.weight", c.rope_dim / 2, 1, &w.rope_freq_factors_short, false);
    for (int i = 0; i < c.n_layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LayerWeights& L = w.layers[i];
        add(p + "attn_norm.weight", c.n_embd, 1, &L.attn_norm);
        if (f.find_tensor(p + "attn_qkv.weight")) {
            add(p + "attn_qkv.weight", c.n_embd, q_dim + 2 * kv_dim, &L.wqkv);
        } else {
            add(p + "attn_q.weight", c.n_embd, q_dim, &L.wq);
            add(p + "attn_k.weight", c.n_embd, kv_dim, &L.wk);
            add(p + "attn_v.weight", c.n_embd, kv_dim, &L.wv);
            add(p + "attn_q.bias", q_dim, 1, &L.bq, traits.requires_qkv_bias);
            add(p + "attn_k.bias", kv_dim, 1, &L.bk, traits.requires_qkv_bias);
            add(p + "attn_v.bias", kv_dim, 1, &L.bv, traits.requires_qkv_bias);
        }
        add(p + "attn_output.weight", q_dim, c.n_embd, &L.wo);
        add(p + "ffn_norm.weight", c.n_embd, 1, &L.ffn_norm);
        if (traits.fused_gate_up) {
            add(p + "ffn_up.weight", c.n_embd, 2 * int64_t(c.n_ff), &L.w_gate_up);
        } else {
            add(p + "ffn_gate.weight", c.n_embd, c.n_ff, &L.w_gate);
            add(p + "ffn_up.weight", c.n_embd, c.n_ff, &L.w_up);
        }
        add(p + "ffn_down.weight", c.n_ff, c.n_embd, &L.w_down);
    }
    for (const auto& s : slots) {
        const gguf::TensorInfo* t = f.find_tensor(s.name);
        const std::string expected = shape_str(s.cols, s.rows);
        if (!t)
            throw Error(ErrorKind::Unsupported, f.path() + ": " + c.architecture + " needs tensor '" + s.name +
                                                    "' of shape " + expected + ", which is missing");
        bool ok = t->dims[0] == uint64_t(s.cols) && t->dims[1] == uint64_t(s.rows) && t->dims[2] == 1 && t->dims[3] == 1;
        if (!ok)
            throw Error(ErrorKind::Unsupported, f.path() + ": tensor '" + s.name + "' has shape " +
                                                    shape_str(int64_t(t->dims[0]), int64_t(t->dims[1])) + ", expected " + expected);
    }
    return slots;
}

RopeParams rope_params(const ModelConfig& c, const gguf::File& f, const ModelWeights& w, int max_context) {
    RopeParams r;
    r.style = c.rope_style;
    r.n_heads = c.n_heads;
    r.n_kv_heads = c.n_kv_heads;
    r.head_dim = c.head_dim;
    r.rope_dim = c.rope_dim;
    r.freq_base = c.rope_freq_base;
    const std::string a = c.architecture + ".";
    if (const gguf::Value* type = f.find(a + "rope.scaling.type");
        type && type->type == gguf::ValueType::STRING && type->as_string() == "linear")
        r.freq_scale = 1.0f / float_param(f, a + "rope.scaling.factor", 1.0f);

    // Phi-3 keeps separate factors for short and long contexts: the long ones
    // apply when the session's context exceeds the original training context.
    // Its attention factor scales cos and sin in both cases.
    if (w.rope_freq_factors_short) {
        int original = int_param(f, a + "rope.scaling.original_context_length", 1, 1 << 24, &c.context_length);
        bool long_context = max_context > original;
        r.freq_factors = static_cast<const float*>((long_context ? w.rope_freq_factors_long : w.rope_freq_factors_short).data);
        float fallback = 1.0f;
        if (c.context_length > original)
            fallback = std::sqrt(1.0f + std::log(float(c.context_length) / original) / std::log(float(original)));
        r.attn_factor = float_param(f, a + "rope.scaling.attn_factor", fallback);
    } else if (w.rope_freq_factors_long) {
        r.freq_factors = static_cast<const float*>(w.rope_freq_factors_long.data);
    }
    return r;
}

std::vector<float> llama3_rope_factors(const ModelConfig& c, const gguf::File& f) {
    const std::string a = c.architecture + ".";
    const gguf::Value* type = f.find(a + "rope.scaling.type");
    if (!type || type->type != gguf::ValueType::STRING || type->as_string() != "llama3") return {};
    float factor = float_param(f, a + "rope.scaling.factor", 8.0f);
    float low = float_param(f, a + "rope.scaling.low_freq_factor", 1.0f);
    float high = float_param(f, a + "rope.scaling.high_freq_factor", 4.0f);
    float original = float_param(f, a + "rope.scaling.original_context_length", 8192.0f);
    std::vector<float> factors(c.rope_dim / 2);
    for (int i = 0; i < c.rope_dim / 2; ++i) {
        // Long wavelengths are stretched by `factor`, short ones kept, the band between blended.
        double freq = std::pow(double(c.rope_freq_base), -2.0 * i / c.rope_dim);
        double wavelen = 2 * M_PI / freq;
        if (wavelen < original / high) {
            factors[i] = 1.0f;
        } else if (wavelen > original / low) {
            factors[i] = factor;
        } else {
            double smooth = (original / wavelen - low) / (high - low);
            factors[i] = float(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
    return factors;
}

}  // namespace orcd
