// A 784-512-256-10 multilayer perceptron (ReLU, softmax cross-entropy) on Eigen, with
// parameters and gradients as one f32 buffer per layer in thinwire's layer order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <Eigen/Dense>

namespace train {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct Tensor {
  std::string name;
  std::vector<std::int64_t> shape;  // weights {out, in} (row-major: PowerSGD's rows = out)
  std::vector<float> value, grad;
};

class Mlp {
 public:
  // Kaiming-uniform weights from `seed` (the same on every rank), zero biases.
  Mlp(const std::vector<int>& widths, std::uint64_t seed);

  std::vector<Tensor>& params() { return params_; }

  // Forward and backward on a batch (rows of x, row-major, `batch` x widths[0]): fills every
  // grad with the gradient of the mean cross-entropy, returns the mean loss and adds the
  // number of correct predictions to *correct.
  double train_step(const float* x, const std::uint8_t* labels, std::size_t batch,
                    std::size_t* correct);
  // Predictions only: the number of correct ones.
  std::size_t evaluate(const float* x, const std::uint8_t* labels, std::size_t batch);

 private:
  void forward(const float* x, std::size_t batch);
  std::vector<int> widths_;
  std::vector<Tensor> params_;  // w0, b0, w1, b1, ...
  std::vector<Matrix> act_;     // activations: act_[0] = input, act_.back() = logits
};

}  // namespace train
