// GGUF reader: maps the file, then validates every count, length, type and
// offset against the bytes that remain before it allocates or trusts anything.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "orcd/gguf.h"

namespace orcd::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint64_t kMaxNameLength = 1024;
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxKeys = 1u << 20;
constexpr int kMaxArrayDepth = 8;
// The smallest tensor info: name length, empty name, n_dims 0, type, offset.
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
constexpr uint64_t kMaxAlignment = 1u << 30;

std::string hex(uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

// Reads little-endian values from the mapping, checking each against the end.
class Cursor {
public:
    Cursor(const uint8_t* base, size_t size, const std::string& label) : base_(base), size_(size), label_(label) {}

    size_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    [[noreturn]] void fail(const std::string& what, size_t at) const {
        throw Error(ErrorKind::InvalidFile, label_ + ": at byte " + std::to_string(at) + ": " + what);
    }
    [[noreturn]] void fail(const std::string& what) const { fail(what, pos_); }

    void need(uint64_t n, const char* what) const {
        if (n > remaining())
            fail(std::string("truncated file: ") + what + " needs " + std::to_string(n) + " bytes, " +
                 std::to_string(remaining()) + " remain");
    }
    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    std::span<const uint8_t> bytes(uint64_t n, const char* what) {
        need(n, what);
        std::span<const uint8_t> s(base_ + pos_, n);
        pos_ += n;
        return s;
    }
    std::string_view string(uint64_t max_length, const char* what) {
        size_t at = pos_;
        uint64_t len = read<uint64_t>(what);
        if (len > remaining())
            fail(std::string(what) + " of " + std::to_string(len) + " bytes runs past the end of the file (" +
                     std::to_string(remaining()) + " bytes remain)", at);
        if (len > max_length) fail(std::string(what) + " of " + std::to_string(len) + " bytes is longer than the limit of " + std::to_string(max_length), at);
        auto s = bytes(len, what);
        return {reinterpret_cast<const char*>(s.data()), s.size()};
    }

private:
    const uint8_t* base_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& label_;
};

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

Value read_value(Cursor& c, ValueType type, const std::string& key, int depth);

Value read_array(Cursor& c, const std::string& key, int depth) {
    if (depth > kMaxArrayDepth) c.fail("key '" + key + "': arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    Value v;
    v.type = ValueType::ARRAY;
    size_t at = c.pos();
    uint32_t et = c.read<uint32_t>("array element type");
    if (!valid_value_type(et)) c.fail("key '" + key + "': unknown array element type " + std::to_string(et), at);
    v.elem_type = static_cast<ValueType>(et);
    at = c.pos();
    v.count = c.read<uint64_t>("array length");
    // Every element occupies at least this many bytes, so a count the file
    // cannot hold is rejected before anything is reserved.
    uint64_t min_elem = value_type_size(v.elem_type);
    if (v.elem_type == ValueType::STRING) min_elem = 8;
    if (v.elem_type == ValueType::ARRAY) min_elem = 12;
    if (v.count > c.remaining() / min_elem)
        c.fail("key '" + key + "': array of " + std::to_string(v.count) + " " + value_type_name(v.elem_type) +
                   " elements runs past the end of the file (" + std::to_string(c.remaining()) + " bytes remain)", at);
    if (min_elem && v.elem_type != ValueType::STRING && v.elem_type != ValueType::ARRAY) {
        size_t data_at = c.pos();
        v.raw = c.bytes(v.count * min_elem, "array data");
        if (v.elem_type == ValueType::BOOL)
            for (size_t k = 0; k < v.raw.size(); ++k)
                if (v.raw[k] > 1)
                    c.fail("key '" + key + "': bool array element " + std::to_string(k) + " is " +
                               std::to_string(v.raw[k]) + ", neither 0 nor 1", data_at + k);
    } else if (v.elem_type == ValueType::STRING) {
        v.strings.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(c.string(c.remaining(), "array string"));
    } else {
        v.items.reserve(v.count);
        for (uint64_t i = 0; i < v.count; ++i) v.items.push_back(read_array(c, key, depth + 1));
    }
    return v;
}

Value read_value(Cursor& c, ValueType type, const std::string& key, int depth) {
    Value v;
    v.type = type;
    switch (type) {
        case ValueType::U8: v.u = c.read<uint8_t>("u8 value"); break;
        case ValueType::I8: v.i = c.read<int8_t>("i8 value"); break;
        case ValueType::U16: v.u = c.read<uint16_t>("u16 value"); break;
        case ValueType::I16: v.i = c.read<int16_t>("i16 value"); break;
        case ValueType::U32: v.u = c.read<uint32_t>("u32 value"); break;
        case ValueType::I32: v.i = c.read<int32_t>("i32 value"); break;
        case ValueType::U64: v.u = c.read<uint64_t>("u64 value"); break;
        case ValueType::I64: v.i = c.read<int64_t>("i64 value"); break;
        case ValueType::F32: v.f = c.read<float>("f32 value"); break;
        case ValueType::F64: v.f = c.read<double>("f64 value"); break;
        case ValueType::BOOL: {
            size_t at = c.pos();
            uint8_t b = c.read<uint8_t>("bool value");
            if (b > 1) c.fail("key '" + key + "': bool value " + std::to_string(b) + " is neither 0 nor 1", at);
            v.u = b;
            break;
        }
        case ValueType::STRING: v.str = c.string(c.remaining(), "string value"); break;
        case ValueType::ARRAY: return read_array(c, key, depth);
    }
    return v;
}

// a * b, or false on overflow past INT64_MAX (ggml's element counts are signed).
bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) {
    if (a != 0 && b > static_cast<uint64_t>(INT64_MAX) / a) return false;
    out = a * b;
    return true;
}

}  // namespace

uint64_t Value::as_uint() const {
    switch (type) {
        case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64: return u;
        case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64:
            if (i >= 0) return static_cast<uint64_t>(i);
            throw Error(ErrorKind::InvalidFile, "expected a non-negative integer, found " + std::to_string(i));
        default: throw Error(ErrorKind::InvalidFile, std::string("expected an integer, found ") + value_type_name(type));
    }
}

int64_t Value::as_int() const {
    switch (type) {
        case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return i;
        case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64:
            if (u <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(u);
            throw Error(ErrorKind::InvalidFile, "integer " + std::to_string(u) + " is too large");
        default: throw Error(ErrorKind::InvalidFile, std::string("expected an integer, found ") + value_type_name(type));
    }
}

double Value::as_float() const {
    switch (type) {
        case ValueType::F32: case ValueType::F64: return f;
        case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64: return static_cast<double>(u);
        case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return static_cast<double>(i);
        default: throw Error(ErrorKind::InvalidFile, std::string("expected a number, found ") + value_type_name(type));
    }
}

bool Value::as_bool() const {
    if (type != ValueType::BOOL) throw Error(ErrorKind::InvalidFile, std::string("expected a bool, found ") + value_type_name(type));
    return u != 0;
}

std::string_view Value::as_string() const {
    if (type != ValueType::STRING) throw Error(ErrorKind::InvalidFile, std::string("expected a string, found ") + value_type_name(type));
    return str;
}

std::shared_ptr<File> File::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(ErrorKind::InvalidArgument, "cannot open '" + path + "': " + std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(ErrorKind::InvalidArgument, "'" + path + "' is not a regular file");
    }
    if (st.st_size == 0) {
        ::close(fd);
        throw Error(ErrorKind::InvalidFile, path + ": the file is empty, not a GGUF file");
    }
    void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);  // the mapping keeps the file open
    if (p == MAP_FAILED) throw Error(ErrorKind::InvalidArgument, "cannot map '" + path + "': " + std::strerror(errno));
    std::shared_ptr<File> f(new File());
    f->path_ = path;
    f->base_ = static_cast<const uint8_t*>(p);
    f->size_ = static_cast<size_t>(st.st_size);
    f->mapped_ = true;
    f->parse();
    return f;
}

std::shared_ptr<File> File::from_memory(const uint8_t* data, size_t size, std::string label) {
    std::shared_ptr<File> f(new File());
    f->path_ = std::move(label);
    f->base_ = data;
    f->size_ = size;
    f->parse();
    return f;
}

File::~File() {
    if (mapped_) munmap(const_cast<uint8_t*>(base_), size_);
}

const Value* File::find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const Value& File::get(std::string_view key) const {
    const Value* v = find(key);
    if (!v) throw Error(ErrorKind::InvalidFile, path_ + ": required metadata key '" + std::string(key) + "' is missing");
    return *v;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void File::parse() {
    Cursor c(base_, size_, path_);
    if (size_ < 4 || c.read<uint32_t>("magic") != kMagic) c.fail("bad magic: not a GGUF file", 0);
    version_ = c.read<uint32_t>("version");
    if (version_ == 1) throw Error(ErrorKind::Unsupported, path_ + ": GGUF version 1 is obsolete; convert the model with a current llama.cpp");
    if (version_ != 2 && version_ != 3) {
        uint32_t swapped = __builtin_bswap32(version_);
        if (swapped >= 1 && swapped <= 3)
            throw Error(ErrorKind::Unsupported, path_ + ": big-endian GGUF files are not supported");
        throw Error(ErrorKind::Unsupported, path_ + ": unknown GGUF version " + std::to_string(version_) + " (supported: 2, 3)");
    }
    size_t at = c.pos();
    uint64_t n_tensors = c.read<uint64_t>("tensor count");
    if (n_tensors > kMaxTensors || n_tensors > c.remaining() / kMinTensorInfoBytes)
        c.fail("tensor count " + std::to_string(n_tensors) + " is more than the file can hold", at);
    at = c.pos();
    uint64_t n_kv = c.read<uint64_t>("metadata count");
    if (n_kv > kMaxKeys || n_kv > c.remaining() / 13)
        c.fail("metadata count " + std::to_string(n_kv) + " is more than the file can hold", at);

    kv_.reserve(n_kv);
    for (uint64_t k = 0; k < n_kv; ++k) {
        at = c.pos();
        std::string_view key = c.string(kMaxKeyLength, "metadata key");
        if (key.empty()) c.fail("empty metadata key", at);
        if (kv_index_.count(key)) c.fail("duplicate metadata key '" + std::string(key) + "'", at);
        size_t type_at = c.pos();
        uint32_t t = c.read<uint32_t>("value type");
        if (!valid_value_type(t)) c.fail("key '" + std::string(key) + "': unknown value type " + std::to_string(t), type_at);
        kv_index_.emplace(key, kv_.size());
        kv_.emplace_back(key, read_value(c, static_cast<ValueType>(t), std::string(key), 0));
    }

    if (const Value* a = find("general.alignment")) {
        uint64_t al = 0;
        try {
            al = a->as_uint();
        } catch (const Error&) {
            c.fail("general.alignment must be an unsigned integer");
        }
        if (al == 0 || (al & (al - 1)) != 0 || al > kMaxAlignment)
            throw Error(ErrorKind::InvalidFile, path_ + ": general.alignment " + std::to_string(al) +
                                                    " is not a power of two between 1 and 2^30");
        alignment_ = al;
    }

    tensors_.reserve(n_tensors);
    for (uint64_t k = 0; k < n_tensors; ++k) {
        size_t info_at = c.pos();
        TensorInfo t{};
        t.name = c.string(kMaxNameLength, "tensor name");
        std::string name(t.name);
        if (tensor_index_.count(t.name)) c.fail("duplicate tensor name '" + name + "'", info_at);
        at = c.pos();
        t.n_dims = c.read<uint32_t>("tensor n_dims");
        if (t.n_dims > 4) c.fail("tensor '" + name + "': n_dims " + std::to_string(t.n_dims) + " is more than 4", at);
        uint64_t n_elements = 1;
        for (int d = 0; d < 4; ++d) t.dims[d] = 1;
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            at = c.pos();
            t.dims[d] = c.read<uint64_t>("tensor dimension");
            if (!checked_mul(n_elements, t.dims[d], n_elements))
                c.fail("tensor '" + name + "': the product of its dimensions overflows", at);
        }
        at = c.pos();
        uint32_t type_id = c.read<uint32_t>("tensor type");
        const TypeTraits* tt = type_traits(type_id);
        if (!tt)
            throw Error(ErrorKind::Unsupported, path_ + ": at byte " + std::to_string(at) + ": tensor '" + name +
                                                    "' has unknown ggml type id " + std::to_string(type_id));
        t.type = static_cast<TensorType>(type_id);
        if (t.dims[0] % tt->block_size != 0)
            c.fail("tensor '" + name + "': row length " + std::to_string(t.dims[0]) + " is not a multiple of the " +
                       tt->name + " block size " + std::to_string(tt->block_size), at);
        if (!checked_mul(n_elements / tt->block_size, tt->block_bytes, t.nbytes))
            c.fail("tensor '" + name + "': its byte size overflows", at);
        at = c.pos();
        t.offset = c.read<uint64_t>("tensor offset");
        if (t.offset % alignment_ != 0)
            c.fail("tensor '" + name + "': offset " + hex(t.offset) + " is not a multiple of the alignment " + std::to_string(alignment_), at);
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(t);
    }

    uint64_t end_of_header = c.pos();
    data_offset_ = (end_of_header + alignment_ - 1) / alignment_ * alignment_;
    // Turn relative offsets into absolute ones and check each tensor lies inside the file.
    for (auto& t : tensors_) {
        uint64_t abs = data_offset_ + t.offset;
        if (abs < t.offset || abs > size_ || t.nbytes > size_ - abs)
            throw Error(ErrorKind::InvalidFile, path_ + ": tensor '" + std::string(t.name) + "': data at offset " +
                                                    hex(t.offset) + " (" + std::to_string(t.nbytes) + " bytes) lies past the end of the file (" +
                                                    std::to_string(size_) + " bytes); the file is truncated or corrupt");
        t.offset = abs;
    }
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const TensorInfo* a = by_offset[i - 1];
        const TensorInfo* b = by_offset[i];
        if (a->offset + a->nbytes > b->offset)
            throw Error(ErrorKind::InvalidFile, path_ + ": the data of tensors '" + std::string(a->name) + "' and '" +
                                                    std::string(b->name) + "' overlap");
    }
}

}  // namespace orcd::gguf
