#include "token_text.h"

#include <array>

namespace {

// Code points of a UTF-8 string; malformed UTF-8 gives meaningless code points,
// never a read past the end.
std::vector<uint32_t> code_points(std::string_view s) {
    std::vector<uint32_t> out;
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<uint8_t>(s[i]);
        const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
        for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
        out.push_back(cp);
        i += n;
    }
    return out;
}

// GPT-2 writes each byte as a printable code point: printable Latin-1 bytes as
// themselves, the other 68 bytes as 256, 257, ... in byte order.
std::string gpt2_bytes(std::string_view token) {
    static const std::array<int, 512> byte_of = [] {
        std::array<int, 512> table{};
        table.fill(-1);
        int next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            table[printable ? b : next++] = b;
        }
        return table;
    }();
    std::string out;
    for (uint32_t cp : code_points(token)) {
        if (cp >= byte_of.size() || byte_of[cp] < 0) return std::string(token);  // not byte-encoded: keep as written
        out.push_back(static_cast<char>(byte_of[cp]));
    }
    return out;
}

// SentencePiece writes spaces as U+2581 and raw bytes as <0xNN>.
std::string sentencepiece_bytes(std::string_view token) {
    if (token.size() == 6 && token.substr(0, 3) == "<0x" && token.back() == '>')
        return std::string(1, static_cast<char>(std::stoi(std::string(token.substr(3, 2)), nullptr, 16)));
    std::string out;
    for (size_t i = 0; i < token.size(); ++i) {
        if (token.substr(i, 3) == "\xE2\x96\x81") {
            out.push_back(' ');
            i += 2;
        } else {
            out.push_back(token[i]);
        }
    }
    return out;
}

}  // namespace

TokenText::TokenText(const orcd::gguf::File& file) {
    const orcd::gguf::Value& tokens = file.get("tokenizer.ggml.tokens");
    std::string_view model;
    if (const orcd::gguf::Value* m = file.find("tokenizer.ggml.model")) model = m->as_string();
    pieces_.reserve(tokens.strings.size());
    for (std::string_view token : tokens.strings) {
        if (model == "gpt2") pieces_.push_back(gpt2_bytes(token));
        else if (model == "llama") pieces_.push_back(sentencepiece_bytes(token));
        else pieces_.emplace_back(token);
    }
}

std::string TokenText::bytes(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) out += bytes(id);
    return out;
}
