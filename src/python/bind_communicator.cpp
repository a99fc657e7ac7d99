// thinwire.Communicator for Python: from_mpi() (initialising MPI when the program has not)
// and from_transport() (a thinwire.Transport subclass written in Python).
#include <mpi.h>

#include <memory>

#include "bindings.hpp"
#include "thinwire/communicator.hpp"
#include "thinwire/error.hpp"

namespace py = pybind11;

namespace thinwire::python {

namespace {

// MPI may be initialised once per process. If thinwire initialised it, thinwire finalises it
// at interpreter exit (Open MPI's mpirun reports an error for a process that exits without
// MPI_Finalize); if the program or mpi4py did, they finalise it.
bool initialised_by_thinwire = false;

void finalize_mpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (initialised_by_thinwire && !finalized) MPI_Finalize();
}

void ensure_mpi() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized)
    throw Error(ErrorCode::invalid_argument,
                "thinwire communicator error: MPI was already finalised in this process");
  if (initialized) return;
  // SERIALIZED: PyTorch may run a DDP communication hook on another thread than the one that
  // created the communicator, never two at once.
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
    throw Error(ErrorCode::transport_error, "thinwire communicator error: MPI_Init_thread failed");
  initialised_by_thinwire = true;
  py::module_::import("atexit").attr("register")(py::cpp_function(&finalize_mpi));
}

// None: MPI_COMM_WORLD; an int: a Fortran handle (MPI_Comm_c2f); an object with py2f() (an
// mpi4py communicator): its Fortran handle.
MPI_Comm to_mpi_comm(const py::object& comm) {
  if (comm.is_none()) return MPI_COMM_WORLD;
  py::object handle = comm;
  if (py::hasattr(comm, "py2f")) handle = comm.attr("py2f")();
  if (!py::isinstance<py::int_>(handle))
    throw Error(ErrorCode::invalid_argument,
                "thinwire communicator error: Communicator.from_mpi(comm) takes None "
                "(MPI_COMM_WORLD), a Fortran communicator handle (int) or an mpi4py "
                "communicator, not " +
                    py::repr(comm).cast<std::string>());
  return MPI_Comm_f2c(static_cast<MPI_Fint>(handle.cast<int>()));
}

// A shared_ptr to the C++ part of a Python Transport that also keeps the Python object
// alive: the Reducer calls its Python methods for as long as it lives.
std::shared_ptr<Transport> keep_alive(const py::object& transport) {
  auto* raw = transport.cast<Transport*>();
  auto* owner = new py::object(transport);
  return std::shared_ptr<Transport>(raw, [owner](Transport*) {
    if (!Py_IsInitialized()) return;  // interpreter gone: nothing left to release
    py::gil_scoped_acquire gil;
    delete owner;
  });
}

}  // namespace

void bind_communicator(py::module_& m) {
  py::class_<Communicator>(m, "Communicator", R"doc(
A group of ranks. Create it with Communicator.from_mpi() under mpirun/srun, or with
Communicator.from_transport(t) for collectives a framework supplies (thinwire.Transport).)doc")
      .def_static(
          "from_mpi",
          [](const py::object& comm) {
            ensure_mpi();
            const MPI_Comm c = to_mpi_comm(comm);
            py::gil_scoped_release nogil;  // collective: MPI_Comm_dup
            return Communicator::from_mpi(c);
          },
          py::arg("comm") = py::none(), R"doc(
Collective over an MPI communicator: None (MPI_COMM_WORLD), an mpi4py communicator or a
Fortran handle. Initialises MPI (MPI_THREAD_SERIALIZED) when the process has not, and then
finalises it at exit.)doc")
      .def_static(
          "from_transport",
          [](const py::object& transport) {
            if (!py::isinstance<Transport>(transport))
              throw Error(ErrorCode::invalid_argument,
                          "thinwire communicator error: from_transport() needs a "
                          "thinwire.Transport, not " +
                              py::repr(transport).cast<std::string>());
            std::shared_ptr<Transport> t = keep_alive(transport);
            return Communicator::from_transport(std::move(t));
          },
          py::arg("transport"))
      .def_property_readonly("rank", &Communicator::rank)
      .def_property_readonly("size", &Communicator::size)
      .def_property_readonly("where", &Communicator::where)
      .def_property_readonly("broken", &Communicator::broken)
      .def_property_readonly(
          "transport_name",
          [](const Communicator& c) { return std::string(c.host_transport().name()); })
      .def("__repr__", [](const Communicator& c) {
        return "<thinwire.Communicator rank " + std::to_string(c.rank()) + " of " +
               std::to_string(c.size()) + " over " + c.host_transport().name() + ">";
      });
  m.def("mpi_initialized_by_thinwire", [] { return initialised_by_thinwire; });
}

}  // namespace thinwire::python
