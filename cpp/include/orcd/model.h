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

/// Where a model runs.
struct Device {
    enum class Kind { CPU, CUDA };
    Kind kind = Kind::CPU;
    int index = 0;

    static Device cpu() { return {Kind::CPU, 0}; }
    static Device cuda(int index = 0) { return {Kind::CUDA, index}; }
    /// Parses "cpu", "cuda" or "cuda:N"; throws InvalidArgument otherwise.
    static Device parse(std::string_view text);
    /// "cpu" or "cuda:N"; parse() reads it back.
    std::string str() const;
};

struct ModelOptions {
    Device device = Device::cpu();
    int n_threads = 0;  // CPU worker threads; 0 = one per core
};

enum class RopeStyle {
    Normal,  // rotates interleaved pairs (2i, 2i+1): Llama
    NeoX,    // rotates halves (i, i + d/2): Qwen2, Phi-3
};

/// Hyper-parameters, all read from the file's metadata.
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
    // What the tokenizer metadata says (ids are -1 when the file names none).
    std::string tokenizer_model;  // "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    int bos_id = -1, eos_id = -1, eot_id = -1;
    bool has_chat_template = false;
};

struct SessionOptions {
    int max_context = 0;                  // KV cache length; 0 = min(context_length, 4096)
    bool allow_beyond_model_context = false;  // permit max_context > context_length
};

/// Bytes a model and its open sessions hold on the model's device.
struct MemoryReport {
    std::string device;  // e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    size_t weights = 0;
    size_t kv_cache = 0;  // all sessions currently open
    size_t scratch = 0;   // all sessions currently open
};

class Model;

/// One sequence: a KV cache and scratch sized at creation. Not thread-safe by
/// itself; different sessions may run concurrently. Every call but n_past()
/// and max_context() throws Closed once its model was closed. Destroying the
/// session frees its memory.
class Session {
public:
    virtual ~Session() = default;

    /// Appends ids to the context and returns the logits of the last position
    /// (n_vocab floats owned by the session, valid until its next call). Throws
    /// InvalidArgument for an empty list, an id outside the vocabulary or a
    /// context overflow; the session is then unchanged.
    virtual std::span<const float> prefill(std::span<const int32_t> ids) = 0;
    /// Like prefill, but returns the logits of every position: ids.size() *
    /// n_vocab floats, row-major, owned and valid as prefill's. Throws as prefill.
    virtual std::span<const float> prefill_all(std::span<const int32_t> ids) = 0;
    /// Appends one token and returns the logits of its position. Throws as prefill.
    virtual std::span<const float> decode(int32_t id) = 0;

    /// Greedy decoding: like prefill / decode, but return the id of the largest
    /// logit of the last position (the lowest id on ties) instead of the logits.
    /// The choice is made on the device, so only that id is copied back. Throws
    /// as prefill / decode. The span returned by an earlier call is not updated.
    virtual int32_t prefill_greedy(std::span<const int32_t> ids) = 0;
    virtual int32_t decode_greedy(int32_t id) = 0;

    /// For sampling: like prefill / decode, but return the k largest logits of the
    /// last position as (id, logit) pairs, largest first, equal logits by lower id.
    /// The selection runs on the device; the host sees k candidates. Throws
    /// InvalidArgument when k < 1 or k > min(n_vocab, kMaxTopK) (the session is
    /// then unchanged), otherwise as prefill / decode.
    static constexpr int kMaxTopK = 1024;
    virtual std::vector<std::pair<int32_t, float>> prefill_top_k(std::span<const int32_t> ids, int k) = 0;
    virtual std::vector<std::pair<int32_t, float>> decode_top_k(int32_t id, int k) = 0;

    /// Tokens in the context. Never throws.
    virtual int n_past() const = 0;
    /// Capacity of the KV cache, in tokens. Never throws.
    virtual int max_context() const = 0;
    /// Forgets the last n tokens; throws InvalidArgument if n < 0 or n > n_past().
    virtual void rewind(int n) = 0;
    /// Forgets every token.
    virtual void reset() = 0;
};

/// Weights on a device, shared by the caller and every session made from it:
/// its memory goes when the last of them lets go.
class Model {
public:
    /// Maps, validates and places the weights on the device. Throws InvalidFile,
    /// Unsupported (architecture, tensor type, missing or mis-shaped tensor, a
    /// device this build cannot use), InvalidArgument (the file cannot be
    /// opened, device) or OutOfMemory (says needed and free bytes).
    static std::shared_ptr<Model> load(const std::string& path, const ModelOptions& options = {});
    virtual ~Model() = default;

    /// The hyper-parameters; the reference lives as long as the model. Never throws.
    virtual const ModelConfig& config() const = 0;
    /// The device the weights are on. Never throws.
    virtual Device device() const = 0;
    /// Allocates a KV cache and scratch for a new session the caller owns; it
    /// keeps the model alive. Throws InvalidArgument (max_context), OutOfMemory
    /// or Closed.
    virtual std::unique_ptr<Session> create_session(const SessionOptions& options = {}) = 0;
    /// Weights, KV caches and scratch now held. Never throws.
    virtual MemoryReport memory_report() const = 0;
    /// Marks the model closed: later create_session() and session calls throw
    /// Closed. The memory goes when the last session and handle do. Never throws.
    virtual void close() = 0;
    /// Whether close() was called. Never throws.
    virtual bool closed() const = 0;
};

}  // namespace orcd
