// Checkpoint format of a Reducer's per-rank compression state. Little-endian:
//
//   u32 magic "TWST"   u32 version (1)   u32 ranks   u32 rank   u64 step   u64 layers
//   u64 digest of the layers' spec hashes (names, shapes, specs, library version)
//   per layer: u64 spec hash, u32 flags (bit 0: EControl started), u32 field count,
//              fields: u32 id, u64 count, count f32   (ids: 1 error, 2 h, 3 H, 4 server
//              error, 5 PowerSGD Q, 6 DGC velocity; each either empty or of the one size it
//              can have; 7 adaptive choice: one value, the index of the layer's candidate in
//              its family's candidate set, written for adaptive specs only)
//
// Fields 6 and 7 arrived after the first files were written; files without them still load
// (no velocity, the adaptive default). The spec hash of an adaptive layer is that of the
// candidate in force, checked after its field 7 is read.
//   u64 FNV-1a of everything before it
//
// load_state() reads the whole file, checks the checksum and every size against the
// Reducer before changing anything, so a truncated, corrupt or foreign file raises Error and
// leaves the Reducer as it was.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>

#include "algorithm/two_phase.hpp"
#include "common/bytes.hpp"
#include "common/fail.hpp"
#include "common/hash.hpp"
#include "model/auto_policy.hpp"
#include "reducer/reducer_impl.hpp"

namespace thinwire {
namespace detail {

namespace {

constexpr std::uint32_t kStateMagic = 0x54535754u;  // "TWST"
constexpr std::uint32_t kStateVersion = 1;
enum Field : std::uint32_t {
  kError = 1,
  kH = 2,
  kGlobal = 3,
  kServerError = 4,
  kQ = 5,
  kMomentum = 6,
  kAdaptiveChoice = 7
};
constexpr std::size_t kFieldCount = kAdaptiveChoice;  // ids 1..7, each at most once per layer

class Writer {
 public:
  template <typename T>
  void put(T v) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + sizeof v);
    store_le<T>(bytes_.data() + at, v);
  }
  void floats(const float* p, std::size_t n) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + 4 * n);
    if (n) std::memcpy(bytes_.data() + at, p, 4 * n);
  }
  std::vector<std::uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

class Reader {
 public:
  Reader(const std::vector<std::uint8_t>& bytes, std::size_t end, int rank)
      : bytes_(bytes), end_(end), rank_(rank) {}
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    const T v = load_le<T>(bytes_.data() + at_);
    at_ += sizeof(T);
    return v;
  }
  std::vector<float> floats(std::uint64_t n, const char* what) {
    std::size_t bytes = 0;
    if (n > end_ || !mul_ok(static_cast<std::size_t>(n), 4, &bytes))
      bad(cat(what, ": count ", n, " is impossible"));
    need(bytes, what);
    std::vector<float> v(static_cast<std::size_t>(n));
    if (n) std::memcpy(v.data(), bytes_.data() + at_, bytes);
    at_ += bytes;
    return v;
  }
  std::size_t position() const { return at_; }
  [[noreturn]] void bad(const std::string& why) const {
    fail_with(ErrorCode::invalid_argument, "state", rank_, "corrupt compression state: ", why);
  }

 private:
  void need(std::size_t n, const char* what) const {
    if (n > end_ - at_) bad(cat("file ends inside ", what));
  }
  const std::vector<std::uint8_t>& bytes_;
  std::size_t end_, at_ = 0;
  int rank_;
};

std::uint64_t checksum(const std::uint8_t* p, std::size_t n) {
  return Hasher().bytes(p, n).value();
}

}  // namespace

void ReducerImpl::save_state(std::ostream& out) const {
  const int p = comm_.size(), me = comm_.rank();
  Writer w;
  w.put<std::uint32_t>(kStateMagic);
  w.put<std::uint32_t>(kStateVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(p));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(me));
  w.put<std::uint64_t>(step_);
  w.put<std::uint64_t>(layers_.size());
  Hasher digest;
  for (std::uint64_t h : spec_hashes_) digest.u64(h);
  w.put<std::uint64_t>(digest.value());
  std::vector<float> materialized;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const LayerState& s = states_[i];
    w.put<std::uint64_t>(spec_hashes_[i]);
    w.put<std::uint32_t>(s.econtrol_started ? 1u : 0u);
    const std::vector<float>* error = &s.error;
    if (!s.onebit_error.empty()) {  // 1-bit memories are kept factored: store e itself
      materialized.resize(s.onebit_error.size());
      s.onebit_error.materialize(materialized.data());
      error = &materialized;
    }
    const std::pair<Field, const std::vector<float>*> fields[] = {
        {kError, error},      {kH, &s.h},
        {kGlobal, &s.global}, {kServerError, &s.server_error},
        {kQ, &s.q},           {kMomentum, &s.momentum}};
    w.put<std::uint32_t>(adaptive_ ? 7 : 6);
    for (const auto& [id, v] : fields) {
      w.put<std::uint32_t>(id);
      w.put<std::uint64_t>(v->size());
      w.floats(v->data(), v->size());
    }
    if (adaptive_) {
      w.put<std::uint32_t>(kAdaptiveChoice);
      w.put<std::uint64_t>(1);
      const float choice = static_cast<float>(adaptive_->choices()[i]);
      w.floats(&choice, 1);
    }
  }
  w.put<std::uint64_t>(checksum(w.bytes().data(), w.bytes().size()));
  out.write(reinterpret_cast<const char*>(w.bytes().data()),
            static_cast<std::streamsize>(w.bytes().size()));
  out.flush();  // a buffered write fails only here (a full disk)
  if (!out)
    fail(ErrorCode::invalid_argument, "state", me,
         "writing the compression state failed (is the disk full?)");
}

void ReducerImpl::load_state(std::istream& in) {
  const int p = comm_.size(), me = comm_.rank();
  // No state of these layers is larger than this: every field holds at most a layer's worth
  // of floats (PowerSGD's Q has cols * rank < rows * cols, else the layer goes dense). A
  // longer stream is read no further, so that /dev/zero or a huge foreign file cannot take
  // the process's memory.
  std::size_t limit = 64;
  for (const Layer& l : layers_) limit += 128 + 4 * (kFieldCount * l.numel() + 1);
  std::vector<std::uint8_t> bytes;
  try {
    char chunk[1 << 16];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
      bytes.insert(bytes.end(), chunk, chunk + in.gcount());
      if (bytes.size() > limit)
        fail_with(ErrorCode::invalid_argument, "state", me, "compression state: longer than ",
                  limit, " bytes, the most any state of this Reducer's layers takes");
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    // libstdc++'s file buffer throws on a read error (a directory, EIO) whatever the stream's
    // exception mask says.
    fail_with(ErrorCode::invalid_argument, "state", me,
              "cannot read the compression state: ", e.what());
  }
  if (in.bad()) fail(ErrorCode::invalid_argument, "state", me, "cannot read the compression state");
  if (bytes.size() < 8)
    fail(ErrorCode::invalid_argument, "state", me, "compression state: file too short");
  const std::size_t end = bytes.size() - 8;
  if (load_le<std::uint64_t>(bytes.data() + end) != checksum(bytes.data(), end))
    fail(ErrorCode::invalid_argument, "state", me,
         "compression state: checksum mismatch (truncated or corrupt file)");
  Reader r(bytes, end, me);
  if (r.get<std::uint32_t>("magic") != kStateMagic) r.bad("not a thinwire state file (bad magic)");
  const auto version = r.get<std::uint32_t>("version");
  if (version != kStateVersion)
    r.bad(cat("format version ", version, ", this library reads ", kStateVersion));
  const auto ranks = r.get<std::uint32_t>("header");
  const auto rank = r.get<std::uint32_t>("header");
  if (ranks != static_cast<std::uint32_t>(p) || rank != static_cast<std::uint32_t>(me))
    fail_with(ErrorCode::mismatch, "state", me, "compression state was saved by rank ", rank,
              " of ", ranks, "; this is rank ", me, " of ", p);
  const auto step = r.get<std::uint64_t>("header");
  const auto n_layers = r.get<std::uint64_t>("header");
  r.get<std::uint64_t>("header");  // digest: the per-layer hashes below say which layer differs
  if (n_layers != layers_.size())
    fail_with(ErrorCode::mismatch, "state", me, "compression state has ", n_layers,
              " layers, this Reducer ", layers_.size());

  std::vector<LayerState> loaded(layers_.size());
  std::vector<LayerPlan> plans = plans_;
  std::vector<std::size_t> choices = adaptive_ ? adaptive_->choices() : std::vector<std::size_t>();
  if (adaptive_) choices.assign(layers_.size(), adaptive_->candidates().default_index);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const auto saved_hash = r.get<std::uint64_t>("layer");
    LayerState& s = loaded[i];
    s.econtrol_started = (r.get<std::uint32_t>("layer flags") & 1u) != 0;
    const auto n_fields = r.get<std::uint32_t>("layer");
    const std::size_t n = plans_[i].numel;
    const std::size_t chunk = chunk_begin(n, me + 1, p) - chunk_begin(n, me, p);
    std::vector<float> choice_field;
    for (std::uint32_t f = 0; f < n_fields; ++f) {
      const auto id = r.get<std::uint32_t>("field id");
      const auto count = r.get<std::uint64_t>("field size");
      std::size_t expected = n;
      std::vector<float>* target = nullptr;
      switch (id) {
        case kError:
          target = &s.error;
          break;
        case kH:
          target = &s.h;
          break;
        case kGlobal:
          target = &s.global;
          break;
        case kServerError:
          target = &s.server_error, expected = chunk;
          break;
        case kQ:
          target = &s.q, expected = 0;  // checked below, against the plan in force
          break;
        case kMomentum:
          target = &s.momentum;
          break;
        case kAdaptiveChoice:
          target = &choice_field, expected = 1;
          break;
        default:
          r.bad(cat("layer ", i, ": unknown field ", id));
      }
      if (count != 0 && expected != 0 && count != expected)
        r.bad(
            cat("layer ", i, " field ", id, " holds ", count, " values, expected 0 or ", expected));
      *target = r.floats(count, "field data");
    }
    if (!choice_field.empty()) {
      const float c = choice_field[0];
      if (!adaptive_)
        fail_with(ErrorCode::mismatch, "state", me, "compression state of layer ", i, " '",
                  layers_[i].describe(), "' was saved by an adaptive spec; this Reducer's is '",
                  config_.to_string(), "'");
      if (!(c >= 0.0f && c < static_cast<float>(adaptive_->candidates().configs.size())) ||
          c != static_cast<float>(static_cast<std::size_t>(c)))
        r.bad(cat("layer ", i, ": adaptive choice ", c, " is not a candidate index"));
      choices[i] = static_cast<std::size_t>(c);
    }
    if (adaptive_) plans[i] = plan_for(i, adaptive_->config_of(choices[i]));
    // An auto Reducer takes the choice the checkpoint was saved under when it is one of its
    // candidates: the probe of a resumed run can choose differently (another network, or
    // timings on either side of a margin), and the saved error memories belong to the saved
    // choice. recalibrate() after loading chooses again for this network.
    if (config_.method == Method::automatic &&
        layer_spec_hash(layers_[i], plans[i].spec) != saved_hash)
      for (const Config& c : model::auto_candidates(config_)) {
        LayerPlan candidate = plan_for(i, c);
        if (layer_spec_hash(layers_[i], candidate.spec) != saved_hash) continue;
        plans[i] = std::move(candidate);
        break;
      }
    if (layer_spec_hash(layers_[i], plans[i].spec) != saved_hash)
      fail_with(ErrorCode::mismatch, "state", me, "compression state differs at layer ", i, " '",
                layers_[i].describe(), "': saved with another name, shape or spec (now '",
                plans[i].spec, "'",
                config_.method == Method::automatic
                    ? cat(", and none of the candidates of '", config_.to_string(), "'")
                    : std::string(),
                ")");
    const std::size_t q_size = plans[i].cols * plans[i].rank;
    if (!s.q.empty() && s.q.size() != q_size)
      r.bad(cat("layer ", i, " field ", kQ, " holds ", s.q.size(), " values, expected 0 or ",
                q_size));
  }
  if (r.position() != end) r.bad("trailing bytes after the last layer");
  states_ = std::move(loaded);
  if (adaptive_ || config_.method == Method::automatic)
    for (std::size_t i = 0; i < layers_.size(); ++i) {
      plans_[i] = std::move(plans[i]);
      spec_hashes_[i] = spec_hash(i);
      stats_.layers[i].spec = plans_[i].spec;
    }
  if (adaptive_) adaptive_->set_choices(std::move(choices));
  // The checkpoint's choice stands: a trial of this Reducer's own choice would undo it.
  auto_trial_.cancel();
  step_ = step;
  last_skipped_ = false;
}

}  // namespace detail

void Reducer::save_state(const std::string& path) const {
  namespace fs = std::filesystem;
  const int me = impl_->comm_.rank();
  std::error_code ec;
  // A regular file (or a new one) is written next to `path` and renamed over it once complete,
  // so that a failed write (a full disk) leaves the previous checkpoint as it was. Anything
  // else that exists (a device, a pipe) is written in place: renaming over it would replace it.
  if (path.empty())
    detail::fail_with(ErrorCode::invalid_argument, "state", me, "cannot write '': empty path");
  const fs::file_status status = fs::status(path, ec);
  const bool in_place = fs::exists(status) && !fs::is_regular_file(status);
  if (fs::is_directory(status))
    detail::fail_with(ErrorCode::invalid_argument, "state", me, "cannot write '", path,
                      "': it is a directory");
  // Through a symbolic link, the file it names is replaced, not the link.
  std::string file = path;
  if (fs::is_symlink(fs::symlink_status(path, ec))) {
    const fs::path resolved = fs::weakly_canonical(path, ec);
    if (!ec) file = resolved.string();
  }
  const std::string target = in_place ? file : file + ".tmp";
  try {
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    if (!out)
      detail::fail_with(ErrorCode::invalid_argument, "state", me, "cannot write '", path, "'",
                        in_place ? "" : detail::cat(" (cannot create '", target, "' next to it)"));
    save_state(out);
    out.close();
    if (!out)
      detail::fail_with(ErrorCode::invalid_argument, "state", me, "writing '", target,
                        "' failed (is the disk full?)");
  } catch (...) {
    if (!in_place) fs::remove(target, ec);
    throw;
  }
  if (!in_place) {
    fs::rename(target, file, ec);
    if (ec) {
      std::error_code ignored;
      fs::remove(target, ignored);
      detail::fail_with(ErrorCode::invalid_argument, "state", me, "cannot rename '", target,
                        "' to '", file, "': ", ec.message());
    }
  }
}

void Reducer::load_state(const std::string& path) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    detail::fail_with(ErrorCode::invalid_argument, "state", impl_->comm_.rank(), "cannot read '",
                      path, "': it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in)
    detail::fail_with(ErrorCode::invalid_argument, "state", impl_->comm_.rank(), "cannot read '",
                      path, "'");
  load_state(in);
}

}  // namespace thinwire
