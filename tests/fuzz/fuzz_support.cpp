#include "fuzz_support.hpp"

#include <cstring>

namespace thinwire::fuzz {

std::vector<Patch> read_patches(const std::uint8_t* data, std::size_t size) {
  std::vector<Patch> out;
  for (std::size_t at = 0; at + kPatchBytes <= size; at += kPatchBytes) {
    const std::uint8_t* p = data + at;
    out.push_back(
        {p[0], p[1], p[2] | (p[3] << 8) | (static_cast<std::uint32_t>(p[4]) << 16), p[5]});
  }
  return out;
}

std::vector<std::uint8_t> write_patches(const std::vector<Patch>& patches) {
  std::vector<std::uint8_t> out;
  for (const Patch& p : patches) {
    const std::uint8_t b[kPatchBytes] = {
        static_cast<std::uint8_t>(p.call),         static_cast<std::uint8_t>(p.peer),
        static_cast<std::uint8_t>(p.offset),       static_cast<std::uint8_t>(p.offset >> 8),
        static_cast<std::uint8_t>(p.offset >> 16), p.xor_mask};
    out.insert(out.end(), b, b + kPatchBytes);
  }
  return out;
}

std::uint32_t MirrorTransport::begin_call() {
  const std::uint32_t call = calls_++;
  if (fail_call_ >= 0 && call == static_cast<std::uint32_t>(fail_call_))
    throw Error(ErrorCode::timeout, "mirror transport: a peer stopped answering (fuzzed)");
  return call;
}

void MirrorTransport::patch(std::uint32_t call, int r, std::uint8_t* block,
                            std::size_t bytes) const {
  if (bytes == 0 || size_ < 2) return;
  for (const Patch& p : patches_) {
    if (p.call != call) continue;
    const std::uint32_t k = p.peer % static_cast<std::uint32_t>(size_ - 1);
    const int peer = static_cast<int>(k) < rank_ ? static_cast<int>(k) : static_cast<int>(k) + 1;
    if (peer == r) block[p.offset % bytes] ^= p.xor_mask;
  }
}

void MirrorTransport::allgather(const void* send, void* recv, std::size_t bytes) {
  const std::uint32_t call = begin_call();
  auto* out = static_cast<std::uint8_t*>(recv);
  // send may alias recv's own block: copy it out first.
  scratch_.assign(static_cast<const std::uint8_t*>(send),
                  static_cast<const std::uint8_t*>(send) + bytes);
  for (int r = 0; r < size_; ++r) {
    std::uint8_t* block = out + static_cast<std::size_t>(r) * bytes;
    if (bytes) std::memcpy(block, scratch_.data(), bytes);
    if (r != rank_) patch(call, r, block, bytes);
  }
}

void MirrorTransport::alltoall(const void* send, void* recv, std::size_t bytes) {
  const std::uint32_t call = begin_call();
  const auto* in = static_cast<const std::uint8_t*>(send);
  auto* out = static_cast<std::uint8_t*>(recv);
  const std::uint8_t* own = in + static_cast<std::size_t>(rank_) * bytes;
  for (int r = 0; r < size_; ++r) {
    std::uint8_t* block = out + static_cast<std::size_t>(r) * bytes;
    if (bytes) std::memmove(block, own, bytes);
    if (r != rank_) patch(call, r, block, bytes);
  }
}

namespace {

template <typename T>
T combine(T a, T b, ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return a + b;
    case ReduceOp::min:
      return b < a ? b : a;
    case ReduceOp::max:
      return a < b ? b : a;
  }
  return a;
}

template <typename T>
void reduce_typed(void* out, std::size_t count, ReduceOp op,
                  const std::vector<std::vector<std::uint8_t>>& parts) {
  for (std::size_t i = 0; i < count; ++i) {
    T acc;
    std::memcpy(&acc, parts[0].data() + i * sizeof(T), sizeof(T));
    for (std::size_t r = 1; r < parts.size(); ++r) {
      T v;
      std::memcpy(&v, parts[r].data() + i * sizeof(T), sizeof(T));
      acc = combine(acc, v, op);
    }
    std::memcpy(static_cast<std::uint8_t*>(out) + i * sizeof(T), &acc, sizeof(T));
  }
}

}  // namespace

void reduce_in_rank_order(void* out, std::size_t count, ElementType type, ReduceOp op,
                          const std::vector<std::vector<std::uint8_t>>& parts) {
  switch (type) {
    case ElementType::f32:
      return reduce_typed<float>(out, count, op, parts);
    case ElementType::f64:
      return reduce_typed<double>(out, count, op, parts);
    case ElementType::i64:  // as unsigned: wrap-around instead of undefined behaviour
    case ElementType::u64:
      return reduce_typed<std::uint64_t>(out, count, op, parts);
  }
}

void MirrorTransport::allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) {
  const std::uint32_t call = begin_call();
  const std::size_t bytes = count * element_size(type);
  const auto* in = static_cast<const std::uint8_t*>(data);
  std::vector<std::vector<std::uint8_t>> parts(static_cast<std::size_t>(size_),
                                               std::vector<std::uint8_t>(in, in + bytes));
  for (int r = 0; r < size_; ++r)
    if (r != rank_) patch(call, r, parts[static_cast<std::size_t>(r)].data(), bytes);
  reduce_in_rank_order(data, count, type, op, parts);
}

void MirrorTransport::broadcast(void* data, std::size_t bytes, int root) {
  const std::uint32_t call = begin_call();
  if (root != rank_) patch(call, root, static_cast<std::uint8_t*>(data), bytes);
}

}  // namespace thinwire::fuzz
