// A KeyboardInterrupt (Ctrl-C) or SystemExit raised inside a Python Transport method: the C++
// core sees a transport_error and breaks the Communicator as after any failed collective, and
// Python gets the original exception back when that error reaches it, rather than a
// thinwire.Error that `except Exception` handlers would swallow.
#include "bindings.hpp"

namespace thinwire::python {

namespace {
// A raw reference, touched only with the GIL held: a py::object would be destroyed at exit
// without it. Process-wide rather than per thread: the core may call the transport from
// another thread than the one whose call the error ends.
PyObject* held = nullptr;
}  // namespace

void hold_interrupt(pybind11::handle exception) {
  Py_XINCREF(exception.ptr());
  Py_XDECREF(held);
  held = exception.ptr();
}

bool raise_held_interrupt() {
  if (!held) return false;
  PyObject* e = held;
  held = nullptr;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(e)), e);
  Py_DECREF(e);
  return true;
}

}  // namespace thinwire::python
