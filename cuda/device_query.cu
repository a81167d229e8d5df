// Lists CUDA devices; a missing driver or GPU gives an empty list, never an error.
#include <cuda_runtime.h>

#include "orcd/build.h"

namespace orcd {

std::vector<CudaDevice> cuda_devices() {
    std::vector<CudaDevice> out;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return out;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        out.push_back({i, p.name, p.totalGlobalMem, p.major, p.minor});
    }
    return out;
}

}  // namespace orcd
