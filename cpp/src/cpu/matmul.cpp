#include "cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/dot_kernels.h"
#include "quant/dequantize.h"

namespace orcd::cpu {
namespace {

// Floats of dequantised weights per tile (256 KiB): fits the L2 of current
// x86 cores (512 KiB to 2 MiB) next to the activations being multiplied.
constexpr int64_t kTileFloats = 64 * 1024;

std::string type_name(gguf::TensorType type) {
    const gguf::TypeTraits* t = gguf::type_traits(static_cast<uint32_t>(type));
    return t ? t->name : "id " + std::to_string(static_cast<uint32_t>(type));
}

void check_supported(gguf::TensorType type) {
    if (!supports(type))
        throw Error(ErrorKind::Unsupported, "the CPU backend has no matmul for tensor type " + type_name(type));
}

}  // namespace

bool cpu_has_avx2() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                            __builtin_cpu_supports("f16c");
    return has;
}

Isa default_isa() {
    static const Isa isa = [] {
        const char* scalar = std::getenv("ORCD_CPU_SCALAR");
        if (scalar && std::strcmp(scalar, "") != 0 && std::strcmp(scalar, "0") != 0) return Isa::Scalar;
        return cpu_has_avx2() ? Isa::Avx2 : Isa::Scalar;
    }();
    return isa;
}

const char* isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "scalar"; }

bool supports(gguf::TensorType type) { return quant::can_dequantize(type); }

void dequantize_row(gguf::TensorType type, const uint8_t* src, float* dst, int64_t n) {
    check_supported(type);
    quant::dequantize(type, src, dst, n);
}

void matmul(gguf::TensorType type, const uint8_t* weight, int64_t rows, int64_t cols, const float* x, int64_t n,
            float* out, ThreadPool& pool) {
    matmul(type, weight, rows, cols, x, n, out, pool, default_isa());
}

void matmul(gguf::TensorType type, const uint8_t* weight, int64_t rows, int64_t cols, const float* x, int64_t n,
            float* out, ThreadPool& pool, Isa isa) {
    check_supported(type);
    if (rows < 0 || cols < 0 || n < 0)
        throw Error(ErrorKind::InvalidArgument, "matmul sizes must not be negative (rows " + std::to_string(rows) +
                                                    ", cols " + std::to_string(cols) + ", n " + std::to_string(n) + ")");
    const int64_t row_bytes = int64_t(gguf::row_bytes(type, uint64_t(cols)));
    if (isa == Isa::Avx2 && !cpu_has_avx2())
        throw Error(ErrorKind::Unsupported, "the AVX2 kernels need a CPU with AVX2, FMA and F16C");
    if (rows == 0 || n == 0) return;

    kernels::RowDot row_dot = isa == Isa::Avx2 ? kernels::avx2_row_dot(type) : nullptr;
    if (!row_dot) row_dot = kernels::scalar_row_dot(type);
    if (n == 1) {
        // Decode: fused dequantise-and-dot kernels read every weight byte once;
        // threads split the rows.
        pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) out[r] = row_dot(weight + r * row_bytes, x, cols);
        });
        return;
    }

    // Prefill: dequantise a tile of rows once (exactly), then multiply it with
    // all n activation rows while it sits in cache. F32 rows need no copy.
    const kernels::TileDot tile_dot = isa == Isa::Avx2 ? kernels::avx2_tile_dot : kernels::scalar_tile_dot;
    const kernels::RowDequantize fast_dequantize = isa == Isa::Avx2 ? kernels::avx2_row_dequantize(type) : nullptr;
    const int64_t tile_rows = std::clamp<int64_t>(kTileFloats / std::max<int64_t>(cols, 1) / 4 * 4, 4, 64);
    const int64_t n_tiles = (rows + tile_rows - 1) / tile_rows;
    pool.parallel_for(n_tiles, [&](int64_t tile_begin, int64_t tile_end) {
        thread_local std::vector<float> tile;
        for (int64_t t = tile_begin; t < tile_end; ++t) {
            const int64_t r0 = t * tile_rows, n_rows = std::min(tile_rows, rows - r0);
            const float* w;
            if (type == gguf::TensorType::F32) {
                w = reinterpret_cast<const float*>(weight + r0 * row_bytes);
            } else {
                if (tile.size() < size_t(n_rows * cols)) tile.resize(size_t(n_rows * cols));
                for (int64_t r = 0; r < n_rows; ++r) {
                    const uint8_t* src = weight + (r0 + r) * row_bytes;
                    if (fast_dequantize) fast_dequantize(src, tile.data() + r * cols, cols);
                    else quant::dequantize(type, src, tile.data() + r * cols, cols);
                }
                w = tile.data();
            }
            tile_dot(w, n_rows, x, n, cols, out + r0, rows);
        }
    });
}

}  // namespace orcd::cpu
