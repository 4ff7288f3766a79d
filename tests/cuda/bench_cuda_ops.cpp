// Per-op timing of the CUDA backend at GPT-2 shapes (default: 124M, B=8, T=1024), with CUDA
// events, and an estimate of one training step as the sum of the ops it runs.
//
//   bench_cuda_ops [--B 8] [--T 1024] [--reps 20] [--model] [--detail] [--bf16] [--storage bf16]
//
// --model also times whole forward+backward steps of the GPT-2 124M model (common/model);
// --detail adds rows (not counted in the step) that break the matmul backward down and sweep
// the attention chunk size (cuda::set_attention_chunk_heads); --bf16 runs the products with bf16
// operands (MatmulPrecision::BF16); --storage bf16 stores activations, gradients and weights in
// bf16 (the optimizer's parameter and moments, and lse, stay f32: lesson 05's recipe).

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda_ops.hpp"
#if __has_include("model/gpt.hpp")
#include "model/gpt.hpp"
#define SGPT_BENCH_HAVE_MODEL 1
#endif

using namespace sgpt;

namespace {

DType g_storage = DType::F32;  // --storage

Tensor randn_gpu(const Shape& s, double scale, uint64_t seed, DType dt = g_storage) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  uint64_t key = rng::stream_key(seed, "bench");
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(scale * rng::normal(key, i));
  return t.cast(dt).to(Device::CUDA);
}

Tensor randint_gpu(const Shape& s, int hi, uint64_t seed) {
  Tensor t = Tensor::empty(s, DType::I32);
  uint64_t key = rng::stream_key(seed, "bench-int");
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = static_cast<int32_t>(rng::uniform(key, i) * hi) % hi;
  return t.to(Device::CUDA);
}

Tensor zeros_gpu(const Shape& s, DType dt = g_storage) { return Tensor::zeros(s, dt, Device::CUDA); }

struct Row {
  std::string op, shape;
  double ms;
  int per_step;
  bool cublas;
  double flop;  // per call, 0 if not a matmul
};

double time_ms(const std::function<void()>& f, int reps) {
  f();
  f();
  cuda::device_synchronize();
  cuda::Event a, b;
  a.record();
  for (int i = 0; i < reps; ++i) f();
  b.record();
  b.synchronize();
  return b.elapsed_ms(a) / reps;
}

}  // namespace

int main(int argc, char** argv) {
  int B = 8, T = 1024, reps = 20;
  bool model = false, detail = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--B") && i + 1 < argc) B = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--T") && i + 1 < argc) T = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--model")) model = true;
    else if (!std::strcmp(argv[i], "--detail")) detail = true;
    else if (!std::strcmp(argv[i], "--bf16")) cuda::set_matmul_precision(cuda::MatmulPrecision::BF16);
    else if (!std::strcmp(argv[i], "--storage") && i + 1 < argc) g_storage = !std::strcmp(argv[++i], "bf16") ? DType::BF16 : DType::F32;
    else {
      std::fprintf(stderr, "usage: %s [--B 8] [--T 1024] [--reps 20] [--model] [--detail] [--bf16] [--storage bf16]\n", argv[0]);
      return 2;
    }
  }
  if (!cuda_available()) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  const int C = 768, NH = 12, V = 50257, Vp = 50304, L = 12, maxT = 1024;
  const int64_t N = (int64_t)B * T;
  const int64_t P = 124475904;  // GPT-2 124M parameters with Vp = 50304
  const cudaDeviceProp& prop = cuda::device_properties();
  const char* products = g_storage == DType::BF16                                    ? "bf16 storage and products"
                         : cuda::matmul_precision() == cuda::MatmulPrecision::BF16 ? "f32 storage, bf16 products"
                         : cuda::matmul_precision() == cuda::MatmulPrecision::FP32 ? "FP32 products"
                                                                                   : "TF32 products";
  std::printf("device: %s (%d SMs), B=%d T=%d C=%d NH=%d V=%d Vp=%d L=%d, %s, %d reps\n", prop.name,
              prop.multiProcessorCount, B, T, C, NH, V, Vp, L, products, reps);

  Tensor tok = randint_gpu({B, T}, V, 1), tgt = randint_gpu({B, T}, V, 2);
  Tensor x = randn_gpu({B, T, C}, 1.0, 3), x2 = randn_gpu({B, T, C}, 1.0, 4), dx = zeros_gpu({B, T, C});
  Tensor wte = randn_gpu({Vp, C}, 0.02, 5), wpe = randn_gpu({maxT, C}, 0.02, 6);
  Tensor dwte = zeros_gpu({Vp, C}), dwpe = zeros_gpu({maxT, C});
  Tensor lnw = randn_gpu({C}, 1.0, 7), lnb = randn_gpu({C}, 1.0, 8), dlnw = zeros_gpu({C}), dlnb = zeros_gpu({C});
  Tensor mean = zeros_gpu({B, T}), rstd = zeros_gpu({B, T});
  Tensor qkv = randn_gpu({B, T, 3 * C}, 1.0, 9), dqkv = zeros_gpu({B, T, 3 * C});
  Tensor att = zeros_gpu({B, NH, T, T});
  Tensor h4 = randn_gpu({B, T, 4 * C}, 1.0, 10), h4b = zeros_gpu({B, T, 4 * C}), dh4 = zeros_gpu({B, T, 4 * C});
  Tensor logits = randn_gpu({B, T, Vp}, 1.0, 11), losses = zeros_gpu({B, T});
  std::vector<Row> rows;
  auto add = [&](const std::string& op, const std::string& shape, int per_step, bool cublas, double flop,
                 const std::function<void()>& f) {
    rows.push_back({op, shape, time_ms(f, reps), per_step, cublas, flop});
  };
  auto mm = [&](const std::string& name, int Cin, int OC, bool bias) {
    Tensor in = Cin == C ? x : h4;
    Tensor w = randn_gpu({OC, Cin}, 0.02, 20 + OC), b = bias ? randn_gpu({OC}, 0.02, 21) : Tensor();
    Tensor dw = zeros_gpu({OC, Cin}), db = bias ? zeros_gpu({OC}) : Tensor();
    Tensor out = zeros_gpu({B, T, OC}), dout = randn_gpu({B, T, OC}, 1.0, 22);
    Tensor din = zeros_gpu({B, T, Cin});
    std::string shape = std::to_string(N) + "x" + std::to_string(Cin) + "->" + std::to_string(OC);
    int per = name == "lm_head" ? 1 : L;
    add("matmul_forward " + name, shape, per, true, 2.0 * N * Cin * OC, [&] { cuda::matmul_forward(out, in, w, b); });
    add("matmul_backward " + name, shape, per, true, 4.0 * N * Cin * OC,
        [&] { cuda::matmul_backward(din, dw, db, dout, in, w); });
    if (detail) {  // breakdown, not counted in the step
      Tensor none;
      add("  (dweight only) " + name, shape, 0, true, 2.0 * N * Cin * OC,
          [&] { cuda::matmul_backward(none, dw, none, dout, in, w); });
      add("  (dweight+dinp) " + name, shape, 0, true, 4.0 * N * Cin * OC,
          [&] { cuda::matmul_backward(din, dw, none, dout, in, w); });
    }
  };

  add("encoder_forward", "BxT -> BxTxC", 1, false, 0, [&] { cuda::encoder_forward(x2, tok, wte, wpe); });
  add("encoder_backward", "BxTxC", 1, false, 0, [&] { cuda::encoder_backward(dwte, dwpe, dx, tok); });
  add("layernorm_forward", "BxTxC", 2 * L + 1, false, 0,
      [&] { cuda::layernorm_forward(x2, mean, rstd, x, lnw, lnb); });
  add("layernorm_backward", "BxTxC", 2 * L + 1, false, 0,
      [&] { cuda::layernorm_backward(dx, dlnw, dlnb, x2, x, lnw, mean, rstd); });
  mm("qkv", C, 3 * C, true);
  mm("attproj", C, C, true);
  mm("fc", C, 4 * C, true);
  mm("fcproj", 4 * C, C, true);
  mm("lm_head", C, Vp, false);
  // Two T x T x HS products, counted in full (unmasked) so the TFLOP/s column compares variants.
  double att_flop = 4.0 * B * NH * (double)T * T * (C / NH);
  // The model runs the fused attention; the unfused rows (batched GEMMs + softmax) compare.
  Tensor lse = zeros_gpu({B, NH, T}, DType::F32);
  add("attention_fused_forward", "BxNHxT", L, false, att_flop, [&] { cuda::attention_fused_forward(x2, lse, qkv, NH); });
  add("attention_fused_backward", "BxNHxT", L, false, 2 * att_flop,
      [&] { cuda::attention_fused_backward(dqkv, x, qkv, x2, lse, NH); });
  if (g_storage == DType::F32) {  // (bf16 storage: the unfused path runs on f32 copies; not timed)
    add("  (unfused) attention_forward", "BxNHxTxT", 0, true, att_flop, [&] { cuda::attention_forward(x2, att, qkv, NH); });
    add("  (unfused) attention_backward", "BxNHxTxT", 0, true, 2 * att_flop,
        [&] { cuda::attention_backward(dqkv, x, qkv, att, NH); });
  }
  if (detail && g_storage == DType::F32) {
    for (auto [g, qb] : {std::pair{0, 1}, std::pair{0, 2}, std::pair{0, 4}, std::pair{0, 8}, std::pair{12, 1},
                         std::pair{12, 4}, std::pair{4, 1}}) {
      cuda::set_attention_chunk_heads(g);
      cuda::set_attention_query_blocks(qb);
      std::string tag = "  (" + (g ? "chunk " + std::to_string(g) : std::string("batched")) + ", qblk " +
                        std::to_string(qb) + ") attention_";
      add(tag + "fwd", "BxNHxTxT", 0, true, att_flop, [&] { cuda::attention_forward(x2, att, qkv, NH); });
      add(tag + "bwd", "BxNHxTxT", 0, true, 2 * att_flop, [&] { cuda::attention_backward(dqkv, x, qkv, att, NH); });
    }
    cuda::set_attention_query_blocks(0);
    cuda::set_attention_chunk_heads(0);
  }
  add("gelu_forward", "BxTx4C", L, false, 0, [&] { cuda::gelu_forward(h4b, h4); });
  add("gelu_backward", "BxTx4C", L, false, 0, [&] { cuda::gelu_backward(dh4, h4, h4b); });
  add("residual_forward", "BxTxC", 2 * L, false, 0, [&] { cuda::residual_forward(x2, x, dx); });
  add("residual_backward", "BxTxC", 2 * L, false, 0, [&] { cuda::residual_backward(dx, x2, x); });
  Tensor probs = zeros_gpu({B, T, Vp});
  add("softmax_ce_forward", "BxTxVp", 1, false, 0,
      [&] { cuda::softmax_crossentropy_forward(losses, probs, logits, tgt, V); });
  add("softmax_ce_backward", "BxTxVp", 1, false, 0,
      [&] { cuda::softmax_crossentropy_backward(probs, probs, tgt, 1.0 / N, V); });
  logits = Tensor();
  probs = Tensor();
  {
    Tensor p = randn_gpu({P}, 0.02, 30, DType::F32), g = randn_gpu({P}, 0.001, 31), m = zeros_gpu({P}, DType::F32),
           v = zeros_gpu({P}, DType::F32);
    AdamWConfig cfg;
    int64_t t = 0;
    add("sum_of_squares (grads)", "124M", 1, false, 0, [&] { (void)cuda::sum_of_squares(g); });
    add("adamw_update (all params)", "124M", 1, false, 0, [&] { cuda::adamw_update(p, g, m, v, cfg, ++t, true); });
    add("zero grads (cudaMemset)", "124M", 1, false, 0, [&] { g.zero_(); });
  }

  double total = 0, total_blas = 0;
  for (const Row& r : rows) {
    total += r.ms * r.per_step;
    if (r.cublas) total_blas += r.ms * r.per_step;
  }
  std::printf("\n%-36s %-18s %10s %6s %10s %7s %9s\n", "op", "shape", "ms/call", "calls", "ms/step", "%step",
              "TFLOP/s");
  for (const Row& r : rows) {
    double st = r.ms * r.per_step;
    std::printf("%-36s %-18s %10.4f %6d %10.3f %6.1f%% ", r.op.c_str(), r.shape.c_str(), r.ms, r.per_step, st,
                100.0 * st / total);
    if (r.flop > 0) std::printf("%9.1f\n", r.flop / (r.ms * 1e-3) / 1e12);
    else std::printf("%9s\n", "-");
  }
  std::printf("\nestimated step (sum of ops): %.2f ms -> %.0f tokens/s; cuBLAS ops (matmuls) %.1f%% of it\n",
              total, N / (total * 1e-3), 100.0 * total_blas / total);

#ifdef SGPT_BENCH_HAVE_MODEL
  if (model) {
    att = Tensor();
    GPTConfig cfg = gpt_config("d12");
    GPT g(cfg, 1, Device::CUDA, g_storage);
    double loss = g.forward(tok, tgt);
    g.zero_grad();
    g.backward();
    cuda::device_synchronize();
    cuda::Event a, b;
    const int steps = 5;
    a.record();
    for (int i = 0; i < steps; ++i) {
      loss = g.forward(tok, tgt);
      g.zero_grad();
      g.backward();
    }
    b.record();
    b.synchronize();
    double ms = b.elapsed_ms(a) / steps;
    std::printf("\nGPT-2 124M forward+zero_grad+backward (no optimizer): %.2f ms/step -> %.0f tokens/s (loss %.4f)\n",
                ms, N / (ms * 1e-3), loss);
    std::printf("%s", MemoryTracker::instance().report(Device::CUDA).c_str());
  }
#else
  (void)model;
#endif
  return 0;
}
