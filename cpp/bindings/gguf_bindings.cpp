// orcd._core.GGUFFile: metadata as Python values, tensors as zero-copy views.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>

#include "bindings.h"
#include "orcd/gguf.h"

namespace py = pybind11;
using namespace orcd::gguf;

namespace orcd::bindings {
namespace {

// Token texts may hold bytes that are not UTF-8; surrogateescape keeps them recoverable.
py::str to_str(std::string_view s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

template <typename T>
py::array numeric_array(const Value& v) {
    py::array_t<T> a(static_cast<py::ssize_t>(v.count));
    if (v.count) std::memcpy(a.mutable_data(), v.raw.data(), v.raw.size());
    return a;
}

py::object to_python(const Value& v) {
    switch (v.type) {
        case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64: return py::int_(v.u);
        case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: return py::int_(v.i);
        case ValueType::F32: case ValueType::F64: return py::float_(v.f);
        case ValueType::BOOL: return py::bool_(v.u != 0);
        case ValueType::STRING: return to_str(v.str);
        case ValueType::ARRAY: break;
    }
    switch (v.elem_type) {
        case ValueType::U8: return numeric_array<uint8_t>(v);
        case ValueType::I8: return numeric_array<int8_t>(v);
        case ValueType::U16: return numeric_array<uint16_t>(v);
        case ValueType::I16: return numeric_array<int16_t>(v);
        case ValueType::U32: return numeric_array<uint32_t>(v);
        case ValueType::I32: return numeric_array<int32_t>(v);
        case ValueType::U64: return numeric_array<uint64_t>(v);
        case ValueType::I64: return numeric_array<int64_t>(v);
        case ValueType::F32: return numeric_array<float>(v);
        case ValueType::F64: return numeric_array<double>(v);
        case ValueType::BOOL: return numeric_array<bool>(v);
        case ValueType::STRING: {
            py::list l(v.strings.size());
            for (size_t i = 0; i < v.strings.size(); ++i) l[i] = to_str(v.strings[i]);
            return l;
        }
        case ValueType::ARRAY: {
            py::list l(v.items.size());
            for (size_t i = 0; i < v.items.size(); ++i) l[i] = to_python(v.items[i]);
            return l;
        }
    }
    return py::none();
}

// One tensor of an open file; holds the mapping alive.
struct PyTensor {
    std::shared_ptr<File> file;
    const TensorInfo* info;

    py::tuple shape() const {
        py::tuple t(info->n_dims);
        for (uint32_t d = 0; d < info->n_dims; ++d) t[d] = py::int_(info->dims[d]);
        return t;
    }
    py::array data() const {
        // The capsule owns a reference to the File, so the view outlives close().
        auto* keep = new std::shared_ptr<File>(file);
        py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<File>*>(p); });
        auto bytes = file->tensor_data(*info);
        py::array_t<uint8_t> a({static_cast<py::ssize_t>(bytes.size())}, {1}, bytes.data(), owner);
        py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
        return a;
    }
};

class PyGGUFFile {
public:
    explicit PyGGUFFile(const std::string& path) {
        py::gil_scoped_release release;
        file_ = File::open(path);
    }
    const File& file() const {
        if (!file_) throw Error(ErrorKind::Closed, "the GGUFFile was closed");
        return *file_;
    }
    py::dict metadata() {
        if (!metadata_) {
            py::dict d;
            for (const auto& [key, value] : file().metadata()) d[to_str(key)] = to_python(value);
            metadata_ = d;
        }
        return *metadata_;
    }
    std::vector<PyTensor> tensors() const {
        std::vector<PyTensor> out;
        for (const auto& t : file().tensors()) out.push_back({file_, &t});
        return out;
    }
    PyTensor tensor(const std::string& name) const {
        const TensorInfo* t = file().find_tensor(name);
        if (!t) throw Error(ErrorKind::InvalidArgument, file().path() + " has no tensor named '" + name + "'");
        return {file_, t};
    }
    void close() {
        file_.reset();
        metadata_.reset();
    }
    std::shared_ptr<File> handle() const { return file_; }

private:
    std::shared_ptr<File> file_;
    std::optional<py::dict> metadata_;
};

}  // namespace

void bind_gguf(py::module_& m) {
    py::class_<PyTensor>(m, "GGUFTensor", "One tensor of a GGUF file.")
        .def_property_readonly("name", [](const PyTensor& t) { return to_str(t.info->name); })
        .def_property_readonly("type", [](const PyTensor& t) { return std::string(traits(t.info->type).name); },
                               "ggml type name, e.g. 'Q4_K'")
        .def_property_readonly("shape", &PyTensor::shape, "dimensions, innermost first (as gguf.GGUFReader)")
        .def_property_readonly("n_elements", [](const PyTensor& t) { return t.info->n_elements(); })
        .def_property_readonly("offset", [](const PyTensor& t) { return t.info->offset; },
                               "absolute byte offset of the data in the file")
        .def_property_readonly("nbytes", [](const PyTensor& t) { return t.info->nbytes; })
        .def_property_readonly("data", &PyTensor::data, "read-only zero-copy uint8 view of the raw bytes")
        .def("__repr__", [](const PyTensor& t) {
            return "GGUFTensor(" + std::string(t.info->name) + ", " + traits(t.info->type).name + ", " +
                   py::str(t.shape()).cast<std::string>() + ")";
        });

    py::class_<PyGGUFFile>(m, "GGUFFile", "A validated, memory-mapped GGUF file.")
        .def(py::init<const std::string&>(), py::arg("path"))
        .def_property_readonly("path", [](const PyGGUFFile& f) { return f.file().path(); })
        .def_property_readonly("version", [](const PyGGUFFile& f) { return f.file().version(); })
        .def_property_readonly("alignment", [](const PyGGUFFile& f) { return f.file().alignment(); })
        .def_property_readonly("data_offset", [](const PyGGUFFile& f) { return f.file().data_offset(); })
        .def_property_readonly("metadata", &PyGGUFFile::metadata, "dict key -> value")
        .def_property_readonly("tensors", &PyGGUFFile::tensors)
        .def("tensor", &PyGGUFFile::tensor, py::arg("name"))
        .def("close", &PyGGUFFile::close, "Release the mapping (tensor views keep it alive until they go).")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__", [](PyGGUFFile& f, py::args) { f.close(); });
}

}  // namespace orcd::bindings
