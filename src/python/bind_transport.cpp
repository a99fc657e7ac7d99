// thinwire.Transport: a Transport whose collectives are Python methods, so that a framework's
// own process group (e.g. torch.distributed over gloo) can carry thinwire's traffic. The
// methods see the buffers as NumPy arrays over thinwire's memory, valid only during the call:
//
//   rank() -> int, size() -> int, name() -> str
//   allreduce(data: ndarray[float32|float64|int64|uint64], op: "sum"|"min"|"max")  in place
//   allgather(send: ndarray[uint8], recv: ndarray[uint8])   recv = size() blocks of len(send)
//   alltoall(send: ndarray[uint8], recv: ndarray[uint8])    block j of send goes to rank j
//   broadcast(data: ndarray[uint8], root: int)              in place
//   barrier()
//
// Every rank must end an allreduce with identical bits (see thinwire/transport.hpp). A Python
// exception becomes thinwire::Error (transport_error, or the code of a thinwire.Error), and
// the Communicator is then broken, as after an MPI failure. KeyboardInterrupt and SystemExit
// break it the same way, but reach the caller as themselves (held_interrupt.cpp).
#include <pybind11/numpy.h>

#include <string>
#include <type_traits>

#include "bindings.hpp"
#include "thinwire/error.hpp"
#include "thinwire/transport.hpp"

namespace py = pybind11;

namespace thinwire::python {

namespace {

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::min:
      return "min";
    case ReduceOp::max:
      return "max";
  }
  return "?";
}

py::dtype element_dtype(ElementType t) {
  switch (t) {
    case ElementType::f32:
      return py::dtype::of<float>();
    case ElementType::f64:
      return py::dtype::of<double>();
    case ElementType::i64:
      return py::dtype::of<std::int64_t>();
    case ElementType::u64:
      return py::dtype::of<std::uint64_t>();
  }
  return py::dtype::of<std::uint8_t>();
}

// An array over memory thinwire owns: the capsule base keeps NumPy from copying or freeing it.
py::array view(const void* data, std::size_t count, const py::dtype& dtype, bool writable) {
  py::capsule no_owner(data, [](void*) {});
  py::array a(dtype, {static_cast<py::ssize_t>(count)}, {}, const_cast<void*>(data), no_owner);
  if (!writable) a.attr("setflags")(py::arg("write") = false);
  return a;
}

ErrorCode code_of(const py::error_already_set& e) {
  py::object code = py::getattr(e.value(), "code", py::none());
  if (py::isinstance<py::str>(code)) {
    const std::string c = code.cast<std::string>();
    for (ErrorCode k : {ErrorCode::invalid_argument, ErrorCode::mismatch, ErrorCode::timeout,
                        ErrorCode::transport_error, ErrorCode::unsupported, ErrorCode::internal})
      if (c == to_string(k)) return k;
  }
  return ErrorCode::transport_error;
}

class PyTransport : public Transport {
 public:
  int rank() const override { return call<int>("rank"); }
  // Read once: the Communicator checks the size when it is created and sizes its buffers by
  // it, so a Python size() whose answer later changed must not size the views below (a
  // larger one let Python write past the buffers).
  int size() const override {
    if (size_ < 0) size_ = call<int>("size");
    return size_;
  }
  const char* name() const override {
    // The pointer must outlive the call: keep the last name.
    name_ = call<std::string>("name");
    return name_.c_str();
  }
  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override {
    call<void>("allreduce", [&] {
      return py::make_tuple(view(data, count, element_dtype(type), true), op_name(op));
    });
  }
  void allgather(const void* send, void* recv, std::size_t bytes) override {
    call<void>("allgather", [&] {
      const py::dtype u8 = py::dtype::of<std::uint8_t>();
      return py::make_tuple(view(send, bytes, u8, false),
                            view(recv, bytes * static_cast<std::size_t>(size()), u8, true));
    });
  }
  void alltoall(const void* send, void* recv, std::size_t bytes) override {
    call<void>("alltoall", [&] {
      const py::dtype u8 = py::dtype::of<std::uint8_t>();
      const std::size_t n = bytes * static_cast<std::size_t>(size());
      return py::make_tuple(view(send, n, u8, false), view(recv, n, u8, true));
    });
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    call<void>("broadcast", [&] {
      return py::make_tuple(view(data, bytes, py::dtype::of<std::uint8_t>(), true), root);
    });
  }
  void barrier() override { call<void>("barrier"); }

 private:
  // Calls the Python override `method` with the GIL held (the Reducer releases it while it
  // works); args() builds the argument tuple under the GIL too.
  template <typename R>
  R call(const char* method) const {
    return call<R>(method, [] { return py::tuple(); });
  }
  template <typename R, typename Args>
  R call(const char* method, Args&& args) const {
    py::gil_scoped_acquire gil;
    py::function override = py::get_override(static_cast<const Transport*>(this), method);
    if (!override)
      throw Error(ErrorCode::invalid_argument,
                  std::string("thinwire transport error: the Python Transport subclass does not "
                              "implement ") +
                      method + "()");
    py::object result;
    try {
      result = override(*args());
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_Exception)) hold_interrupt(e.value());
      throw Error(code_of(e), std::string("thinwire transport error: Python ") + method +
                                  "() raised " + e.what());
    }
    if constexpr (std::is_void_v<R>) {
      return;
    } else {
      try {
        return result.cast<R>();
      } catch (const py::cast_error&) {
        throw Error(ErrorCode::invalid_argument,
                    std::string("thinwire transport error: Python ") + method + "() returned " +
                        py::repr(result).cast<std::string>() + ", not the expected type");
      }
    }
  }

  mutable std::string name_;
  mutable int size_ = -1;
};

}  // namespace

void bind_transport(py::module_& m) {
  py::class_<Transport, PyTransport, std::shared_ptr<Transport>>(m, "Transport", R"doc(
Base class of a transport implemented in Python. Subclasses call super().__init__() and
implement rank(), size(), name(), allreduce(data, op), allgather(send, recv),
alltoall(send, recv), broadcast(data, root) and barrier() on NumPy arrays that are views of
thinwire's buffers, valid only during the call. Pass an instance to
Communicator.from_transport().)doc")
      .def(py::init<>())
      .def("rank", &Transport::rank)
      .def("size", &Transport::size)
      .def("name", [](Transport& t) { return std::string(t.name()); });
}

}  // namespace thinwire::python
