// Helpers of the device tests (tests/device/): buffers in "device" memory through the
// launchers of kernels/launch.hpp, so that the same test source runs over the CUDA kernels
// and over their CPU emulation.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "launch.hpp"
#include "transport/device_transport.hpp"

namespace thinwire::test {

// Fails the current test with the launcher's message unless it is empty.
#define TW_ASSERT_OK(expr)                                    \
  do {                                                        \
    const std::string tw_err_ = (expr);                       \
    ASSERT_TRUE(tw_err_.empty()) << #expr << ": " << tw_err_; \
  } while (0)

// True when a device is usable (always in the emulation). Otherwise prints a loud banner
// with the reason once per process; the caller then calls GTEST_SKIP().
bool device_available(std::string* why);

// Skips the current test, loudly, when no device is usable.
#define TW_REQUIRE_DEVICE()                                                               \
  do {                                                                                    \
    std::string tw_why_;                                                                  \
    if (!::thinwire::test::device_available(&tw_why_))                                    \
      GTEST_SKIP() << "NO USABLE CUDA DEVICE (" << tw_why_ << "): the CUDA path was not " \
                   << "tested on this machine";                                           \
  } while (0)

// "cpu-emulation" or "cuda", for messages.
const char* backend_name();

// A buffer of n T in device memory (host memory in the emulation); freed on scope exit.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) { resize(n); }
  ~DeviceArray() { kernels::device_free(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  void resize(std::size_t n) {
    kernels::device_free(p_);
    p_ = nullptr;
    n_ = n;
    void* p = nullptr;
    const std::string err = kernels::device_alloc(&p, n * sizeof(T));
    if (!err.empty()) ADD_FAILURE() << "device_alloc: " << err;
    p_ = static_cast<T*>(p);
    kernels::zero_async(p_, n * sizeof(T), nullptr);
    kernels::stream_synchronize(nullptr);
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

  // Synchronous copies (legacy stream).
  void upload(const std::vector<T>& v) {
    if (v.size() != n_) resize(v.size());
    kernels::copy_async(p_, v.data(), n_ * sizeof(T), nullptr);
    kernels::stream_synchronize(nullptr);
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    kernels::copy_async(v.data(), p_, n_ * sizeof(T), nullptr);
    kernels::stream_synchronize(nullptr);
    return v;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

template <typename T>
std::vector<T> to_host(const T* device, std::size_t n) {
  std::vector<T> v(n);
  kernels::copy_async(v.data(), device, n * sizeof(T), nullptr);
  kernels::stream_synchronize(nullptr);
  return v;
}

// Every call of `t` (each collective, barrier, synchronize) raises Error(transport_error)
// naming `cause`, and all of them together take under a second: a transport after an abort.
void expect_every_call_refused(detail::DeviceTransport& t, const std::string& cause);

}  // namespace thinwire::test
