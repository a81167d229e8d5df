// Loads a GGUF model, prefills the given token ids, decodes greedily and prints
// the generated ids and their text.
//
//   generate MODEL.gguf N_NEW ID [ID ...] [--device cpu|cuda|cuda:N]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <orcd/gguf.h>
#include <orcd/model.h>

#include "token_text.h"

namespace {

int usage() {
    std::cerr << "usage: generate MODEL.gguf N_NEW ID [ID ...] [--device cpu|cuda|cuda:N]\n";
    return 2;
}

std::string join(const std::vector<int32_t>& ids) {
    std::string out;
    for (int32_t id : ids) out += (out.empty() ? "" : " ") + std::to_string(id);
    return out;
}

int32_t argmax(std::span<const float> logits) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    orcd::ModelOptions options;
    std::vector<int32_t> prompt;
    int n_new = -1;
    std::string path;
    try {
        for (size_t i = 0; i < args.size(); ++i) {
            if (args[i] == "--device" && i + 1 < args.size()) options.device = orcd::Device::parse(args[++i]);
            else if (path.empty()) path = args[i];
            else if (n_new < 0) n_new = std::stoi(args[i]);
            else prompt.push_back(std::stoi(args[i]));
        }
    } catch (const std::exception& e) {  // a number or device that does not parse
        std::cerr << "generate: " << e.what() << "\n";
        return usage();
    }
    if (path.empty() || n_new < 0 || prompt.empty()) return usage();

    try {
        auto model = orcd::Model::load(path, options);
        const orcd::ModelConfig& config = model->config();
        const std::shared_ptr<orcd::gguf::File> file = orcd::gguf::File::open(path);
        const TokenText text(*file);
        int32_t eos = -1;  // none: generate all N_NEW tokens
        if (const orcd::gguf::Value* v = file->find("tokenizer.ggml.eos_token_id")) eos = int32_t(v->as_int());
        std::cout << "model: " << (config.name.empty() ? path : config.name) << " (" << config.architecture << ", "
                  << config.n_layers << " layers, vocabulary " << config.n_vocab << ") on " << model->device().str() << "\n";
        std::cout << "prompt ids: " << join(prompt) << "\n";

        auto session = model->create_session({.max_context = int(prompt.size()) + n_new});
        std::span<const float> logits = session->prefill(prompt);  // checks the ids against the vocabulary
        std::cout << "prompt text: \"" << text.bytes(prompt) << "\"\n";
        std::vector<int32_t> generated;
        for (int i = 0; i < n_new; ++i) {
            generated.push_back(argmax(logits));
            if (generated.back() == eos) break;
            if (i + 1 < n_new) logits = session->decode(generated.back());
        }
        std::cout << "generated ids: " << join(generated) << "\n";
        std::cout << "generated text: \"" << text.bytes(generated) << "\"\n";
    } catch (const orcd::Error& e) {
        std::cerr << "generate: " << orcd::error_kind_name(e.kind()) << ": " << e.what() << "\n";
        return 1;
    } catch (const std::out_of_range&) {
        std::cerr << "generate: the file's vocabulary is shorter than the model's output\n";
        return 1;
    }
    return 0;
}
