#include "quant/dequantize.h"

#include <cstring>
#include <string>

#include "quant/block_types.h"
#include "quant/dequant.h"

namespace orcd::quant {

bool can_dequantize(gguf::TensorType type) {
    return is_float_type(type) || visit_block_type(type, [](auto) {});
}

void dequantize(gguf::TensorType type, const uint8_t* src, float* dst, int64_t n) {
    using T = gguf::TensorType;
    if (!can_dequantize(type))
        throw Error(ErrorKind::Unsupported,
                    std::string("dequantisation of tensor type ") + gguf::traits(type).name + " is not supported");
    if (n < 0) throw Error(ErrorKind::InvalidArgument, "negative element count " + std::to_string(n));
    gguf::row_bytes(type, uint64_t(n));  // throws InvalidArgument unless n is a whole number of blocks

    if (type == T::F32) {
        std::memcpy(dst, src, size_t(n) * sizeof(float));
        return;
    }
    if (type == T::F16 || type == T::BF16) {
        const auto* halves = reinterpret_cast<const uint16_t*>(src);
        if (type == T::F16)
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(halves[i]);
        else
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(halves[i]);
        return;
    }
    visit_block_type(type, [&](auto tag) {
        using Block = typename decltype(tag)::type;
        const auto* blocks = reinterpret_cast<const Block*>(src);
        const int64_t n_blocks = n / kBlockElements<Block>;
        for (int64_t b = 0; b < n_blocks; ++b) dequantize_block(blocks[b], dst + b * kBlockElements<Block>);
    });
}

}  // namespace orcd::quant
