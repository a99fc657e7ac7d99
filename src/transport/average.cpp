#include "transport/average.hpp"

#include "transport/communicator_state.hpp"
#include "transport/mpi_transport.hpp"
#include "transport/span_map.hpp"

namespace thinwire::detail {

void NonFiniteSum::keep_first(std::size_t at, int who) {
  if (at == kAllFinite) return;
  // -1 (found in the average) orders after every rank at the same index.
  const auto order = [](int r) {
    return r < 0 ? static_cast<unsigned>(-1) : static_cast<unsigned>(r);
  };
  if (at < index || (at == index && order(who) < order(rank))) {
    index = at;
    rank = who;
  }
}

namespace {

void average(Transport& t, float* data, std::size_t count, NonFiniteSum* check) {
  if (auto* guarded = dynamic_cast<GuardedTransport*>(&t)) {
    guarded->average_f32(data, count, check);
    return;
  }
  if (auto* mpi = dynamic_cast<MpiTransport*>(&t)) {
    mpi->average_f32(data, count, check);
    return;
  }
  if (check && t.size() == 1) check->keep_first(first_non_finite_f32(data, count), t.rank());
  t.allreduce(data, count, ElementType::f32, ReduceOp::sum);
  if (t.size() == 1) return;
  const auto p = static_cast<float>(t.size());
  if (check)
    check->keep_first(divide_f32_checked(data, data, count, p), -1);
  else
    divide_f32(data, data, count, p);
}

// The transport under the communicator's guard, if any.
Transport& unguarded(Transport& t) {
  if (auto* guarded = dynamic_cast<GuardedTransport*>(&t)) return guarded->inner();
  return t;
}

}  // namespace

bool average_takes_spans(Transport& t, std::size_t count) {
  auto* mpi = dynamic_cast<MpiTransport*>(&unguarded(t));
  return mpi && mpi->takes_spans(count);
}

NonFiniteSum allreduce_average_f32_spans(Transport& t, const std::vector<F32Span>& spans,
                                         bool check, std::vector<float>& scratch) {
  NonFiniteSum found;
  std::size_t total = 0;
  for (const F32Span& s : spans) total += s.count;
  if (spans.size() == 1 || total == 0) {
    if (spans.size() == 1) average(t, spans[0].data, spans[0].count, check ? &found : nullptr);
    return found;
  }
  if (average_takes_spans(t, total)) {
    if (auto* guarded = dynamic_cast<GuardedTransport*>(&t))
      guarded->average_f32_spans(spans, total, check ? &found : nullptr);
    else
      static_cast<MpiTransport&>(t).average_f32_spans(spans, total, check ? &found : nullptr);
    return found;
  }
  const SpanMap map(spans.data(), spans.size());
  scratch.resize(total);
  map.pack(scratch.data());
  average(t, scratch.data(), total, check ? &found : nullptr);
  map.unpack(scratch.data());
  return found;
}

void allreduce_average_f32(Transport& t, float* data, std::size_t count) {
  average(t, data, count, nullptr);
}

NonFiniteSum allreduce_average_f32_checked(Transport& t, float* data, std::size_t count) {
  NonFiniteSum found;
  average(t, data, count, &found);
  return found;
}

}  // namespace thinwire::detail
