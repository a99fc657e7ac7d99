// Checkpointed compression state and the non-finite gradient policy, under mpiexec.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <streambuf>

#include "common/bytes.hpp"
#include "common/hash.hpp"
#include "test_support.hpp"

namespace thinwire::test {
namespace {

const std::vector<Layer>& layers() {
  static const std::vector<Layer> l = {{"w1", {48, 40}}, {"b1", {40}}, {"w2", {33, 70}}};
  return l;
}

// Every layer of `ls` filled from seeded_normal(seed, rank, layer, step).
std::vector<std::vector<float>> seeded_gradients(const std::vector<Layer>& ls, std::uint64_t seed,
                                                 int rank, std::uint64_t step) {
  std::vector<std::vector<float>> g;
  for (std::size_t l = 0; l < ls.size(); ++l)
    g.push_back(seeded_normal(seed, rank, l, step, ls[l].numel()));
  return g;
}

std::vector<std::vector<float>> gradients(int rank, std::uint64_t step) {
  return seeded_gradients(layers(), 21, rank, step);
}

const char* const kSpecs[] = {"none",
                              "topk:0.05",
                              "topk:0.05,select=sampled",
                              "onebit",
                              "onebit,ef=econtrol",
                              "qsgd:4",
                              "qsgd:2,ef=none",
                              "powersgd:3",
                              "powersgd:3,ef=econtrol",
                              "topk:0.1,ef=econtrol,min_numel=0",
                              "topk:0.05,warmup=4",
                              "topk:0.05,dgc=on,momentum=0.9",
                              "topk:0.05,dgc=on,momentum=0.9,select=sampled,clip=5,dgc_warmup=8",
                              "adaptive:topk,period=2",
                              "adaptive:topk,period=2,dgc=on,momentum=0.9",
                              "adaptive:powersgd,period=2",
                              "adaptive:qsgd,period=2,ef=econtrol"};

// Runs steps 0..2 of `rank`'s gradients through `r` and returns its saved state.
std::stringstream state_after_three_steps(Reducer& r, int rank) {
  for (std::uint64_t step = 0; step < 3; ++step) {
    auto g = gradients(rank, step);
    r.allreduce(views(g));
  }
  std::stringstream saved;
  r.save_state(saved);
  return saved;
}

using StepResults = std::vector<std::vector<std::vector<float>>>;  // [step][layer][element]

// Runs steps 3..5 of `rank`'s gradients through `r`; the averages, checked to be identical on
// every rank.
StepResults three_more_steps(Reducer& r, int rank) {
  StepResults out;
  for (std::uint64_t step = 3; step < 6; ++step) {
    auto g = gradients(rank, step);
    r.allreduce(views(g));
    EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << r.config().to_string();
    out.push_back(std::move(g));
  }
  return out;
}

void expect_same_bits(const StepResults& got, const StepResults& expected,
                      const std::string& label) {
  ASSERT_EQ(got.size(), expected.size()) << label;
  for (std::size_t s = 0; s < got.size(); ++s)
    for (std::size_t l = 0; l < got[s].size(); ++l)
      ASSERT_EQ(0, std::memcmp(got[s][l].data(), expected[s][l].data(), got[s][l].size() * 4))
          << label << " layer " << l << " step " << s + 3;
}

// Train 3 steps, save, train 3 more; a fresh Reducer that loads the saved state and sees
// the same 3 gradients must produce the same bits.
TEST(MpiState, RestoredReducerContinuesBitForBit) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  for (const char* spec : kSpecs) {
    Reducer a(comm, layers(), Config::parse(spec));
    std::stringstream saved = state_after_three_steps(a, me);
    const StepResults expected = three_more_steps(a, me);
    Reducer b(comm, layers(), Config::parse(spec));
    b.load_state(saved);
    EXPECT_EQ(b.step(), 3u) << spec;
    expect_same_bits(three_more_steps(b, me), expected, spec);
  }
}

// A resumed auto Reducer can probe its way to another choice than the run that saved the
// state. It takes the saved choice when that is one of its candidates, and continues bit for
// bit; a spec outside its candidates is still a mismatch.
TEST(MpiState, AutoAdoptsTheChoiceItsCheckpointWasSavedUnder) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  const Config auto_spec = Config::parse("auto:topk");
  Reducer b(comm, layers(), auto_spec);
  // A candidate that b's probe did not choose for the first layer (its choice is the same on
  // every rank: rank 0's, broadcast).
  const std::string saved_spec = b.layer_spec(0) == "topk:0.1" ? "topk:0.03" : "topk:0.1";
  Reducer a(comm, layers(), Config::parse(saved_spec));
  std::stringstream saved = state_after_three_steps(a, me);
  const StepResults expected = three_more_steps(a, me);

  b.load_state(saved);
  EXPECT_EQ(b.step(), 3u);
  for (std::size_t l = 0; l < layers().size(); ++l) {
    EXPECT_EQ(b.layer_spec(l), saved_spec) << l;
    EXPECT_EQ(b.stats().layers[l].spec, saved_spec) << l;
  }
  expect_same_bits(three_more_steps(b, me), expected, "auto:topk from " + saved_spec);

  Reducer onebit(comm, layers(), Config::parse("onebit"));
  std::stringstream foreign = state_after_three_steps(onebit, me);
  Reducer c(comm, layers(), auto_spec);
  const std::string before = c.layer_spec(0);
  const auto err = error_from([&] { c.load_state(foreign); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("none of the candidates of 'auto:topk"),
            std::string::npos)
      << err->what();
  EXPECT_EQ(c.layer_spec(0), before);
  EXPECT_EQ(c.step(), 0u);
}

// A 1-bit Reducer after one step: error memories worth saving.
Reducer onebit_after_one_step(const Communicator& comm) {
  Reducer r(comm, layers(), Config::parse("onebit"));
  auto g = gradients(world_rank(), 0);
  r.allreduce(views(g));
  return r;
}

TEST(MpiState, ForeignOrCorruptStateIsRefusedAndChangesNothing) {
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Reducer a = onebit_after_one_step(comm);
  std::stringstream saved;
  a.save_state(saved);
  const std::string bytes = saved.str();

  auto load = [&](Reducer& r, const std::string& data) {
    std::stringstream in(data);
    return error_from([&] { r.load_state(in); });
  };
  Reducer other_spec(comm, layers(), Config::parse("onebit,ef=econtrol"));
  auto err = load(other_spec, bytes);
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);
  EXPECT_NE(std::string(err->what()).find("w1[48,40]"), std::string::npos) << err->what();

  std::vector<Layer> fewer = layers();
  fewer.pop_back();
  Reducer other_layers(comm, fewer, Config::parse("onebit"));
  err = load(other_layers, bytes);
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch);

  Reducer fresh(comm, layers(), Config::parse("onebit"));
  for (std::size_t cut : {std::size_t{0}, std::size_t{7}, bytes.size() / 2, bytes.size() - 1}) {
    err = load(fresh, bytes.substr(0, cut));
    ASSERT_TRUE(err.has_value()) << cut;
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
  }
  std::string flipped = bytes;
  flipped[bytes.size() / 3] ^= 0x10;
  err = load(fresh, flipped);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("checksum"), std::string::npos) << err->what();
  EXPECT_EQ(fresh.step(), 0u);

  err = error_from([&] { fresh.load_state(std::string("/nonexistent/dir/state.bin")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("cannot read"), std::string::npos);

  // An endless stream (/dev/zero) is read no further than any state of these layers takes;
  // this one ends after 256 MiB, so that reading it all fails the test without exhausting
  // memory.
  struct Zeros : std::streambuf {
    char block[1 << 16] = {};
    std::size_t left = std::size_t{256} << 20;
    int_type underflow() override {
      if (left == 0) return traits_type::eof();
      left -= sizeof block;
      setg(block, block, block + sizeof block);
      return traits_type::to_int_type(block[0]);
    }
  } zeros;
  std::istream endless(&zeros);
  err = error_from([&] { fresh.load_state(endless); });
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("longer than"), std::string::npos) << err->what();
  EXPECT_GT(zeros.left, std::size_t{200} << 20) << "read far past the largest possible state";

  // A directory opens as a file but fails to read (libstdc++ throws from its buffer): a user
  // error named as such, by path and through a stream alike, never ErrorCode::internal.
  const std::string dir = ::testing::TempDir();
  err = error_from([&] { fresh.load_state(dir); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
  EXPECT_NE(std::string(err->what()).find("directory"), std::string::npos) << err->what();
  std::ifstream as_stream(dir, std::ios::binary);
  if (as_stream) {
    err = error_from([&] { fresh.load_state(as_stream); });
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
    EXPECT_NE(std::string(err->what()).find("cannot read the compression state"), std::string::npos)
        << err->what();
  }
  EXPECT_EQ(fresh.step(), 0u);
}

TEST(MpiState, FailedWritesRaiseAndKeepTheEarlierCheckpoint) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  Reducer a = onebit_after_one_step(comm);
  const std::string path = ::testing::TempDir() + "/tw_state_write." + std::to_string(me) + ".bin";
  a.save_state(path);
  std::ifstream probe(path + ".tmp");
  EXPECT_FALSE(probe.good()) << "the temporary file was left behind";
  {
    Reducer b(comm, layers(), Config::parse("onebit"));
    b.load_state(path);
    EXPECT_EQ(b.step(), 1u);
  }
  // A full device: the write fails at the flush, which used to pass silently.
  if (std::ifstream("/dev/full").good()) {
    const auto err = error_from([&] { a.save_state(std::string("/dev/full")); });
    ASSERT_TRUE(err.has_value()) << "a write to /dev/full succeeded";
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
    EXPECT_NE(std::string(err->what()).find("disk full"), std::string::npos) << err->what();
  }
  // Creating the temporary file fails: the error names the path and the earlier file stays.
  const auto err = error_from([&] { a.save_state(std::string("/nonexistent/dir/state.bin")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(std::string(err->what()).find("/nonexistent/dir/state.bin"), std::string::npos)
      << err->what();
  EXPECT_TRUE(error_from([&] { a.save_state(std::string()); }).has_value());
  Reducer c(comm, layers(), Config::parse("onebit"));
  c.load_state(path);
  EXPECT_EQ(c.step(), 1u);
  // Saved through a symbolic link: the file it names is replaced and the link stays a link.
  const std::string link = path + ".link";
  std::remove(link.c_str());
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  a.save_state(link);
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  Reducer d(comm, layers(), Config::parse("onebit"));
  d.load_state(path);
  EXPECT_EQ(d.step(), 1u);
  std::remove(link.c_str());
  std::remove(path.c_str());
}

TEST(MpiState, OneRanksSpecTextThatDoesNotParseFailsEveryRank) {
  // The string constructor parses inside the collective construction (the C API and Python
  // use it): the other ranks raise at once, where parsing first left them in the agreement
  // until THINWIRE_TIMEOUT_S.
  const int me = world_rank(), last = world_size() - 1;
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  const auto err = error_from(
      [&] { Reducer r(comm, layers(), std::string(me == last ? "topk:2" : "topk:0.1")); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
  EXPECT_NE(std::string(err->what()).find("topk:2"), std::string::npos) << err->what();
  Reducer fine(comm, layers(), std::string("topk:0.1"));  // the communicator still works
  EXPECT_EQ(fine.config().to_string(), Config::parse("topk:0.1").to_string());
}

TEST(MpiState, NullCommunicatorHandleRaises) {
  // What MPI_Comm_f2c returns in Open MPI for a Fortran handle that names no communicator;
  // MPI_Comm_rank on it aborted the job.
  const auto err = error_from([] { Communicator::from_mpi(MPI_Comm{}); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << err->what();
}

// A state file as the first format version wrote it: the same layout without field 6 (DGC
// velocity) and field 7 (adaptive choice). Rewritten from a current file of a spec that
// has neither in use, with a fresh checksum.
std::string without_new_fields(const std::string& file) {
  using detail::load_le;
  using detail::store_le;
  const auto* b = reinterpret_cast<const std::uint8_t*>(file.data());
  std::vector<std::uint8_t> out(b, b + 40);  // magic .. digest
  const auto n_layers = load_le<std::uint64_t>(b + 24);
  std::size_t at = 40;
  for (std::uint64_t l = 0; l < n_layers; ++l) {
    const std::size_t layer_start = out.size();
    out.insert(out.end(), b + at, b + at + 16);  // hash, flags, field count
    const auto n_fields = load_le<std::uint32_t>(b + at + 12);
    at += 16;
    std::uint32_t kept = 0;
    for (std::uint32_t f = 0; f < n_fields; ++f) {
      const auto id = load_le<std::uint32_t>(b + at);
      const std::size_t len = 12 + 4 * load_le<std::uint64_t>(b + at + 4);
      if (id < 6) out.insert(out.end(), b + at, b + at + len), ++kept;
      at += len;
    }
    store_le<std::uint32_t>(out.data() + layer_start + 12, kept);
  }
  const std::uint64_t sum = detail::Hasher().bytes(out.data(), out.size()).value();
  out.resize(out.size() + 8);
  store_le<std::uint64_t>(out.data() + out.size() - 8, sum);
  return std::string(out.begin(), out.end());
}

TEST(MpiState, FilesWithoutTheNewFieldsStillLoad) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  for (const char* spec : {"topk:0.05", "powersgd:3,ef=econtrol", "onebit"}) {
    Reducer a(comm, layers(), Config::parse(spec));
    std::stringstream saved = state_after_three_steps(a, me);
    const std::string old = without_new_fields(saved.str());
    ASSERT_LT(old.size(), saved.str().size()) << spec;
    Reducer b(comm, layers(), Config::parse(spec));
    std::stringstream in(old);
    b.load_state(in);
    for (std::uint64_t step = 3; step < 5; ++step) {
      auto ga = gradients(me, step), gb = ga;
      a.allreduce(views(ga));
      b.allreduce(views(gb));
      ASSERT_EQ(ga, gb) << spec << " step " << step;
    }
  }
  // An adaptive file names its choices: a Reducer with a fixed spec refuses it.
  Reducer adaptive(comm, layers(), Config::parse("adaptive:topk,period=1"));
  auto g = gradients(me, 0);
  adaptive.allreduce(views(g));
  std::stringstream saved;
  adaptive.save_state(saved);
  Reducer fixed(comm, layers(), Config::parse(adaptive.layer_spec(0)));
  auto err = error_from([&] { fixed.load_state(saved); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code(), ErrorCode::mismatch) << err->what();
}

// nan=error (the default): a NaN on one rank raises on every rank, naming layer and rank,
// for every method; the Reducer stays usable.
TEST(MpiState, NonFiniteGradientRaisesEverywhereByDefault) {
  const int me = world_rank(), p = [] {
    int s;
    MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
  }();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  for (const char* spec : kSpecs) {
    Reducer r(comm, layers(), Config::parse(spec));
    auto g = gradients(me, 0);
    if (me == p - 1) g[2][17] = std::numeric_limits<float>::quiet_NaN();
    auto err = error_from([&] { r.allreduce(views(g)); });
    ASSERT_TRUE(err.has_value()) << spec;
    EXPECT_EQ(err->code(), ErrorCode::invalid_argument) << spec;
    const std::string what = err->what();
    EXPECT_NE(what.find("rank " + std::to_string(p - 1)), std::string::npos) << what;
    EXPECT_NE(what.find("'w2'"), std::string::npos) << what;
    EXPECT_NE(what.find("element 17"), std::string::npos) << what;
    g = gradients(me, 0);
    if (me == 0) g[0][0] = std::numeric_limits<float>::infinity();
    err = error_from([&] { r.allreduce(views(g)); });
    ASSERT_TRUE(err.has_value()) << spec;
    g = gradients(me, 0);
    r.allreduce(views(g));
    EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << spec;
  }
}

// nan=skip: every rank drops the step (zero gradients), error memories stay as they were,
// and the step is counted.
TEST(MpiState, NonFiniteGradientSkipsTheStepEverywhere) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  for (const char* base :
       {"none", "topk:0.05", "onebit", "powersgd:3", "topk:0.05,ef=econtrol", "qsgd:4"}) {
    const std::string spec = std::string(base) + ",nan=skip";
    Reducer with_skip(comm, layers(), Config::parse(spec));
    Reducer without(comm, layers(), Config::parse(spec));
    auto g0 = gradients(me, 0), g0b = g0;
    with_skip.allreduce(views(g0));
    without.allreduce(views(g0b));
    auto bad = gradients(me, 1);
    if (me == 0) bad[1][3] = -std::numeric_limits<float>::infinity();
    with_skip.allreduce(views(bad));
    EXPECT_TRUE(with_skip.last_step_skipped()) << spec;
    for (const auto& t : bad)
      for (float v : t) ASSERT_EQ(v, 0.0f) << spec;
    EXPECT_EQ(with_skip.stats().skipped_steps, 1u);
    // A skipped step's time is counted like any step's: the check that found the value
    // (encode) and the control exchange that agreed on skipping (comm).
    Reducer skipped_first(comm, layers(), Config::parse(spec));
    auto bad_first = gradients(me, 1);
    if (me == 0) bad_first[1][3] = -std::numeric_limits<float>::infinity();
    skipped_first.allreduce(views(bad_first));
    EXPECT_EQ(skipped_first.stats().steps, 1u) << spec;
    EXPECT_GT(skipped_first.stats().seconds_encode, 0.0) << spec;
    EXPECT_GT(skipped_first.stats().seconds_comm, 0.0) << spec;
    auto g1 = gradients(me, 2), g1b = g1;
    with_skip.allreduce(views(g1));
    EXPECT_FALSE(with_skip.last_step_skipped());
    without.allreduce(views(g1b));
    ASSERT_TRUE(identical_on_all_ranks(g1, MPI_COMM_WORLD)) << spec;
    // qsgd's rounding is keyed by the step counter, which the skipped step advanced.
    if (std::string(base) != "qsgd:4") {
      for (std::size_t l = 0; l < g1.size(); ++l)
        ASSERT_EQ(0, std::memcmp(g1[l].data(), g1b[l].data(), g1[l].size() * 4))
            << spec << " layer " << l;
    }
  }
}

// nan=propagate: nothing is checked and every rank sees the same bits. NaN travels through
// dense, top-k, 1-bit and PowerSGD (its factors); qsgd's quantiser maps NaN to level 0 (and
// saturates infinities).
TEST(MpiState, NonFiniteGradientPropagatesWhenAsked) {
  const int me = world_rank();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  for (const char* base : {"none", "topk:0.05", "onebit", "qsgd:4", "powersgd:3"}) {
    Reducer r(comm, layers(), Config::parse(std::string(base) + ",nan=propagate"));
    auto g = gradients(me, 0);
    if (me == 0) g[0][5] = std::numeric_limits<float>::quiet_NaN();
    r.allreduce(views(g));
    ASSERT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << base;
    bool any_nan = false;
    for (float v : g[0]) any_nan = any_nan || std::isnan(v);
    EXPECT_EQ(any_nan, std::string(base) != "qsgd:4") << base;
  }
}

// Dense layers of 64 KiB or more (packed: 'big' [0, 24000), 'bias' [24000, 24300), 'tail'
// [24300, 33300)) take nan=error|skip on their average: the ring tests each rank's gradient
// in its additions, so the check costs no pass of its own and still names the rank. With
// min_numel=30000, 'w' (40000 elements) is compressed and checked before the step.
const std::vector<Layer>& large_layers() {
  static const std::vector<Layer> l = {
      {"big", {120, 200}}, {"bias", {300}}, {"tail", {9000}}, {"w", {200, 200}}};
  return l;
}
constexpr std::size_t kDenseTotal = 33300;

std::vector<std::vector<float>> large_gradients(int rank, std::uint64_t step) {
  return seeded_gradients(large_layers(), 22, rank, step);
}

// Element `at` of the packed dense layers: its layer and index there.
std::pair<std::size_t, std::size_t> dense_element(std::size_t at) {
  std::size_t layer = 0;
  while (at >= large_layers()[layer].numel()) at -= large_layers()[layer++].numel();
  return {layer, at};
}

// Where a value can sit: every ring chunk's first and last element (P = 2, 3, 4), the
// layers' ends.
std::vector<std::size_t> dense_positions() {
  std::vector<std::size_t> at = {0, 23999, 24000, 24299, 24300, kDenseTotal - 1};
  for (std::size_t p = 2; p <= 4; ++p)
    for (std::size_t c = 0; c < p; ++c) {
      at.push_back(kDenseTotal * c / p);
      at.push_back(kDenseTotal * (c + 1) / p - 1);
    }
  return at;
}

TEST(MpiState, NonFiniteInLargeDenseLayersIsFoundInTheirSumNamingTheRank) {
  const int me = world_rank(), p = world_size();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (const char* spec : {"none", "topk:0.05,min_numel=30000"}) {
    Reducer r(comm, large_layers(), Config::parse(spec));
    Reducer clean(comm, large_layers(), Config::parse(spec));
    std::size_t trial = 0;
    for (int who = 0; who < p; ++who)
      for (std::size_t at : dense_positions()) {
        const auto [layer, index] = dense_element(at);
        auto g = large_gradients(me, 0);
        if (me == who) g[layer][index] = bad[trial++ % 3];
        const auto err = error_from([&] { r.allreduce(views(g)); });
        ASSERT_TRUE(err.has_value()) << spec << " rank " << who << " element " << at;
        EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
        const std::string what = err->what();
        const std::string named = "layer " + std::to_string(layer) + " '" +
                                  large_layers()[layer].name + "' has a non-finite gradient";
        EXPECT_NE(what.find(named), std::string::npos) << what;
        EXPECT_NE(what.find("on rank " + std::to_string(who) + " at element " +
                            std::to_string(index) + ";"),
                  std::string::npos)
            << what;
        // The dense layers hold their average, the same bits everywhere; the compressed
        // layer, never reduced, its gradient.
        auto dense = g;
        dense.pop_back();
        EXPECT_TRUE(identical_on_all_ranks(dense, MPI_COMM_WORLD)) << spec << ": " << what;
      }
    // Two values: the first by element, then by rank.
    if (p >= 2) {
      auto g = large_gradients(me, 0);
      if (me == 0) g[2][8000] = bad[0];
      if (me == p - 1) g[0][100] = bad[1];
      if (me == 0 || me == 1) g[0][7000] = bad[2];
      auto err = error_from([&] { r.allreduce(views(g)); });
      ASSERT_TRUE(err.has_value());
      EXPECT_NE(std::string(err->what())
                    .find("'big' has a non-finite gradient (NaN or infinity) on rank " +
                          std::to_string(p - 1) + " at element 100;"),
                std::string::npos)
          << err->what();
      g = large_gradients(me, 0);
      if (me == 1) g[1][50] = bad[0];
      if (me == 0) g[1][50] = bad[1];
      err = error_from([&] { r.allreduce(views(g)); });
      ASSERT_TRUE(err.has_value());
      EXPECT_NE(std::string(err->what()).find("on rank 0 at element 50;"), std::string::npos)
          << err->what();
    }
    // Nothing moved on: no compressed layer, no step counter. The next step is the clean
    // Reducer's first, bit for bit.
    auto g = large_gradients(me, 0), g_clean = g;
    r.allreduce(views(g));
    clean.allreduce(views(g_clean));
    EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << spec;
    for (std::size_t l = 0; l < g.size(); ++l)
      ASSERT_EQ(0, std::memcmp(g[l].data(), g_clean[l].data(), g[l].size() * 4))
          << spec << " layer " << l;
    EXPECT_EQ(r.stats().steps, 1u);
  }
}

// f16/bf16 dense layers are checked in their f32 sum too; on nan=error their buffers keep the
// gradient (the average is not written back to them).
TEST(MpiState, NonFiniteInLargeHalfDenseLayersIsFoundInTheirSum) {
  const int me = world_rank(), p = world_size();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  for (DType dt : {DType::f16, DType::bf16}) {
    Reducer r(comm, {{"h", {40000}}}, Config::parse("none"));
    std::vector<std::uint16_t> g(40000);
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = dt == DType::f16 ? 0x3c00 : 0x3f80;  // 1.0
    if (me == p - 1) g[39999] = dt == DType::f16 ? 0x7e00 : 0x7fc0;                        // NaN
    const auto before = g;
    const auto err = error_from([&] { r.allreduce({TensorView::host(g.data(), g.size(), dt)}); });
    ASSERT_TRUE(err.has_value());
    EXPECT_NE(
        std::string(err->what()).find("on rank " + std::to_string(p - 1) + " at element 39999;"),
        std::string::npos)
        << err->what();
    EXPECT_EQ(g, before);
  }
}

// nan=skip on the sum: every rank zeroes every gradient and the compressed layer's error
// memory is untouched (the dense route runs first), so the next step matches a Reducer that
// never saw the bad step.
TEST(MpiState, NonFiniteInLargeDenseLayersSkipsTheStepBeforeAnyErrorMemory) {
  const int me = world_rank(), p = world_size();
  Communicator comm = Communicator::from_mpi(MPI_COMM_WORLD);
  const Config spec = Config::parse("topk:0.05,min_numel=30000,nan=skip");
  Reducer with_skip(comm, large_layers(), spec), without(comm, large_layers(), spec);
  auto g0 = large_gradients(me, 0), g0b = g0;
  with_skip.allreduce(views(g0));
  without.allreduce(views(g0b));
  auto bad = large_gradients(me, 1);
  if (me == p - 1) bad[2][8999] = std::numeric_limits<float>::quiet_NaN();
  with_skip.allreduce(views(bad));
  EXPECT_TRUE(with_skip.last_step_skipped());
  for (const auto& t : bad)
    for (float v : t) ASSERT_EQ(v, 0.0f);
  EXPECT_EQ(with_skip.stats().skipped_steps, 1u);
  auto g1 = large_gradients(me, 2), g1b = g1;
  with_skip.allreduce(views(g1));
  EXPECT_FALSE(with_skip.last_step_skipped());
  without.allreduce(views(g1b));
  ASSERT_TRUE(identical_on_all_ranks(g1, MPI_COMM_WORLD));
  for (std::size_t l = 0; l < g1.size(); ++l)
    ASSERT_EQ(0, std::memcmp(g1[l].data(), g1b[l].data(), g1[l].size() * 4)) << "layer " << l;
}

// Routes that do not read the gradients themselves test the average as they divide it: MPI's
// allreduce (THINWIRE_MPI_ALLREDUCE=mpi) and a framework's transport. They cannot name the
// rank; every rank still reaches the same verdict.
TEST(MpiState, NonFiniteAverageOfLargeDenseLayersOnOtherRoutes) {
  const int me = world_rank(), p = world_size();
  std::vector<Communicator> comms;
  {
    ScopedEnv env("THINWIRE_MPI_ALLREDUCE", "mpi");
    comms.push_back(Communicator::from_mpi(MPI_COMM_WORLD));
  }
  comms.push_back(Communicator::from_transport(
      std::make_shared<ForwardingTransport>(Communicator::from_mpi(MPI_COMM_WORLD), "framework")));
  for (Communicator& comm : comms) {
    Reducer r(comm, large_layers(), Config::parse("none"));
    for (std::size_t at : {std::size_t{0}, std::size_t{24100}, kDenseTotal - 1}) {
      const auto [layer, index] = dense_element(at);
      auto g = large_gradients(me, 0);
      if (me == p - 1) g[layer][index] = std::numeric_limits<float>::infinity();
      const auto err = error_from([&] { r.allreduce(views(g)); });
      ASSERT_TRUE(err.has_value()) << comm.host_transport().name();
      EXPECT_EQ(err->code(), ErrorCode::invalid_argument);
      const std::string what = err->what();
      EXPECT_NE(what.find("'" + large_layers()[layer].name +
                          "' has a non-finite average (NaN or "
                          "infinity) at element " +
                          std::to_string(index) + ":"),
                std::string::npos)
          << what;
      EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD)) << what;
    }
    // The sum of finite values can overflow: the average is tested, so it is caught too.
    auto g = large_gradients(me, 0);
    g[0][3] = 3e38f;
    const auto err = error_from([&] { r.allreduce(views(g)); });
    ASSERT_TRUE(err.has_value());
    EXPECT_NE(
        std::string(err->what()).find("at element 3: a rank's gradient was, or the sum overflowed"),
        std::string::npos)
        << err->what();
    g = large_gradients(me, 0);
    r.allreduce(views(g));
    EXPECT_TRUE(identical_on_all_ranks(g, MPI_COMM_WORLD));
  }
}

}  // namespace
}  // namespace thinwire::test
