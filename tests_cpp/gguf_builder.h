// Builds GGUF files byte by byte, so tests can make valid and malformed files alike.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace orcd::testing {

class GGUFBuilder {
public:
    std::vector<uint8_t> bytes;

    template <typename T>
    GGUFBuilder& put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        bytes.insert(bytes.end(), p, p + sizeof(T));
        return *this;
    }
    GGUFBuilder& str(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
        return *this;
    }
    GGUFBuilder& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        bytes.insert(bytes.end(), {'G', 'G', 'U', 'F'});
        return put(version).put(n_tensors).put(n_kv);
    }
    GGUFBuilder& key(const std::string& k, uint32_t value_type) { return str(k).put(value_type); }
    GGUFBuilder& kv_u32(const std::string& k, uint32_t v) { return key(k, 4).put(v); }
    GGUFBuilder& kv_str(const std::string& k, const std::string& v) { return key(k, 8).str(v); }
    GGUFBuilder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
        str(name).put<uint32_t>(static_cast<uint32_t>(dims.size()));
        for (auto d : dims) put(d);
        return put(type).put(offset);
    }
    // Pads to the alignment, then appends n data bytes.
    GGUFBuilder& data(size_t n, size_t alignment = 32, uint8_t fill = 0x3c) {
        while (bytes.size() % alignment) bytes.push_back(0);
        bytes.insert(bytes.end(), n, fill);
        return *this;
    }
};

// A small valid file: two metadata keys, one F32 tensor [8, 2] and one Q8_0 [32].
inline std::vector<uint8_t> small_valid_file(uint32_t version = 3) {
    GGUFBuilder b;
    b.header(version, 2, 2).kv_str("general.architecture", "llama").kv_u32("llama.block_count", 2);
    b.tensor("a", {8, 2}, 0, 0).tensor("b", {32}, 8, 64);
    b.data(64 + 34);
    return b.bytes;
}

}  // namespace orcd::testing
