// CUDA error checking that turns a failed call into an orcd::Error.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "orcd/error.h"

namespace orcd::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
    const ErrorKind kind = err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Unsupported;
    throw Error(kind, std::string("CUDA error in ") + what + " (" + file + ":" + std::to_string(line) +
                          "): " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace orcd::cuda

#define ORCD_CUDA_CHECK(call)                                                            \
    do {                                                                                 \
        cudaError_t orcd_err_ = (call);                                                  \
        if (orcd_err_ != cudaSuccess) ::orcd::cuda::throw_cuda_error(orcd_err_, #call, __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: catches bad launch configurations at once.
#define ORCD_CUDA_CHECK_LAUNCH() ORCD_CUDA_CHECK(cudaGetLastError())
