// orcd/build.h — how this copy of orcd was built, and which CUDA devices it sees.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace orcd {

/// How this copy was built, as recorded at compile time.
struct BuildInfo {
    std::string version;
    std::string compiler;            // e.g. "GNU 12.2.0"
    bool cuda = false;               // the CUDA backend is compiled in
    std::string cuda_architectures;  // e.g. "80,86,89,90"; empty without CUDA
    std::string build_type;          // CMake build type
};
/// This build's description. Throws nothing but std::bad_alloc.
BuildInfo build_info();

struct CudaDevice {
    int index = 0;
    std::string name;
    size_t total_memory = 0;  // bytes
    int major = 0, minor = 0; // compute capability
};
/// The CUDA devices usable by this build; empty without a driver, a GPU or the
/// CUDA backend. Throws nothing but std::bad_alloc.
std::vector<CudaDevice> cuda_devices();

}  // namespace orcd
