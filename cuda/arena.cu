#include "arena.h"

#include <cstdio>
#include <utility>

#include "cuda_check.h"

namespace orcd::cuda {

static std::string gib(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", double(bytes) / double(1ull << 30));
    return buf;
}

void check_fits(int device, size_t bytes, const std::string& what) {
    ORCD_CUDA_CHECK(cudaSetDevice(device));
    size_t free_bytes = 0, total_bytes = 0;
    ORCD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes > free_bytes) {
        cudaDeviceProp prop{};
        ORCD_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
        throw Error(ErrorKind::OutOfMemory, what + " needs " + gib(bytes) + " GiB, " + gib(free_bytes) +
                                                " GiB free on " + prop.name + " (cuda:" + std::to_string(device) +
                                                "); use a smaller max_context or free GPU memory");
    }
}

DeviceArena::DeviceArena(int device, size_t bytes, const std::string& what) : device_(device), size_(bytes) {
    check_fits(device, bytes, what);
    if (bytes == 0) return;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        throw Error(ErrorKind::OutOfMemory, what + " needs " + gib(bytes) + " GiB on cuda:" + std::to_string(device) +
                                                ", and the allocation failed (memory is fragmented or taken meanwhile)");
    }
    ORCD_CUDA_CHECK(err);
    base_ = static_cast<char*>(p);
}

DeviceArena::~DeviceArena() {
    if (base_) {
        cudaSetDevice(device_);
        cudaFree(base_);
    }
}

DeviceArena& DeviceArena::operator=(DeviceArena&& other) noexcept {
    std::swap(device_, other.device_);
    std::swap(base_, other.base_);
    std::swap(size_, other.size_);
    return *this;
}

}  // namespace orcd::cuda
