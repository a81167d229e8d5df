// Each file of cpp/bindings/ adds one part of the API to the module orcd._core.
#pragma once

#include <pybind11/pybind11.h>

namespace orcd::bindings {

void bind_gguf(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_quant(pybind11::module_& m);

}  // namespace orcd::bindings
