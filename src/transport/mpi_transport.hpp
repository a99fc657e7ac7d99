// MpiTransport: thinwire's collectives on host memory over an MPI communicator.
//
// Every wait is a polling loop with a deadline (THINWIRE_TIMEOUT_S), so a dead or stuck
// peer ends in Error(timeout) rather than a hang. Allgather and alltoall are built from
// nonblocking point-to-point messages, so that a timeout names the ranks that never
// answered (small allgathers on many ranks, which go in rounds: the rank that forwards them). Large
// f32 sums take thinwire's point-to-point ring or MPI's own allreduce, whichever measured faster
// for their size (THINWIRE_MPI_ALLREDUCE, sum_route.hpp). Small reductions and broadcasts use MPI's
// nonblocking collectives.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <optional>
#include <vector>

#include "thinwire/error.hpp"
#include "thinwire/transport.hpp"
#include "transport/average.hpp"
#include "transport/span_map.hpp"
#include "transport/sum_route.hpp"

namespace thinwire::detail {

class MpiTransport final : public Transport {
 public:
  // f32 sums at or above this size take the ring or MPI's allreduce, as the route chooser
  // measured (sum_route.hpp); below it latency dominates and MPI's own (recursive-doubling)
  // algorithms are better. The cost model (src/model/) models both routes as a ring.
  static constexpr std::size_t kRingMinBytes = 64 * 1024;

  // An allgather of blocks smaller than this, on at least THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS
  // ranks (default kDefaultLogAllgatherMinRanks; 0: never), takes ceil(log2 P) rounds (Bruck's
  // dissemination: each round doubles the blocks a rank holds) instead of P-1 direct messages
  // per rank, as MPI libraries gather small blocks: the same bytes, but log2 P message
  // latencies where the direct exchange pays P-1 messages' send and receive overheads (the
  // per-step 256-byte control exchange on 1024 ranks: 10 rounds instead of 1023 messages).
  // A round costs a whole latency where a direct message costs only its send overhead behind
  // the others (on TCP typically tens of us against a few), and the rounds run one after the
  // other where direct messages overlap. So rounds pay only where a block is shorter than what
  // the link sends during one message's overhead (a few KiB on 10-100 Gbit/s links) and P-1
  // such overheads outweigh log2 P latencies (a few tens of ranks). Measured on the 2-core VM
  // (bench/results/allgather/, 8 and 16 emulated TCP hosts): 32 KiB blocks took 1.34-1.36x
  // as long in rounds as directly, 4 KiB 1.04-1.14x, 256 B 1.03-1.04x. A direct exchange also
  // names the late rank on a timeout, where a round names the rank that forwards its block.
  static constexpr std::size_t kLogAllgatherMaxBlockBytes = 8 * 1024;
  static constexpr int kDefaultLogAllgatherMinRanks = 32;
  static constexpr bool allgather_in_log_rounds(std::size_t block_bytes, int ranks,
                                                int min_ranks = kDefaultLogAllgatherMinRanks) {
    return min_ranks > 0 && ranks >= min_ranks && block_bytes < kLogAllgatherMaxBlockBytes;
  }

  // Duplicates `comm`; the duplicate is freed with the transport (unless MPI is finalized).
  // timeout_s <= 0 waits forever with MPI's blocking calls.
  MpiTransport(MPI_Comm comm, double timeout_s);
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void allreduce(void* data, std::size_t count, ElementType type, ReduceOp op) override;
  // In place: the f32 sum over ranks divided by size(), the same bits as allreduce() then
  // a division on every rank, but each rank divides only the part of the sum it finishes
  // (ring) or divides while copying the result out (MPI's route). With `non_finite`, also finds
  // the first NaN or infinity on the way (average.hpp): the ring tests the gradients in its
  // additions, MPI's route the average as it divides.
  void average_f32(float* data, std::size_t count, NonFiniteSum* non_finite = nullptr);
  // Whether average_f32_spans() of `count` elements is worth spans (a sum over several ranks
  // at or above kRingMinBytes): the ring sends and sums them where they are, MPI's route packs
  // them inside its timed call. Otherwise the caller may as well pack them itself.
  bool takes_spans(std::size_t count) const;
  // average_f32 of the concatenation of `spans` (`count` elements in all), written back into
  // them: the same bits and NonFiniteSum index as packing them first. Only where
  // takes_spans(count) (allreduce_average_f32_spans packs the others); otherwise
  // Error(invalid_argument).
  void average_f32_spans(const std::vector<F32Span>& spans, std::size_t count,
                         NonFiniteSum* non_finite = nullptr);
  void allgather(const void* send, void* recv, std::size_t bytes) override;
  void alltoall(const void* send, void* recv, std::size_t bytes) override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void barrier() override;

  MPI_Comm comm() const { return comm_; }
  double timeout_s() const { return timeout_s_; }
  // The error this rank's THINWIRE_MPI_SEGMENT_BYTES, THINWIRE_MPI_ALLREDUCE or
  // THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS raised, if any:
  // the constructor carries on with the defaults so that Communicator::from_mpi can fail every
  // rank alike (transport/env_verdict.hpp).
  const std::optional<Error>& bad_setting() const { return bad_setting_; }
  // Point-to-point transfers above this size travel as messages of at most this size
  // (THINWIRE_MPI_SEGMENT_BYTES, default kDefaultSegmentBytes, 0 = whole messages; the
  // smallest value of any rank, agreed at construction). See post_send().
  std::size_t segment_bytes() const { return segment_bytes_; }
  static constexpr std::size_t kDefaultSegmentBytes = 0;  // opt-in: see post_send()
  // From how many ranks small allgathers go in rounds (THINWIRE_MPI_LOG_ALLGATHER_MIN_RANKS,
  // the smallest value any rank asks for, 0 counting as never; 0: never).
  int log_allgather_min_ranks() const { return log_allgather_min_ranks_; }
  // Which route large f32 sums take (THINWIRE_MPI_ALLREDUCE, agreed at construction: ranks
  // asking for different modes all use the ring).
  const SumRouteChooser& sum_routes() const { return routes_; }
  // Compares the bits of `data` across ranks with one small collective; where they differ,
  // every rank takes rank 0's bits. Returns whether they were identical (on every rank).
  bool make_identical(void* data, std::size_t bytes);

 private:
  // Waits for all requests, polling, until the deadline; on expiry throws Error(timeout)
  // with `what` and, when known, the peer that was awaited.
  void wait_all(MPI_Request* requests, int n, const char* what, std::size_t bytes, int peer);
  // Point-to-point operations in flight, each with its peer, for wait_peers().
  struct PeerOps {
    std::vector<MPI_Request> requests;
    std::vector<int> peers;
    std::vector<char> receives;  // 1 for a receive
    void clear() { requests.clear(), peers.clear(), receives.clear(); }
  };
  // As wait_all, but a timeout lists the peers not heard from and not delivered to.
  void wait_peers(PeerOps& ops, const char* what, std::size_t bytes);
  // After a timeout: cancels the receives still posted (so no late message lands in memory
  // the caller reuses) and frees every request.
  void cancel_pending(PeerOps& ops);
  // wait_all() for a nonblocking collective on `copy`; on a timeout the copy is abandoned
  // (never freed: MPI may still write it) and the error rethrown.
  void wait_on_copy(std::vector<unsigned char>& copy, MPI_Request* request, const char* what,
                    int peer);
  static void abandon(std::vector<unsigned char>&& memory);
  // One transfer as messages of at most segment_bytes_ (see post() in the .cpp).
  void post(const void* buf, std::size_t bytes, int peer, int tag, bool receive);
  void post_recv(void* buf, std::size_t bytes, int peer, int tag) {
    post(buf, bytes, peer, tag, true);
  }
  void post_send(const void* buf, std::size_t bytes, int peer, int tag) {
    post(buf, bytes, peer, tag, false);
  }
  void check(int rc, const char* what) const;
  // A large f32 sum: by the route chooser's plan, timed while it explores.
  // Divides the sum by `divisor` unless it is 1.
  void sum_f32(float* data, std::size_t count, float divisor, NonFiniteSum* non_finite);
  void sum_f32(const SpanMap& data, float divisor, NonFiniteSum* non_finite);
  // allgather() with a deadline where allgather_in_log_rounds(): `out` holds this rank's block.
  void log_round_allgather(unsigned char* out, std::size_t bytes);
  // The ring over a concatenation of spans (one span for a plain buffer).
  void ring_sum_f32(const SpanMap& data, float divisor, NonFiniteSum* non_finite);
  // MPI's own allreduce (nonblocking and polled when there is a deadline), in int-sized
  // slices; f32 results are divided by `divisor` unless it is 1, and with `non_finite` (f32)
  // tested for NaN and infinity as they are written.
  void mpi_allreduce(void* data, std::size_t count, ElementType type, ReduceOp op,
                     float divisor = 1.0f, NonFiniteSum* non_finite = nullptr);
  // The size class of `bytes` has its exploration timings: agree them (slowest rank) and
  // settle its route.
  void settle_route(std::size_t bytes);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  double timeout_s_ = 0;
  std::optional<Error> bad_setting_;
  std::size_t segment_bytes_ = kDefaultSegmentBytes;
  int log_allgather_min_ranks_ = kDefaultLogAllgatherMinRanks;
  SumRouteChooser routes_{SumRouteChooser::Mode::ring};
  std::vector<float> ring_scratch_;
  std::vector<float> pack_scratch_;  // spans packed for MPI's route
  std::vector<unsigned char> copy_;  // nonblocking collectives run on this copy
  PeerOps ops_;
};

}  // namespace thinwire::detail
