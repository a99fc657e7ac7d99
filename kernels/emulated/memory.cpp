// The CPU emulation of kernels/memory.cu: one "device" whose memory is host memory and
// whose streams run every launcher synchronously. CPU tests run the device pipeline on it;
// builds without CUDA compile it with THINWIRE_KERNELS_DISABLED, which reports no device.
#include <cstdlib>
#include <cstring>

#include "launch.hpp"

namespace thinwire::kernels {

namespace {
// Distinct non-null handles for streams and events; nothing is ever queued on them.
struct Handle {
  int unused = 0;
};
}  // namespace

int device_count(std::string* why) {
#if defined(THINWIRE_KERNELS_DISABLED)
  if (why) *why = "thinwire was built without CUDA (no nvcc at configure time)";
  return 0;
#else
  if (why) why->clear();
  return 1;
#endif
}

bool emulated() {
#if defined(THINWIRE_KERNELS_DISABLED)
  return false;
#else
  return true;
#endif
}

std::string set_device(int device) {
  return device == 0 && device_count(nullptr) == 1 ? std::string()
                                                   : "set_device: no such (emulated) device";
}

std::string get_device(int* device) {
  *device = 0;
  return {};
}

std::string pointer_device(const void* p, int* device) {
  // Every pointer counts as the emulated device's memory: tests pass host buffers as
  // TensorView::cuda(..., 0).
  *device = p ? 0 : -1;
  return {};
}

std::string device_name(int device, std::string* name) {
  *name = "thinwire CPU emulation";
  return device == 0 ? std::string() : "device_name: no such (emulated) device";
}

std::string device_alloc(void** p, std::size_t bytes) {
  // Aligned like cudaMalloc (256 bytes), so that kernels' vector loads would be legal.
  *p = std::aligned_alloc(256, ((bytes ? bytes : 16) + 255) / 256 * 256);
  return *p ? std::string() : "device_alloc: out of memory";
}

std::string device_free(void* p) {
  std::free(p);
  return {};
}

std::string pinned_alloc(void** p, std::size_t bytes) {
  return device_alloc(p, bytes);
}

std::string pinned_free(void* p) {
  return device_free(p);
}

std::string stream_create(void** stream) {
  *stream = new Handle;
  return {};
}

std::string stream_destroy(void* stream) {
  delete static_cast<Handle*>(stream);
  return {};
}

std::string stream_synchronize(void*) {
  return {};
}

std::string stream_query(void*, bool* done) {
  *done = true;
  return {};
}

std::string event_create(void** event) {
  *event = new Handle;
  return {};
}

std::string event_destroy(void* event) {
  delete static_cast<Handle*>(event);
  return {};
}

std::string event_record(void*, void*) {
  return {};
}

std::string stream_wait_event(void*, void*) {
  return {};
}

std::string copy_async(void* dst, const void* src, std::size_t bytes, void*) {
  if (bytes) std::memmove(dst, src, bytes);
  return {};
}

std::string zero_async(void* p, std::size_t bytes, void*) {
  if (bytes) std::memset(p, 0, bytes);
  return {};
}

}  // namespace thinwire::kernels
