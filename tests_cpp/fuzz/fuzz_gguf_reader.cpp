// libFuzzer target for the GGUF reader: any input must either parse into a
// File whose every value and tensor can be walked, or throw orcd::Error.
// Anything else (a crash, a sanitizer report, another exception) is a bug.
#include <cstddef>
#include <cstdint>

#include "orcd/gguf.h"

namespace {

using orcd::gguf::Value;
using orcd::gguf::ValueType;

// Touches every byte a value refers to, so an out-of-bounds view is caught by ASan.
uint64_t walk_value(const Value& v) {
    uint64_t h = static_cast<uint64_t>(v.type) + v.u + static_cast<uint64_t>(v.i);
    for (char ch : v.str) h += static_cast<uint8_t>(ch);
    if (v.type != ValueType::ARRAY) return h;
    // Each array has a view of its own kind only; a count that disagrees with it is a bug.
    if (v.elem_type == ValueType::STRING) {
        if (v.strings.size() != v.count) __builtin_trap();
        for (auto s : v.strings)
            for (char ch : s) h += static_cast<uint8_t>(ch);
    } else if (v.elem_type == ValueType::ARRAY) {
        if (v.items.size() != v.count) __builtin_trap();
        for (const auto& item : v.items) h += walk_value(item);
    } else {
        if (v.raw.size() != v.count * orcd::gguf::value_type_size(v.elem_type)) __builtin_trap();
        for (uint8_t b : v.raw) {
            if (v.elem_type == ValueType::BOOL && b > 1) __builtin_trap();  // the reader rejects such bools
            h += b;
        }
    }
    return h;
}

// The checked accessors either return or throw orcd::Error; both are fine.
void try_accessors(const Value& v) {
    try { (void)v.as_uint(); } catch (const orcd::Error&) {}
    try { (void)v.as_int(); } catch (const orcd::Error&) {}
    try { (void)v.as_float(); } catch (const orcd::Error&) {}
    try { (void)v.as_bool(); } catch (const orcd::Error&) {}
    try { (void)v.as_string(); } catch (const orcd::Error&) {}
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::shared_ptr<orcd::gguf::File> file;
    try {
        file = orcd::gguf::File::from_memory(data, size, "fuzz");
    } catch (const orcd::Error&) {
        return 0;
    }
    volatile uint64_t sink = 0;
    for (const auto& [key, value] : file->metadata()) {
        if (file->find(key) != &value) __builtin_trap();
        sink = sink + walk_value(value) + key.size();
        try_accessors(value);
    }
    for (const auto& t : file->tensors()) {
        if (file->find_tensor(t.name) != &t) __builtin_trap();
        if (t.offset < file->data_offset() || t.offset > size || t.nbytes > size - t.offset) __builtin_trap();
        if (t.offset % file->alignment() != 0) __builtin_trap();
        const auto& traits = orcd::gguf::traits(t.type);  // a parsed tensor's type must be known
        if (t.nbytes != t.n_elements() / traits.block_size * traits.block_bytes) __builtin_trap();
        auto bytes = file->tensor_data(t);
        if (!bytes.empty()) sink = sink + bytes.front() + bytes.back();
    }
    return 0;
}
