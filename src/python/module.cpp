// _thinwire: the compiled part of the thinwire Python package (src/python/thinwire/). The
// package's __init__.py adds the tensor conversions and the Python-facing Reducer.
#include "bindings.hpp"
#include "thinwire/version.hpp"

PYBIND11_MODULE(_thinwire, m) {
  m.doc() = "thinwire: communication-compressed allreduce (compiled core)";
  m.attr("__version__") = THINWIRE_VERSION_STRING;
  thinwire::python::bind_errors(m);
  thinwire::python::bind_transport(m);
  thinwire::python::bind_communicator(m);
  thinwire::python::bind_reducer(m);
}
