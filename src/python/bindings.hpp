// The pieces of the _thinwire Python extension module, one file each.
#pragma once

#include <pybind11/pybind11.h>

namespace thinwire::python {

// thinwire::Error -> thinwire.Error (thinwire/_errors.py) with .code = "invalid_argument", ...
void bind_errors(pybind11::module_& m);
// thinwire.Transport: a transport whose collectives are Python methods.
void bind_transport(pybind11::module_& m);
// thinwire.Communicator, and MPI initialisation for Python programs.
void bind_communicator(pybind11::module_& m);
// The Reducer behind thinwire.Reducer.
void bind_reducer(pybind11::module_& m);

// A Python Transport method raised KeyboardInterrupt or SystemExit (an exception that is not an
// Exception): keep it, to raise in place of the thinwire::Error the core makes of it. GIL held.
void hold_interrupt(pybind11::handle exception);
// Makes the exception held by hold_interrupt() the current Python error and forgets it; false
// when none is held. GIL held.
bool raise_held_interrupt();

}  // namespace thinwire::python
