// Devices, memory, streams and events: thin wrappers over the CUDA runtime that report
// errors as strings (launch.hpp), so that src/ needs no CUDA header.
#include <cuda_runtime.h>

#include "launch.hpp"

namespace thinwire::kernels {

namespace {

std::string check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  cudaGetLastError();  // clear a non-sticky error so that later calls are not blamed
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

}  // namespace

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = check(e, "cudaGetDeviceCount");
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device";
  return n;
}

bool emulated() {
  return false;
}

std::string set_device(int device) {
  return check(cudaSetDevice(device), "cudaSetDevice");
}

std::string get_device(int* device) {
  return check(cudaGetDevice(device), "cudaGetDevice");
}

std::string pointer_device(const void* p, int* device) {
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, p);
  if (e != cudaSuccess) return check(e, "cudaPointerGetAttributes");
  *device = (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged)
                ? attr.device
                : -1;
  return {};
}

std::string device_name(int device, std::string* name) {
  cudaDeviceProp prop{};
  const std::string err = check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  if (err.empty()) *name = prop.name;
  return err;
}

std::string device_alloc(void** p, std::size_t bytes) {
  return check(cudaMalloc(p, bytes ? bytes : 16), "cudaMalloc");
}

std::string device_free(void* p) {
  return p ? check(cudaFree(p), "cudaFree") : std::string();
}

std::string pinned_alloc(void** p, std::size_t bytes) {
  return check(cudaMallocHost(p, bytes ? bytes : 16), "cudaMallocHost");
}

std::string pinned_free(void* p) {
  return p ? check(cudaFreeHost(p), "cudaFreeHost") : std::string();
}

std::string stream_create(void** stream) {
  cudaStream_t s = nullptr;
  const std::string err =
      check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  *stream = s;
  return err;
}

std::string stream_destroy(void* stream) {
  return stream ? check(cudaStreamDestroy(static_cast<cudaStream_t>(stream)), "cudaStreamDestroy")
                : std::string();
}

std::string stream_synchronize(void* stream) {
  return check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}

std::string stream_query(void* stream, bool* done) {
  const cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(stream));
  *done = e == cudaSuccess;
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return {};
  }
  return check(e, "cudaStreamQuery");
}

std::string event_create(void** event) {
  cudaEvent_t ev = nullptr;
  const std::string err =
      check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  *event = ev;
  return err;
}

std::string event_destroy(void* event) {
  return event ? check(cudaEventDestroy(static_cast<cudaEvent_t>(event)), "cudaEventDestroy")
               : std::string();
}

std::string event_record(void* event, void* stream) {
  return check(cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)),
               "cudaEventRecord");
}

std::string stream_wait_event(void* stream, void* event) {
  return check(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream),
                                   static_cast<cudaEvent_t>(event), 0),
               "cudaStreamWaitEvent");
}

std::string copy_async(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes == 0) return {};
  return check(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)),
      "cudaMemcpyAsync");
}

std::string zero_async(void* p, std::size_t bytes, void* stream) {
  if (bytes == 0) return {};
  return check(cudaMemsetAsync(p, 0, bytes, static_cast<cudaStream_t>(stream)), "cudaMemsetAsync");
}

}  // namespace thinwire::kernels
