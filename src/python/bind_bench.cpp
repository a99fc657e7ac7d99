// thinwire._thinwire_bench: benchmark-only hooks into the CUDA launchers of kernels/launch.hpp,
// for bench/torch_topk.py (thinwire's top-k against torch.topk on the same tensor in one
// process). A module of its own, built only with the CUDA kernels and never installed: the
// launchers are internal symbols, which the installed libthinwire (hidden visibility) does not
// export, so this module links the static thinwire_internal instead; _thinwire keeps only the
// public API.
//
// Pointers and streams are passed as integers (tensor.data_ptr(),
// torch.cuda.current_stream().cuda_stream). Every launcher error raises RuntimeError.
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "compress/topk_codec.hpp"
#include "compress/wire_format.hpp"
#include "launch.hpp"

namespace py = pybind11;
namespace k = thinwire::kernels;

namespace {

void check(const std::string& err, const char* what) {
  if (!err.empty()) throw std::runtime_error(std::string("thinwire bench: ") + what + ": " + err);
}

template <class T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

}  // namespace

PYBIND11_MODULE(_thinwire_bench, m) {
  m.doc() = "thinwire: benchmark hooks into the CUDA kernels (bench/torch_topk.py)";
  m.attr("header_bytes") = thinwire::detail::kHeaderBytes;

  m.def(
      "device_count",
      [] {
        std::string why;
        const int n = k::device_count(&why);
        return py::make_tuple(n, why);
      },
      "(number of CUDA devices, why there are none)");
  m.def("emulated", &k::emulated, "True when the kernels are the CPU emulation");
  m.def("topk_count", &thinwire::detail::topk_count, py::arg("density"), py::arg("n"),
        "k for a density, as the library computes it");
  m.def("topk_workspace_bytes", &k::topk_workspace_bytes, py::arg("n"), py::arg("k"));
  m.def(
      "topk_payload_bytes", [](std::size_t k_) { return thinwire::detail::kHeaderBytes + 8 * k_; },
      py::arg("k"), "header + k uint32 indices + k f32 values");
  m.def(
      "topk_encode",
      [](std::uintptr_t x, std::size_t n, std::size_t k_, std::uintptr_t out,
         std::uintptr_t workspace, std::size_t workspace_bytes, std::uintptr_t stream, int device,
         bool sampled, std::uint64_t seed) {
        if (n == 0 || k_ == 0 || k_ > n || n >= (std::uint64_t{1} << 32))
          throw std::invalid_argument("thinwire bench: topk_encode needs 1 <= k <= n < 2^32");
        if (!x || !out) throw std::invalid_argument("thinwire bench: null x or out pointer");
        if (workspace_bytes < k::topk_workspace_bytes(n, k_))
          throw std::invalid_argument(
              "thinwire bench: workspace smaller than topk_workspace_bytes");
        check(k::set_device(device), "set_device");
        k::TopkEncode a;
        a.x = ptr<float>(x);
        a.n = n;
        a.k = k_;
        a.sampled = sampled;
        a.seed = seed;
        a.out = ptr<std::uint8_t>(out);
        a.workspace = ptr<void>(workspace);
        a.workspace_bytes = workspace_bytes;
        check(k::topk_encode(a, ptr<void>(stream)), "topk_encode");
      },
      py::arg("x_ptr"), py::arg("n"), py::arg("k"), py::arg("out_ptr"), py::arg("workspace_ptr"),
      py::arg("workspace_bytes"), py::arg("stream") = 0, py::arg("device") = 0,
      py::arg("sampled") = false, py::arg("seed") = 1,
      "Asynchronous on `stream`: top-k of the n f32 at x_ptr (device memory, not written) into "
      "out_ptr (topk_payload_bytes(k) bytes): the wire header, k ascending uint32 indices, k "
      "f32 values.");
}
