#include "data/loader.hpp"

#include <vector>

#include "core/check.hpp"

namespace sgpt {

DataLoader::DataLoader(const TokenFile& tokens, int64_t global_batch, int64_t seq_len, int rank, int world)
    : tokens_(&tokens), B_(global_batch), T_(seq_len), rank_(rank), world_(world) {
  SGPT_CHECK(B_ > 0 && T_ > 0, "data loader over '", tokens.path(), "': batch ", B_, " and sequence length ", T_,
             " must be positive");
  SGPT_CHECK(world_ > 0 && rank_ >= 0 && rank_ < world_, "data loader: rank ", rank_, " is outside [0, world=",
             world_, ")");
  SGPT_CHECK(B_ % world_ == 0, "data loader: global batch ", B_, " is not divisible by the world size ", world_,
             "; choose a batch that is a multiple of the number of data-parallel ranks");
  SGPT_CHECK(tokens.size() >= B_ * T_ + 1, "data loader: '", tokens.path(), "' holds ", tokens.size(),
             " tokens, too few for one batch of ", B_, " x ", T_, " (needs ", B_ * T_ + 1,
             " tokens: the batch and the target after it)");
}

int64_t DataLoader::batches_per_epoch() const { return (tokens_->size() - 1) / (B_ * T_); }

void DataLoader::set_state(const LoaderState& s) {
  SGPT_CHECK(s.epoch >= 0 && s.position >= 0 && s.position + B_ * T_ + 1 <= tokens_->size(),
             "data loader over '", tokens_->path(), "': state (position ", s.position, ", epoch ", s.epoch,
             ") cannot start a batch of ", B_, " x ", T_, " in ", tokens_->size(), " tokens");
  state_ = s;
}

void DataLoader::next(Tensor& inputs, Tensor& targets) {
  const int64_t b = local_batch();
  const Shape shape{b, T_};
  for (Tensor* t : {&inputs, &targets}) {
    if (!t->defined()) {
      *t = Tensor::empty(shape, DType::I32, Device::CPU);
    } else {
      SGPT_CHECK(t->dtype() == DType::I32 && t->shape() == shape, "data loader: batch tensors must be i32 ",
                 shape_str(shape), ", got ", dtype_name(t->dtype()), shape_str(t->shape()));
    }
  }
  // Read this rank's rows and one extra token: targets are the inputs shifted by one.
  const int64_t first = state_.position + rank_ * b * T_;
  std::vector<int32_t> window(static_cast<std::size_t>(b * T_ + 1));
  tokens_->read(first, b * T_ + 1, window.data());

  auto fill = [&](Tensor& t, int64_t shift) {
    if (t.device() == Device::CPU) {
      std::copy(window.begin() + shift, window.begin() + shift + b * T_, t.data<int32_t>());
    } else {
      Tensor host = Tensor::from(std::vector<int32_t>(window.begin() + shift, window.begin() + shift + b * T_), shape);
      t.copy_from(host);
    }
  };
  fill(inputs, 0);
  fill(targets, 1);

  state_.position += B_ * T_;
  if (state_.position + B_ * T_ + 1 > tokens_->size()) {
    state_.position = 0;
    state_.epoch += 1;
  }
}

}  // namespace sgpt
