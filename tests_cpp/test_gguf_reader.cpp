// The GGUF reader on files built byte by byte: every value type, both versions,
// alignment variants, and each class of malformed input.
#include <gtest/gtest.h>

#include <random>

#include "gguf_builder.h"
#include "orcd/gguf.h"

using namespace orcd;
using namespace orcd::gguf;
using orcd::testing::GGUFBuilder;
using orcd::testing::small_valid_file;

namespace {

std::shared_ptr<File> parse(const std::vector<uint8_t>& b) { return File::from_memory(b.data(), b.size(), "test.gguf"); }

// Expects parsing to fail with the given kind and a message containing `needle`.
void expect_error(const std::vector<uint8_t>& b, ErrorKind kind, const std::string& needle) {
    try {
        parse(b);
        FAIL() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), kind) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(GGUFReader, ReadsVersions2And3) {
    for (uint32_t version : {2u, 3u}) {
        auto bytes = small_valid_file(version);
        auto f = parse(bytes);
        EXPECT_EQ(f->version(), version);
        EXPECT_EQ(f->get("general.architecture").as_string(), "llama");
        EXPECT_EQ(f->get("llama.block_count").as_uint(), 2u);
        ASSERT_EQ(f->tensors().size(), 2u);
        const TensorInfo* a = f->find_tensor("a");
        ASSERT_NE(a, nullptr);
        EXPECT_EQ(a->type, TensorType::F32);
        EXPECT_EQ(a->n_dims, 2u);
        EXPECT_EQ(a->dims[0], 8u);
        EXPECT_EQ(a->dims[1], 2u);
        EXPECT_EQ(a->nbytes, 64u);
        EXPECT_EQ(a->offset % 32, 0u);
        EXPECT_EQ(f->find_tensor("b")->nbytes, 34u);
        EXPECT_EQ(f->tensor_data(*a).data(), bytes.data() + a->offset);  // no copy
    }
}

TEST(GGUFReader, ReadsEveryValueType) {
    GGUFBuilder b;
    b.header(3, 0, 16);
    b.key("u8", 0).put<uint8_t>(200);
    b.key("i8", 1).put<int8_t>(-100);
    b.key("u16", 2).put<uint16_t>(60000);
    b.key("i16", 3).put<int16_t>(-30000);
    b.key("u32", 4).put<uint32_t>(4000000000u);
    b.key("i32", 5).put<int32_t>(-2000000000);
    b.key("f32", 6).put<float>(1.5f);
    b.key("bool", 7).put<uint8_t>(1);
    b.key("string", 8).str("héllo");
    b.key("u64", 10).put<uint64_t>(1ull << 63);
    b.key("i64", 11).put<int64_t>(-(1ll << 62));
    b.key("f64", 12).put<double>(-2.25);
    b.key("arr_i32", 9).put<uint32_t>(5).put<uint64_t>(3).put<int32_t>(1).put<int32_t>(-2).put<int32_t>(3);
    b.key("arr_str", 9).put<uint32_t>(8).put<uint64_t>(2).str("a").str("");
    b.key("arr_nested", 9).put<uint32_t>(9).put<uint64_t>(2);
    b.put<uint32_t>(6).put<uint64_t>(1).put<float>(0.5f);
    b.put<uint32_t>(7).put<uint64_t>(2).put<uint8_t>(0).put<uint8_t>(1);
    b.key("arr_empty", 9).put<uint32_t>(12).put<uint64_t>(0);
    auto f = parse(b.bytes);
    EXPECT_EQ(f->get("u8").as_uint(), 200u);
    EXPECT_EQ(f->get("i8").as_int(), -100);
    EXPECT_EQ(f->get("u16").as_uint(), 60000u);
    EXPECT_EQ(f->get("i16").as_int(), -30000);
    EXPECT_EQ(f->get("u32").as_uint(), 4000000000u);
    EXPECT_EQ(f->get("i32").as_int(), -2000000000);
    EXPECT_EQ(f->get("f32").as_float(), 1.5);
    EXPECT_TRUE(f->get("bool").as_bool());
    EXPECT_EQ(f->get("string").as_string(), "héllo");
    EXPECT_EQ(f->get("u64").as_uint(), 1ull << 63);
    EXPECT_EQ(f->get("i64").as_int(), -(1ll << 62));
    EXPECT_EQ(f->get("f64").as_float(), -2.25);
    const Value& ai = f->get("arr_i32");
    EXPECT_EQ(ai.elem_type, ValueType::I32);
    ASSERT_EQ(ai.count, 3u);
    int32_t second;
    std::memcpy(&second, ai.raw.data() + 4, 4);
    EXPECT_EQ(second, -2);
    const Value& as = f->get("arr_str");
    ASSERT_EQ(as.strings.size(), 2u);
    EXPECT_EQ(as.strings[0], "a");
    EXPECT_EQ(as.strings[1], "");
    const Value& an = f->get("arr_nested");
    ASSERT_EQ(an.items.size(), 2u);
    EXPECT_EQ(an.items[0].elem_type, ValueType::F32);
    EXPECT_EQ(an.items[1].count, 2u);
    EXPECT_EQ(f->get("arr_empty").count, 0u);
    EXPECT_THROW(f->get("string").as_uint(), Error);
    EXPECT_THROW(f->get("missing"), Error);
}

TEST(GGUFReader, HonoursAlignment) {
    for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
        GGUFBuilder b;
        b.header(3, 2, 1).kv_u32("general.alignment", alignment);
        b.tensor("x", {4}, 0, 0).tensor("y", {3}, 0, (16 + alignment - 1) / alignment * alignment);
        b.data(4096 + 16, alignment);
        auto f = parse(b.bytes);
        EXPECT_EQ(f->alignment(), alignment);
        EXPECT_EQ(f->data_offset() % alignment, 0u);
        EXPECT_EQ(f->find_tensor("y")->offset % alignment, 0u);
    }
}

TEST(GGUFReader, RejectsBadMagicVersionAndEndianness) {
    auto b = small_valid_file();
    b[0] = 'X';
    expect_error(b, ErrorKind::InvalidFile, "bad magic");
    for (uint32_t v : {1u, 4u, 0x03000000u}) {
        auto c = small_valid_file();
        std::memcpy(c.data() + 4, &v, 4);
        expect_error(c, ErrorKind::Unsupported, v == 1 ? "version 1" : v == 4 ? "unknown GGUF version 4" : "big-endian");
    }
    expect_error({}, ErrorKind::InvalidFile, "bad magic");
}

TEST(GGUFReader, RejectsHostileCounts) {
    GGUFBuilder a;
    a.header(3, ~0ull, 0);
    expect_error(a.bytes, ErrorKind::InvalidFile, "tensor count");
    GGUFBuilder b;
    b.header(3, 0, 1ull << 62);
    expect_error(b.bytes, ErrorKind::InvalidFile, "metadata count");
    GGUFBuilder c;
    c.header(3, 0, 1).key("s", 8).put<uint64_t>(~0ull - 3);
    expect_error(c.bytes, ErrorKind::InvalidFile, "runs past the end");
    GGUFBuilder d;
    d.header(3, 0, 1).key("arr", 9).put<uint32_t>(10).put<uint64_t>(1ull << 61);
    expect_error(d.bytes, ErrorKind::InvalidFile, "array of");
    GGUFBuilder e;
    e.header(3, 0, 1).key("t", 77).put<uint32_t>(0);
    expect_error(e.bytes, ErrorKind::InvalidFile, "unknown value type 77");
    GGUFBuilder g;  // arrays nested beyond the depth limit
    g.header(3, 0, 1).key("deep", 9);
    for (int i = 0; i < 20; ++i) g.put<uint32_t>(9).put<uint64_t>(1);
    g.put<uint32_t>(0).put<uint64_t>(0);
    expect_error(g.bytes, ErrorKind::InvalidFile, "nested deeper");
    GGUFBuilder h;
    h.header(3, 0, 1).key("flag", 7).put<uint8_t>(2);
    expect_error(h.bytes, ErrorKind::InvalidFile, "neither 0 nor 1");
}

TEST(GGUFReader, RejectsDuplicates) {
    GGUFBuilder a;
    a.header(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2);
    expect_error(a.bytes, ErrorKind::InvalidFile, "duplicate metadata key 'k'");
    GGUFBuilder b;
    b.header(3, 2, 0).tensor("w", {4}, 0, 0).tensor("w", {4}, 0, 32).data(64);
    expect_error(b.bytes, ErrorKind::InvalidFile, "duplicate tensor name 'w'");
}

TEST(GGUFReader, RejectsBadTensors) {
    auto with_tensor = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset, size_t data = 64) {
        GGUFBuilder b;
        b.header(3, 1, 0).tensor("w", dims, type, offset).data(data);
        return b.bytes;
    };
    expect_error(with_tensor({1, 1, 1, 1, 1}, 0, 0), ErrorKind::InvalidFile, "n_dims 5");
    expect_error(with_tensor({1ull << 40, 1ull << 40}, 0, 0), ErrorKind::InvalidFile, "overflows");
    expect_error(with_tensor({4}, 99, 0), ErrorKind::Unsupported, "unknown ggml type id 99");
    expect_error(with_tensor({33}, 8, 0), ErrorKind::InvalidFile, "not a multiple of the Q8_0 block size 32");
    expect_error(with_tensor({4}, 0, 3), ErrorKind::InvalidFile, "not a multiple of the alignment");
    expect_error(with_tensor({4}, 0, 1ull << 50), ErrorKind::InvalidFile, "past the end");
    expect_error(with_tensor({1024}, 0, 0), ErrorKind::InvalidFile, "past the end");
    GGUFBuilder o;
    o.header(3, 2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).data(128);
    expect_error(o.bytes, ErrorKind::InvalidFile, "overlap");
    for (uint32_t alignment : {0u, 3u}) {
        GGUFBuilder b;
        b.header(3, 0, 1).kv_u32("general.alignment", alignment);
        expect_error(b.bytes, ErrorKind::InvalidFile, "power of two");
    }
}

TEST(GGUFReader, EveryTruncationIsAnError) {
    auto bytes = small_valid_file();
    for (size_t n = 0; n < bytes.size(); ++n) {
        std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
        EXPECT_THROW(parse(cut), Error) << "truncated at " << n;
    }
}

TEST(GGUFReader, RandomCorruptionNeverCrashes) {
    auto bytes = small_valid_file();
    std::mt19937 rng(1234);
    for (int trial = 0; trial < 20000; ++trial) {
        auto c = bytes;
        int flips = 1 + rng() % 4;
        for (int k = 0; k < flips; ++k) c[rng() % c.size()] = static_cast<uint8_t>(rng());
        try {
            parse(c);
        } catch (const Error&) {
        }
    }
}

TEST(GGUFTypes, SizesOfEveryType) {
    EXPECT_EQ(row_bytes(TensorType::F32, 10), 40u);
    EXPECT_EQ(row_bytes(TensorType::BF16, 10), 20u);
    EXPECT_EQ(row_bytes(TensorType::Q4_0, 64), 36u);
    EXPECT_EQ(row_bytes(TensorType::Q4_K, 512), 288u);
    EXPECT_EQ(row_bytes(TensorType::Q6_K, 256), 210u);
    EXPECT_EQ(row_bytes(TensorType::IQ4_XS, 256), 136u);
    EXPECT_EQ(row_bytes(TensorType::TQ2_0, 256), 66u);
    EXPECT_THROW(row_bytes(TensorType::Q4_K, 100), Error);
    EXPECT_EQ(type_from_name("IQ1_M"), TensorType::IQ1_M);
    EXPECT_THROW(type_from_name("Q9_9"), Error);
    EXPECT_EQ(type_traits(31), nullptr);
    int known = 0;
    for (uint32_t id = 0; id < 64; ++id) known += type_traits(id) != nullptr;
    EXPECT_EQ(known, 31);
}

// The tensor count bound must not reject a valid file: the smallest tensor info
// (empty name, no dims) is 24 bytes, and scalar I8 tensors need one data byte.
TEST(GGUFReader, AcceptsManyMinimalTensors) {
    constexpr int kTensors = 8;
    GGUFBuilder b;
    b.header(3, kTensors, 1).kv_u32("general.alignment", 1);
    for (int k = 0; k < kTensors; ++k) b.tensor(std::string(1, static_cast<char>('a' + k)), {}, 24, k);
    b.data(kTensors, 1);
    auto f = parse(b.bytes);
    ASSERT_EQ(f->tensors().size(), static_cast<size_t>(kTensors));
    EXPECT_EQ(f->find_tensor("h")->nbytes, 1u);
    EXPECT_EQ(f->find_tensor("h")->offset, f->data_offset() + kTensors - 1);
}

// Bools in arrays are held to the same rule as single bools.
TEST(GGUFReader, RejectsBoolArrayElementsOtherThan0And1) {
    GGUFBuilder ok;
    ok.header(3, 0, 1).key("flags", 9).put<uint32_t>(7).put<uint64_t>(3).put<uint8_t>(1).put<uint8_t>(0).put<uint8_t>(1);
    EXPECT_EQ(parse(ok.bytes)->get("flags").raw.size(), 3u);
    GGUFBuilder bad;
    bad.header(3, 0, 1).key("flags", 9).put<uint32_t>(7).put<uint64_t>(3).put<uint8_t>(1).put<uint8_t>(0).put<uint8_t>(2);
    // The offset is that of the third element: 24 header + 8+5 key + 4 type + 4+8 array head + 2.
    expect_error(bad.bytes, ErrorKind::InvalidFile, "at byte 55: key 'flags': bool array element 2 is 2");
}
