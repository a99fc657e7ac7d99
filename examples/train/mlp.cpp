#include "mlp.hpp"

#include <cmath>

namespace train {

namespace {

std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t x = (s += 0x9e3779b97f4a7c15ull);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

using MapM = Eigen::Map<Matrix>;
using MapV = Eigen::Map<Eigen::RowVectorXf>;

}  // namespace

Mlp::Mlp(const std::vector<int>& widths, std::uint64_t seed) : widths_(widths) {
  std::uint64_t s = seed;
  for (std::size_t l = 0; l + 1 < widths.size(); ++l) {
    const int in = widths[l], out = widths[l + 1];
    const std::string name = "fc" + std::to_string(l + 1);
    Tensor w{name + ".weight", {out, in}, {}, {}};
    const float bound = std::sqrt(6.0f / static_cast<float>(in));
    w.value.resize(static_cast<std::size_t>(out) * in);
    for (float& v : w.value)
      v = bound * (static_cast<float>(splitmix64(s) >> 40) * 0x1.0p-23f - 1.0f);
    w.grad.assign(w.value.size(), 0.0f);
    Tensor b{name + ".bias", {out}, std::vector<float>(out, 0.0f), std::vector<float>(out, 0.0f)};
    params_.push_back(std::move(w));
    params_.push_back(std::move(b));
  }
  act_.resize(widths.size());
}

void Mlp::forward(const float* x, std::size_t batch) {
  const auto b = static_cast<Eigen::Index>(batch);
  act_[0] = Eigen::Map<const Matrix>(x, b, widths_[0]);
  for (std::size_t l = 0; l + 1 < widths_.size(); ++l) {
    const Tensor& w = params_[2 * l];
    const Tensor& bias = params_[2 * l + 1];
    const Eigen::Map<const Matrix> W(w.value.data(), widths_[l + 1], widths_[l]);
    const Eigen::Map<const Eigen::RowVectorXf> B(bias.value.data(), widths_[l + 1]);
    act_[l + 1].noalias() = act_[l] * W.transpose();
    act_[l + 1].rowwise() += B;
    if (l + 2 < widths_.size()) act_[l + 1] = act_[l + 1].cwiseMax(0.0f);  // ReLU
  }
}

double Mlp::train_step(const float* x, const std::uint8_t* labels, std::size_t batch,
                       std::size_t* correct) {
  forward(x, batch);
  const auto b = static_cast<Eigen::Index>(batch);
  Matrix delta = act_.back();  // logits -> d loss / d logits
  double loss = 0.0;
  for (Eigen::Index i = 0; i < b; ++i) {
    auto row = delta.row(i);
    Eigen::Index arg = 0;
    const float max = row.maxCoeff(&arg);
    if (arg == labels[i]) ++*correct;
    // log-softmax form: log(exp(z_label - max)) underflows to -inf once a logit gap
    // passes ~88, which reported an infinite loss for a run that was still learning.
    const float label_logit = row(labels[i]) - max;
    row = (row.array() - max).exp();
    const float sum = row.sum();
    loss += std::log(sum) - label_logit;
    row /= sum;
    row(labels[i]) -= 1.0f;
  }
  delta /= static_cast<float>(batch);
  for (std::size_t l = widths_.size() - 1; l-- > 0;) {
    Tensor& w = params_[2 * l];
    Tensor& bias = params_[2 * l + 1];
    MapM(w.grad.data(), widths_[l + 1], widths_[l]).noalias() = delta.transpose() * act_[l];
    MapV(bias.grad.data(), widths_[l + 1]) = delta.colwise().sum();
    if (l == 0) break;
    const Eigen::Map<const Matrix> W(w.value.data(), widths_[l + 1], widths_[l]);
    Matrix back = delta * W;
    delta = (act_[l].array() > 0.0f).select(back, 0.0f);  // ReLU'
  }
  return loss / static_cast<double>(batch);
}

std::size_t Mlp::evaluate(const float* x, const std::uint8_t* labels, std::size_t batch) {
  forward(x, batch);
  std::size_t correct = 0;
  for (Eigen::Index i = 0; i < static_cast<Eigen::Index>(batch); ++i) {
    Eigen::Index arg = 0;
    act_.back().row(i).maxCoeff(&arg);
    correct += arg == labels[i];
  }
  return correct;
}

}  // namespace train
