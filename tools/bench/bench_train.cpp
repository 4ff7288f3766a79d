// scalegpt-bench-train: time full training steps (forward, backward, clip, AdamW) of a GPT on
// one device with random tokens; report the median step, tokens/s, achieved FLOP/s and MFU, the
// memory tracker's peak per category next to the formula for it, and where the time goes.
//
//   scalegpt-bench-train --model d12 --batch 4 --seq-len 64 --vocab 50257        # llm.c's CPU setting
//   scalegpt-bench-train --device cuda --model d12 --batch 16 --seq-len 1024 --vocab 50257
//   ... --device cuda --attention unfused --matmul tf32     # the earlier CUDA path, to compare
//   ... --device cuda --dtype bf16      # bf16 storage: lesson 05's MixedPrecisionTrainer (f32 master)
//   ... --recompute gelu                # keep fch only, recompute gelu(fch) in the backward (L*4BTC less)

#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "core/main.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "kernels/ops.hpp"
#include "kernels/profile.hpp"
#include "mixed_precision.hpp"
#include "model/generate.hpp"
#include "optim/optim.hpp"
#if SGPT_WITH_CUDA
#include "kernels/cuda/cuda_context.hpp"
#endif

extern "C" void openblas_set_num_threads(int);

using namespace sgpt;

int main(int argc, char** argv) {
  std::string model_name = "d12", device_name_arg = "cpu", attention = "fused", matmul = "tf32", dtype = "f32",
              recompute = "none";
  int64_t B = 4, T = 64, steps = 5, warmup = 1, vocab = 50257;
  int threads = 0;
  double peak_tflops = 0;
  bool profile = false;
  CLI::App app{"scalegpt-bench-train: time training steps of a GPT"};
  app.add_option("--model", model_name, "model preset")->capture_default_str();
  app.add_option("-b,--batch", B, "sequences per step")->capture_default_str();
  app.add_option("-t,--seq-len", T, "tokens per sequence")->capture_default_str();
  app.add_option("--vocab", vocab, "vocabulary size (padded to a multiple of 64)")->capture_default_str();
  app.add_option("-n,--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--device", device_name_arg, "cpu or cuda")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (default: all)");
  app.add_option("--peak-tflops", peak_tflops,
                 "peak for MFU (default: measured SGEMM on the CPU; 989 = H100/H200 SXM bf16 dense on CUDA)");
  app.add_flag("--profile", profile, "also run profiled steps and print the per-op breakdown");
  app.add_option("--attention", attention, "CUDA attention: fused (no [B,NH,T,T] matrix) or unfused")
      ->check(CLI::IsMember({"fused", "unfused"}))
      ->capture_default_str();
  app.add_option("--matmul", matmul, "CUDA products (linear layers, fused attention): tf32, bf16 (bf16 operands, f32 accumulation) or fp32")
      ->check(CLI::IsMember({"tf32", "bf16", "fp32"}))
      ->capture_default_str();
  app.add_option("--dtype", dtype,
                 "f32, or bf16: bf16 parameters, gradients and activations with an f32 master and f32 AdamW "
                 "moments (lesson 05's MixedPrecisionTrainer, no loss scaling)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app.add_option("--recompute", recompute,
                 "none, or gelu: the blocks keep only the MLP pre-activation and the backward recomputes GELU "
                 "(GPT::set_recompute_gelu; the same numbers, L*4*B*T*C fewer activations)")
      ->check(CLI::IsMember({"none", "gelu"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return run_guarded("scalegpt-bench-train", [&] {
    if (threads > 0) {
      omp_set_num_threads(threads);
      openblas_set_num_threads(threads);
    }
    const Device dev = device_name_arg == "cuda" ? Device::CUDA : Device::CPU;
    if (dev == Device::CUDA) {
#if SGPT_WITH_CUDA
      cuda::set_fused_attention(attention == "fused");
      cuda::set_matmul_precision(matmul == "bf16"   ? cuda::MatmulPrecision::BF16
                                 : matmul == "fp32" ? cuda::MatmulPrecision::FP32
                                                    : cuda::MatmulPrecision::TF32);
#endif
      std::printf("CUDA: %s attention, %s products\n", attention.c_str(),
                  dtype == "bf16" ? "bf16 (bf16 storage)" : matmul.c_str());
    }
    GPTConfig cfg = gpt_config(model_name);
    cfg.set_vocab(static_cast<int>(vocab));
    SGPT_CHECK(T <= cfg.max_seq_len, "--seq-len ", T, " is longer than the context ", cfg.max_seq_len);
    const double peak = peak_tflops > 0 ? peak_tflops * 1e12
                        : dev == Device::CPU ? measure_matmul_flops(dev, 2048, 5)
                                             : 989e12;
    std::printf("model %s: %lld parameters (V=%d padded to %d), B=%lld T=%lld on %s, %d threads\n", cfg.name.c_str(),
                cfg.num_parameters(), cfg.vocab_size, cfg.padded_vocab_size, (long long)B, (long long)T,
                device_name(dev), omp_get_max_threads());
    std::printf("peak for MFU: %.1f GFLOP/s (%s)\n", peak / 1e9,
                peak_tflops > 0 ? "given" : dev == Device::CPU ? "measured: best of 5 SGEMMs 2048^3" : "bf16 dense, H100/H200 SXM");

    MemoryTracker::instance().reset_peak();
    const bool bf16 = dtype == "bf16";
    std::printf("dtype %s%s\n", dtype.c_str(), bf16 ? " (f32 master and AdamW moments: lesson 05's recipe)" : "");
    // f32: the model and AdamW directly; bf16: lesson 05's trainer (its model is the bf16 working copy).
    std::unique_ptr<GPT> f32_model;
    std::unique_ptr<AdamW> f32_opt;
    std::unique_ptr<lesson05::MixedPrecisionTrainer> mixed;
    if (bf16) {
      lesson05::Recipe recipe;
      recipe.precision = lesson05::Precision::BF16;
      mixed = std::make_unique<lesson05::MixedPrecisionTrainer>(cfg, 1337, recipe, AdamWConfig{}, dev);
    } else {
      f32_model = std::make_unique<GPT>(cfg, 1337, dev);
      f32_opt = std::make_unique<AdamW>(f32_model->layout(), AdamWConfig{}, DType::F32, dev);
    }
    GPT& model = bf16 ? mixed->model() : *f32_model;
    const bool gelu_recomputed = recompute == "gelu";
    model.set_recompute_gelu(gelu_recomputed);
    std::printf("recompute: %s\n", gelu_recomputed ? "gelu (fch kept, gelu(fch) recomputed in the backward)" : "none");
    std::vector<int32_t> xs(B * T), ys(B * T);
    const uint64_t key = rng::stream_key(1, "bench tokens");
    for (int64_t i = 0; i < B * T; ++i) {
      xs[i] = static_cast<int32_t>(rng::uniform(key, 2 * i) * cfg.vocab_size) % cfg.vocab_size;
      ys[i] = static_cast<int32_t>(rng::uniform(key, 2 * i + 1) * cfg.vocab_size) % cfg.vocab_size;
    }
    Tensor x = Tensor::from(xs, {B, T}).to(dev), y = Tensor::from(ys, {B, T}).to(dev);
    auto step = [&](int64_t s) {
      const double lr = lr_at(s, 10, 1000, 6e-4, 6e-5);
      double loss = 0;
      if (bf16) {
        loss = mixed->step(x, y, B, lr, 1.0).loss;
      } else {
        model.zero_grad();
        loss = model.forward(x, y);
        model.backward();
        clip_grad_norm(model.grads(), 1.0);
        f32_opt->step(model.params(), model.grads(), lr);
      }
      device_synchronize(dev);
      return loss;
    };
    std::vector<double> times;
    for (int64_t s = 0; s < warmup + steps; ++s) {
      Timer t;
      double loss = step(s);
      double dt = t.seconds();
      if (s >= warmup) times.push_back(dt);
      std::printf("step %lld: loss %.4f, %.1f ms%s\n", (long long)s, loss, dt * 1e3, s < warmup ? " (warmup)" : "");
    }
    const double med = median(times), flops = training_flops_per_token(cfg, T) * double(B * T);
    std::printf("\nmedian of %lld steps: %.1f ms/step, %.1f tokens/s, %.1f GFLOP/s, MFU %.1f%%\n", (long long)steps,
                med * 1e3, double(B * T) / med, flops / med / 1e9, 100 * flops / med / peak);

    // Memory: measured peak per category next to what the model allocates by construction.
    const double N = double(model.layout().numel()), C = cfg.n_embd, L = cfg.n_layer, Vp = cfg.padded_vocab_size;
    const double BT = double(B * T);
    const bool fused = attention_fused_available(dev, cfg.n_embd / cfg.n_head);
    const double w = bf16 ? 2.0 : 4.0;  // bytes of a parameter, gradient or activation
    // per-block caches (with --recompute gelu, gelu(fch) lives in the backward scratch's dfch)
    const double act = L * double(block_cache_numel(cfg, B, T, fused, gelu_recomputed))
                       + BT * C                                   // embedding output
                       + (BT * C + 2 * BT + BT * Vp + BT + BT * C)  // head: lnf, stats, logits, losses, dlnf
                       + 15 * BT * C                              // one block's backward scratch
                       + 2 * BT * C                               // residual-gradient ping-pong
                       + 2 * BT                                   // tokens, targets (i32)
                       // CUDA attention-backward scratch: datt [B,NH,T,T], or D [B,NH,T] when fused
                       + (dev == Device::CUDA ? double(cfg.n_head) * BT * (fused ? 1.0 : double(T)) : 0.0);
    // Always 4 bytes: lse [B,NH,T] per layer and the backward's D (fused), tokens and targets.
    const double f32_act = (fused ? (L + 1) * double(cfg.n_head) * BT : 0.0) + 2 * BT;
    const double act_bytes = (act - f32_act) * w + f32_act * 4;
    auto& mt = MemoryTracker::instance();
    std::printf("\nmemory (MiB)     measured peak   formula   formula terms (elements x %d bytes%s)\n", int(w),
                bf16 ? "; master, m, v, lse, D, tokens x 4" : "");
    auto row = [&](MemCategory c, double formula_bytes, const char* terms) {
      std::printf("  %-14s %12.2f %9.2f   %s\n", category_name(c), mt.stats(c, dev).peak / 1048576.0,
                  formula_bytes / 1048576.0, terms);
    };
    row(MemCategory::Parameters, N * w, "N");
    row(MemCategory::Gradients, N * w, "N");
    row(MemCategory::OptimizerState, (bf16 ? 3 : 2) * N * 4, bf16 ? "3N (f32 master, AdamW m, v)" : "2N (AdamW m, v)");
    const std::string per_block = gelu_recomputed ? "L(12BTC + 4BT + " : "L(16BTC + 4BT + ";
    const std::string terms =
        per_block + (fused ? "NH*B*T) + BTC + (2BTC + 3BT + BT*Vp) + 17BTC + 2BT + NH*B*T (fused: lse, D)"
                     : dev == Device::CUDA
                         ? "NH*B*T^2) + BTC + (2BTC + 3BT + BT*Vp) + 17BTC + 2BT + NH*B*T^2 (CUDA scratch)"
                         : "NH*B*T^2) + BTC + (2BTC + 3BT + BT*Vp) + 17BTC + 2BT");
    row(MemCategory::Activations, act_bytes, terms.c_str());
    // Other: the CUDA context's scratch (reduction partials, the encoder backward's f32 dwte, casts).
    std::printf("  %-14s %12.2f %9s   %s\n", category_name(MemCategory::Other), mt.stats(MemCategory::Other, dev).peak / 1048576.0,
                "-", "scratch of the ops (no formula)");
    std::printf("  %-14s %12.2f   (%.2f GiB, %.2f GB)\n", "total", mt.total(dev).peak / 1048576.0,
                mt.total(dev).peak / 1073741824.0, mt.total(dev).peak / 1e9);

    if (profile) {
      set_op_profiling(true);
      reset_op_profile();
      for (int64_t s = 0; s < 2; ++s) step(warmup + steps + s);
      set_op_profiling(false);
      std::printf("\nwhere the time goes (2 profiled steps; each op synchronised, so the sum exceeds a normal step):\n%s",
                  op_profile_report().c_str());
    }
    return 0;
  });
}
