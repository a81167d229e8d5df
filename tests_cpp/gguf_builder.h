// Builds GGUF files byte by byte, so tests can make valid and malformed files alike.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace orcd::testing {

class GGUFBuilder {
public:
    std::vector<uint8_t> bytes;

    template <typename T>
    GGUFBuilder& put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
        return *this;
    }
    GGUFBuilder& str(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
        return *this;
    }
    GGUFBuilder& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        bytes.insert(bytes.end(), {'G', 'G', 'U', 'F'});
        return put(version).put(n_tensors).put(n_kv);
    }
    GGUFBuilder& key(const std::string& k, uint32_t value_type) { return str(k).put(value_type); }
    GGUFBuilder& kv_u32(const std::string& k, uint32_t v) { return key(k, 4).put(v); }
    GGUFBuilder& kv_str(const std::string& k, const std::string& v) { return key(k, 8).str(v); }
    GGUFBuilder& kv_f32(const std::string& k, float v) { return key(k, 6).put(v); }
    GGUFBuilder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
        str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
        for (auto d : dims) put(d);
        return put(type).put(offset);
    }
    // Pads to the alignment, then appends n data bytes.
    GGUFBuilder& data(size_t n, size_t alignment = 32, uint8_t fill = 0x3c) {
        while (bytes.size() % alignment) bytes.push_back(0);
        bytes.insert(bytes.end(), n, fill);
        return *this;
    }
};

// A small valid file: two metadata keys, one F32 tensor [8, 2] and one Q8_0 [32].
inline std::vector<uint8_t> small_valid_file(uint32_t version = 3) {
    GGUFBuilder b;
    b.header(version, 2, 2).kv_str("general.architecture", "llama").kv_u32("llama.block_count", 2);
    b.tensor("a", {8, 2}, 0, 0).tensor("b", {32}, 8, 64);
    b.data(64 + 34);
    return b.bytes;
}

// A tiny model with random F32 weights. The defaults make a qwen2 model (with
// Q/K/V biases); "llama" drops the biases; any other name writes the same
// tensors under that architecture. omit_tensor and misshape_tensor (one extra
// row) make the file one that Model::load must reject.
struct TinyModelSpec {
    std::string architecture = "qwen2";
    int n_layers = 2, n_embd = 64, n_heads = 4, n_kv_heads = 2, n_ff = 128, n_vocab = 64;
    int context_length = 128;
    uint32_t seed = 1;
    std::string omit_tensor;
    std::string misshape_tensor;
};

inline std::vector<uint8_t> tiny_model_file(const TinyModelSpec& spec) {
    struct Tensor {
        std::string name;
        uint64_t cols, rows;  // rows == 0: a vector
        bool norm;            // norm weights sit near 1, like trained ones
    };
    const uint64_t embd = spec.n_embd, head_dim = embd / spec.n_heads, kv_dim = head_dim * spec.n_kv_heads;
    std::vector<Tensor> tensors = {{"token_embd.weight", embd, uint64_t(spec.n_vocab), false},
                                   {"output_norm.weight", embd, 0, true},
                                   {"output.weight", embd, uint64_t(spec.n_vocab), false}};
    for (int i = 0; i < spec.n_layers; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        tensors.push_back({p + "attn_norm.weight", embd, 0, true});
        tensors.push_back({p + "attn_q.weight", embd, embd, false});
        tensors.push_back({p + "attn_k.weight", embd, kv_dim, false});
        tensors.push_back({p + "attn_v.weight", embd, kv_dim, false});
        if (spec.architecture != "llama") {
            tensors.push_back({p + "attn_q.bias", embd, 0, false});
            tensors.push_back({p + "attn_k.bias", kv_dim, 0, false});
            tensors.push_back({p + "attn_v.bias", kv_dim, 0, false});
        }
        tensors.push_back({p + "attn_output.weight", embd, embd, false});
        tensors.push_back({p + "ffn_norm.weight", embd, 0, true});
        tensors.push_back({p + "ffn_gate.weight", embd, uint64_t(spec.n_ff), false});
        tensors.push_back({p + "ffn_up.weight", embd, uint64_t(spec.n_ff), false});
        tensors.push_back({p + "ffn_down.weight", uint64_t(spec.n_ff), embd, false});
    }
    std::erase_if(tensors, [&](const Tensor& t) { return t.name == spec.omit_tensor; });
    for (auto& t : tensors)
        if (t.name == spec.misshape_tensor) t.rows = (t.rows == 0 ? 1 : t.rows) + 1;

    const std::string a = spec.architecture + ".";
    GGUFBuilder b;
    b.header(3, tensors.size(), 11);
    b.kv_str("general.architecture", spec.architecture).kv_str("general.name", "tiny-" + spec.architecture);
    b.kv_u32(a + "block_count", spec.n_layers).kv_u32(a + "embedding_length", spec.n_embd);
    b.kv_u32(a + "feed_forward_length", spec.n_ff).kv_u32(a + "attention.head_count", spec.n_heads);
    b.kv_u32(a + "attention.head_count_kv", spec.n_kv_heads).kv_u32(a + "context_length", spec.context_length);
    b.kv_f32(a + "attention.layer_norm_rms_epsilon", 1e-6f).kv_f32(a + "rope.freq_base", 10000.0f);
    b.kv_u32("general.alignment", 32);
    uint64_t offset = 0;
    for (const auto& t : tensors) {
        std::vector<uint64_t> dims = {t.cols};
        if (t.rows) dims.push_back(t.rows);
        b.tensor(t.name, dims, /*F32*/ 0, offset);
        offset += (t.cols * std::max<uint64_t>(t.rows, 1) * 4 + 31) / 32 * 32;
    }
    std::mt19937 rng(spec.seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (const auto& t : tensors) {
        // Scaled by 1/sqrt(cols) so activations stay of order one through the layers.
        const float scale = t.norm ? 0.1f : t.name == "token_embd.weight" ? 1.0f : 1.0f / std::sqrt(float(t.cols));
        while (b.bytes.size() % 32) b.bytes.push_back(0);
        for (uint64_t i = 0; i < t.cols * std::max<uint64_t>(t.rows, 1); ++i) b.put((t.norm ? 1.0f : 0.0f) + scale * uniform(rng));
    }
    return b.bytes;
}

}  // namespace orcd::testing
