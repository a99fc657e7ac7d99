#include "device_test_support.hpp"

#include <chrono>
#include <cstdio>

#include "test_support.hpp"

namespace thinwire::test {

bool device_available(std::string* why) {
  static int count = -1;
  static std::string reason;
  if (count < 0) {
    count = kernels::device_count(&reason);
    if (count == 0)
      std::fprintf(stderr,
                   "\n*** thinwire device tests: NO USABLE CUDA DEVICE, SKIPPING: %s ***\n"
                   "*** (the CUDA kernels were built but not run on this machine) ***\n\n",
                   reason.c_str());
    else
      kernels::set_device(0);
  }
  *why = reason;
  return count > 0;
}

const char* backend_name() {
  return kernels::emulated() ? "cpu-emulation" : "cuda";
}

void expect_every_call_refused(detail::DeviceTransport& t, const std::string& cause) {
  DeviceArray<float> d(8);
  const auto start = std::chrono::steady_clock::now();
  for (auto* call : {+[](detail::DeviceTransport&x, float*p) {
                       x.allreduce(p, 4, ElementType::f32, ReduceOp::sum);
                     },
                     +[](detail::DeviceTransport&x, float*p) { x.allgather(p, p + 4, 4); },
                     +[](detail::DeviceTransport&x, float*p) { x.alltoall(p, p + 4, 4); },
                     +[](detail::DeviceTransport&x, float*p) { x.broadcast(p, 4, 0); },
                     +[](detail::DeviceTransport&x, float*) { x.barrier(); },
                     +[](detail::DeviceTransport&x, float*) { x.synchronize("later step"); }}) {
    auto err = error_from([&] { call(t, d.get()); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::transport_error);
    EXPECT_NE(std::string(err->what()).find(cause), std::string::npos) << err->what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(s, 1.0) << "refusals must not wait";
}

}  // namespace thinwire::test
