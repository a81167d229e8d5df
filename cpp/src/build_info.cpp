#include "orcd/build.h"

namespace orcd {

BuildInfo build_info() {
    BuildInfo b;
    b.version = ORCD_VERSION;
#if defined(__clang__)
    b.compiler = "Clang " __clang_version__;
#elif defined(__GNUC__)
    b.compiler = "GNU " __VERSION__;
#else
    b.compiler = "unknown";
#endif
#ifdef ORCD_WITH_CUDA
    b.cuda = true;
#endif
    b.cuda_architectures = ORCD_CUDA_ARCHITECTURES;
    b.build_type = ORCD_BUILD_TYPE;
    return b;
}

#ifndef ORCD_WITH_CUDA
std::vector<CudaDevice> cuda_devices() { return {}; }
#endif

}  // namespace orcd
