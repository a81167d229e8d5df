// The CPU backend: float32 everywhere, weights read in place from the mapped
// file. It is the reference the CUDA backend is checked against.
#pragma once

#include "cpu/thread_pool.h"
#include "model/backend.h"

namespace orcd::cpu {

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(int n_threads) : pool_(n_threads) {}

    std::string device_name() const override { return "cpu"; }
    bool supports(gguf::TensorType type) const override;
    std::vector<Weight> load_weights(const gguf::File& file, const std::vector<const gguf::TensorInfo*>& tensors) override;
    Weight upload_floats(const std::vector<float>& values) override;
    size_t weight_bytes() const override { return weight_bytes_; }
    size_t session_bytes(const ModelConfig& config, const SessionShape& shape) const override;
    std::unique_ptr<BackendSession> create_session(const ModelConfig& config, const SessionShape& shape) override;
    void set_inputs(BackendSession& s, const int32_t* ids, int n, int pos0) override;

    void embed(const Weight& table, const int32_t* ids, int n, float* out) override;
    void rms_norm(const float* x, const Weight& w, float eps, int n, int dim, float* out) override;
    void matmul(const Weight& w, const float* x, int n, float* out, int ldo, const Weight* bias, bool accumulate) override;
    void rope(float* qkv, int n, int ld, const int32_t* positions, const RopeParams& p) override;
    void attention(BackendSession& s, int layer, const float* qkv, int ld, int n, const int32_t* positions, float* out) override;
    void swiglu(const float* gate_up, int n, int n_ff, float* out) override;
    void download(const float* src, size_t count, float* dst) override;

    ThreadPool& pool() { return pool_; }

private:
    ThreadPool pool_;
    size_t weight_bytes_ = 0;
    std::vector<std::vector<float>> owned_;  // derived float vectors (upload_floats)
};

}  // namespace orcd::cpu
