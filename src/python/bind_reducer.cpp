// _thinwire.Reducer: the C++ Reducer on tensor descriptions prepared by thinwire/_tensors.py.
// thinwire.Reducer (thinwire/__init__.py) wraps it with NumPy and PyTorch tensor handling.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "thinwire/thinwire.hpp"

namespace py = pybind11;

namespace thinwire::python {

namespace {

using LayerSpec = std::pair<std::string, std::vector<std::int64_t>>;

// One tensor, as _tensors.describe() hands it over:
//   (array or None, dtype code 0/1/2 (f32/f16/bf16), numel, device, data pointer, stream)
// A host tensor is a NumPy array (its memory is used in place); None stands for a tensor this
// rank cannot pass (wrong dtype, not contiguous, ...): a null pointer, which the Reducer's
// per-step check reports on every rank. device >= 0 is a CUDA tensor given by pointer.
TensorView to_view(const py::tuple& t) {
  if (t.size() != 6)
    throw Error(ErrorCode::internal, "thinwire python error: bad tensor description");
  const int code = t[1].cast<int>();
  const DType dtype = code >= 0 && code <= 2 ? static_cast<DType>(code) : static_cast<DType>(0xff);
  const auto numel = t[2].cast<std::size_t>();
  const int device = t[3].cast<int>();
  if (device >= 0) {
    auto* data = reinterpret_cast<void*>(t[4].cast<std::uintptr_t>());
    auto* stream = reinterpret_cast<void*>(t[5].cast<std::uintptr_t>());
    return TensorView::cuda(data, numel, dtype, device, stream);
  }
  if (t[0].is_none()) return TensorView::host(nullptr, numel, dtype);
  auto a = t[0].cast<py::array>();
  return TensorView::host(a.mutable_data(), static_cast<std::size_t>(a.size()), dtype);
}

}  // namespace

void bind_reducer(py::module_& m) {
  py::class_<Reducer>(m, "Reducer")
      .def(py::init([](const Communicator& comm, const std::vector<LayerSpec>& layers,
                       const std::string& spec) {
             std::vector<Layer> ls;
             ls.reserve(layers.size());
             for (const auto& [name, shape] : layers) ls.push_back(Layer{name, shape});
             // Parsed inside the collective constructor: a spec that does not parse on one rank
             // fails every rank.
             py::gil_scoped_release nogil;  // collective: the agreement exchange
             return std::make_unique<Reducer>(comm, std::move(ls), spec);
           }),
           py::arg("comm"), py::arg("layers"), py::arg("spec"))
      .def("allreduce",
           [](Reducer& r, const py::list& tensors) {
             std::vector<TensorView> views;
             views.reserve(tensors.size());
             // The list keeps every array alive while the GIL is released.
             for (const py::handle& t : tensors) views.push_back(to_view(t.cast<py::tuple>()));
             py::gil_scoped_release nogil;
             r.allreduce(views);
           })
      .def("stats_json", [](const Reducer& r) { return r.stats().to_json(); })
      .def("reset_stats", &Reducer::reset_stats)
      .def("save_state", py::overload_cast<const std::string&>(&Reducer::save_state, py::const_),
           py::arg("path"))
      .def("load_state", py::overload_cast<const std::string&>(&Reducer::load_state),
           py::arg("path"))
      .def("state_bytes",
           [](const Reducer& r) {
             std::ostringstream out;
             r.save_state(out);
             return py::bytes(out.str());
           })
      .def("load_state_bytes",
           [](Reducer& r, const py::bytes& data) {
             std::istringstream in{std::string(data)};
             r.load_state(in);
           })
      .def_property_readonly("step", &Reducer::step)
      .def_property_readonly("last_step_skipped", &Reducer::last_step_skipped)
      .def_property_readonly("spec", [](const Reducer& r) { return r.config().to_string(); })
      .def("layer_spec", &Reducer::layer_spec)
      .def_property_readonly("layers",
                             [](const Reducer& r) {
                               std::vector<LayerSpec> out;
                               for (const Layer& l : r.layers()) out.emplace_back(l.name, l.shape);
                               return out;
                             })
      .def_property_readonly("communicator", &Reducer::communicator);
}

}  // namespace thinwire::python
