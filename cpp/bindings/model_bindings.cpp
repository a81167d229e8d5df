// orcd._core.Model / Session: numpy in and out, the GIL released during compute.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "model/arch.h"
#include "orcd/gguf.h"
#include "orcd/model.h"

namespace py = pybind11;

namespace orcd::bindings {
namespace {

using IdArray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

// Logits of `rows` positions as a numpy copy: [n_vocab] or, for a matrix, [rows, n_vocab].
py::array_t<float> copy_logits(std::span<const float> logits, py::ssize_t rows, bool matrix) {
    const py::ssize_t n_vocab = py::ssize_t(logits.size()) / (matrix ? rows : 1);
    py::array_t<float> out = matrix ? py::array_t<float>({rows, n_vocab}) : py::array_t<float>(n_vocab);
    std::memcpy(out.mutable_data(), logits.data(), logits.size() * sizeof(float));
    return out;
}

// Top-k candidates as two numpy arrays: ids (int32) and logits (float32), largest first.
py::tuple candidates(const std::vector<std::pair<int32_t, float>>& top) {
    py::array_t<int32_t> ids(py::ssize_t(top.size()));
    py::array_t<float> logits(py::ssize_t(top.size()));
    for (size_t i = 0; i < top.size(); ++i) {
        ids.mutable_data()[i] = top[i].first;
        logits.mutable_data()[i] = top[i].second;
    }
    return py::make_tuple(ids, logits);
}

py::dict config_dict(const ModelConfig& c) {
    py::dict d;
    d["architecture"] = c.architecture;
    d["name"] = c.name;
    d["n_layers"] = c.n_layers;
    d["n_embd"] = c.n_embd;
    d["n_ff"] = c.n_ff;
    d["n_heads"] = c.n_heads;
    d["n_kv_heads"] = c.n_kv_heads;
    d["head_dim"] = c.head_dim;
    d["n_vocab"] = c.n_vocab;
    d["context_length"] = c.context_length;
    d["rope_dim"] = c.rope_dim;
    d["rope_freq_base"] = c.rope_freq_base;
    d["rope_style"] = c.rope_style == RopeStyle::NeoX ? "neox" : "normal";
    d["rms_eps"] = c.rms_eps;
    d["attention_bias"] = c.attention_bias;
    d["tied_output"] = c.tied_output;
    d["tokenizer_model"] = c.tokenizer_model;
    auto id_or_none = [](int id) { return id < 0 ? py::object(py::none()) : py::object(py::int_(id)); };
    d["bos_id"] = id_or_none(c.bos_id);
    d["eos_id"] = id_or_none(c.eos_id);
    d["eot_id"] = id_or_none(c.eot_id);
    d["has_chat_template"] = c.has_chat_template;
    return d;
}

}  // namespace

void bind_model(py::module_& m) {
    m.def("read_config", [](const std::string& path) {
        std::shared_ptr<gguf::File> file;
        ModelConfig c;
        {
            py::gil_scoped_release release;
            file = gguf::File::open(path);
            c = read_config(*file);
        }
        return config_dict(c);
    }, py::arg("path"), "A model file's configuration, as Model.config gives it, without loading the weights.");

    py::class_<Session>(m, "Session", "One sequence with its own KV cache.")
        .def("prefill", [](Session& s, IdArray ids, bool all_logits) {
            if (ids.ndim() != 1) throw Error(ErrorKind::InvalidArgument, "token ids must be a 1-D sequence");
            std::span<const int32_t> span(ids.data(), size_t(ids.size()));
            std::span<const float> logits;
            {
                py::gil_scoped_release release;
                logits = all_logits ? s.prefill_all(span) : s.prefill(span);
            }
            return copy_logits(logits, ids.size(), all_logits);
        }, py::arg("ids"), py::arg("all_logits") = false)
        .def("decode", [](Session& s, int64_t id) {
            if (id < INT32_MIN || id > INT32_MAX)
                throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary");
            std::span<const float> logits;
            {
                py::gil_scoped_release release;
                logits = s.decode(int32_t(id));
            }
            return copy_logits(logits, 1, false);
        }, py::arg("id"))
        .def("prefill_greedy", [](Session& s, IdArray ids) {
            if (ids.ndim() != 1) throw Error(ErrorKind::InvalidArgument, "token ids must be a 1-D sequence");
            std::span<const int32_t> span(ids.data(), size_t(ids.size()));
            py::gil_scoped_release release;
            return s.prefill_greedy(span);
        }, py::arg("ids"))
        .def("decode_greedy", [](Session& s, int64_t id) {
            if (id < INT32_MIN || id > INT32_MAX)
                throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary");
            py::gil_scoped_release release;
            return s.decode_greedy(int32_t(id));
        }, py::arg("id"))
        .def("prefill_top_k", [](Session& s, IdArray ids, int k) {
            if (ids.ndim() != 1) throw Error(ErrorKind::InvalidArgument, "token ids must be a 1-D sequence");
            std::span<const int32_t> span(ids.data(), size_t(ids.size()));
            std::vector<std::pair<int32_t, float>> top;
            {
                py::gil_scoped_release release;
                top = s.prefill_top_k(span, k);
            }
            return candidates(top);
        }, py::arg("ids"), py::arg("k"))
        .def("decode_top_k", [](Session& s, int64_t id, int k) {
            if (id < INT32_MIN || id > INT32_MAX)
                throw Error(ErrorKind::InvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary");
            std::vector<std::pair<int32_t, float>> top;
            {
                py::gil_scoped_release release;
                top = s.decode_top_k(int32_t(id), k);
            }
            return candidates(top);
        }, py::arg("id"), py::arg("k"))
        .def_property_readonly("n_past", &Session::n_past)
        .def_property_readonly("max_context", &Session::max_context)
        .def("rewind", &Session::rewind, py::arg("n"))
        .def("reset", &Session::reset);

    py::class_<Model, std::shared_ptr<Model>>(m, "Model", "A GGUF model placed on a device.")
        .def(py::init([](const std::string& path, const std::string& device, int n_threads) {
            ModelOptions options;
            options.device = Device::parse(device);
            options.n_threads = n_threads;
            py::gil_scoped_release release;
            return Model::load(path, options);
        }), py::arg("path"), py::arg("device") = "cpu", py::arg("n_threads") = 0)
        .def_property_readonly("config", [](const Model& m) { return config_dict(m.config()); })
        .def_property_readonly("device", [](const Model& m) { return m.device().str(); })
        .def("create_session", [](Model& m, int max_context, bool allow_beyond) {
            SessionOptions options;
            options.max_context = max_context;
            options.allow_beyond_model_context = allow_beyond;
            py::gil_scoped_release release;
            return m.create_session(options);
        }, py::arg("max_context") = 0, py::arg("allow_beyond_model_context") = false)
        .def("memory_report", [](const Model& m) {
            MemoryReport r = m.memory_report();
            py::dict d;
            d["device"] = r.device;
            d["weights"] = r.weights;
            d["kv_cache"] = r.kv_cache;
            d["scratch"] = r.scratch;
            return d;
        })
        .def("close", &Model::close)
        .def_property_readonly("closed", &Model::closed);
}

}  // namespace orcd::bindings
