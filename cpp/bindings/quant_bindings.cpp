// orcd._core.dequantize: raw GGUF tensor bytes to float32, for tests and tools.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "bindings.h"
#include "orcd/error.h"
#include "orcd/gguf.h"
#include "quant/dequantize.h"

namespace py = pybind11;

namespace orcd::bindings {
namespace {

py::array_t<float> dequantize_array(py::array_t<uint8_t, py::array::c_style | py::array::forcecast> raw,
                                    const std::string& type_name, const std::vector<int64_t>& shape) {
    const gguf::TensorType type = gguf::type_from_name(type_name);
    if (!quant::can_dequantize(type))
        throw Error(ErrorKind::Unsupported, "dequantisation of tensor type " + type_name + " is not supported");
    if (shape.empty()) throw Error(ErrorKind::InvalidArgument, "shape must have at least one dimension");
    uint64_t n_elements = 1;
    for (int64_t dim : shape) {
        if (dim < 0) throw Error(ErrorKind::InvalidArgument, "shape has a negative dimension " + std::to_string(dim));
        n_elements *= uint64_t(dim);
    }
    const uint64_t row_length = uint64_t(shape.back());
    const uint64_t n_rows = row_length ? n_elements / row_length : 0;
    const uint64_t expected_bytes = n_rows * gguf::row_bytes(type, row_length);
    if (uint64_t(raw.size()) != expected_bytes)
        throw Error(ErrorKind::InvalidArgument, "raw holds " + std::to_string(raw.size()) + " bytes but a " + type_name +
                                                    " tensor of this shape needs " + std::to_string(expected_bytes));

    py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    const uint8_t* src = raw.data();
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release unlocked;
        // Block fields are 16-bit: a view at an odd address is copied to an aligned buffer first.
        std::vector<uint8_t> aligned;
        if (reinterpret_cast<uintptr_t>(src) % 2 != 0) {
            aligned.assign(src, src + expected_bytes);
            src = aligned.data();
        }
        quant::dequantize(type, src, dst, int64_t(n_elements));
    }
    return out;
}

}  // namespace

void bind_quant(py::module_& m) {
    m.def("dequantize", &dequantize_array, py::arg("raw"), py::arg("type"), py::arg("shape"),
          "Dequantise raw GGUF tensor bytes of a type name such as 'Q4_K' to float32 of the given\n"
          "shape (numpy order: the last dimension is the row length, a whole number of blocks).");
}

}  // namespace orcd::bindings
