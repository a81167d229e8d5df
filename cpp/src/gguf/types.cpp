// Sizes of every ggml type a GGUF file can carry, and of metadata value types.
#include <string>

#include "orcd/gguf.h"

namespace orcd::gguf {
namespace {

struct TypeEntry {
    uint32_t id;
    TypeTraits traits;
};

// Block geometry as ggml defines it (elements per block, bytes per block).
constexpr TypeEntry kTypes[] = {
    {0, {"F32", 1, 4}},         {1, {"F16", 1, 2}},         {2, {"Q4_0", 32, 18}},
    {3, {"Q4_1", 32, 20}},      {6, {"Q5_0", 32, 22}},      {7, {"Q5_1", 32, 24}},
    {8, {"Q8_0", 32, 34}},      {9, {"Q8_1", 32, 36}},      {10, {"Q2_K", 256, 84}},
    {11, {"Q3_K", 256, 110}},   {12, {"Q4_K", 256, 144}},   {13, {"Q5_K", 256, 176}},
    {14, {"Q6_K", 256, 210}},   {15, {"Q8_K", 256, 292}},   {16, {"IQ2_XXS", 256, 66}},
    {17, {"IQ2_XS", 256, 74}},  {18, {"IQ3_XXS", 256, 98}}, {19, {"IQ1_S", 256, 50}},
    {20, {"IQ4_NL", 32, 18}},   {21, {"IQ3_S", 256, 110}},  {22, {"IQ2_S", 256, 82}},
    {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}},         {25, {"I16", 1, 2}},
    {26, {"I32", 1, 4}},        {27, {"I64", 1, 8}},        {28, {"F64", 1, 8}},
    {29, {"IQ1_M", 256, 56}},   {30, {"BF16", 1, 2}},       {34, {"TQ1_0", 256, 54}},
    {35, {"TQ2_0", 256, 66}},
};

}  // namespace

const TypeTraits* type_traits(uint32_t type_id) {
    for (const auto& e : kTypes)
        if (e.id == type_id) return &e.traits;
    return nullptr;
}

const TypeTraits& traits(TensorType type) {
    const TypeTraits* t = type_traits(static_cast<uint32_t>(type));
    if (!t)
        throw Error(ErrorKind::Unsupported, "unknown ggml tensor type id " + std::to_string(static_cast<uint32_t>(type)));
    return *t;
}

TensorType type_from_name(std::string_view name) {
    for (const auto& e : kTypes)
        if (name == e.traits.name) return static_cast<TensorType>(e.id);
    throw Error(ErrorKind::InvalidArgument, "unknown ggml tensor type name '" + std::string(name) + "'");
}

uint64_t row_bytes(TensorType type, uint64_t n) {
    const TypeTraits& t = traits(type);
    if (n % t.block_size != 0)
        throw Error(ErrorKind::InvalidArgument, "a row of " + std::to_string(n) + " elements is not a whole number of " +
                                                    t.name + " blocks of " + std::to_string(t.block_size));
    return n / t.block_size * t.block_bytes;
}

const char* value_type_name(ValueType type) {
    switch (type) {
        case ValueType::U8: return "u8";
        case ValueType::I8: return "i8";
        case ValueType::U16: return "u16";
        case ValueType::I16: return "i16";
        case ValueType::U32: return "u32";
        case ValueType::I32: return "i32";
        case ValueType::F32: return "f32";
        case ValueType::BOOL: return "bool";
        case ValueType::STRING: return "string";
        case ValueType::ARRAY: return "array";
        case ValueType::U64: return "u64";
        case ValueType::I64: return "i64";
        case ValueType::F64: return "f64";
    }
    return "unknown";
}

size_t value_type_size(ValueType type) {
    switch (type) {
        case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
        case ValueType::U16: case ValueType::I16: return 2;
        case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
        case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
        case ValueType::STRING: case ValueType::ARRAY: return 0;
    }
    return 0;
}

}  // namespace orcd::gguf
