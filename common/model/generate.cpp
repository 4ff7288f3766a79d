#include "model/generate.hpp"

#include <cmath>

#include "core/rng.hpp"
#include "core/timer.hpp"
#include "kernels/ops.hpp"

namespace sgpt {

std::vector<int32_t> generate(GPT& model, std::vector<int32_t> tokens, int n_new, double temperature, uint64_t seed) {
  const GPTConfig& cfg = model.config();
  SGPT_CHECK(!tokens.empty(), "generate: the prompt must hold at least one token");
  for (int32_t t : tokens)
    SGPT_CHECK(t >= 0 && t < cfg.vocab_size, "generate: prompt token ", t, " is outside the vocabulary [0, ",
               cfg.vocab_size, ")");
  const uint64_t key = rng::stream_key(seed, "generate");
  for (int i = 0; i < n_new; ++i) {
    // The window is padded to a multiple of 64 positions: attention is causal, so the padding
    // never changes the logits at T-1, and the model's caches are reallocated only every 64 tokens.
    const int64_t T = std::min<int64_t>(tokens.size(), cfg.max_seq_len);
    const int64_t padded = std::min<int64_t>((T + 63) / 64 * 64, cfg.max_seq_len);
    std::vector<int32_t> window(tokens.end() - T, tokens.end());
    window.resize(padded, 0);
    model.forward(Tensor::from(window, {1, padded}));
    // Only the last position's logits matter.
    std::vector<double> logits = model.logits().view((T - 1) * cfg.padded_vocab_size, {cfg.vocab_size}).to_vector();
    int32_t next = 0;
    if (temperature <= 0) {
      for (int v = 1; v < cfg.vocab_size; ++v)
        if (logits[v] > logits[next]) next = v;
    } else {
      double maxv = logits[0];
      for (double l : logits) maxv = std::max(maxv, l);
      double sum = 0;
      for (double& l : logits) sum += (l = std::exp((l - maxv) / temperature));
      double u = rng::uniform(key, tokens.size()) * sum, acc = 0;
      next = cfg.vocab_size - 1;
      for (int v = 0; v < cfg.vocab_size; ++v)
        if ((acc += logits[v]) >= u) {
          next = v;
          break;
        }
    }
    tokens.push_back(next);
  }
  return tokens;
}

double measure_matmul_flops(Device device, int n, int reps, DType dtype) {
  Tensor a = Tensor::empty({n, n}, dtype, device), w = Tensor::empty({n, n}, dtype, device),
         out = Tensor::empty({n, n}, dtype, device);
  Tensor host = Tensor::empty({n, n});
  for (int64_t i = 0; i < host.numel(); ++i) host.data<float>()[i] = float((i * 7919) % 13) / 13.0f - 0.5f;
  a.copy_from(host.cast(dtype));
  w.copy_from(host.cast(dtype));
  double best = 0;
  Tensor no_bias;
  for (int r = 0; r < reps + 1; ++r) {
    Timer t;
    matmul_forward(out, a, w, no_bias);
    device_synchronize(device);
    double s = t.seconds();
    if (r > 0) best = std::max(best, 2.0 * n * n * double(n) / s);  // the first run warms up
  }
  return best;
}

double measure_peak_flops(Device device, double seconds, DType dtype) {
  const std::vector<int> sizes = device == Device::CPU ? std::vector<int>{512, 1024} : std::vector<int>{4096};
  double best = 0;
  Timer total;
  // At least three rounds, then more while the time budget lasts: each round is short (a few ms
  // per GEMM on a CPU), so a busy moment spoils one sample, not the result.
  for (int round = 0; round < 3 || total.seconds() < seconds; ++round) {
    for (int n : sizes) best = std::max(best, measure_matmul_flops(device, n, 3, dtype));
    if (round > 200) break;
  }
  return best;
}

}  // namespace sgpt
