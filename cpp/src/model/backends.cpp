// Picks the backend for a device.
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

}  // namespace orcd
