// The public C++ API (orcd/model.h, orcd/error.h, orcd/build.h) as a program
// that embeds orcd sees it, on tiny models written in the test: loading,
// configuration, several sessions (also from threads), prefill/decode
// consistency, rewind/reset, and every kind of error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "gguf_builder.h"
#include "orcd/build.h"
#include "orcd/model.h"

using namespace orcd;
using orcd::testing::TinyModelSpec;
using orcd::testing::tiny_model_file;

namespace {

namespace fs = std::filesystem;

// Tiny model files in a folder of their own, removed at the end of the suite.
class PublicApi : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = fs::temp_directory_path() / ("orcd_public_api_" + std::to_string(std::random_device{}()));
        fs::create_directories(dir_);
        qwen2_ = write("qwen2.gguf", tiny_model_file({}));
        TinyModelSpec llama;
        llama.architecture = "llama";
        llama_ = write("llama.gguf", tiny_model_file(llama));
    }
    static void TearDownTestSuite() { fs::remove_all(dir_); }

    static std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
        const fs::path path = dir_ / name;
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        return path.string();
    }

    static inline fs::path dir_;
    static inline std::string qwen2_, llama_;
};

std::vector<float> copy(std::span<const float> logits) { return {logits.begin(), logits.end()}; }

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float d = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(a[i] - b[i]));
    return d;
}

// Logits a test can compare meaningfully: finite and not all the same value.
void expect_informative(const std::vector<float>& logits) {
    ASSERT_FALSE(logits.empty());
    for (float x : logits) ASSERT_TRUE(std::isfinite(x));
    EXPECT_GT(*std::max_element(logits.begin(), logits.end()) - *std::min_element(logits.begin(), logits.end()), 1e-3f);
}

// Runs `call`, expecting an orcd::Error of `kind` whose message contains `needle`.
void expect_error(ErrorKind kind, const std::string& needle, const std::function<void()>& call) {
    try {
        call();
        ADD_FAILURE() << "expected " << error_kind_name(kind) << " containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << error_kind_name(e.kind()) << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

const std::vector<int32_t> kPrompt = {3, 14, 15, 9, 26, 5, 35, 8, 9, 7, 9, 32};

std::vector<float> last_logits_of_fresh_session(Model& model, const std::vector<int32_t>& ids) {
    auto session = model.create_session({.max_context = 64});
    return copy(session->prefill(ids));
}

}  // namespace

TEST_F(PublicApi, LoadReportsTheConfigurationFromTheFile) {
    auto model = Model::load(qwen2_);
    const ModelConfig& c = model->config();
    EXPECT_EQ(c.architecture, "qwen2");
    EXPECT_EQ(c.name, "tiny-qwen2");
    EXPECT_EQ(c.n_layers, 2);
    EXPECT_EQ(c.n_embd, 64);
    EXPECT_EQ(c.n_ff, 128);
    EXPECT_EQ(c.n_heads, 4);
    EXPECT_EQ(c.n_kv_heads, 2);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.rope_dim, 16);
    EXPECT_EQ(c.n_vocab, 64);
    EXPECT_EQ(c.context_length, 128);
    EXPECT_FLOAT_EQ(c.rope_freq_base, 10000.0f);
    EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
    EXPECT_EQ(c.rope_style, RopeStyle::NeoX);
    EXPECT_TRUE(c.attention_bias);
    EXPECT_FALSE(c.tied_output);
    EXPECT_EQ(model->device().kind, Device::Kind::CPU);
    EXPECT_FALSE(model->closed());

    auto llama = Model::load(llama_, {.device = Device::cpu(), .n_threads = 1});
    EXPECT_EQ(llama->config().architecture, "llama");
    EXPECT_EQ(llama->config().rope_style, RopeStyle::Normal);
    EXPECT_FALSE(llama->config().attention_bias);
}

TEST_F(PublicApi, MemoryReportCountsWeightsAndOpenSessions) {
    auto model = Model::load(qwen2_);
    // All F32: token_embd + output (2 * 64 * 64), output_norm, and per layer the
    // norms, projections, biases and feed-forward.
    const size_t per_layer = 2 * 64 + 64 * 64 + 2 * 64 * 32 + 64 + 2 * 32 + 64 * 64 + 3 * 64 * 128;
    const size_t expected_weights = (2 * 64 * 64 + 64 + 2 * per_layer) * sizeof(float);
    MemoryReport before = model->memory_report();
    EXPECT_EQ(before.device, "cpu");
    EXPECT_EQ(before.weights, expected_weights);
    EXPECT_EQ(before.kv_cache, 0u);
    {
        auto a = model->create_session({.max_context = 32});
        auto b = model->create_session({.max_context = 64});
        // K and V, 2 layers, 2 kv heads of 16 floats per token.
        EXPECT_EQ(model->memory_report().kv_cache, (32 + 64) * 2 * 2 * 2 * 16 * sizeof(float));
        EXPECT_GT(model->memory_report().scratch, 0u);
    }
    EXPECT_EQ(model->memory_report().kv_cache, 0u);
    EXPECT_EQ(model->memory_report().scratch, 0u);
}

TEST_F(PublicApi, SessionDefaultsToTheModelContext) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session();
    EXPECT_EQ(session->max_context(), 128);
    EXPECT_EQ(session->n_past(), 0);
    auto small = model->create_session({.max_context = 16});
    EXPECT_EQ(small->max_context(), 16);
    auto beyond = model->create_session({.max_context = 256, .allow_beyond_model_context = true});
    EXPECT_EQ(beyond->max_context(), 256);
}

TEST_F(PublicApi, PrefillThenDecodesMatchOneLongPrefill) {
    for (const std::string& path : {qwen2_, llama_}) {
        SCOPED_TRACE(path);
        auto model = Model::load(path);
        const int n = 5, k = int(kPrompt.size()) - n;
        auto whole = model->create_session({.max_context = 64});
        std::vector<float> all = copy(whole->prefill_all(kPrompt));
        ASSERT_EQ(all.size(), kPrompt.size() * 64);
        EXPECT_EQ(whole->n_past(), int(kPrompt.size()));

        auto stepwise = model->create_session({.max_context = 64});
        std::vector<float> logits = copy(stepwise->prefill(std::span(kPrompt).first(n)));
        expect_informative(logits);
        EXPECT_LT(max_abs_diff(logits, std::vector<float>(all.begin() + (n - 1) * 64, all.begin() + n * 64)), 1e-4f);
        for (int i = n; i < n + k; ++i) {
            logits = copy(stepwise->decode(kPrompt[i]));
            EXPECT_LT(max_abs_diff(logits, std::vector<float>(all.begin() + i * 64, all.begin() + (i + 1) * 64)), 1e-4f)
                << "position " << i;
        }
        EXPECT_EQ(stepwise->n_past(), n + k);
        // prefill returns the last row of prefill_all.
        auto last = model->create_session({.max_context = 64});
        EXPECT_LT(max_abs_diff(copy(last->prefill(kPrompt)), std::vector<float>(all.end() - 64, all.end())), 1e-4f);
    }
}

TEST_F(PublicApi, DifferentPromptsGiveDifferentLogits) {
    // Guards the comparisons above against a forward pass that ignores its input.
    auto model = Model::load(qwen2_);
    EXPECT_GT(max_abs_diff(last_logits_of_fresh_session(*model, {1, 2, 3}), last_logits_of_fresh_session(*model, {1, 2, 4})), 1e-3f);
}

TEST_F(PublicApi, SessionsOfOneModelAreIndependent) {
    auto model = Model::load(qwen2_);
    const std::vector<int32_t> a = {1, 2, 3, 4}, b = {60, 50, 40};
    auto first = model->create_session({.max_context = 64});
    auto second = model->create_session({.max_context = 64});
    first->prefill(a);
    second->prefill(b);
    std::vector<float> first_next = copy(first->decode(7));
    std::vector<float> second_next = copy(second->decode(7));
    EXPECT_EQ(first->n_past(), 5);
    EXPECT_EQ(second->n_past(), 4);
    EXPECT_LT(max_abs_diff(first_next, last_logits_of_fresh_session(*model, {1, 2, 3, 4, 7})), 1e-4f);
    EXPECT_LT(max_abs_diff(second_next, last_logits_of_fresh_session(*model, {60, 50, 40, 7})), 1e-4f);
}

TEST_F(PublicApi, SessionsRunConcurrentlyOnThreads) {
    auto model = Model::load(qwen2_, {.n_threads = 2});
    constexpr int kThreads = 4, kSteps = 6;
    struct Run {
        std::vector<int32_t> tokens;
        std::vector<float> last_logits;
    };
    // Each thread decodes its own sequence greedily; the same run on one thread is the reference.
    auto run = [&](int t) {
        auto session = model->create_session({.max_context = 32});
        Run out;
        std::span<const float> logits = session->prefill(std::vector<int32_t>{t + 1, 2 * t + 3, 11});
        for (int i = 0; i < kSteps; ++i) {
            out.tokens.push_back(int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
            logits = session->decode(out.tokens.back());
        }
        out.last_logits = copy(logits);
        return out;
    };
    std::vector<Run> expected(kThreads), got(kThreads);
    for (int t = 0; t < kThreads; ++t) expected[t] = run(t);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { got[t] = run(t); });
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
        EXPECT_EQ(got[t].tokens, expected[t].tokens) << "thread " << t;
        EXPECT_LT(max_abs_diff(got[t].last_logits, expected[t].last_logits), 1e-5f) << "thread " << t;
    }
    // The four prompts differ, so their results must too.
    EXPECT_GT(max_abs_diff(expected[0].last_logits, expected[1].last_logits), 1e-3f);
}

TEST_F(PublicApi, RewindForgetsTheLastTokensAndResetForgetsAll) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session({.max_context = 64});
    std::vector<float> first = copy(session->prefill(kPrompt));
    session->rewind(4);
    EXPECT_EQ(session->n_past(), int(kPrompt.size()) - 4);
    std::vector<int32_t> rewound(kPrompt.begin(), kPrompt.end() - 4);
    rewound.push_back(42);
    EXPECT_LT(max_abs_diff(copy(session->decode(42)), last_logits_of_fresh_session(*model, rewound)), 1e-4f);
    session->rewind(0);
    EXPECT_EQ(session->n_past(), int(rewound.size()));

    session->reset();
    EXPECT_EQ(session->n_past(), 0);
    EXPECT_LT(max_abs_diff(copy(session->prefill(kPrompt)), first), 1e-4f);
    session->rewind(session->n_past());
    EXPECT_EQ(session->n_past(), 0);
}

TEST_F(PublicApi, DeviceParsesItsNames) {
    EXPECT_EQ(Device::parse("cpu").kind, Device::Kind::CPU);
    EXPECT_EQ(Device::parse("cuda").str(), "cuda:0");
    EXPECT_EQ(Device::parse("cuda:3").index, 3);
    EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
    EXPECT_EQ(Device::cpu().str(), "cpu");
}

TEST_F(PublicApi, BuildInfoDescribesThisBuild) {
    BuildInfo info = build_info();
    EXPECT_FALSE(info.version.empty());
    EXPECT_FALSE(info.compiler.empty());
    EXPECT_EQ(info.cuda, !info.cuda_architectures.empty());
    if (!info.cuda) EXPECT_TRUE(cuda_devices().empty());
}

// --- errors, one kind at a time ------------------------------------------------

TEST_F(PublicApi, InvalidFileForATruncatedModel) {
    std::vector<uint8_t> bytes = tiny_model_file({});
    bytes.resize(bytes.size() / 2);
    const std::string path = write("truncated.gguf", bytes);
    expect_error(ErrorKind::InvalidFile, "past the end of the file", [&] { Model::load(path); });
}

TEST_F(PublicApi, InvalidArgumentForAFileThatCannotBeOpened) {
    expect_error(ErrorKind::InvalidArgument, "no-such-model.gguf", [&] { Model::load((dir_ / "no-such-model.gguf").string()); });
}

TEST_F(PublicApi, UnsupportedForAnUnknownArchitecture) {
    TinyModelSpec spec;
    spec.architecture = "mamba";
    const std::string path = write("mamba.gguf", tiny_model_file(spec));
    expect_error(ErrorKind::Unsupported, "architecture 'mamba' is not supported", [&] { Model::load(path); });
}

TEST_F(PublicApi, UnsupportedForAMissingTensor) {
    TinyModelSpec spec;
    spec.omit_tensor = "blk.1.ffn_down.weight";
    const std::string path = write("missing.gguf", tiny_model_file(spec));
    expect_error(ErrorKind::Unsupported, "'blk.1.ffn_down.weight' of shape [128, 64], which is missing", [&] { Model::load(path); });
}

TEST_F(PublicApi, UnsupportedForAMisShapedTensor) {
    TinyModelSpec spec;
    spec.misshape_tensor = "blk.0.attn_k.weight";
    const std::string path = write("misshaped.gguf", tiny_model_file(spec));
    expect_error(ErrorKind::Unsupported, "'blk.0.attn_k.weight' has shape [64, 33], expected [64, 32]", [&] { Model::load(path); });
}

TEST_F(PublicApi, CudaDeviceWithoutAUsableGpuIsRejected) {
    if (!build_info().cuda) {
        expect_error(ErrorKind::Unsupported, "no CUDA backend", [&] { Model::load(qwen2_, {.device = Device::cuda(0)}); });
        return;
    }
    if (!cuda_devices().empty()) GTEST_SKIP() << "a GPU is present: loading on it is the CUDA tests' business";
    // A CUDA build on a machine without a GPU: the error must still be an
    // orcd::Error a caller can act on, not a crash or a foreign exception.
    try {
        Model::load(qwen2_, {.device = Device::cuda(0)});
        ADD_FAILURE() << "loading on cuda:0 succeeded without a GPU";
    } catch (const Error& e) {
        EXPECT_TRUE(e.kind() == ErrorKind::Unsupported || e.kind() == ErrorKind::InvalidArgument)
            << error_kind_name(e.kind()) << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    }
}

TEST_F(PublicApi, InvalidArgumentForBadTokenIdsAndLeavesTheSessionUnchanged) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session({.max_context = 64});
    session->prefill(std::vector<int32_t>{1, 2});
    expect_error(ErrorKind::InvalidArgument, "token id 64 at index 1 is outside the vocabulary [0, 64)",
                 [&] { session->prefill(std::vector<int32_t>{5, 64}); });
    expect_error(ErrorKind::InvalidArgument, "token id -1", [&] { session->decode(-1); });
    EXPECT_EQ(session->n_past(), 2);
    EXPECT_LT(max_abs_diff(copy(session->decode(3)), last_logits_of_fresh_session(*model, {1, 2, 3})), 1e-4f);
}

TEST_F(PublicApi, InvalidArgumentForAnEmptyPrompt) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session({.max_context = 8});
    expect_error(ErrorKind::InvalidArgument, "the prompt is empty", [&] { session->prefill({}); });
    expect_error(ErrorKind::InvalidArgument, "the prompt is empty", [&] { session->prefill_all({}); });
    EXPECT_EQ(session->n_past(), 0);
}

TEST_F(PublicApi, InvalidArgumentForAContextOverflow) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session({.max_context = 8});
    expect_error(ErrorKind::InvalidArgument, "context overflow", [&] { session->prefill(std::vector<int32_t>(9, 1)); });
    EXPECT_EQ(session->n_past(), 0);
    session->prefill(std::vector<int32_t>(6, 1));
    expect_error(ErrorKind::InvalidArgument, "6 tokens in the context + 3 new exceed max_context 8",
                 [&] { session->prefill(std::vector<int32_t>(3, 1)); });
    session->decode(1);
    session->decode(1);
    EXPECT_EQ(session->n_past(), 8);
    expect_error(ErrorKind::InvalidArgument, "context overflow", [&] { session->decode(1); });
    EXPECT_EQ(session->n_past(), 8);
}

TEST_F(PublicApi, InvalidArgumentForRewindingTooFar) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session({.max_context = 8});
    session->prefill(std::vector<int32_t>{1, 2, 3});
    expect_error(ErrorKind::InvalidArgument, "cannot rewind 4 tokens: the context holds 3", [&] { session->rewind(4); });
    expect_error(ErrorKind::InvalidArgument, "cannot rewind -1", [&] { session->rewind(-1); });
    EXPECT_EQ(session->n_past(), 3);
}

TEST_F(PublicApi, InvalidArgumentForABadDeviceString) {
    for (const char* text : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""})
        expect_error(ErrorKind::InvalidArgument, "use cpu, cuda or cuda:N", [&] { Device::parse(text); });
}

TEST_F(PublicApi, InvalidArgumentForAMaxContextBeyondTheModel) {
    auto model = Model::load(qwen2_);
    expect_error(ErrorKind::InvalidArgument, "max_context 129 exceeds the model's context length 128",
                 [&] { model->create_session({.max_context = 129}); });
    expect_error(ErrorKind::InvalidArgument, "max_context must be positive", [&] { model->create_session({.max_context = -1}); });
    EXPECT_EQ(model->memory_report().kv_cache, 0u);
}

#ifdef __linux__
// Caps the address space 256 MiB above what the process uses now, asks for a
// 2^24-token KV cache (8 GiB for this model) and returns 0 only on OutOfMemory
// with a message that says how much was needed.
int create_huge_session_under_a_memory_cap(Model& model) {
    long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    const rlim_t cap = rlim_t(pages) * rlim_t(sysconf(_SC_PAGESIZE)) + (rlim_t(256) << 20);
    const rlimit limit{cap, cap};
    setrlimit(RLIMIT_AS, &limit);
    try {
        model.create_session({.max_context = 1 << 24, .allow_beyond_model_context = true});
    } catch (const Error& e) {
        return e.kind() == ErrorKind::OutOfMemory && std::string(e.what()).find("MiB") != std::string::npos ? 0 : 2;
    }
    return 1;
}

TEST_F(PublicApi, OutOfMemoryWhenASessionDoesNotFit) {
    // The child re-runs this test alone rather than forking a process with
    // worker threads; it made its own model folder, and removes it as it exits.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    auto model = Model::load(qwen2_, {.n_threads = 1});
    EXPECT_EXIT(
        {
            const int code = create_huge_session_under_a_memory_cap(*model);
            fs::remove_all(dir_);
            std::exit(code);
        },
        ::testing::ExitedWithCode(0), "");
}
#endif

TEST_F(PublicApi, ClosedAfterClose) {
    auto model = Model::load(qwen2_);
    auto session = model->create_session({.max_context = 8});
    session->prefill(std::vector<int32_t>{1, 2});
    model->close();
    EXPECT_TRUE(model->closed());
    expect_error(ErrorKind::Closed, "closed", [&] { model->create_session(); });
    expect_error(ErrorKind::Closed, "closed", [&] { session->prefill(std::vector<int32_t>{1}); });
    expect_error(ErrorKind::Closed, "closed", [&] { session->prefill_all(std::vector<int32_t>{1}); });
    expect_error(ErrorKind::Closed, "closed", [&] { session->decode(1); });
    expect_error(ErrorKind::Closed, "closed", [&] { session->rewind(1); });
    expect_error(ErrorKind::Closed, "closed", [&] { session->reset(); });
    // The session keeps the model alive after the caller lets go of it.
    model.reset();
    EXPECT_EQ(session->n_past(), 2);
}

TEST(ErrorKindName, NamesEachKindAsPythonDoes) {
    EXPECT_STREQ(error_kind_name(ErrorKind::InvalidFile), "InvalidFileError");
    EXPECT_STREQ(error_kind_name(ErrorKind::Unsupported), "UnsupportedError");
    EXPECT_STREQ(error_kind_name(ErrorKind::InvalidArgument), "InvalidArgumentError");
    EXPECT_STREQ(error_kind_name(ErrorKind::OutOfMemory), "OutOfMemoryError");
    EXPECT_STREQ(error_kind_name(ErrorKind::Closed), "ClosedError");
}
