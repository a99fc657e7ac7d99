#include "transport/mpi_transport.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>

#include "common/env.hpp"
#include "common/fail.hpp"
#include "common/hash.hpp"
#include "common/logging.hpp"
#include "common/timer.hpp"
#include "transport/average.hpp"
#include "transport/ring_add.hpp"

namespace thinwire::detail {

namespace {

constexpr int kTagReduceScatter = 0x7701;
constexpr int kTagRingAllgather = 0x7702;
constexpr int kTagAllgather = 0x7703;
constexpr int kTagAlltoall = 0x7704;
constexpr int kTagRingCheck = 0x7705;
constexpr int kTagLogAllgather = 0x7706;

MPI_Datatype mpi_type(ElementType t) {
  switch (t) {
    case ElementType::f32:
      return MPI_FLOAT;
    case ElementType::f64:
      return MPI_DOUBLE;
    case ElementType::i64:
      return MPI_INT64_T;
    case ElementType::u64:
      return MPI_UINT64_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return MPI_SUM;
    case ReduceOp::min:
      return MPI_MIN;
    case ReduceOp::max:
      return MPI_MAX;
  }
  return MPI_OP_NULL;
}

// (count, datatype) for `bytes` contiguous bytes: MPI counts are int, so blocks beyond
// INT_MAX bytes are described by a struct of 1 MiB blocks plus the remainder.
class ByteBlock {
 public:
  explicit ByteBlock(std::size_t bytes) {
    if (bytes <= static_cast<std::size_t>(INT_MAX)) {
      count_ = static_cast<int>(bytes);
      return;
    }
    constexpr std::size_t kBlock = std::size_t{1} << 20;
    MPI_Datatype block, parts;
    MPI_Type_contiguous(static_cast<int>(kBlock), MPI_BYTE, &block);
    int lengths[2] = {static_cast<int>(bytes / kBlock), static_cast<int>(bytes % kBlock)};
    MPI_Aint displacements[2] = {0, static_cast<MPI_Aint>(bytes / kBlock * kBlock)};
    MPI_Datatype types[2] = {block, MPI_BYTE};
    MPI_Type_create_struct(2, lengths, displacements, types, &parts);
    MPI_Type_create_resized(parts, 0, static_cast<MPI_Aint>(bytes), &type_);
    MPI_Type_commit(&type_);
    MPI_Type_free(&block);
    MPI_Type_free(&parts);
    owned_ = true;
    count_ = 1;
  }
  ~ByteBlock() {
    if (owned_) MPI_Type_free(&type_);  // pending operations keep their own reference
  }
  ByteBlock(const ByteBlock&) = delete;
  ByteBlock& operator=(const ByteBlock&) = delete;
  int count() const { return count_; }
  MPI_Datatype type() const { return type_; }

 private:
  int count_ = 0;
  MPI_Datatype type_ = MPI_BYTE;
  bool owned_ = false;
};

}  // namespace

MpiTransport::MpiTransport(MPI_Comm comm, double timeout_s) : timeout_s_(timeout_s) {
  double asked = static_cast<double>(kDefaultSegmentBytes);
  double asked_rounds = kDefaultLogAllgatherMinRanks;
  SumRouteChooser::Mode mode = SumRouteChooser::Mode::ring;
  try {
    asked = env_number("THINWIRE_MPI_SEGMENT_BYTES", asked, "bytes");
    mode = SumRouteChooser::mode_from_env();
    asked_rounds = env_number("THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS", asked_rounds, "ranks");
    if (asked_rounds != std::floor(asked_rounds) || asked_rounds > INT_MAX)
      fail_with(ErrorCode::invalid_argument, "environment", -1,
                "THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS=", asked_rounds,
                " is not a whole number of ranks (0: allgathers never go in rounds)");
  } catch (const Error& e) {
    bad_setting_ = e;  // reported on every rank by Communicator::from_mpi
    asked_rounds = kDefaultLogAllgatherMinRanks;
  }
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized)
    fail(ErrorCode::invalid_argument, "transport", -1,
         "Communicator::from_mpi needs MPI to be initialised (call MPI_Init first)");
  if (comm == MPI_COMM_NULL)
    fail(ErrorCode::invalid_argument, "transport", -1, "Communicator::from_mpi got MPI_COMM_NULL");
  // A zero handle is no communicator in any MPI. Open MPI's MPI_Comm_f2c returns one for a
  // Fortran handle that names none (C's tw_comm_from_mpi_fint, Python's from_mpi(int)), and
  // MPI_Comm_rank on it aborted the job.
  if (comm == MPI_Comm{})
    fail(ErrorCode::invalid_argument, "transport", -1,
         "Communicator::from_mpi got a null handle, not a communicator (a Fortran handle that "
         "names no communicator?)");
  MPI_Comm_rank(comm, &rank_);
  MPI_Comm_size(comm, &size_);
  if (timeout_s_ <= 0) {
    check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  } else {
    // The duplication is collective too: a rank that never calls from_mpi() must not hang
    // the others. MPI writes the new handle when the last rank joins, which may be after a
    // timeout: into memory that is then never freed.
    std::vector<unsigned char> handle(sizeof(MPI_Comm));
    MPI_Request r;
    check(MPI_Comm_idup(comm, reinterpret_cast<MPI_Comm*>(handle.data()), &r), "MPI_Comm_idup");
    try {
      wait_all(&r, 1, "communicator duplication (MPI_Comm_idup in Communicator::from_mpi)", 0, -1);
    } catch (const Error&) {
      abandon(std::move(handle));
      throw;
    }
    std::memcpy(&comm_, handle.data(), sizeof comm_);
  }
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  // Sender and receiver must cut a transfer into the same messages: take the smallest
  // segment size any rank asks for. Every rank must take the same sum route: where the modes
  // differ, all take the ring. And every rank must gather small blocks the same way (rounds
  // or directly): the smallest number of ranks any asks for, 0 (never) counting as the
  // largest. One MIN reduction over {segment, mode, ~mode, rounds}.
  constexpr unsigned long long kNever = std::numeric_limits<unsigned long long>::max();
  unsigned long long segment = asked > 0 ? static_cast<unsigned long long>(asked) : 0;
  if (segment == 0) segment = kNever;  // whole messages
  const auto mode_code = static_cast<unsigned long long>(mode);
  const auto rounds = asked_rounds > 0 ? static_cast<unsigned long long>(asked_rounds) : kNever;
  unsigned long long agreed[4] = {segment, mode_code, ~mode_code, rounds};
  if (timeout_s_ <= 0) {
    check(MPI_Allreduce(MPI_IN_PLACE, agreed, 4, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm_),
          "MPI_Allreduce (segment size, sum route, allgather rounds)");
  } else {
    MPI_Request r;
    check(MPI_Iallreduce(MPI_IN_PLACE, agreed, 4, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm_, &r),
          "MPI_Iallreduce (segment size, sum route, allgather rounds)");
    wait_all(&r, 1,
             "agreement on the message segment size, sum route and allgather rounds "
             "(Communicator::from_mpi)",
             32, -1);
  }
  segment = agreed[0];
  segment_bytes_ = segment == kNever ? 0 : static_cast<std::size_t>(segment);
  log_allgather_min_ranks_ = agreed[3] == kNever ? 0 : static_cast<int>(agreed[3]);
  if (agreed[1] == ~agreed[2]) {
    routes_ = SumRouteChooser(mode);
  } else if (rank_ == 0) {
    TW_LOG(warn, "transport: ranks set different THINWIRE_MPI_ALLREDUCE modes; all use the ring");
  }
}

MpiTransport::~MpiTransport() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiTransport::check(int rc, const char* what) const {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail_with(ErrorCode::transport_error, "transport", rank_, what, " failed: ", text);
}

void MpiTransport::abandon(std::vector<unsigned char>&& memory) {
  // Reachable from a global, so leak checkers see it as held, not lost. One entry per
  // timed-out operation, and a timeout breaks the communicator. Moving a vector keeps its
  // buffer where MPI may still write.
  static auto* graveyard = new std::vector<std::vector<unsigned char>>();
  TW_LOG(warn, "transport: ", memory.size(), " bytes left to a collective that timed out");
  graveyard->push_back(std::move(memory));
}

void MpiTransport::wait_on_copy(std::vector<unsigned char>& copy, MPI_Request* request,
                                const char* what, int peer) {
  try {
    wait_all(request, 1, what, copy.size(), peer);
  } catch (const Error&) {
    abandon(std::move(copy));
    copy = std::vector<unsigned char>();
    throw;
  }
}

void MpiTransport::cancel_pending(PeerOps& ops) {
  // A receive still posted after a timeout would let a late message land in memory the
  // caller has moved on to (freed, or holding new data): cancel the receives. An unmatched
  // receive is cancelled at once; one already matched completes when its data is in, which
  // gets a short grace. Sends only read their buffers: their requests are freed.
  const auto n = ops.requests.size();
  for (std::size_t i = 0; i < n; ++i)
    if (ops.requests[i] != MPI_REQUEST_NULL && ops.receives[i]) MPI_Cancel(&ops.requests[i]);
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (bool pending = true; pending;) {
    pending = false;
    for (std::size_t i = 0; i < n; ++i) {
      if (ops.requests[i] == MPI_REQUEST_NULL || !ops.receives[i]) continue;
      int done = 0;
      MPI_Test(&ops.requests[i], &done, MPI_STATUS_IGNORE);
      pending = pending || !done;
    }
    if (pending && std::chrono::duration<double>(clock::now() - start).count() > 0.5) break;
    if (pending) sched_yield();
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (ops.requests[i] == MPI_REQUEST_NULL) continue;
    if (ops.receives[i])
      TW_LOG(warn, "transport: a receive from rank ", ops.peers[i],
             " could not be cancelled after the timeout; its buffer may still be written");
    MPI_Request_free(&ops.requests[i]);
  }
}

void MpiTransport::wait_all(MPI_Request* requests, int n, const char* what, std::size_t bytes,
                            int peer) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (unsigned spins = 0;; ++spins) {
    int done = 0;
    check(MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE), what);
    if (done) return;
    if (spins < 64) continue;
    // Give the core away: ranks are often oversubscribed on small machines, and a peer
    // that is still computing needs the CPU more than this loop does.
    sched_yield();
    if (timeout_s_ > 0 && (spins & 63) == 0 &&
        std::chrono::duration<double>(clock::now() - start).count() > timeout_s_) {
      // The requests stay pending: MPI cannot cancel collectives. The communicator is
      // marked broken by the caller, so nothing reuses it.
      const std::string who = peer >= 0
                                  ? cat("; still waiting for rank ", peer)
                                  : std::string("; MPI does not say which ranks did not join");
      fail_with(ErrorCode::timeout, "transport", rank_, "MPI ", what,
                bytes ? cat(" of ", bytes, " bytes") : std::string(), " did not complete within ",
                timeout_s_, " s (THINWIRE_TIMEOUT_S)", who);
    }
  }
}

// A transfer goes as messages of at most segment_bytes_ (MPI delivers messages with one
// source, tag and communicator in order, and every rank cuts at the same sizes). Why: under
// Open MPI's TCP transport a message above the eager limit (64 KiB by default, headers
// included: 32 KiB segments stay below it) waits for the receiver's rendezvous reply, and
// that reply travels in the same TCP connection as the receiver's own bulk data to this
// rank. When two ranks exchange large messages with each other (the ring at 2 ranks, every
// pair in an alltoall or allgather) one reply can wait behind megabytes of the other
// direction's data, and the two directions no longer overlap: measured on 2 emulated hosts at
// 200 Mbit/s, a 16 MiB ring allreduce took about 1050 ms in some runs and 700 ms in others.
// Eager-sized messages need no reply.
void MpiTransport::post(const void* buf, std::size_t bytes, int peer, int tag, bool receive) {
  // MPI_Irecv writes the buffer; post_recv() passes a writable one.
  auto* p = static_cast<unsigned char*>(const_cast<void*>(buf));
  const std::size_t segment = segment_bytes_ ? segment_bytes_ : bytes;
  std::size_t off = 0;
  do {
    const std::size_t len = std::min(segment, bytes - off);
    ByteBlock block(len);
    MPI_Request r;
    if (receive)
      check(MPI_Irecv(p + off, block.count(), block.type(), peer, tag, comm_, &r), "MPI_Irecv");
    else
      check(MPI_Isend(p + off, block.count(), block.type(), peer, tag, comm_, &r), "MPI_Isend");
    ops_.requests.push_back(r);
    ops_.peers.push_back(peer);
    ops_.receives.push_back(receive ? 1 : 0);
    off += len;
  } while (off < bytes);
}

void MpiTransport::wait_peers(PeerOps& ops, const char* what, std::size_t bytes) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const int n = static_cast<int>(ops.requests.size());
  std::vector<int> done_index(static_cast<std::size_t>(n));
  int remaining = n;
  for (unsigned spins = 0; remaining > 0; ++spins) {
    int done = 0;
    check(MPI_Testsome(n, ops.requests.data(), &done, done_index.data(), MPI_STATUSES_IGNORE),
          what);
    if (done == MPI_UNDEFINED) break;  // nothing active left
    remaining -= done;
    if (remaining == 0 || done > 0 || spins < 64) continue;
    sched_yield();
    if (timeout_s_ > 0 && (spins & 63) == 0 &&
        std::chrono::duration<double>(clock::now() - start).count() > timeout_s_) {
      std::string silent, undelivered;
      std::set<int> silent_peers, undelivered_peers;  // a transfer may be several messages
      for (int i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(i);
        if (ops.requests[k] == MPI_REQUEST_NULL) continue;
        (ops.receives[k] ? silent_peers : undelivered_peers).insert(ops.peers[k]);
      }
      for (int peer : silent_peers) silent += cat(silent.empty() ? "" : ", ", peer);
      for (int peer : undelivered_peers) undelivered += cat(undelivered.empty() ? "" : ", ", peer);
      std::string who;
      if (!silent.empty()) who += "; nothing arrived from rank(s) " + silent;
      if (!undelivered.empty()) who += "; not yet taken by rank(s) " + undelivered;
      cancel_pending(ops);
      fail_with(ErrorCode::timeout, "transport", rank_, "MPI ", what, " of ", bytes,
                " bytes per rank did not complete within ", timeout_s_, " s (THINWIRE_TIMEOUT_S)",
                who);
    }
  }
}

void MpiTransport::allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) {
  if (count == 0 || size_ == 1) return;
  if (type == ElementType::f32 && op == ReduceOp::sum && count * 4 >= kRingMinBytes) {
    sum_f32(static_cast<float*>(data), count, 1.0f, nullptr);
    return;
  }
  mpi_allreduce(data, count, type, op);
}

void MpiTransport::average_f32(float* data, std::size_t count, NonFiniteSum* non_finite) {
  if (non_finite) *non_finite = NonFiniteSum{};
  if (count == 0) return;
  if (size_ == 1) {
    if (non_finite) non_finite->keep_first(first_non_finite_f32(data, count), 0);
    return;
  }
  const auto p = static_cast<float>(size_);
  if (count * 4 >= kRingMinBytes)
    sum_f32(data, count, p, non_finite);
  else
    mpi_allreduce(data, count, ElementType::f32, ReduceOp::sum, p, non_finite);
}

void MpiTransport::mpi_allreduce(void* data, std::size_t count, ElementType type, ReduceOp op,
                                 float divisor, NonFiniteSum* non_finite) {
  const bool divide = type == ElementType::f32 && divisor != 1.0f;
  if (type != ElementType::f32) non_finite = nullptr;
  // The first non-finite value of a slice as it is divided (or copied) out, at its offset.
  auto finish_f32 = [&](float* out, const float* in, int n, std::size_t offset) {
    if (!non_finite) {
      if (divide) divide_f32(out, in, n, divisor);
      return;
    }
    const std::size_t at = divide
                               ? divide_f32_checked(out, in, n, divisor)
                               : run_then_check_blocks(out, n, [&](std::size_t b, std::size_t e) {
                                   if (out != in) std::memcpy(out + b, in + b, (e - b) * 4);
                                 });
    non_finite->keep_first(at == kAllFinite ? kAllFinite : offset + at, -1);
  };
  const std::size_t esize = element_size(type);
  // MPI counts are int: reduce in slices.
  constexpr std::size_t kSlice = std::size_t{1} << 30;
  auto* bytes = static_cast<unsigned char*>(data);
  for (std::size_t off = 0; off < count; off += kSlice) {
    const int n = static_cast<int>(std::min(kSlice, count - off));
    void* p = bytes + off * esize;
    if (timeout_s_ <= 0) {
      check(MPI_Allreduce(MPI_IN_PLACE, p, n, mpi_type(type), mpi_op(op), comm_), "allreduce");
      if (type == ElementType::f32)
        finish_f32(static_cast<float*>(p), static_cast<float*>(p), n, off);
    } else {
      // Into a copy: MPI cannot cancel a collective, and after a timeout it may still write
      // its receive buffer; the copy is then abandoned, the caller's memory is left alone.
      // (It may still read the caller's buffer, as the ring's abandoned sends may.) Not
      // MPI_IN_PLACE: Open MPI's nonblocking allreduce then falls back to reduce + broadcast,
      // measured 1.3x slower at 64 MiB over shared memory.
      const std::size_t slice_bytes = static_cast<std::size_t>(n) * esize;
      copy_.resize(slice_bytes);
      MPI_Request r;
      check(MPI_Iallreduce(p, copy_.data(), n, mpi_type(type), mpi_op(op), comm_, &r), "allreduce");
      wait_on_copy(copy_, &r, "allreduce", -1);
      if (type == ElementType::f32 && (divide || non_finite))
        finish_f32(static_cast<float*>(p), reinterpret_cast<const float*>(copy_.data()), n, off);
      else
        std::memcpy(p, copy_.data(), slice_bytes);
    }
  }
}

bool MpiTransport::takes_spans(std::size_t count) const {
  return size_ > 1 && count * 4 >= kRingMinBytes;
}

void MpiTransport::average_f32_spans(const std::vector<F32Span>& spans, std::size_t count,
                                     NonFiniteSum* non_finite) {
  if (!takes_spans(count))
    fail_with(ErrorCode::invalid_argument, "transport", rank_, "average_f32_spans: ", count,
              " elements on ", size_, " rank(s) is not a sum that takes spans (takes_spans)");
  if (non_finite) *non_finite = NonFiniteSum{};
  sum_f32(SpanMap(spans.data(), spans.size()), static_cast<float>(size_), non_finite);
}

void MpiTransport::sum_f32(float* data, std::size_t count, float divisor,
                           NonFiniteSum* non_finite) {
  const F32Span whole{data, count};
  sum_f32(SpanMap(&whole, 1), divisor, non_finite);
}

void MpiTransport::sum_f32(const SpanMap& data, float divisor, NonFiniteSum* non_finite) {
  const std::size_t count = data.total(), bytes = count * 4;
  const SumRouteChooser::Plan plan = routes_.next(bytes);
  const Timer timer;
  if (plan.route == SumRoute::ring) {
    ring_sum_f32(data, divisor, non_finite);
    if (routes_.record(bytes, plan, timer.seconds())) settle_route(bytes);
    return;
  }
  // MPI's allreduce needs one buffer: spans are packed inside the timed call, so that the
  // route chooser weighs that copy against the ring, which needs none.
  float* buf = data.contiguous();
  const bool packed = buf == nullptr;
  if (packed) {
    pack_scratch_.resize(count);
    data.pack(pack_scratch_.data());
    buf = pack_scratch_.data();
  }
  mpi_allreduce(buf, count, ElementType::f32, ReduceOp::sum, divisor, non_finite);
  if (packed) data.unpack(buf);
  const double seconds = timer.seconds();
  // MPI does not promise every rank the same bits (Open MPI's algorithms give them, but a
  // library with per-rank reduction orders would not): check MPI's first results.
  if (plan.verify && !make_identical(buf, bytes)) {
    if (packed) data.unpack(buf);  // rank 0's bits, now in the scratch
    routes_.reject_mpi();
    if (non_finite) {  // rank 0's bits now: test them again, so that every rank answers alike
      *non_finite = NonFiniteSum{};
      non_finite->keep_first(first_non_finite_f32(buf, count), -1);
    }
    if (rank_ == 0)
      TW_LOG(warn, "transport: MPI's allreduce gave ranks different bits for ", bytes,
             " bytes; repaired from rank 0, and every f32 sum now takes thinwire's ring");
  }
  if (routes_.record(bytes, plan, seconds)) settle_route(bytes);
}

bool MpiTransport::make_identical(void* data, std::size_t bytes) {
  if (size_ == 1) return true;
  // max(h) == h and max(~h) == ~h on a rank only when every rank's h is equal, so all ranks
  // reach the same verdict.
  const std::uint64_t h = content_digest(data, bytes);
  std::uint64_t v[2] = {h, ~h};
  mpi_allreduce(v, 2, ElementType::u64, ReduceOp::max);
  if (v[0] == h && v[1] == ~h) return true;
  broadcast(data, bytes, 0);
  return false;
}

void MpiTransport::settle_route(std::size_t bytes) {
  const SumRouteChooser::Timings mine = routes_.timings(bytes);
  double v[2] = {mine.ring_s, mine.mpi_s};
  mpi_allreduce(v, 2, ElementType::f64, ReduceOp::max);
  const SumRoute route = routes_.decide(bytes, {v[0], v[1]});
  if (rank_ == 0)
    TW_LOG(info, "transport: f32 sums of ", std::size_t{1} << SumRouteChooser::size_class(bytes),
           "+ bytes take ", SumRouteChooser::name(route), " (slowest rank: ring ", v[0] * 1e3,
           " ms, MPI ", v[1] * 1e3, " ms)");
}

// Reduce-scatter then allgather around the ring, chunk c = [count*c/P, count*(c+1)/P).
// Each chunk is summed along one path (and divided by the rank that finishes it) and then
// copied to every rank, so all ranks end with the same bits.
//
// With `non_finite`, the additions test the gradients for NaN and infinity as they read them.
// A rank adds into every chunk but the one it sends first, once each, so `dst` is its own
// gradient there; that first chunk, as sent, is `src` of its right neighbour's first
// addition. So every element of every rank's gradient is tested once, by a pass the ring
// makes anyway, and the rank that held it is known. Each allgather message then carries a
// 16-byte note, the first (index, rank) its sender has seen (its own and the notes it
// received before), so that after P-1 steps every rank has seen every rank's.
void MpiTransport::ring_sum_f32(const SpanMap& data, float divisor, NonFiniteSum* non_finite) {
  const int p = size_;
  const int right = (rank_ + 1) % p, left = (rank_ - 1 + p) % p;
  const std::size_t count = data.total();
  auto start = [&](int c) {
    return count * static_cast<std::size_t>(c) / static_cast<std::size_t>(p);
  };
  // A chunk's pieces go as messages of their own (in the same order on every rank, so that
  // MPI's ordering per peer and tag matches them up); the reduce-scatter receives them into
  // one scratch buffer, at their offsets in the chunk.
  auto post_chunk = [&](int c, int peer, int tag, bool receive, float* scratch) {
    data.for_pieces(start(c), start(c + 1), [&](float* piece, std::size_t off, std::size_t n) {
      post(scratch ? scratch + off : piece, n * 4, peer, tag, receive);
    });
  };
  ring_scratch_.resize(count / p + 1);
  NonFiniteSum seen;

  for (int s = 0; s < p - 1; ++s) {
    const int send_c = (rank_ - s + p) % p, recv_c = (rank_ - s - 1 + p) % p;
    ops_.clear();
    post_chunk(recv_c, left, kTagReduceScatter, true, ring_scratch_.data());
    post_chunk(send_c, right, kTagReduceScatter, false, nullptr);
    wait_peers(ops_, "ring allreduce (reduce-scatter)", count * 4);
    // This rank finishes chunk recv_c at the last step: it divides that part of the sum.
    const float chunk_divisor = s == p - 2 ? divisor : 1.0f;
    const std::size_t base = start(recv_c);
    data.for_pieces(base, start(recv_c + 1), [&](float* piece, std::size_t off, std::size_t n) {
      const RingAddFound found =
          ring_add_f32(piece, ring_scratch_.data() + off, n, chunk_divisor, non_finite != nullptr,
                       non_finite != nullptr && s == 0);
      seen.keep_first(found.dst == kAllFinite ? kAllFinite : base + off + found.dst, rank_);
      seen.keep_first(found.src == kAllFinite ? kAllFinite : base + off + found.src, left);
    });
  }
  std::uint64_t note_out[2], note_in[2];
  for (int s = 0; s < p - 1; ++s) {
    const int send_c = (rank_ + 1 - s + p) % p, recv_c = (rank_ - s + p) % p;
    ops_.clear();
    post_chunk(recv_c, left, kTagRingAllgather, true, nullptr);
    post_chunk(send_c, right, kTagRingAllgather, false, nullptr);
    if (non_finite) {
      note_out[0] = seen.index;
      note_out[1] = static_cast<std::uint64_t>(static_cast<std::int64_t>(seen.rank));
      post_recv(note_in, sizeof note_in, left, kTagRingCheck);
      post_send(note_out, sizeof note_out, right, kTagRingCheck);
    }
    wait_peers(ops_, "ring allreduce (allgather)", count * 4);
    if (non_finite)
      seen.keep_first(static_cast<std::size_t>(note_in[0]),
                      static_cast<int>(static_cast<std::int64_t>(note_in[1])));
  }
  if (non_finite) *non_finite = seen;
}

void MpiTransport::allgather(const void* send, void* recv, std::size_t bytes) {
  auto* out = static_cast<unsigned char*>(recv);
  if (bytes && send != out + static_cast<std::size_t>(rank_) * bytes)
    std::memmove(out + static_cast<std::size_t>(rank_) * bytes, send, bytes);
  if (size_ == 1 || bytes == 0) return;
  if (timeout_s_ <= 0) {
    ByteBlock block(bytes);
    check(
        MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, block.count(), block.type(), comm_),
        "allgather");
    return;
  }
  if (allgather_in_log_rounds(bytes, size_, log_allgather_min_ranks_)) {
    log_round_allgather(out, bytes);
    return;
  }
  // Every peer's block directly, posted in a rotated order so no rank is everyone's first.
  ops_.clear();
  for (int k = 1; k < size_; ++k) {
    const int from = (rank_ - k + size_) % size_, to = (rank_ + k) % size_;
    post_recv(out + static_cast<std::size_t>(from) * bytes, bytes, from, kTagAllgather);
    post_send(out + static_cast<std::size_t>(rank_) * bytes, bytes, to, kTagAllgather);
  }
  wait_peers(ops_, "allgather", bytes);
}

// Before the round of distance d this rank holds the blocks of ranks rank .. rank+d-1 (mod P),
// and so does rank+d of its own: it sends this rank the first min(d, P-d) of them, and this
// rank sends rank-d its own first ones. After ceil(log2 P) rounds every rank holds all P. Each
// range of blocks is written in place at its ranks' offsets, in at most two pieces where it
// wraps past rank P-1; both ends cut a range alike, so their messages pair up.
void MpiTransport::log_round_allgather(unsigned char* out, std::size_t bytes) {
  const int p = size_;
  auto post_range = [&](int first, int count, int peer, bool receive) {
    const int head = std::min(count, p - first);
    post(out + static_cast<std::size_t>(first) * bytes, static_cast<std::size_t>(head) * bytes,
         peer, kTagLogAllgather, receive);
    if (head < count)
      post(out, static_cast<std::size_t>(count - head) * bytes, peer, kTagLogAllgather, receive);
  };
  int rounds = 0;
  for (int d = 1; d < p; d *= 2) ++rounds;
  int round = 0;
  for (int d = 1; d < p; d *= 2) {
    ++round;
    const int count = std::min(d, p - d);
    const int from = (rank_ + d) % p, to = (rank_ - d + p) % p;
    ops_.clear();
    post_range(from, count, from, true);
    post_range(rank_, count, to, false);
    // A timeout names `from`, which may be waiting itself for a rank further on.
    const std::string what =
        cat("allgather (round ", round, " of ", rounds, ", the blocks of ranks ", from, "..",
            (from + count - 1) % p, " through rank ", from, ")");
    wait_peers(ops_, what.c_str(), bytes);
  }
}

void MpiTransport::alltoall(const void* send, void* recv, std::size_t bytes) {
  const auto* in = static_cast<const unsigned char*>(send);
  auto* out = static_cast<unsigned char*>(recv);
  const std::size_t me = static_cast<std::size_t>(rank_);
  if (bytes) std::memmove(out + me * bytes, in + me * bytes, bytes);
  if (size_ == 1 || bytes == 0) return;
  if (timeout_s_ <= 0) {
    ByteBlock block(bytes);
    check(MPI_Alltoall(send, block.count(), block.type(), recv, block.count(), block.type(), comm_),
          "alltoall");
    return;
  }
  ops_.clear();
  for (int k = 1; k < size_; ++k) {
    const int from = (rank_ - k + size_) % size_, to = (rank_ + k) % size_;
    post_recv(out + static_cast<std::size_t>(from) * bytes, bytes, from, kTagAlltoall);
    post_send(in + static_cast<std::size_t>(to) * bytes, bytes, to, kTagAlltoall);
  }
  wait_peers(ops_, "alltoall", bytes);
}

void MpiTransport::broadcast(void* data, std::size_t bytes, int root) {
  if (root < 0 || root >= size_)
    fail_with(ErrorCode::invalid_argument, "transport", rank_, "broadcast root ", root,
              " is not a rank of a group of ", size_);
  if (size_ == 1 || bytes == 0) return;
  ByteBlock block(bytes);
  if (timeout_s_ <= 0) {
    check(MPI_Bcast(data, block.count(), block.type(), root, comm_), "broadcast");
    return;
  }
  copy_.assign(static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + bytes);
  MPI_Request r;
  check(MPI_Ibcast(copy_.data(), block.count(), block.type(), root, comm_, &r), "broadcast");
  wait_on_copy(copy_, &r, "broadcast", rank_ == root ? -1 : root);  // on a copy: see allreduce
  std::memcpy(data, copy_.data(), bytes);
}

void MpiTransport::barrier() {
  if (size_ == 1) return;
  if (timeout_s_ <= 0) {
    check(MPI_Barrier(comm_), "barrier");
    return;
  }
  MPI_Request r;
  check(MPI_Ibarrier(comm_, &r), "barrier");
  wait_all(&r, 1, "barrier", 0, -1);
}

}  // namespace thinwire::detail
