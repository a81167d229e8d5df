// The module orcd._core: thin glue over the C++ core. orcd::Error becomes the
// Python class of the same kind from orcd.errors.
#include <pybind11/stl.h>

#include <string_view>

#include "bindings.h"
#include "orcd/build.h"
#include "orcd/error.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "orcd's C++ core";

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const orcd::Error& e) {
            py::object cls = py::module_::import("orcd.errors").attr(orcd::error_kind_name(e.kind()));
            // Messages quote names read from files, which need not be UTF-8; PyErr_SetString
            // would then raise UnicodeDecodeError instead of the orcd error.
            std::string_view what = e.what();
            PyObject* message = PyUnicode_DecodeUTF8(what.data(), static_cast<Py_ssize_t>(what.size()), "backslashreplace");
            if (!message) return;  // out of memory: that Python error stands
            PyErr_SetObject(cls.ptr(), message);
            Py_DECREF(message);
        }
    });

    m.def("build_info", [] {
        orcd::BuildInfo b = orcd::build_info();
        py::dict d;
        d["version"] = b.version;
        d["compiler"] = b.compiler;
        d["cuda"] = b.cuda;
        d["cuda_architectures"] = b.cuda_architectures;
        d["build_type"] = b.build_type;
        return d;
    }, "How this copy of orcd was built: version, compiler, CUDA on/off, CUDA architectures, build type.");

    m.def("cuda_devices", [] {
        py::list out;
        for (const auto& dev : orcd::cuda_devices()) {
            py::dict d;
            d["index"] = dev.index;
            d["name"] = dev.name;
            d["total_memory"] = dev.total_memory;
            d["compute_capability"] = py::make_tuple(dev.major, dev.minor);
            out.append(d);
        }
        return out;
    }, "The CUDA devices this build can use (an empty list without a driver or GPU).");

    orcd::bindings::bind_gguf(m);
    orcd::bindings::bind_model(m);
    orcd::bindings::bind_quant(m);
}
