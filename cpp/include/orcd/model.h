// orcd/model.h — load a GGUF model onto a device and run it through sessions.
//
//   auto model = orcd::Model::load("m.gguf", {.device = orcd::Device::cuda(0)});
//   auto session = model->create_session({.max_context = 4096});
//   std::span<const float> logits = session->prefill(ids);  // last position
//   logits = session->decode(next_id);
//
// All errors are orcd::Error (orcd/error.h). A Model is shared by its sessions:
// each Session keeps it alive; sessions may run on different threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orcd/error.h"

namespace orcd {

// Where a model runs.
struct Device {
    enum class Kind { CPU, CUDA };
    Kind kind = Kind::CPU;
    int index = 0;

    static Device cpu() { return {Kind::CPU, 0}; }
    static Device cuda(int index = 0) { return {Kind::CUDA, index}; }
    // Parses "cpu", "cuda" or "cuda:N"; throws InvalidArgument otherwise.
    static Device parse(std::string_view text);
    std::string str() const;  // "cpu" or "cuda:N"
};

struct ModelOptions {
    Device device = Device::cpu();
    int n_threads = 0;  // CPU worker threads; 0 = one per core
};

enum class RopeStyle {
    Normal,  // rotates interleaved pairs (2i, 2i+1): Llama
    NeoX,    // rotates halves (i, i + d/2): Qwen2, Phi-3
};

// Hyper-parameters, all read from the file's metadata.
struct ModelConfig {
    std::string architecture;  // "qwen2", "llama", "phi3"
    std::string name;          // general.name, if any
    int n_layers = 0;
    int n_embd = 0;
    int n_ff = 0;
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;
    int n_vocab = 0;
    int context_length = 0;
    int rope_dim = 0;  // leading dimensions of each head that RoPE rotates
    float rope_freq_base = 10000.0f;
    RopeStyle rope_style = RopeStyle::Normal;
    float rms_eps = 1e-5f;
    bool attention_bias = false;  // Q/K/V biases (Qwen2)
    bool tied_output = false;     // the output projection is the token embedding
};

struct SessionOptions {
    int max_context = 0;                  // KV cache length; 0 = min(context_length, 4096)
    bool allow_beyond_model_context = false;  // permit max_context > context_length
};

// Bytes a model (or a session) holds on its device.
struct MemoryReport {
    std::string device;  // e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    size_t weights = 0;
    size_t kv_cache = 0;  // all sessions currently open
    size_t scratch = 0;   // all sessions currently open
};

class Model;

// One sequence: a KV cache and scratch sized at creation. Not thread-safe by
// itself; different sessions may run concurrently.
class Session {
public:
    virtual ~Session() = default;

    // Appends ids to the context and returns the logits of the last position
    // (n_vocab floats, valid until the next call on this session). Throws
    // InvalidArgument for an empty list, an id outside the vocabulary or a
    // context overflow; the session is then unchanged.
    virtual std::span<const float> prefill(std::span<const int32_t> ids) = 0;
    // Like prefill, but returns the logits of every position: ids.size() * n_vocab floats, row-major.
    virtual std::span<const float> prefill_all(std::span<const int32_t> ids) = 0;
    // Appends one token; returns the logits of its position.
    virtual std::span<const float> decode(int32_t id) = 0;

    // Greedy decoding: like prefill / decode, but return the id of the largest
    // logit of the last position (the lowest id on ties) instead of the logits.
    // The choice is made on the device, so only that id is copied back. Throws
    // as prefill / decode. The span returned by an earlier call is not updated.
    virtual int32_t prefill_greedy(std::span<const int32_t> ids) = 0;
    virtual int32_t decode_greedy(int32_t id) = 0;

    // For sampling: like prefill / decode, but return the k largest logits of the
    // last position as (id, logit) pairs, largest first, equal logits by lower id.
    // The selection runs on the device; the host sees k candidates. Throws
    // InvalidArgument when k < 1 or k > min(n_vocab, kMaxTopK) (the session is
    // then unchanged), otherwise as prefill / decode.
    static constexpr int kMaxTopK = 1024;
    virtual std::vector<std::pair<int32_t, float>> prefill_top_k(std::span<const int32_t> ids, int k) = 0;
    virtual std::vector<std::pair<int32_t, float>> decode_top_k(int32_t id, int k) = 0;

    virtual int n_past() const = 0;       // tokens in the context
    virtual int max_context() const = 0;  // capacity of the KV cache
    // Forgets the last n tokens (InvalidArgument if n > n_past()).
    virtual void rewind(int n) = 0;
    // Forgets every token.
    virtual void reset() = 0;
};

class Model {
public:
    // Maps, validates and places the weights on the device. Throws InvalidFile,
    // Unsupported (architecture, tensor type, missing or mis-shaped tensor),
    // InvalidArgument (device) or OutOfMemory (says needed and free bytes).
    static std::shared_ptr<Model> load(const std::string& path, const ModelOptions& options = {});
    virtual ~Model() = default;

    virtual const ModelConfig& config() const = 0;
    virtual Device device() const = 0;
    // Allocates a KV cache and scratch; throws InvalidArgument (max_context) or OutOfMemory.
    virtual std::unique_ptr<Session> create_session(const SessionOptions& options = {}) = 0;
    virtual MemoryReport memory_report() const = 0;
    // Marks the model closed: later calls on it or its sessions throw Closed.
    // The memory goes when the last session does.
    virtual void close() = 0;
    virtual bool closed() const = 0;
};

}  // namespace orcd
