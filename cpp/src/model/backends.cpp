// Picks the backend for a device; the exact host selections shared by backends.
#include <algorithm>

#include "cpu/cpu_backend.h"
#include "model/backend.h"

namespace orcd {

std::unique_ptr<Backend> make_backend(const ModelOptions& options) {
    if (options.device.kind == Device::Kind::CPU) return std::make_unique<cpu::CpuBackend>(options.n_threads);
#ifdef ORCD_WITH_CUDA
    return make_cuda_backend(options);
#else
    throw Error(ErrorKind::Unsupported, "device " + options.device.str() + " was asked for, but this build of orcd has no CUDA backend");
#endif
}

int32_t Backend::argmax_host(const float* x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

std::vector<std::pair<int32_t, float>> Backend::top_k_host(const float* x, int n, int k) {
    std::vector<std::pair<int32_t, float>> all(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) all[size_t(i)] = {i, x[i]};
    k = std::min(k, n);
    auto before = [](const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
        return a.second > b.second || (a.second == b.second && a.first < b.first);
    };
    std::partial_sort(all.begin(), all.begin() + k, all.end(), before);
    all.resize(size_t(k));
    return all;
}

}  // namespace orcd
