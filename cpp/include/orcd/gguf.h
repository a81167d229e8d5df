// orcd/gguf.h — a validated, memory-mapped, read-only view of a GGUF file.
// Nothing read from the file is trusted before it is checked; every malformed
// input throws orcd::Error(InvalidFile or Unsupported) naming the byte offset,
// key or tensor. Tensor data is never copied: spans point into the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "orcd/error.h"

namespace orcd::gguf {

// ggml tensor types, with the ids GGUF files store.
enum class TensorType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
    IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
    IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
};

struct TypeTraits {
    const char* name;     // "Q4_K"
    uint32_t block_size;  // elements per block (1 for plain types)
    uint32_t block_bytes; // bytes per block
};

/// Traits of a type id (static storage), or nullptr when the id is unknown. Never throws.
const TypeTraits* type_traits(uint32_t type_id);
/// Traits of a known type (static storage); throws Unsupported for an unknown one.
const TypeTraits& traits(TensorType type);
/// The type of a name such as "Q4_K"; throws InvalidArgument for an unknown name.
TensorType type_from_name(std::string_view name);
/// Bytes of a row of n elements; throws InvalidArgument if n is not a whole number of blocks.
uint64_t row_bytes(TensorType type, uint64_t n);

// Metadata value types, with the ids GGUF files store.
enum class ValueType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
/// Lower-case name of a value type, e.g. "u32" (static storage). Never throws.
const char* value_type_name(ValueType type);
/// Bytes of one element of a fixed-size type (0 for STRING and ARRAY). Never throws.
size_t value_type_size(ValueType type);

// One metadata value. Strings and numeric arrays are views into the mapping:
// valid while the File that produced them lives.
struct Value {
    ValueType type = ValueType::U8;
    uint64_t u = 0;            // U8, U16, U32, U64, BOOL
    int64_t i = 0;             // I8, I16, I32, I64
    double f = 0;              // F32, F64
    std::string_view str;      // STRING
    // ARRAY: element type and count; exactly one of the three below is used.
    ValueType elem_type = ValueType::U8;
    uint64_t count = 0;
    std::span<const uint8_t> raw;           // numeric/bool elements, little-endian
    std::vector<std::string_view> strings;  // string elements
    std::vector<Value> items;               // nested arrays

    /// Checked accessors; each throws InvalidFile naming the expected type.
    uint64_t as_uint() const;    // any unsigned or non-negative signed integer
    int64_t as_int() const;      // any integer that fits int64
    double as_float() const;     // any number
    bool as_bool() const;
    std::string_view as_string() const;
};

/// One entry of the tensor table; name points into the File's mapping.
struct TensorInfo {
    std::string_view name;
    TensorType type;
    uint32_t n_dims;
    uint64_t dims[4];  // innermost (row length) first; unused dims are 1
    uint64_t offset;   // absolute byte offset of the data in the file
    uint64_t nbytes;
    uint64_t n_elements() const { return dims[0] * dims[1] * dims[2] * dims[3]; }
};

/// A parsed GGUF file. It owns the mapping: every view it hands out (Value
/// strings and arrays, TensorInfo names, tensor_data spans) is valid while the
/// File lives. Read-only, so one File may be read from several threads.
class File {
public:
    /// Maps and validates the file. Throws InvalidFile (malformed), Unsupported
    /// (unknown version or tensor type) or InvalidArgument (cannot open).
    static std::shared_ptr<File> open(const std::string& path);
    /// Validates a buffer the caller keeps alive for the File's lifetime (tests,
    /// fuzzing); nothing is copied. Throws as open() does.
    static std::shared_ptr<File> from_memory(const uint8_t* data, size_t size, std::string label = "<memory>");
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    size_t size() const { return size_; }

    /// Metadata in file order.
    const std::vector<std::pair<std::string_view, Value>>& metadata() const { return kv_; }
    /// The value of a key, or nullptr when absent. Never throws.
    const Value* find(std::string_view key) const;
    /// The value of a key; throws InvalidFile naming the key when absent.
    const Value& get(std::string_view key) const;

    /// The tensor table in file order; offsets are absolute.
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    /// A tensor by name, or nullptr when absent. Never throws.
    const TensorInfo* find_tensor(std::string_view name) const;
    /// Raw bytes of a tensor of this File, inside the mapping (not copied).
    std::span<const uint8_t> tensor_data(const TensorInfo& t) const { return {base_ + t.offset, t.nbytes}; }

private:
    File() = default;
    void parse();

    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string_view, Value>> kv_;
    std::map<std::string_view, size_t> kv_index_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string_view, size_t> tensor_index_;
};

}  // namespace orcd::gguf
