#include "transport/staged_transport.hpp"

#include <algorithm>

#include "common/fail.hpp"
#include "launch.hpp"

namespace thinwire::detail {

StagedTransport::StagedTransport(Transport& host, int device)
    : host_(host), device_(device), name_(cat("staged(", host.name(), ")")) {
  const std::string err = kernels::set_device(device);
  if (!err.empty())
    fail_with(ErrorCode::invalid_argument, "transport", host_.rank(),
              "staged device transport: cannot use device ", device, ": ", err);
}

StagedTransport::~StagedTransport() {
  kernels::pinned_free(pinned_);
}

void StagedTransport::check_usable(const char* what) const {
  if (!aborted_.empty())
    fail_with(ErrorCode::transport_error, "transport", host_.rank(), "staged device ", what,
              " refused: the transport was aborted (", aborted_, ")");
}

void StagedTransport::abort(const std::string& why) {
  if (aborted_.empty()) aborted_ = why.empty() ? std::string("aborted") : why;
}

unsigned char* StagedTransport::stage(std::size_t bytes, const char* what) {
  if (bytes > capacity_) {
    // Grow by at least half again, so that a slowly rising size does not reallocate often.
    const std::size_t want = std::max(bytes, capacity_ + capacity_ / 2);
    kernels::pinned_free(pinned_);
    pinned_ = nullptr;
    capacity_ = 0;
    void* p = nullptr;
    const std::string err = kernels::pinned_alloc(&p, want);
    if (!err.empty())
      fail_with(ErrorCode::transport_error, "transport", host_.rank(), "staged device ", what,
                ": cannot allocate ", want, " bytes of pinned host memory: ", err);
    pinned_ = p;
    capacity_ = want;
  }
  return static_cast<unsigned char*>(pinned_);
}

void StagedTransport::copy(void* dst, const void* src, std::size_t bytes, const char* what) {
  const std::string err = kernels::copy_async(dst, src, bytes, stream_);
  if (!err.empty())
    fail_with(ErrorCode::transport_error, "transport", host_.rank(), "staged device ", what,
              ": copy of ", bytes, " bytes on device ", device_, " failed: ", err);
}

void StagedTransport::wait(const char* what) {
  const std::string err = kernels::stream_synchronize(stream_);
  if (!err.empty())
    fail_with(ErrorCode::transport_error, "transport", host_.rank(), "staged device ", what,
              ": the stream of device ", device_, " failed: ", err);
}

void StagedTransport::synchronize(const char* what) {
  check_usable(what);
  wait(what);
}

void StagedTransport::allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) {
  check_usable("allreduce");
  if (count == 0) return;
  const std::size_t bytes = count * element_size(type);
  unsigned char* h = stage(bytes, "allreduce");
  copy(h, data, bytes, "allreduce");
  wait("allreduce");
  host_.allreduce(h, count, type, op);
  copy(data, h, bytes, "allreduce");
  wait("allreduce");
}

void StagedTransport::allgather(const void* send, void* recv, std::size_t bytes) {
  check_usable("allgather");
  if (bytes == 0) return;
  const std::size_t p = static_cast<std::size_t>(size());
  unsigned char* h = stage(p * bytes, "allgather");
  unsigned char* mine = h + static_cast<std::size_t>(rank()) * bytes;
  copy(mine, send, bytes, "allgather");
  wait("allgather");
  host_.allgather(mine, h, bytes);
  copy(recv, h, p * bytes, "allgather");
  wait("allgather");
}

void StagedTransport::alltoall(const void* send, void* recv, std::size_t bytes) {
  check_usable("alltoall");
  if (bytes == 0) return;
  const std::size_t total = static_cast<std::size_t>(size()) * bytes;
  unsigned char* h = stage(2 * total, "alltoall");
  copy(h, send, total, "alltoall");
  wait("alltoall");
  host_.alltoall(h, h + total, bytes);
  copy(recv, h + total, total, "alltoall");
  wait("alltoall");
}

void StagedTransport::broadcast(void* data, std::size_t bytes, int root) {
  check_usable("broadcast");
  if (root < 0 || root >= size())
    fail_with(ErrorCode::invalid_argument, "transport", rank(), "staged device broadcast root ",
              root, " is not a rank of a group of ", size());
  if (bytes == 0) return;
  unsigned char* h = stage(bytes, "broadcast");
  const bool is_root = rank() == root;
  if (is_root) {
    copy(h, data, bytes, "broadcast");
    wait("broadcast");
  }
  host_.broadcast(h, bytes, root);
  if (!is_root) {
    copy(data, h, bytes, "broadcast");
    wait("broadcast");
  }
}

void StagedTransport::barrier() {
  check_usable("barrier");
  wait("barrier");
  host_.barrier();
}

}  // namespace thinwire::detail
