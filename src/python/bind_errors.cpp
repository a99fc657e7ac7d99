// thinwire::Error crosses into Python as thinwire.Error, a RuntimeError subclass defined in
// thinwire/_errors.py whose .code is the ErrorCode's name ("mismatch", ...), so Python code can
// raise the same class.
#include "bindings.hpp"
#include "thinwire/error.hpp"

namespace py = pybind11;

namespace thinwire::python {

void bind_errors(py::module_& m) {
  // A leaked reference: the translator may run until the interpreter shuts down.
  static PyObject* error_class =
      py::object(py::module_::import("thinwire._errors").attr("Error")).release().ptr();
  m.attr("Error") = py::handle(error_class);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      // A Python Transport method was interrupted: the caller gets the KeyboardInterrupt.
      if (raise_held_interrupt()) return;
      py::object err = py::handle(error_class)(e.what(), to_string(e.code()));
      PyErr_SetObject(error_class, err.ptr());
    }
  });
}

}  // namespace thinwire::python
