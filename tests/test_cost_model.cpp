// The cost model (src/model/cost_model) against hand-computed cases, the auto policy's
// choices at the extremes of bandwidth, and the "auto" spec.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compress/topk_average.hpp"
#include "model/auto_policy.hpp"
#include "model/codec_rates.hpp"
#include "model/cost_model.hpp"
#include "thinwire/config.hpp"
#include "thinwire/error.hpp"

namespace thinwire::detail::model {
namespace {

constexpr double kTol = 1e-12;

Link link(double alpha, double beta) {
  Link l;
  l.latency_s = alpha;
  l.bytes_per_s = beta;
  return l;
}

// ---- collectives --------------------------------------------------------------------------

TEST(CostModel, RingAllreduce) {
  // 1 MiB on 4 ranks: 2(P-1) = 6 steps of alpha + (1 MiB / 4) / beta.
  EXPECT_NEAR(allreduce_seconds(1 << 20, 4, link(1e-3, 1e6)), 6 * (1e-3 + 262144 / 1e6), kTol);
  // 64 KiB is the ring's threshold (MpiTransport::kRingMinBytes).
  EXPECT_NEAR(allreduce_seconds(65536, 2, link(0, 1e6)), 2 * 32768 / 1e6, kTol);
}

TEST(CostModel, SmallAllreduceIsRecursiveDoubling) {
  // 1 KiB: ceil(log2 P) rounds of alpha + all the bytes.
  EXPECT_NEAR(allreduce_seconds(1024, 4, link(1e-3, 1e6)), 2 * (1e-3 + 1024 / 1e6), kTol);
  EXPECT_NEAR(allreduce_seconds(1024, 5, link(1e-3, 1e6)), 3 * (1e-3 + 1024 / 1e6), kTol);
  EXPECT_NEAR(allreduce_seconds(65535, 2, link(0, 1e6)), 65535 / 1e6, kTol);
}

TEST(CostModel, AllgatherAndAlltoall) {
  // Below 32 ranks (MpiTransport::kDefaultLogAllgatherMinRanks), and for blocks of 8 KiB or
  // more, each rank sends its block to the P-1 others directly: P-1 messages.
  EXPECT_NEAR(allgather_seconds(1000, 8, link(1e-4, 1e6)), 7 * (1e-4 + 1e-3), kTol);
  EXPECT_NEAR(allgather_seconds(8192, 32, link(1e-4, 1e6)), 31 * (1e-4 + 8192 / 1e6), kTol);
  // Smaller blocks on 32 or more ranks go in ceil(log2 P) rounds (MpiTransport's
  // log_round_allgather): that many latencies, the same P-1 blocks' bytes.
  EXPECT_NEAR(allgather_seconds(1000, 32, link(1e-4, 1e6)), 5 * 1e-4 + 31 * 1e-3, kTol);
  EXPECT_NEAR(allgather_seconds(8191, 33, link(1e-4, 1e6)), 6 * 1e-4 + 32 * 8191 / 1e6, kTol);
  EXPECT_NEAR(allgather_seconds(256, 1024, link(1e-5, 1e9)), 10 * 1e-5 + 1023 * 256 / 1e9, kTol);
  EXPECT_EQ(allgather_messages(256, 31), 30.0);
  EXPECT_EQ(allgather_messages(256, 1024), 10.0);
  EXPECT_EQ(allgather_messages(1 << 20, 1024), 1023.0);
  // An alltoall sends every peer its own block: always P-1 messages.
  EXPECT_NEAR(alltoall_seconds(1000, 8, link(1e-4, 1e6)), 7 * (1e-4 + 1e-3), kTol);
  EXPECT_NEAR(alltoall_seconds(256, 1024, link(1e-5, 1e9)), 1023 * (1e-5 + 256 / 1e9), kTol);
}

TEST(CostModel, OneRankOrNothingCostsNothing) {
  EXPECT_EQ(allreduce_seconds(1 << 20, 1, link(1, 1)), 0.0);
  EXPECT_EQ(allreduce_seconds(0, 4, link(1, 1)), 0.0);
  EXPECT_EQ(allgather_seconds(100, 1, link(1, 1)), 0.0);
  EXPECT_EQ(alltoall_seconds(0, 4, link(1, 1)), 0.0);
}

// ---- one step -----------------------------------------------------------------------------

// beta = 1e6 B/s, no latency, no compute: comm seconds = bytes on the critical path / 1e6.
const Network kMegabyte = Network::uniform(link(0.0, 1e6));
constexpr double kControl = 3 * 256 / 1e6;  // the control block allgather on 4 ranks

TEST(CostModel, DenseStep) {
  const std::vector<Layer> layers = {{"w", {1024, 1024}}};
  const StepCost c = predict_step(layers, Config::parse("none"), 4, kMegabyte, ComputeRates{});
  // Ring: 2 (P-1)/P * 4 MiB = 6 MiB sent; 256 B control block to each of 3 peers.
  EXPECT_EQ(c.bytes_sent, 6291456u + 768u);
  EXPECT_NEAR(c.comm, 6291456 / 1e6 + kControl, kTol);
  EXPECT_EQ(c.encode + c.decode, 0.0);
  // Two large layers travel where they are; the ring sums 3/4 of their concatenation and
  // divides the 1/4 each rank finishes.
  ComputeRates r;
  r.copy = 0.25e-9;
  r.add = 0.5e-9;
  const std::vector<Layer> two = {{"w", {1024, 1024}}, {"v", {1024, 1024}}};
  const StepCost d = predict_step(two, Config::parse("none"), 4, kMegabyte, r);
  const double n = 2.0 * 1024 * 1024;
  EXPECT_EQ(d.encode, 0.0);
  EXPECT_NEAR(d.decode, n * (0.75 + 0.25) * 0.5e-9, kTol);
  // Layers under 64 KiB (DenseAllreduce::kInPlaceMinBytes) are packed and unpacked, also
  // next to a large one.
  const std::vector<Layer> mixed = {{"w", {1024, 1024}}, {"b", {16383}}, {"c", {16384}}};
  const StepCost m = predict_step(mixed, Config::parse("none"), 4, kMegabyte, r);
  const double all = 1024.0 * 1024 + 16383 + 16384;
  EXPECT_NEAR(m.encode, 16383 * 0.25e-9, kTol);
  EXPECT_NEAR(m.decode, all * (0.75 + 0.25) * 0.5e-9 + 16383 * 0.25e-9, kTol);
  // Below the ring's threshold (64 KiB in all) MPI's allreduce needs one buffer: all packed,
  // and every rank divides the whole result.
  const std::vector<Layer> small = {{"b", {1000}}, {"c", {2000}}};
  const StepCost s = predict_step(small, Config::parse("none"), 4, kMegabyte, r);
  EXPECT_NEAR(s.encode, 3000 * 0.25e-9, kTol);
  EXPECT_NEAR(s.decode, 3000 * (0.75 * 0.5e-9 + 0.5e-9 + 0.25e-9), kTol);
}

// nan=error|skip reads every gradient before the step, except dense layers whose check
// rides on their average (64 KiB or more of them, no clipping/DGC): that costs nothing.
TEST(CostModel, NonFiniteCheckReadsTheGradientsTheSumDoesNotCheck) {
  ComputeRates r;
  r.check = 0.2e-9;
  const std::vector<Layer> layers = {{"w", {1024, 1024}}, {"b", {1024}}};
  const std::vector<Layer> small = {{"b", {1024}}, {"c", {4096}}};
  auto check_cost = [&](const std::vector<Layer>& ls, const std::string& spec,
                        const char* policy = "") {
    const StepCost checked = predict_step(ls, Config::parse(spec + policy), 4, kMegabyte, r);
    const StepCost skipped =
        predict_step(ls, Config::parse(spec + ",nan=propagate"), 4, kMegabyte, r);
    EXPECT_EQ(checked.comm, skipped.comm) << spec;
    return checked.encode - skipped.encode;
  };
  const double n = 1024.0 * 1024 + 1024;
  // Compressed: w before the step, and b, a dense layer of only 4 KiB, too.
  for (const char* spec : {"onebit", "topk:0.01", "powersgd:4"})
    EXPECT_NEAR(check_cost(layers, spec), n * 0.2e-9, kTol) << spec;
  EXPECT_NEAR(check_cost(layers, "none"), 0.0, kTol);
  EXPECT_NEAR(check_cost(layers, "none", ",nan=skip"), 0.0, kTol);
  EXPECT_NEAR(check_cost(small, "none"), 5120 * 0.2e-9, kTol);
  EXPECT_NEAR(check_cost(layers, "none,clip=1"), n * 0.2e-9, kTol);
}

TEST(CostModel, OnebitStep) {
  const std::vector<Layer> layers = {{"w", {1 << 20}}};
  ComputeRates r;
  r.onebit_encode = 1e-9;
  r.onebit_decode = 2e-9;
  r.add = 0.5e-9;
  const StepCost c = predict_step(layers, Config::parse("onebit"), 4, kMegabyte, r);
  // Chunks of 262144: 32-byte header + f32 scale + 262144/8 sign bytes = 32804 per block;
  // alltoall and allgather each send 3 blocks.
  EXPECT_EQ(c.bytes_sent, 2u * 3u * 32804u + 768u);
  EXPECT_NEAR(c.comm, 2 * 3 * 32804 / 1e6 + kControl, kTol);
  const double n = 1 << 20;
  EXPECT_NEAR(c.encode, n * 1e-9, kTol);
  // Decode the P versions of my chunk (n elements in all), average + encode my chunk, then
  // decode all P chunks.
  EXPECT_NEAR(c.decode, n * 2e-9 + n / 4 * (0.5e-9 + 1e-9) + n * 2e-9, kTol);
}

TEST(CostModel, OnebitStepOnManyRanksGathersSmallBlocksInRounds) {
  const std::vector<Layer> layers = {{"w", {1 << 16}}};
  // 32 ranks, chunks of 2048 elements: blocks of 32 + 4 + 2048/8 = 292 bytes. The control
  // exchange and the allgather go in log2 32 = 5 rounds, the alltoall as 31 messages.
  const StepCost c = predict_step(layers, Config::parse("onebit"), 32,
                                  Network::uniform(link(1e-4, 1e6)), ComputeRates{});
  EXPECT_EQ(c.bytes_sent, 2u * 31u * 292u + 31u * 256u);
  EXPECT_NEAR(c.comm, (5 + 31 + 5) * 1e-4 + (2 * 31 * 292 + 31 * 256) / 1e6, kTol);
}

TEST(CostModel, TopkStep) {
  const std::vector<Layer> layers = {{"w", {100000}}};
  ComputeRates r;
  r.topk_encode = 3e-9;
  r.topk_decode_zero = 1e-9;
  r.topk_decode_entry = 5e-9;
  const StepCost c = predict_step(layers, Config::parse("topk:0.01"), 4, kMegabyte, r);
  // k = 1000: 32 + 8 * 1000 bytes, allgathered to 3 peers.
  EXPECT_EQ(c.bytes_sent, 3u * 8032u + 768u);
  EXPECT_NEAR(c.comm, 3 * 8032 / 1e6 + kControl, kTol);
  EXPECT_NEAR(c.encode, 100000 * 3e-9, kTol);
  EXPECT_NEAR(c.decode, 100000 * 1e-9 + 4 * 1000 * 5e-9, kTol);
}

TEST(CostModel, PowersgdStepAndItsDenseFallback) {
  ComputeRates r;
  r.powersgd_encode = 1e-9;
  r.powersgd_decode = 2e-9;
  r.copy = 0.25e-9;
  r.add = 0.5e-9;
  r.norm = 1e-9;
  const std::vector<Layer> layers = {{"w", {1024, 1024}}, {"b", {1024}}};
  const StepCost c = predict_step(layers, Config::parse("powersgd:4"), 4, kMegabyte, r);
  // Factors P and Q of 1024 x 4 floats (16 KiB each: below the ring threshold, recursive
  // doubling, 2 rounds); the bias goes dense (4 KiB, 2 rounds). Bytes as Stats counts them:
  // ring formula 2 (P-1)/P.
  EXPECT_EQ(c.bytes_sent, 2u * 24576u + 6144u + 768u);
  EXPECT_NEAR(c.comm, 2 * (2 * 16384 / 1e6) + 2 * 4096 / 1e6 + kControl, kTol);
  const double work = 1024.0 * 1024 * 4, n = 1024.0 * 1024;
  // Encode: x = g + e, then M Q, Gram-Schmidt, M^T P.
  EXPECT_NEAR(c.encode, work * 1e-9 + n * 0.5e-9, kTol);
  // Decode: P Q^T into the result, one pass for the error statistics and e <- M - P Q^T;
  // the dense bias: the ring's sums (3/4 of it) and the division by P.
  EXPECT_NEAR(c.decode, work * 2e-9 + n * 1e-9 + 1024 * (0.75 + 1) * 0.5e-9, kTol);
  // Without error feedback, no x = g + e; P Q^T goes to scratch and is copied into the result.
  const StepCost plain = predict_step(layers, Config::parse("powersgd:4,ef=none"), 4, kMegabyte, r);
  EXPECT_NEAR(c.encode - plain.encode, n * 0.5e-9, kTol);
  EXPECT_NEAR(plain.decode - c.decode, n * 0.25e-9, kTol);
}

TEST(CostModel, PowersgdTakesTheRatesTimedOnItsLayersShape) {
  ComputeRates r;
  r.powersgd_encode = 1e-9;
  r.powersgd_decode = 2e-9;
  r.powersgd_by_shape[{2048, 512}] = {3e-9, 5e-9};
  r.powersgd_by_shape[{512, 2048}] = {7e-9, 0.0};  // not both timed: the scalar rates
  EXPECT_EQ(r.powersgd_at(2048, 512).encode, 3e-9);
  EXPECT_EQ(r.powersgd_at(2048, 512).decode, 5e-9);
  EXPECT_EQ(r.powersgd_at(512, 2048).encode, 1e-9);
  EXPECT_EQ(r.powersgd_at(1024, 1024).decode, 2e-9);
  // One tall layer with its own rates and one square one without: each layer's work at its
  // rates (no error feedback, no check, so that only the products count).
  const std::vector<Layer> layers = {{"tall", {2048, 512}}, {"square", {1024, 1024}}};
  const Config spec = Config::parse("powersgd:4,ef=none,nan=propagate");
  const double work = 2048.0 * 512 * 4;  // both layers: 1 Mi elements x rank 4
  const StepCost c = predict_step(layers, spec, 4, kMegabyte, r);
  EXPECT_NEAR(c.encode, work * 3e-9 + work * 1e-9, kTol);
  EXPECT_NEAR(c.decode, work * 5e-9 + work * 2e-9, kTol);
  // Scaling by a core's share scales the per-shape rates too.
  const ComputeRates half = r.scaled(0.5);
  EXPECT_EQ(half.powersgd_at(2048, 512).encode, 6e-9);
  EXPECT_EQ(half.powersgd_at(2048, 512).decode, 10e-9);
}

TEST(CostModel, PowersgdWithErrorFeedbackTakesItsShapesStepPhasesWhenTimedAtItsRank) {
  ComputeRates r;
  r.add = 1e-9;
  r.norm = 2e-9;
  ComputeRates::LowRankRates square;
  square.encode = 3e-9;
  square.decode = 5e-9;
  square.step_before_p = 7e-9;
  square.step_before_q = 11e-9;
  square.step_decode = 13e-9;
  square.step_rank = 4;
  r.powersgd_by_shape[{1024, 1024}] = square;
  const std::vector<Layer> layers = {{"square", {1024, 1024}}};
  const double n = 1024.0 * 1024;
  // Error feedback, rank 4: the three phases, per element of the layer.
  const StepCost timed =
      predict_step(layers, Config::parse("powersgd:4,nan=propagate"), 2, kMegabyte, r);
  EXPECT_NEAR(timed.encode, n * (7e-9 + 11e-9), kTol);
  EXPECT_NEAR(timed.decode, n * 13e-9, kTol);
  // Another rank: the kernels' rates per unit of work, with the add and residual passes.
  const StepCost other_rank =
      predict_step(layers, Config::parse("powersgd:2,nan=propagate"), 2, kMegabyte, r);
  const double work = n * 2;
  EXPECT_NEAR(other_rank.encode, work * 3e-9 + n * 1e-9, kTol);
  EXPECT_NEAR(other_rank.decode, work * 5e-9 + n * 2e-9, kTol);
  // No error feedback: the phases were timed with it, so the kernels' rates again.
  r.copy = 0.5e-9;
  const StepCost plain =
      predict_step(layers, Config::parse("powersgd:4,ef=none,nan=propagate"), 2, kMegabyte, r);
  EXPECT_NEAR(plain.encode, n * 4 * 3e-9, kTol);
  EXPECT_NEAR(plain.decode, n * 4 * 5e-9 + n * 2e-9 + n * 0.5e-9, kTol);
  // A core of its own keeps the phases; ranks that share cores get the kernels' rates, scaled.
  EXPECT_TRUE(r.scaled(1.0).powersgd_at(1024, 1024).step_timed_at(4));
  const ComputeRates::LowRankRates half = r.scaled(0.5).powersgd_at(1024, 1024);
  EXPECT_FALSE(half.step_timed_at(4));
  EXPECT_EQ(half.encode, 6e-9);
  EXPECT_EQ(half.decode, 10e-9);
  const StepCost shared = predict_step(layers, Config::parse("powersgd:4,nan=propagate"), 2,
                                       kMegabyte, r.without_step_phases());
  EXPECT_NEAR(shared.encode, n * 4 * 3e-9 + n * 1e-9, kTol);
  EXPECT_NEAR(shared.decode, n * 4 * 5e-9 + n * 2e-9, kTol);
}

TEST(CostModel, PerShapeRatesRoundTripThroughJson) {
  ComputeRates r;
  r.copy = 1e-9;
  r.powersgd_by_shape[{2304, 576}] = {3e-10, 1.5e-10};
  const nlohmann::json j = rates_to_json(r);
  EXPECT_EQ(j.at("powersgd_encode@2304x576").get<double>(), 3e-10);
  EXPECT_EQ(j.at("powersgd_decode@2304x576").get<double>(), 1.5e-10);
  const ComputeRates back = rates_from_json(j);
  EXPECT_EQ(back.copy, 1e-9);
  ASSERT_EQ(back.powersgd_by_shape.size(), 1u);
  EXPECT_EQ(back.powersgd_at(2304, 576).encode, 3e-10);
  EXPECT_EQ(back.powersgd_at(2304, 576).decode, 1.5e-10);
  // Every field of a shape has its key, the untimed step phases at 0.
  EXPECT_EQ(j.at("powersgd_step_decode@2304x576").get<double>(), 0.0);
  EXPECT_EQ(j.at("powersgd_step_rank@2304x576").get<double>(), 0.0);
  ComputeRates::LowRankRates phases;
  phases.encode = 4e-10;
  phases.decode = 2e-10;
  phases.step_before_p = 1e-9;
  phases.step_before_q = 2e-9;
  phases.step_decode = 3e-9;
  phases.step_rank = 4;
  r.powersgd_by_shape[{1024, 1024}] = phases;
  const ComputeRates::LowRankRates read = rates_from_json(rates_to_json(r)).powersgd_at(1024, 1024);
  EXPECT_EQ(read.step_before_p, 1e-9);
  EXPECT_EQ(read.step_before_q, 2e-9);
  EXPECT_EQ(read.step_decode, 3e-9);
  EXPECT_TRUE(read.step_timed_at(4));
  EXPECT_FALSE(read.step_timed_at(2));
  // Keys that only look like a shape are not read as one.
  nlohmann::json odd = j;
  odd["powersgd_encode@12x"] = 1.0;
  odd["powersgd_encode@3x4x5"] = 1.0;
  odd["powersgd_decode@x7"] = 1.0;
  EXPECT_EQ(rates_from_json(odd).powersgd_by_shape.size(), 1u);
}

TEST(CodecRates, LowRankShapesAreTheMatrixLayersDistinctShapes) {
  const std::vector<Layer> layers = {{"qkv", {1728, 576}},  {"bias", {1728}},
                                     {"fc1", {2304, 576}},  {"fc2", {576, 2304}},
                                     {"qkv2", {1728, 576}}, {"narrow", {4096, 2}}};
  using Shape = std::pair<std::size_t, std::size_t>;
  // The bias is a vector and rank 4 is not below min(4096, 2): both dense.
  EXPECT_EQ(low_rank_shapes(layers, Config::parse("powersgd:4")),
            (std::vector<Shape>{{576, 2304}, {1728, 576}, {2304, 576}}));
  EXPECT_TRUE(low_rank_shapes(layers, Config::parse("onebit")).empty());
  // Timing them fills one entry per shape, each with both rates.
  ComputeRates r;
  measure_low_rank_shapes(Config::parse("powersgd:2"), {{"a", {64, 32}}, {"b", {32, 64}}},
                          std::size_t{1} << 22, 0.0, &r);
  ASSERT_EQ(r.powersgd_by_shape.size(), 2u);
  for (const auto& [shape, rates] : r.powersgd_by_shape) {
    EXPECT_GT(rates.encode, 0.0);
    EXPECT_GT(rates.decode, 0.0);
  }
  EXPECT_EQ(r.powersgd_encode, 0.0);  // the scalar rates are measure_rates' to set
}

TEST(CodecRates, SampleShapeStreamsAllLayersAtTheLargestLayersWidth) {
  using Shape = std::pair<std::size_t, std::size_t>;
  // One layer: its own shape, halved along the longer side down to the cap.
  EXPECT_EQ(sample_shape({{"w", {300, 200}}}, 1u << 20), (Shape{300, 200}));
  EXPECT_EQ(sample_shape({{"w", {4096, 4096}}}, 1u << 22), (Shape{2048, 2048}));
  EXPECT_EQ(sample_shape({{"v", {1000}}}, 1u << 20), (Shape{1000, 1}));
  // Several: the largest layer's width, rows for all the elements (60 000 here).
  const std::vector<Layer> mix = {
      {"a", {100, 200}}, {"b", {50, 200}}, {"bias", {10000}}, {"c", {100, 200}}};
  EXPECT_EQ(sample_shape(mix, 1u << 20), (Shape{300, 200}));
  // ... up to the cap (25 600 elements: 128 rows); never fewer rows than the largest layer,
  // which is halved as before where it alone exceeds the cap.
  EXPECT_EQ(sample_shape(mix, 25600), (Shape{128, 200}));
  EXPECT_EQ(sample_shape(mix, 12800), (Shape{100, 100}));
  EXPECT_EQ(sample_shape({}, 1u << 20), (Shape{1, 1}));
}

TEST(CodecRates, PowerSgdCopiesKeepRatesPerElementOfWork) {
  // Three 48 x 40 matrices back to back: plausible rates per element of work, like one's.
  for (std::size_t copies : {std::size_t{1}, std::size_t{3}}) {
    SCOPED_TRACE(copies);
    const ComputeRates r =
        measure_rates(Config::parse("powersgd:2"), 48, 40, 3, 0.0, RateKernels::codec_only, copies);
    EXPECT_GT(r.powersgd_encode, 1e-13);
    EXPECT_LT(r.powersgd_encode, 1e-6);
    EXPECT_GT(r.powersgd_decode, 1e-13);
    EXPECT_LT(r.powersgd_decode, 1e-6);
    EXPECT_EQ(r.copy, 0.0);
  }
}

TEST(CodecRates, StepPhasesAreTimedOnlyWithErrorFeedbackOnALayersOwnShape) {
  ComputeRates r;
  // 64 x 32 is within 4096 elements; 128 x 64 is timed on a 64 x 64 sample.
  const std::vector<Layer> layers = {{"small", {64, 32}}, {"large", {128, 64}}};
  measure_low_rank_shapes(Config::parse("powersgd:2"), layers, 4096, 0.0, &r);
  const ComputeRates::LowRankRates small = r.powersgd_at(64, 32);
  EXPECT_TRUE(small.step_timed_at(2));
  EXPECT_GT(small.step_before_p, 0.0);
  EXPECT_GT(small.step_before_q, 0.0);
  EXPECT_GT(small.step_decode, 0.0);
  const ComputeRates::LowRankRates large = r.powersgd_at(128, 64);
  EXPECT_GT(large.encode, 0.0);
  EXPECT_EQ(large.step_decode, 0.0);
  EXPECT_FALSE(large.step_timed_at(2));
  ComputeRates plain;
  measure_low_rank_shapes(Config::parse("powersgd:2,ef=none"), layers, 4096, 0.0, &plain);
  EXPECT_GT(plain.powersgd_at(64, 32).encode, 0.0);
  EXPECT_FALSE(plain.powersgd_at(64, 32).step_timed_at(2));
}

// ---- a link with a token bucket (tc tbf) ---------------------------------------------------

TEST(CostModel, CreditLeavesAtWireSpeed) {
  // 3 blocks of 1000 B, 1000 B of them credited: 2000 B at beta; latency is still paid.
  EXPECT_NEAR(allgather_seconds(1000, 4, link(1e-4, 1e6), 1000), 3e-4 + 2e-3, kTol);
  // Ring of 1 MiB on 4 ranks sends 1.5 MiB; credit beyond what is sent changes nothing more.
  EXPECT_NEAR(allreduce_seconds(1 << 20, 4, link(0, 1e6), 1 << 19), (1 << 20) / 1e6, kTol);
  EXPECT_EQ(allreduce_seconds(1 << 20, 4, link(0, 1e6), 1e9), 0.0);
  // Recursive doubling of 1 KiB on 4 ranks: 2 rounds of 1 KiB.
  EXPECT_NEAR(allreduce_seconds(1024, 4, link(0, 1e6), 1024), 1024 / 1e6, kTol);
}

TEST(CostModel, BucketIsFullWhenAStepStartsAndRefillsDuringCompute) {
  // Dense 4 MiB on 4 ranks with a 1 MB bucket and no compute: the control block and then
  // the ring's first 1e6 - 768 bytes go on credit.
  const std::vector<Layer> dense = {{"w", {1024, 1024}}};
  const Network bucket = Network::uniform(link(0.0, 1e6), 1e6);
  const StepCost d = predict_step(dense, Config::parse("none"), 4, bucket, ComputeRates{});
  EXPECT_NEAR(d.comm, (6291456 + 768 - 1e6) / 1e6, 1e-9);

  // Onebit with a bucket of one collective's bytes (3 blocks of 32804): the control block
  // takes 768 B, the alltoall the rest of the full bucket. The server's compute between the
  // alltoall and the allgather refills it at 1e6 B/s, so the allgather is credited in full
  // when that compute is long enough and in part when it is not.
  const std::vector<Layer> layer = {{"w", {1 << 20}}};
  const double block3 = 3 * 32804.0;
  const Network small = Network::uniform(link(0.0, 1e6), block3);
  ComputeRates slow;
  slow.onebit_decode = 1e-6;  // the server's decode: 1 s, refills the whole bucket
  const StepCost full = predict_step(layer, Config::parse("onebit"), 4, small, slow);
  EXPECT_NEAR(full.comm, 768 / 1e6, 1e-9);  // the alltoall's last 768 B wait for tokens
  ComputeRates fast;
  fast.add = 0.02 / (1 << 18);  // the server's average of its chunk: 0.02 s, 20000 tokens
  const StepCost part = predict_step(layer, Config::parse("onebit"), 4, small, fast);
  EXPECT_NEAR(part.comm, 768 / 1e6 + (block3 - 20000) / 1e6, 1e-9);
  // The bucket's bytes take their time at the links' own speed when it is given, and the
  // bucket refills while they leave: at 1e8 B/s it loses 0.99 of a token per credited byte.
  // Control block: 768 B credited, 97651.68 left; alltoall: all 98412 B credited, 223.8 left;
  // the server's 0.02 s refill 20000; the allgather: 20223.8 / 0.99 = 20428.08 B credited, the
  // other 77983.92 B at beta.
  const Network wired = Network::uniform(link(0.0, 1e6), block3, 1e8);
  const StepCost w = predict_step(layer, Config::parse("onebit"), 4, wired, fast);
  EXPECT_NEAR(w.comm, (768 + block3 + 20428.08) / 1e8 + 77983.92 / 1e6, 1e-9);
  // No bucket: the plain alpha-beta terms.
  const StepCost none = predict_step(layer, Config::parse("onebit"), 4, kMegabyte, fast);
  EXPECT_NEAR(none.comm, 2 * block3 / 1e6 + kControl, kTol);
}

TEST(CostModel, BucketStartsWithWhatItsRestRefilled) {
  // A benchmark's calls back to back: the bucket was emptied by the call before and refilled
  // only for idle_before_s. Dense 4 MiB on 4 ranks, a 1 MB bucket at 1e6 B/s, 0.1 s of rest:
  // 1e5 bytes of credit (the control block's 768 and then the ring's), the rest at beta.
  const std::vector<Layer> dense = {{"w", {1024, 1024}}};
  Network rested = Network::uniform(link(0.0, 1e6), 1e6);
  rested.idle_before_s = 0.1;
  const StepCost d = predict_step(dense, Config::parse("none"), 4, rested, ComputeRates{});
  EXPECT_NEAR(d.comm, (6291456 + 768 - 1e5) / 1e6, 1e-9);
  // No rest: nothing on credit, as without a bucket.
  rested.idle_before_s = 0.0;
  const StepCost empty = predict_step(dense, Config::parse("none"), 4, rested, ComputeRates{});
  EXPECT_NEAR(empty.comm, (6291456 + 768) / 1e6, 1e-9);
  // A rest longer than the bucket takes to refill: full, as at a training step's start.
  rested.idle_before_s = 5.0;
  const StepCost full = predict_step(dense, Config::parse("none"), 4, rested, ComputeRates{});
  EXPECT_NEAR(full.comm, (6291456 + 768 - 1e6) / 1e6, 1e-9);
}

TEST(CostModel, BucketCarriesOverToACallThatFollowsAtOnce) {
  // Dense 4 MiB on 4 ranks, a 1 MB bucket at 1e6 B/s. The ring empties the bucket; the sums
  // and the division after it (one add pass per element in all: 3/4 summed, 1/4 divided) take
  // 2^20 * 1e-7 s and refill 104857.6 bytes, which the step ends with.
  const std::vector<Layer> dense = {{"w", {1024, 1024}}};
  Network net = Network::uniform(link(0.0, 1e6), 1e6);
  net.idle_before_s = 0.0;
  ComputeRates rates;
  rates.add = 1e-7;
  const StepCost first = predict_step(dense, Config::parse("none"), 4, net, rates);
  EXPECT_NEAR(first.comm, (6291456 + 768) / 1e6, 1e-9);
  EXPECT_NEAR(first.bucket_after_bytes, 104857.6, 1e-6);
  // The next call, at once: those bytes go on credit; after 0.1 s of rest 1e5 more.
  net.bucket_before_bytes = first.bucket_after_bytes;
  const StepCost next = predict_step(dense, Config::parse("none"), 4, net, rates);
  EXPECT_NEAR(next.comm, (6291456 + 768 - 104857.6) / 1e6, 1e-9);
  net.idle_before_s = 0.1;
  const StepCost rested = predict_step(dense, Config::parse("none"), 4, net, rates);
  EXPECT_NEAR(rested.comm, (6291456 + 768 - 204857.6) / 1e6, 1e-9);
  // The bucket holds no more than its size.
  net.bucket_before_bytes = 5e6;
  net.idle_before_s = 0.0;
  const StepCost capped = predict_step(dense, Config::parse("none"), 4, net, rates);
  EXPECT_NEAR(capped.comm, (6291456 + 768 - 1e6) / 1e6, 1e-9);
  // Without a bucket there is nothing to carry.
  const StepCost plain = predict_step(dense, Config::parse("none"), 4, kMegabyte, rates);
  EXPECT_EQ(plain.bucket_after_bytes, 0.0);
}

TEST(CostModel, BucketRefillsAtTheShapersRateWhereBetaIsMeasuredLower) {
  // A measured beta (0.5e6 B/s) below the shaper's rate (1e6 B/s): the bucket refills at the
  // latter. Dense 4 MiB on 4 ranks, a 1 MB bucket, 0.1 s of rest: 1e5 bytes of credit, the
  // rest of the ring's bytes (and the control block's) at the measured beta.
  const std::vector<Layer> dense = {{"w", {1024, 1024}}};
  Network net = Network::uniform(link(0.0, 0.5e6), 1e6);
  net.refill_bytes_per_s = 1e6;
  net.idle_before_s = 0.1;
  const StepCost d = predict_step(dense, Config::parse("none"), 4, net, ComputeRates{});
  EXPECT_NEAR(d.comm, (6291456 + 768 - 1e5) / 0.5e6, 1e-9);
  // Without it, the bucket refills at beta: half the credit.
  net.refill_bytes_per_s = 0.0;
  const StepCost slow = predict_step(dense, Config::parse("none"), 4, net, ComputeRates{});
  EXPECT_NEAR(slow.comm, (6291456 + 768 - 0.5e5) / 0.5e6, 1e-9);
}

TEST(CostModel, BurstCallOnSharedCoresCannotOutrunTheShaper) {
  // A call of 2e5 bytes, 6 ms of compute at a half share (3 ms at a whole core), 1 ms of comm;
  // a 1.25e5-byte bucket refilled at 2.5e7 B/s, beta 2e7 B/s.
  StepCost step;
  step.comm = 1e-3;
  step.encode = 4e-3;
  step.decode = 2e-3;
  step.bytes_sent = 200000;
  step.bucket_after_bytes = 1.25e5;  // predict_step refilled it through the 6 ms
  Network net = Network::uniform(link(0.0, 2e7), 1.25e5);
  net.refill_bytes_per_s = 2.5e7;
  net.idle_before_s = 0.0;
  // A whole core per rank: the step as predicted.
  net.bucket_before_bytes = 0.0;
  const BurstCall whole = burst_call(step, 1.0, net);
  EXPECT_DOUBLE_EQ(whole.seconds, 7e-3);
  EXPECT_DOUBLE_EQ(whole.bucket_after_bytes, 1.25e5);
  // A full bucket: the drift alone, max(6, 3 + 1) ms; 1.25e5 + 6 ms * 2.5e7 - 2e5 = 7.5e4
  // bytes left (not the full bucket predict_step left).
  net.bucket_before_bytes = 1.25e5;
  const BurstCall full = burst_call(step, 0.5, net);
  EXPECT_NEAR(full.seconds, 6e-3, 1e-15);
  EXPECT_NEAR(full.bucket_after_bytes, 7.5e4, 1e-6);
  // An empty bucket: the 2e5 bytes leave at beta, 10 ms, and leave 2.5e5 - 2e5 = 5e4.
  net.bucket_before_bytes = 0.0;
  const BurstCall empty = burst_call(step, 0.5, net);
  EXPECT_NEAR(empty.seconds, 10e-3, 1e-15);
  EXPECT_NEAR(empty.bucket_after_bytes, 5e4, 1e-6);
  // The rest before the call refills the bucket first: 2 ms give 5e4 bytes, 1.5e5 beyond
  // them leave at beta in 7.5 ms; 5e4 + 7.5 ms * 2.5e7 - 2e5 = 3.75e4 left.
  net.idle_before_s = 2e-3;
  const BurstCall rested = burst_call(step, 0.5, net);
  EXPECT_NEAR(rested.seconds, 7.5e-3, 1e-15);
  EXPECT_NEAR(rested.bucket_after_bytes, 3.75e4, 1e-6);
  // No shaper: the drift alone.
  const BurstCall unshaped = burst_call(step, 0.5, Network::uniform(link(0.0, 2e7)));
  EXPECT_NEAR(unshaped.seconds, 6e-3, 1e-15);
}

TEST(CostModel, LayersOfARouteShareOneCollective) {
  // Two onebit layers: one alltoall + one allgather whose blocks hold both slots; their
  // latency is paid once, not per layer.
  const std::vector<Layer> one = {{"a", {4096}}}, two = {{"a", {4096}}, {"b", {4096}}};
  const Network slow_start = Network::uniform(link(1.0, 1e12));
  const double t1 = predict_step(one, Config::parse("onebit"), 4, slow_start, {}).comm;
  const double t2 = predict_step(two, Config::parse("onebit"), 4, slow_start, {}).comm;
  EXPECT_NEAR(t1, 3 + 3 + 3, 1e-6);  // alltoall, allgather, control: 3 messages each
  EXPECT_NEAR(t2, t1, 1e-6);
  // Without latencies: the marginal cost, bytes only.
  EXPECT_NEAR(predict_step(one, {Config::parse("onebit")}, 4, slow_start, {}, false).comm,
              (2 * 3 * (32 + 4 + 1024 / 8) + 768) / 1e12, 1e-15);
}

TEST(CostModel, RatesFromTheCodecBenchmark) {
  const double n = 1000000;
  nlohmann::json j = {{"n", n}, {"results", nlohmann::json::array()}};
  auto add = [&](const char* name, double s) {
    j["results"].push_back({{"name", name}, {"seconds", s}});
  };
  add("BM_memcpy", 2e-3);
  add("BM_topk_ef_encode", 6e-3);
  add("BM_topk_decode", 1.5e-3);
  add("BM_onebit_ef_encode", 3e-3);
  add("BM_onebit_decode", 2.5e-3);
  add("BM_qsgd4_ef_encode", 30e-3);
  add("BM_qsgd4_decode", 4e-3);
  add("BM_powersgd4_encode", 20e-3);
  add("BM_powersgd4_decode", 8e-3);
  const ComputeRates r = rates_from_codec_json(j);
  EXPECT_NEAR(r.copy, 2e-9, kTol);
  EXPECT_NEAR(r.norm, 4e-9, kTol);  // 2 x memcpy (the benchmark has no such case)
  EXPECT_NEAR(r.topk_encode, 6e-9, kTol);
  EXPECT_NEAR(r.topk_decode_zero, 1e-9, kTol);
  // 1.5 ms - 1 ms of zeroing, over k = 10000 entries.
  EXPECT_NEAR(r.topk_decode_entry, 0.5e-3 / 10000, kTol);
  EXPECT_NEAR(r.qsgd_encode, 30e-9, kTol);
  EXPECT_NEAR(r.powersgd_encode, 20e-3 / (n * 4), kTol);
  // The step's average of kTopkTimingPayloads shifted payloads, where the JSON has it, wins
  // over the single payload: 17 ms - 1 ms of zeroing, over 16 payloads of 10000 entries.
  ASSERT_EQ(kTopkTimingPayloads, 16);
  add("BM_topk_average", 17e-3);
  EXPECT_NEAR(rates_from_codec_json(j).topk_decode_entry, 16e-3 / (16 * 10000), kTol);
  j["results"].erase(0);
  EXPECT_THROW(rates_from_codec_json(j), Error);
}

TEST(CostModel, RatesFromTheDeviceCodecBenchmark) {
  // thinwire-bench-codec-device's JSON: medians in ms, its own k, a "device".
  const double n = 1000000, k = 10000;
  nlohmann::json j = {
      {"n", n}, {"topk_k", k}, {"device", "test GPU"}, {"results", nlohmann::json::array()}};
  auto add = [&](const char* name, double ms) {
    j["results"].push_back({{"name", name}, {"median_ms", ms}, {"GBps", 1.0}});
  };
  add("memcpy_d2d", 0.02);
  add("ef_accumulate", 0.03);
  add("topk_exact_ef_encode", 0.1);
  add("topk_decode_average_p1", 0.02);
  add("onebit_ef_encode_p1", 0.05);
  add("onebit_decode", 0.04);
  add("qsgd4_ef_encode", 0.2);
  add("qsgd4_decode", 0.06);
  add("powersgd4_encode", 0.4);
  add("powersgd4_decode", 0.3);
  const ComputeRates r = rates_from_codec_json(j);
  EXPECT_NEAR(r.copy, 0.02e-3 / n, kTol);
  EXPECT_NEAR(r.add, 0.03e-3 / n, kTol);  // e += g, timed
  EXPECT_NEAR(r.norm, 2 * 0.02e-3 / n, kTol);
  EXPECT_NEAR(r.check, 0.01e-3 / n, kTol);
  EXPECT_NEAR(r.topk_encode, 0.1e-3 / n, kTol);
  // 0.02 ms - 0.01 ms of zeroing (half a copy), over the benchmark's k = 10000 entries.
  EXPECT_NEAR(r.topk_decode_zero, 0.01e-3 / n, kTol);
  EXPECT_NEAR(r.topk_decode_entry, 0.01e-3 / k, kTol);
  EXPECT_NEAR(r.onebit_encode, 0.05e-3 / n, kTol);
  EXPECT_NEAR(r.onebit_decode, 0.04e-3 / n, kTol);
  EXPECT_NEAR(r.qsgd_encode, 0.2e-3 / n, kTol);
  EXPECT_NEAR(r.qsgd_decode, 0.06e-3 / n, kTol);
  EXPECT_NEAR(r.powersgd_encode, 0.4e-3 / (n * 4), kTol);
  EXPECT_NEAR(r.powersgd_decode, 0.3e-3 / (n * 4), kTol);
  // A missing case, or one with no positive median, is named.
  j["results"][0]["median_ms"] = 0;
  try {
    rates_from_codec_json(j);
    ADD_FAILURE() << "a zero median was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("memcpy_d2d"), std::string::npos) << e.what();
  }
  j["results"].erase(0);
  EXPECT_THROW(rates_from_codec_json(j), Error);
}

// Each spec times the base kernels and its own codec's, and only those; every timed rate is a
// positive per-element (PowerSGD: per element and rank) time of a plausible order: above
// 1e-13 s (10 TB/s) and below 1 us (or 10 us for top-k's per-entry scatter).
TEST(CodecRates, MeasureTimesTheSpecsKernelsOnly) {
  struct Case {
    const char* spec;
    std::vector<double ComputeRates::*> own;
  };
  const std::vector<double ComputeRates::*> base = {&ComputeRates::copy, &ComputeRates::add,
                                                    &ComputeRates::check, &ComputeRates::norm};
  const std::vector<double ComputeRates::*> all = {
      &ComputeRates::topk_encode,       &ComputeRates::topk_decode_zero,
      &ComputeRates::topk_decode_entry, &ComputeRates::onebit_encode,
      &ComputeRates::onebit_decode,     &ComputeRates::qsgd_encode,
      &ComputeRates::qsgd_decode,       &ComputeRates::powersgd_encode,
      &ComputeRates::powersgd_decode};
  const std::vector<Case> cases = {
      {"none", {}},
      {"topk:0.01",
       {&ComputeRates::topk_encode, &ComputeRates::topk_decode_zero,
        &ComputeRates::topk_decode_entry}},
      {"onebit", {&ComputeRates::onebit_encode, &ComputeRates::onebit_decode}},
      {"qsgd:4", {&ComputeRates::qsgd_encode, &ComputeRates::qsgd_decode}},
      {"powersgd:2", {&ComputeRates::powersgd_encode, &ComputeRates::powersgd_decode}}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.spec);
    const ComputeRates r = measure_rates(Config::parse(c.spec), 128, 128, 5);
    for (double ComputeRates::*rate : base) {
      EXPECT_GT(r.*rate, 1e-13);
      EXPECT_LT(r.*rate, 1e-6);
    }
    for (double ComputeRates::*rate : all) {
      const bool own = std::find(c.own.begin(), c.own.end(), rate) != c.own.end();
      if (own) {
        EXPECT_GT(r.*rate, 1e-13);
        EXPECT_LT(r.*rate, rate == &ComputeRates::topk_decode_entry ? 1e-5 : 1e-6);
      } else {
        EXPECT_EQ(r.*rate, 0.0);
      }
    }
  }
  EXPECT_EQ(measure_rates(Config::parse("onebit"), 0, 16, 3).copy, 0.0);  // no layer, no rates
  // Samples of several cold calls (the benchmark's probes): the same kernels, plausible rates.
  const ComputeRates summed = measure_rates(Config::parse("onebit"), 128, 128, 1, 0.005);
  for (double ComputeRates::*rate : {&ComputeRates::copy, &ComputeRates::check,
                                     &ComputeRates::onebit_encode, &ComputeRates::onebit_decode}) {
    EXPECT_GT(summed.*rate, 1e-13);
    EXPECT_LT(summed.*rate, 1e-6);
  }
  EXPECT_EQ(summed.topk_encode, 0.0);
  // codec_only: the codec's own kernels, none of the base ones (the probes time those once).
  const ComputeRates own =
      measure_rates(Config::parse("qsgd:4"), 128, 128, 1, 0.0, RateKernels::codec_only);
  for (double ComputeRates::*rate : base) EXPECT_EQ(own.*rate, 0.0);
  EXPECT_GT(own.qsgd_encode, 1e-13);
  EXPECT_GT(own.qsgd_decode, 1e-13);
  EXPECT_EQ(own.onebit_encode, 0.0);
}

// ---- auto -----------------------------------------------------------------------------------

TEST(AutoSpec, ParsesFamiliesAndFloors) {
  Config c = Config::parse("auto");
  EXPECT_EQ(c.method, Method::automatic);
  EXPECT_EQ(c.family, Method::onebit);
  EXPECT_EQ(c.to_string(), "auto:onebit");
  c = Config::parse("auto:topk");
  EXPECT_EQ(c.density, 0.01);
  EXPECT_EQ(c.to_string(), "auto:topk:0.01");
  EXPECT_EQ(Config::parse("auto:qsgd:3").bits, 3);
  EXPECT_EQ(Config::parse("auto:powersgd").rank, 4);
  for (const char* s : {"auto", "auto:topk:0.002,select=sampled", "auto:qsgd:2,bucket=128",
                        "auto:powersgd:1,ef=econtrol", "auto:onebit,nan=skip"})
    EXPECT_EQ(Config::parse(Config::parse(s).to_string()), Config::parse(s)) << s;
  for (const char* s : {"auto:onebit:2", "auto:none", "auto:adaptive", "auto:topk:0", "auto:qsgd:9",
                        "auto:onebit,bucket=64", "auto:topk,period=5"})
    EXPECT_THROW(Config::parse(s), Error) << s;
}

// The second form: a method with auto=on is auto over that method's family, its
// parameter the floor.
TEST(AutoSpec, AutoOnKeyIsTheMethodAsFamily) {
  EXPECT_EQ(Config::parse("topk:0.005,auto=on,select=sampled"),
            Config::parse("auto:topk:0.005,select=sampled"));
  EXPECT_EQ(Config::parse("qsgd:3,auto=on"), Config::parse("auto:qsgd:3"));
  EXPECT_EQ(Config::parse("powersgd:2,auto=on,ef=econtrol"),
            Config::parse("auto:powersgd:2,ef=econtrol"));
  EXPECT_EQ(Config::parse("onebit,auto=on").to_string(), "auto:onebit");
  EXPECT_EQ(Config::parse("topk:0.01,auto=off"), Config::parse("topk:0.01"));
  for (const char* s : {"none,auto=on", "adaptive:topk,auto=on", "auto:topk,auto=on",
                        "topk:0.01,auto=yes", "topk:0.01,auto=on,period=3"})
    EXPECT_THROW(Config::parse(s), Error) << s;
}

TEST(AutoPolicy, CandidatesGoFromDenseToTheFloor) {
  std::vector<std::string> got;
  for (const Config& c : auto_candidates(Config::parse("auto:topk:0.005,select=sampled")))
    got.push_back(c.to_string());
  EXPECT_EQ(got,
            (std::vector<std::string>{"none", "topk:0.1,select=sampled", "topk:0.03,select=sampled",
                                      "topk:0.01,select=sampled", "topk:0.005,select=sampled"}));
  got.clear();
  for (const Config& c : auto_candidates(Config::parse("auto:powersgd:8,nan=skip")))
    got.push_back(c.to_string());
  EXPECT_EQ(got, (std::vector<std::string>{"none,nan=skip", "powersgd:32,nan=skip",
                                           "powersgd:16,nan=skip", "powersgd:8,nan=skip"}));
  EXPECT_EQ(auto_candidates(Config::parse("auto")).size(), 2u);
}

// Realistic kernels (per element, one core), so that compression costs time to compute.
ComputeRates realistic_rates() {
  ComputeRates r;
  r.copy = r.add = 0.2e-9;
  r.topk_encode = 0.5e-9;
  r.topk_decode_zero = 0.1e-9;
  r.topk_decode_entry = 5e-9;
  r.onebit_encode = 0.25e-9;
  r.onebit_decode = 0.15e-9;
  r.qsgd_encode = 2.3e-9;
  r.qsgd_decode = 0.27e-9;
  r.powersgd_encode = 0.4e-9;
  r.powersgd_decode = 0.11e-9;
  return r;
}

std::vector<Layer> model_layers() {
  return {{"emb", {8192, 512}}, {"fc1", {2048, 512}}, {"fc1.bias", {2048}}, {"ln", {512}}};
}

Calibration calibration(double bytes_per_s, double latency_s) {
  Calibration cal;
  cal.net = Network::uniform(link(latency_s, bytes_per_s));
  cal.rates = realistic_rates();
  return cal;
}

TEST(AutoPolicy, InfiniteBandwidthChoosesDense) {
  for (const char* spec : {"auto", "auto:topk", "auto:qsgd", "auto:powersgd"}) {
    const AutoDecision d = decide(model_layers(), Config::parse(spec), 8, calibration(1e300, 0.0));
    for (const Config& c : d.specs) EXPECT_EQ(c.method, Method::none) << spec;
    EXPECT_EQ(d.predicted.total(), d.dense.total());
  }
}

TEST(AutoPolicy, TinyBandwidthCompressesAtTheFloor) {
  const struct {
    const char* spec;
    const char* chosen;
  } cases[] = {{"auto", "onebit"},
               {"auto:topk", "topk:0.01"},
               {"auto:topk:0.001", "topk:0.001"},
               {"auto:qsgd", "qsgd:4"},
               {"auto:powersgd:2", "powersgd:2"}};
  for (const auto& k : cases) {
    const AutoDecision d = decide(model_layers(), Config::parse(k.spec), 8, calibration(1e3, 1e-5));
    // The matrices are compressed at the floor; the small vectors (below min_numel, or
    // vectors for PowerSGD) stay dense.
    EXPECT_EQ(d.specs[0].to_string(), k.chosen) << k.spec;
    EXPECT_EQ(d.specs[1].to_string(), k.chosen) << k.spec;
    EXPECT_EQ(d.specs[3].method, Method::none) << k.spec;
    EXPECT_LT(d.predicted.total() * 4, d.dense.total()) << k.spec;  // qsgd:4 sends 1/8
  }
}

TEST(AutoPolicy, MoreBandwidthNeverMeansMoreCompression) {
  // From a crawl to infinity, each layer's choice moves only towards dense (index 0 of the
  // candidates), and the predicted step is never slower than all-dense.
  for (const char* spec : {"auto", "auto:topk:0.001", "auto:qsgd:2", "auto:powersgd:1"}) {
    std::vector<std::size_t> previous(model_layers().size(), 1000);
    for (double beta = 1e3; beta < 1e13; beta *= 3) {
      const AutoDecision d =
          decide(model_layers(), Config::parse(spec), 8, calibration(beta, 1e-5));
      EXPECT_LE(d.predicted.total(), d.dense.total()) << spec << " at " << beta;
      for (std::size_t i = 0; i < previous.size(); ++i) {
        EXPECT_LE(d.choice[i], previous[i]) << spec << " layer " << i << " at " << beta;
        previous[i] = d.choice[i];
      }
    }
    EXPECT_EQ(previous[0], 0u) << spec;  // dense in the end
  }
}

TEST(AutoPolicy, LatencyThatDwarfsTheTransfersKeepsDense) {
  // The compressed route's extra collectives cost more than the bytes they save.
  const AutoDecision d = decide({{"w", {64, 64}}}, Config::parse("auto:onebit,min_numel=0"), 64,
                                calibration(1e9, 1.0));
  EXPECT_EQ(d.specs[0].method, Method::none);
}

}  // namespace
}  // namespace thinwire::detail::model
