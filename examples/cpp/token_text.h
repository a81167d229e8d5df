// The bytes each token id stands for, read from a GGUF file's vocabulary.
// Enough to show generated text; it is not a tokenizer (no text -> ids).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <orcd/gguf.h>

class TokenText {
public:
    // Reads tokenizer.ggml.tokens, undoing the vocabulary's encoding of bytes:
    // GPT-2 byte-to-unicode ("gpt2" models) or SentencePiece's "▁" and <0xNN>
    // ("llama" models). Throws orcd::Error(InvalidFile) when there is no vocabulary.
    explicit TokenText(const orcd::gguf::File& file);

    // The bytes of one id; throws std::out_of_range outside the vocabulary.
    const std::string& bytes(int32_t id) const { return pieces_.at(static_cast<size_t>(id)); }
    // The bytes of several ids, concatenated.
    std::string bytes(std::span<const int32_t> ids) const;
    size_t size() const { return pieces_.size(); }

private:
    std::vector<std::string> pieces_;
};
