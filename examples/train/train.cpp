// Data-parallel training of a 784-512-256-10 MLP on Fashion-MNIST with thinwire.
//
// Every rank holds the same model (same seed), trains on its own shard of the training set
// (image i goes to rank i % P), and averages its gradients through a thinwire::Reducer with
// any compression spec; every rank then applies the same optimizer step to the same bits,
// so the replicas never drift apart. Written against the public API only.
//
//   mpirun -np 4 ./train_fashion_mnist --compression topk:0.01 --epochs 5 --json out.json
//
// Output per epoch (rank 0): mean training loss and accuracy over the epoch's batches (all
// ranks), test accuracy on the 10,000 test images, bytes this rank sent through thinwire,
// and wall time. The run is deterministic for a given seed and number of ranks.
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>
#include <thinwire/thinwire.hpp>

#include "idx_dataset.hpp"
#include "mlp.hpp"
#include "optimizers.hpp"

namespace po = boost::program_options;

namespace {

struct Options {
  std::string compression = "none";
  std::string optimizer = "sgd";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string json;
  std::string schedule = "cosine";
  int epochs = 5;
  std::size_t batch = 32;
  double lr = 0.0;  // 0: the optimizer's default
  double momentum = 0.9;
  double onebit_warmup = 0.2;
  double adam_eps = 1e-6;  // 1e-8 diverges in 1-bit Adam: see README "Training"
  std::uint64_t seed = 1;
  std::size_t limit = 0;
  std::size_t test_limit = 0;
  double min_test_accuracy = -1.0;
};

double default_lr(const std::string& optimizer) {
  return optimizer == "sgd" ? 0.05 : 0.001;
}

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Fisher-Yates with our own generator: the same order on every platform.
void shuffle(std::vector<std::size_t>& order, std::uint64_t seed) {
  std::uint64_t s = seed;
  for (std::size_t i = order.size(); i > 1; --i) {
    s = mix(s);
    std::swap(order[i - 1], order[s % i]);
  }
}

std::vector<thinwire::TensorView> grad_views(std::vector<train::Tensor>& params) {
  std::vector<thinwire::TensorView> v;
  for (train::Tensor& t : params)
    v.push_back(thinwire::TensorView::host(t.grad.data(), t.grad.size()));
  return v;
}

double test_accuracy(train::Mlp& model, const train::Dataset& test) {
  std::size_t correct = 0;
  const std::size_t chunk = 500;
  for (std::size_t at = 0; at < test.count; at += chunk) {
    const std::size_t n = std::min(chunk, test.count - at);
    correct += model.evaluate(test.images.data() + at * test.pixels, test.labels.data() + at, n);
  }
  unsigned long long c[2] = {correct, test.count};
  MPI_Allreduce(MPI_IN_PLACE, c, 2, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  return c[1] ? static_cast<double>(c[0]) / static_cast<double>(c[1]) : 0.0;
}

int run(const Options& o) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const bool root = rank == 0;

  const thinwire::Config spec = thinwire::Config::parse(o.compression);
  train::OptimizerConfig oc;
  oc.name = o.optimizer;
  oc.eps = o.adam_eps;
  oc.lr = o.lr > 0.0 ? o.lr : default_lr(o.optimizer);
  // DGC's Reducer returns the averaged velocity: plain SGD on top, no second momentum.
  oc.momentum = spec.dgc ? 0.0 : o.momentum;

  const train::Dataset data = train::load_idx(o.data, "train", o.limit, rank, size);
  const train::Dataset test = train::load_idx(o.data, "t10k", o.test_limit, rank, size);
  constexpr std::size_t kSide = 28;  // the model's input: 28 x 28 images
  for (const train::Dataset* d : {&data, &test})
    if (d->rows != kSide || d->cols != kSide)
      throw std::runtime_error("the images in '" + o.data + "' are " + std::to_string(d->rows) +
                               "x" + std::to_string(d->cols) + "; the model takes 28x28");
  // Every rank takes the same number of steps: the smallest shard decides.
  const std::size_t shard = data.total / static_cast<std::size_t>(size);
  const std::size_t steps_per_epoch = shard / o.batch;
  if (steps_per_epoch == 0)
    throw std::runtime_error("--batch " + std::to_string(o.batch) +
                             " is larger than a rank's shard of " + std::to_string(shard) +
                             " images");

  train::Mlp model({kSide * kSide, 512, 256, train::kClasses}, o.seed);
  std::vector<train::Tensor>& params = model.params();
  std::vector<thinwire::Layer> layers;
  for (const train::Tensor& t : params) layers.push_back({t.name, t.shape});
  thinwire::Communicator comm = thinwire::Communicator::from_mpi(MPI_COMM_WORLD);
  train::Optimizer opt(oc, params);

  // 1-bit Adam: dense gradients for the warm-up, then the compressed momentum.
  const bool onebit_adam = o.optimizer == "onebit_adam";
  const std::size_t total_steps = steps_per_epoch * static_cast<std::size_t>(o.epochs);
  const std::size_t adam_warmup =
      onebit_adam ? static_cast<std::size_t>(o.onebit_warmup * static_cast<double>(total_steps))
                  : 0;
  std::unique_ptr<thinwire::Reducer> dense, reducer;
  if (onebit_adam)
    dense = std::make_unique<thinwire::Reducer>(comm, layers, thinwire::Config::parse("none"));
  reducer = std::make_unique<thinwire::Reducer>(comm, layers, spec);

  if (root) {
    std::printf(
        "train_fashion_mnist: %d ranks, %zu images per rank, batch %zu per rank (%zu global), "
        "%zu steps per epoch\n",
        size, shard, o.batch, o.batch * static_cast<std::size_t>(size), steps_per_epoch);
    std::printf("compression '%s', optimizer %s, lr %g (%s)%s, seed %llu\n",
                reducer->config().to_string().c_str(), o.optimizer.c_str(), oc.lr,
                o.schedule.c_str(), spec.dgc ? " (dgc=on: no optimizer momentum)" : "",
                static_cast<unsigned long long>(o.seed));
    if (onebit_adam)
      std::printf("1-bit Adam: %zu dense warm-up steps of %zu\n", adam_warmup, total_steps);
    std::printf("%5s %9s %9s %9s %14s %8s %8s\n", "epoch", "loss", "train", "test", "sent/rank",
                "ratio", "seconds");
  }

  nlohmann::json epochs = nlohmann::json::array();
  std::vector<std::size_t> order(shard);
  std::vector<float> batch_x(o.batch * data.pixels);
  std::vector<std::uint8_t> batch_y(o.batch);
  std::size_t step = 0;
  double seconds = 0.0, accuracy = 0.0;
  std::string diverged;
  auto bytes = [&](bool dense_equivalent) {
    std::uint64_t b = 0;
    for (const auto* r : {dense.get(), reducer.get()})
      if (r) b += dense_equivalent ? r->stats().bytes_dense : r->stats().bytes_sent;
    return b;
  };
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    std::iota(order.begin(), order.end(), std::size_t{0});
    shuffle(order, mix(o.seed) ^ mix(static_cast<std::uint64_t>(rank) * 1000003 + epoch));
    double loss = 0.0;
    std::size_t correct = 0;
    for (std::size_t s = 0; s < steps_per_epoch; ++s, ++step) {
      for (std::size_t j = 0; j < o.batch; ++j) {
        const std::size_t i = order[s * o.batch + j];
        std::copy_n(data.images.data() + i * data.pixels, data.pixels,
                    batch_x.data() + j * data.pixels);
        batch_y[j] = data.labels[i];
      }
      if (o.schedule == "cosine")  // lr * (1 + cos(pi * step / steps)) / 2, to 0 at the end
        opt.set_lr(oc.lr * 0.5 *
                   (1.0 + std::cos(3.14159265358979323846 * static_cast<double>(step) /
                                   static_cast<double>(total_steps))));
      loss += model.train_step(batch_x.data(), batch_y.data(), o.batch, &correct);
      try {
        if (onebit_adam && step >= adam_warmup) {
          if (step == adam_warmup) opt.freeze_variance();
          opt.local_momentum(params);
          reducer->allreduce(grad_views(params));
          opt.momentum_step(params);
        } else {
          (onebit_adam ? *dense : *reducer).allreduce(grad_views(params));
          opt.step(params);
        }
      } catch (const thinwire::Error& e) {
        // A non-finite gradient (nan=error) is raised on every rank alike: the run diverged.
        // Stop training, report what the model does now, and say so.
        diverged = e.what();
        break;
      }
    }
    const double train_seconds = MPI_Wtime() - start;
    accuracy = test_accuracy(model, test);
    double sums[2] = {loss, static_cast<double>(correct)};
    MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    double t = train_seconds;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    seconds += t;
    const double mean_loss = sums[0] / static_cast<double>(steps_per_epoch * size);
    const double train_acc = sums[1] / static_cast<double>(steps_per_epoch * o.batch * size);
    const std::uint64_t sent = bytes(false);
    const double ratio = sent ? static_cast<double>(bytes(true)) / static_cast<double>(sent) : 1.0;
    if (root) {
      std::printf("%5d %9.4f %8.2f%% %8.2f%% %11.2f MB %7.1fx %8.1f\n", epoch, mean_loss,
                  100 * train_acc, 100 * accuracy, sent / 1e6, ratio, t);
      std::fflush(stdout);
    }
    epochs.push_back({{"epoch", epoch},
                      {"loss", mean_loss},
                      {"train_accuracy", train_acc},
                      {"test_accuracy", accuracy},
                      {"bytes_sent_per_rank", sent},
                      {"compression_ratio", ratio},
                      {"seconds", t}});
    if (!diverged.empty()) {
      if (root) std::printf("diverged in epoch %d: %s\n", epoch, diverged.c_str());
      break;
    }
  }

  if (root && !o.json.empty()) {
    const thinwire::Stats st = reducer->stats();
    nlohmann::json layer_specs = nlohmann::json::array();
    for (const thinwire::LayerStats& l : st.layers)
      layer_specs.push_back(
          {{"name", l.name},
           {"spec", l.spec},
           {"route", l.route},
           {"bytes_sent", l.bytes_sent},
           {"sq_error_over_sq_norm", l.sq_norm > 0 ? l.sq_error / l.sq_norm : 0.0},
           {"compression_ratio", l.compression_ratio()}});
    const std::uint64_t sent = bytes(false);
    nlohmann::json j = {{"compression", o.compression},
                        {"optimizer", o.optimizer},
                        {"ranks", size},
                        {"epochs", o.epochs},
                        {"batch_per_rank", o.batch},
                        {"lr", oc.lr},
                        {"schedule", o.schedule},
                        {"momentum", oc.momentum},
                        {"seed", o.seed},
                        {"images", shard * static_cast<std::size_t>(size)},
                        {"steps", step},
                        {"test_accuracy", accuracy},
                        {"bytes_sent_per_rank", sent},
                        {"bytes_dense_per_rank", bytes(true)},
                        {"compression_ratio", sent ? static_cast<double>(bytes(true)) / sent : 1.0},
                        {"seconds", seconds},
                        {"per_epoch", epochs},
                        {"layers", layer_specs}};
    if (onebit_adam) j["adam_warmup_steps"] = adam_warmup;
    j["diverged"] = !diverged.empty();
    if (!diverged.empty()) j["error"] = diverged;
    std::ofstream out(o.json);
    out << j.dump(2) << "\n";
    if (!out.good()) {
      std::fprintf(stderr, "train_fashion_mnist: cannot write '%s'\n", o.json.c_str());
      return 2;
    }
  }
  if (!diverged.empty()) return 3;
  if (o.min_test_accuracy >= 0.0 && accuracy < o.min_test_accuracy) {
    if (root)
      std::fprintf(stderr, "test accuracy %.4f is below the required %.4f\n", accuracy,
                   o.min_test_accuracy);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  Options o;
  po::options_description desc("train_fashion_mnist options");
  auto add = desc.add_options();
  add("help,h", "this help");
  add("compression", po::value(&o.compression)->default_value(o.compression),
      "thinwire spec for the gradients (1-bit Adam: for the momentum)");
  add("epochs", po::value(&o.epochs)->default_value(o.epochs), "passes over the training set");
  add("batch", po::value(&o.batch)->default_value(o.batch), "images per rank per step");
  add("lr", po::value(&o.lr)->default_value(o.lr),
      "learning rate (0: 0.05 for sgd, 0.001 for adam and onebit_adam)");
  add("schedule", po::value(&o.schedule)->default_value(o.schedule),
      "learning rate schedule: cosine (decays to 0 over the run) or constant");
  add("optimizer", po::value(&o.optimizer)->default_value(o.optimizer), "sgd | adam | onebit_adam");
  add("momentum", po::value(&o.momentum)->default_value(o.momentum),
      "SGD momentum (not applied with dgc=on: the Reducer applies it)");
  add("adam-eps", po::value(&o.adam_eps)->default_value(o.adam_eps), "Adam's epsilon");
  add("onebit-warmup", po::value(&o.onebit_warmup)->default_value(o.onebit_warmup),
      "1-bit Adam: fraction of the steps run as dense Adam before the variance is frozen");
  add("seed", po::value(&o.seed)->default_value(o.seed), "model initialisation and shuffling");
  add("limit", po::value(&o.limit)->default_value(o.limit),
      "use the first N training images (0: all)");
  add("test-limit", po::value(&o.test_limit)->default_value(o.test_limit),
      "use the first N test images (0: all)");
  add("data", po::value(&o.data)->default_value(o.data), "directory of the gzipped IDX files");
  add("json", po::value(&o.json), "write the results here (rank 0)");
  add("min-test-accuracy", po::value(&o.min_test_accuracy)->default_value(o.min_test_accuracy),
      "exit with status 1 when the final test accuracy is lower (for tests)");
  int rc = 0;
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      int r = 0;
      MPI_Comm_rank(MPI_COMM_WORLD, &r);
      if (r == 0) std::cout << desc << "\n";
    } else {
      if (o.optimizer != "sgd" && o.optimizer != "adam" && o.optimizer != "onebit_adam")
        throw std::runtime_error("--optimizer must be sgd, adam or onebit_adam");
      if (o.schedule != "cosine" && o.schedule != "constant")
        throw std::runtime_error("--schedule must be cosine or constant");
      if (o.epochs < 1 || o.batch < 1)
        throw std::runtime_error("--epochs and --batch must be >= 1");
      // Written as !(x >= 0) so that NaN fails too.
      if (!(o.lr >= 0.0) || !std::isfinite(o.lr))
        throw std::runtime_error("--lr must be a finite number >= 0 (0: the optimizer's default)");
      if (!(o.momentum >= 0.0 && o.momentum < 1.0))
        throw std::runtime_error("--momentum must be in [0, 1)");
      if (!(o.onebit_warmup >= 0.0 && o.onebit_warmup <= 1.0))
        throw std::runtime_error("--onebit-warmup must be a fraction in [0, 1]");
      rc = run(o);
    }
  } catch (const std::exception& e) {
    std::cerr << "train_fashion_mnist: " << e.what() << "\n";
    rc = 2;
  }
  MPI_Finalize();
  return rc;
}
