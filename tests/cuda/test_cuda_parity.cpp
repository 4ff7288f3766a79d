// CPU-vs-GPU parity of every op in common/kernels/ops.hpp, forward and backward.
//
// Each test draws fresh random f32 inputs (counter-based rng::normal), runs the op on the GPU
// (f32, through the public ops, i.e. the dispatcher) and on the CPU in f64 from the same f32
// inputs (the reference), and checks the relative-norm error ||gpu - ref|| / ||ref|| against a
// tolerance stated per op:
//   TF32 matmuls / attention products: inputs rounded to a 10-bit mantissa -> ~1e-3;
//   the same in full FP32 (MatmulPrecision::FP32) -> ~1e-5;
//   element-wise and reductions in f32 -> ~1e-6 (tanhf in GELU: 5e-6; exp/log via fast
//   intrinsics -> 1e-5); sum_of_squares accumulates in double -> 1e-12.
// Backward outputs that accumulate (+=) start from random values, so `=` vs `+=` is tested.
// On a machine without a GPU every test is SKIPPED with the reason.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "core/rng.hpp"
#include "core/tensor.hpp"
#include "kernels/ops.hpp"
#if SGPT_WITH_CUDA
#include "kernels/cuda/cuda_context.hpp"
#endif
#if __has_include("model/gpt.hpp")
#include "model/gpt.hpp"
#define SGPT_TEST_HAVE_MODEL 1
#endif

using namespace sgpt;

namespace {

struct Case {
  int B, T, C, NH, V, Vp;
  std::string name() const {
    return "B" + std::to_string(B) + " T" + std::to_string(T) + " C" + std::to_string(C) + " NH" +
           std::to_string(NH) + " V" + std::to_string(V) + "/" + std::to_string(Vp);
  }
};

// Odd shapes on purpose: T not a multiple of 32, C = 48 (HS = 12), Vp > V, Vp % 4 != 0.
const std::vector<Case> kCases = {
    {2, 37, 48, 4, 97, 99},
    {2, 128, 768, 12, 1000, 1024},
    {1, 255, 64, 2, 50257, 50304},
};

uint64_t g_seed = 1234;

Tensor randn(const Shape& s, double scale = 1.0) {
  uint64_t key = rng::stream_key(g_seed++, "parity");
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(scale * rng::normal(key, i));
  return t;
}

Tensor randint(const Shape& s, int hi) {
  uint64_t key = rng::stream_key(g_seed++, "tokens");
  Tensor t = Tensor::empty(s, DType::I32);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<int32_t>(rng::uniform(key, i) * hi) % hi;
  return t;
}

Tensor f64(const Tensor& t) { return t.cast(DType::F64); }
Tensor gpu(const Tensor& t) { return t.to(Device::CUDA); }

double rel_err(const Tensor& got, const Tensor& ref) {
  std::vector<double> a = got.to_vector(), b = ref.to_vector();
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  if (!std::isfinite(num)) return INFINITY;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

void expect_close(const std::string& what, const Case& c, const Tensor& got, const Tensor& ref, double tol) {
  double e = rel_err(got, ref);
  std::printf("[parity] %-34s %-32s rel.err %.2e  (tol %.0e)\n", what.c_str(), c.name().c_str(), e, tol);
  EXPECT_LE(e, tol) << what << " at " << c.name();
}

class CudaParity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device: this test needs a GPU (build with the 'cuda' preset "
                                           "and run on a machine with an NVIDIA GPU)";
#if SGPT_WITH_CUDA
    cuda::set_matmul_precision(cuda::MatmulPrecision::TF32);
#endif
  }
  void set_fp32(bool on) {
#if SGPT_WITH_CUDA
    cuda::set_matmul_precision(on ? cuda::MatmulPrecision::FP32 : cuda::MatmulPrecision::TF32);
#else
    (void)on;
#endif
  }
};

}  // namespace

TEST_F(CudaParity, Encoder) {
  for (const Case& c : kCases) {
    const int maxT = c.T + 3;
    Tensor tok = randint({c.B, c.T}, c.V);
    Tensor wte = randn({c.Vp, c.C}), wpe = randn({maxT, c.C});
    Tensor out_r = Tensor::empty({c.B, c.T, c.C}, DType::F64);
    Tensor wte64 = f64(wte), wpe64 = f64(wpe);
    encoder_forward(out_r, tok, wte64, wpe64);
    Tensor out_g = Tensor::empty({c.B, c.T, c.C}, DType::F32, Device::CUDA);
    Tensor tok_g = gpu(tok);
    encoder_forward(out_g, tok_g, gpu(wte), gpu(wpe));
    expect_close("encoder_forward out", c, out_g, out_r, 1e-6);

    Tensor dout = randn({c.B, c.T, c.C});
    Tensor dwte = randn({c.Vp, c.C}), dwpe = randn({maxT, c.C});
    Tensor dwte_r = f64(dwte), dwpe_r = f64(dwpe);
    encoder_backward(dwte_r, dwpe_r, f64(dout), tok);
    Tensor dwte_g = gpu(dwte), dwpe_g = gpu(dwpe);
    encoder_backward(dwte_g, dwpe_g, gpu(dout), tok_g);
    expect_close("encoder_backward dwte", c, dwte_g, dwte_r, 1e-6);
    expect_close("encoder_backward dwpe", c, dwpe_g, dwpe_r, 1e-6);
  }
}

TEST_F(CudaParity, LayerNorm) {
  for (const Case& c : kCases) {
    Shape s{c.B, c.T, c.C};
    Tensor x = randn(s, 2.0), w = randn({c.C}), b = randn({c.C});
    // A large mean tests the two-pass variance.
    float* px = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) px[i] += 3.0f;
    Tensor out_r = Tensor::empty(s, DType::F64), mean_r = Tensor::empty({c.B, c.T}, DType::F64),
           rstd_r = Tensor::empty({c.B, c.T}, DType::F64);
    Tensor x64 = f64(x), w64 = f64(w), b64 = f64(b);
    layernorm_forward(out_r, mean_r, rstd_r, x64, w64, b64);
    Tensor out_g = Tensor::empty(s, DType::F32, Device::CUDA), mean_g = Tensor::empty({c.B, c.T}, DType::F32, Device::CUDA),
           rstd_g = Tensor::empty({c.B, c.T}, DType::F32, Device::CUDA);
    Tensor x_g = gpu(x), w_g = gpu(w), b_g = gpu(b);
    layernorm_forward(out_g, mean_g, rstd_g, x_g, w_g, b_g);
    expect_close("layernorm_forward out", c, out_g, out_r, 1e-5);
    expect_close("layernorm_forward mean", c, mean_g, mean_r, 1e-6);
    expect_close("layernorm_forward rstd", c, rstd_g, rstd_r, 1e-5);

    Tensor dout = randn(s), dinp = randn(s), dw = randn({c.C}), db = randn({c.C});
    Tensor dinp_r = f64(dinp), dw_r = f64(dw), db_r = f64(db);
    layernorm_backward(dinp_r, dw_r, db_r, f64(dout), x64, w64, mean_r, rstd_r);
    Tensor dinp_g = gpu(dinp), dw_g = gpu(dw), db_g = gpu(db);
    layernorm_backward(dinp_g, dw_g, db_g, gpu(dout), x_g, w_g, mean_g, rstd_g);
    expect_close("layernorm_backward dinp", c, dinp_g, dinp_r, 1e-5);
    expect_close("layernorm_backward dweight", c, dw_g, dw_r, 1e-5);
    expect_close("layernorm_backward dbias", c, db_g, db_r, 1e-5);
  }
}

namespace {
void matmul_case(const Case& c, int64_t N, int C, int OC, bool with_bias, double tol, const std::string& tag) {
  Tensor x = randn({N, C}), w = randn({OC, C}, 0.05), b = with_bias ? randn({OC}) : Tensor();
  Tensor out_r = Tensor::empty({N, OC}, DType::F64);
  Tensor x64 = f64(x), w64 = f64(w), b64 = with_bias ? f64(b) : Tensor();
  matmul_forward(out_r, x64, w64, b64);
  Tensor out_g = Tensor::empty({N, OC}, DType::F32, Device::CUDA);
  Tensor x_g = gpu(x), w_g = gpu(w), b_g = with_bias ? gpu(b) : Tensor();
  matmul_forward(out_g, x_g, w_g, b_g);
  std::string nm = " " + std::to_string(N) + "x" + std::to_string(C) + "->" + std::to_string(OC) + tag;
  expect_close("matmul_forward out" + nm, c, out_g, out_r, tol);

  Tensor dout = randn({N, OC}), dinp = randn({N, C}), dw = randn({OC, C}), db = randn({OC});
  Tensor dinp_r = f64(dinp), dw_r = f64(dw), db_r = with_bias ? f64(db) : Tensor();
  matmul_backward(dinp_r, dw_r, db_r, f64(dout), x64, w64);
  Tensor dinp_g = gpu(dinp), dw_g = gpu(dw), db_g = with_bias ? gpu(db) : Tensor();
  matmul_backward(dinp_g, dw_g, db_g, gpu(dout), x_g, w_g);
  expect_close("matmul_backward dinp" + nm, c, dinp_g, dinp_r, tol);
  expect_close("matmul_backward dweight" + nm, c, dw_g, dw_r, tol);
  if (with_bias) expect_close("matmul_backward dbias" + nm, c, db_g, db_r, 1e-5);
}
}  // namespace

TEST_F(CudaParity, MatmulTF32) {
  for (const Case& c : kCases) {
    int64_t N = (int64_t)c.B * c.T;
    matmul_case(c, N, c.C, 3 * c.C, true, 2e-3, "");
    matmul_case(c, N, 4 * c.C, c.C, true, 2e-3, "");
    matmul_case(c, N, c.C, c.Vp, false, 2e-3, " nobias");
  }
}

TEST_F(CudaParity, MatmulFP32) {
  set_fp32(true);
  for (const Case& c : kCases) {
    int64_t N = (int64_t)c.B * c.T;
    matmul_case(c, N, c.C, 3 * c.C, true, 2e-5, " fp32");
    matmul_case(c, N, c.C, c.Vp, false, 2e-5, " fp32 nobias");
  }
  set_fp32(false);
}

TEST_F(CudaParity, MatmulUnalignedViews) {
  // Views at odd element offsets: cuBLASLt must not assume 16-byte alignment.
  const Case& c = kCases[0];
  int64_t N = (int64_t)c.B * c.T;
  int C = c.C, OC = 3 * c.C;
  Tensor big = randn({1 + (int64_t)OC * C + OC + 1});
  Tensor w = big.view(1, {OC, C}), b = big.view(1 + (int64_t)OC * C, {OC});
  Tensor x = randn({N, C});
  Tensor out_r = Tensor::empty({N, OC}, DType::F64);
  Tensor w64 = f64(w), b64 = f64(b);
  matmul_forward(out_r, f64(x), w64, b64);
  Tensor big_g = gpu(big);
  Tensor w_g = big_g.view(1, {OC, C}), b_g = big_g.view(1 + (int64_t)OC * C, {OC});
  Tensor out_big = Tensor::empty({N * OC + 1}, DType::F32, Device::CUDA);
  Tensor out_g = out_big.view(1, {N, OC});
  matmul_forward(out_g, gpu(x), w_g, b_g);
  expect_close("matmul_forward out (offset views)", c, out_g, out_r, 2e-3);
}

namespace {
void attention_case(const Case& c, double tol_fwd, double tol_bwd, const std::string& tag) {
  Shape sq{c.B, c.T, 3 * c.C}, so{c.B, c.T, c.C}, sa{c.B, c.NH, c.T, c.T};
  Tensor qkv = randn(sq);
  Tensor out_r = Tensor::empty(so, DType::F64), att_r = Tensor::empty(sa, DType::F64);
  Tensor qkv64 = f64(qkv);
  attention_forward(out_r, att_r, qkv64, c.NH);
  Tensor out_g = Tensor::empty(so, DType::F32, Device::CUDA), att_g = Tensor::empty(sa, DType::F32, Device::CUDA);
  Tensor qkv_g = gpu(qkv);
  attention_forward(out_g, att_g, qkv_g, c.NH);
  expect_close("attention_forward out" + tag, c, out_g, out_r, tol_fwd);
  expect_close("attention_forward att" + tag, c, att_g, att_r, tol_fwd);

  Tensor dout = randn(so), dqkv = randn(sq);
  Tensor dqkv_r = f64(dqkv);
  attention_backward(dqkv_r, f64(dout), qkv64, att_r, c.NH);
  Tensor dqkv_g = gpu(dqkv);
  attention_backward(dqkv_g, gpu(dout), qkv_g, att_g, c.NH);
  expect_close("attention_backward dqkv" + tag, c, dqkv_g, dqkv_r, tol_bwd);
  // The gradient alone (without the random starting values) is the harder comparison.
  Tensor d0_r = Tensor::zeros(sq, DType::F64), d0_g = Tensor::zeros(sq, DType::F32, Device::CUDA);
  attention_backward(d0_r, f64(dout), qkv64, att_r, c.NH);
  attention_backward(d0_g, gpu(dout), qkv_g, att_g, c.NH);
  expect_close("attention_backward dqkv (from 0)" + tag, c, d0_g, d0_r, tol_bwd);
}
}  // namespace

TEST_F(CudaParity, AttentionTF32) {
  for (const Case& c : kCases) attention_case(c, 3e-3, 5e-3, "");
}

#if SGPT_WITH_CUDA
// The chunking over heads and the causal query blocks must not change the result.
TEST_F(CudaParity, AttentionChunksAndQueryBlocks) {
  set_fp32(true);
  for (const Case& c : kCases) {
    for (auto [heads, blocks] : {std::pair{0, 1}, std::pair{0, 7}, std::pair{1, 1}, std::pair{3, 3}, std::pair{5, 2}}) {
      cuda::set_attention_chunk_heads(heads);
      cuda::set_attention_query_blocks(blocks);
      attention_case(c, 2e-5, 5e-5, " fp32 heads" + std::to_string(heads) + " qblocks" + std::to_string(blocks));
    }
  }
  cuda::set_attention_chunk_heads(0);
  cuda::set_attention_query_blocks(0);
  set_fp32(false);
}
#endif

TEST_F(CudaParity, AttentionFP32) {
  set_fp32(true);
  for (const Case& c : kCases) attention_case(c, 2e-5, 5e-5, " fp32");
  set_fp32(false);
}

#if SGPT_WITH_CUDA
namespace {
// A tensor of NaNs on the GPU: an output element the kernel never writes makes rel_err infinite.
Tensor gpu_nan(const Shape& s) {
  return Tensor::from(std::vector<float>(static_cast<std::size_t>(shape_numel(s)), NAN), s).to(Device::CUDA);
}

// Part `which` (0 = q, 1 = k, 2 = v) of a [B,T,3C] tensor, as f64 [B,T,C] on the CPU.
Tensor qkv_part(const Tensor& t, int which) {
  const int64_t B = t.size(0), T = t.size(1), C = t.size(2) / 3;
  std::vector<double> all = t.to_vector(), part(static_cast<std::size_t>(B * T * C));
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t c = 0; c < C; ++c) part[r * C + c] = all[r * 3 * C + which * C + c];
  return Tensor::from(part, {B, T, C});
}

// lse[b,h,t] = log sum_{s<=t} exp(q_t.k_s / sqrt(HS)), in double from the f32 inputs.
Tensor lse_reference(const Tensor& qkv, int NH) {
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, HS = C / NH;
  std::vector<double> x = qkv.to_vector(), out(static_cast<std::size_t>(B * NH * T)), s(static_cast<std::size_t>(T));
  const double scale = 1.0 / std::sqrt(double(HS));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < NH; ++h)
      for (int64_t t = 0; t < T; ++t) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          double d = 0;
          for (int64_t i = 0; i < HS; ++i) d += x[(b * T + t) * 3 * C + h * HS + i] * x[(b * T + j) * 3 * C + C + h * HS + i];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (int64_t j = 0; j <= t; ++j) sum += std::exp(s[j] - mx);
        out[(b * NH + h) * T + t] = mx + std::log(sum);
      }
  return Tensor::from(out, {B, NH, T});
}

// The fused attention (no [B,NH,T,T] matrix) against the unfused attention in f64 on the CPU:
// out, lse, and dq, dk, dv each; T below, at and above the 64-row tile and not a multiple of
// it; head sizes 12..128 (padded to 32, 64, 128 inside the kernel).
void attention_fused_cases(double tol_fwd, double tol_lse, double tol_bwd, const std::string& tag) {
  const std::vector<Case> cases = {
      {2, 37, 48, 4, 1, 1},   {2, 128, 768, 12, 1, 1}, {1, 255, 64, 2, 1, 1}, {2, 200, 256, 2, 1, 1},
      {1, 64, 192, 2, 1, 1},  {3, 1, 64, 4, 1, 1},     {1, 300, 80, 4, 1, 1}, {1, 65, 384, 6, 1, 1},
  };
  for (const Case& c : cases) {
    Shape sq{c.B, c.T, 3 * c.C}, so{c.B, c.T, c.C}, sl{c.B, c.NH, c.T};
    Tensor qkv = randn(sq);
    Tensor qkv64 = f64(qkv), qkv_g = gpu(qkv);
    Tensor out_r = Tensor::empty(so, DType::F64), att_r = Tensor::empty({c.B, c.NH, c.T, c.T}, DType::F64);
    attention_forward(out_r, att_r, qkv64, c.NH);
    Tensor out_g = gpu_nan(so), lse_g = gpu_nan(sl);
    attention_fused_forward(out_g, lse_g, qkv_g, c.NH);
    expect_close("attention_fused_forward out" + tag, c, out_g, out_r, tol_fwd);
    expect_close("attention_fused_forward lse" + tag, c, lse_g, lse_reference(qkv, c.NH), tol_lse);

    // Backward from a random dqkv (+= semantics), then from zero (the gradient alone).
    Tensor dout = randn(so), dqkv = randn(sq);
    Tensor dqkv_r = f64(dqkv), dqkv_g = gpu(dqkv);
    attention_backward(dqkv_r, f64(dout), qkv64, att_r, c.NH);
    Tensor dout_g = gpu(dout);
    attention_fused_backward(dqkv_g, dout_g, qkv_g, out_g, lse_g, c.NH);
    expect_close("attention_fused_backward dqkv" + tag, c, dqkv_g, dqkv_r, tol_bwd);
    Tensor d0_r = Tensor::zeros(sq, DType::F64), d0_g = Tensor::zeros(sq, DType::F32, Device::CUDA);
    attention_backward(d0_r, f64(dout), qkv64, att_r, c.NH);
    attention_fused_backward(d0_g, dout_g, qkv_g, out_g, lse_g, c.NH);
    const char* names[3] = {"attention_fused_backward dq", "attention_fused_backward dk", "attention_fused_backward dv"};
    if (c.T > 1) {
      for (int p = 0; p < 3; ++p) expect_close(names[p] + tag, c, qkv_part(d0_g, p), qkv_part(d0_r, p), tol_bwd);
    } else {
      // One position: p = 1 whatever the scores, so dq = dk = 0 exactly and only rounding is
      // left; their norm is held against dv's instead of against a zero reference.
      expect_close(names[2] + tag, c, qkv_part(d0_g, 2), qkv_part(d0_r, 2), tol_bwd);
      auto norm = [](const Tensor& t) {
        double s = 0;
        for (double x : t.to_vector()) s += x * x;
        return std::sqrt(s);
      };
      const double dv = norm(qkv_part(d0_g, 2));
      for (int p = 0; p < 2; ++p) EXPECT_LE(norm(qkv_part(d0_g, p)), tol_bwd * dv) << names[p] << tag << " at T = 1";
    }
    // No atomics: a second run gives the same bits.
    Tensor d1_g = Tensor::zeros(sq, DType::F32, Device::CUDA);
    attention_fused_backward(d1_g, dout_g, qkv_g, out_g, lse_g, c.NH);
    EXPECT_EQ(rel_err(d1_g, d0_g), 0.0) << "fused attention backward is not deterministic at " << c.name();
  }
}
}  // namespace

// TF32 operands (the default precision): tolerances as AttentionTF32.
TEST_F(CudaParity, AttentionFusedMatchesUnfused) { attention_fused_cases(3e-3, 1e-3, 5e-3, ""); }

// bf16 operands (MatmulPrecision::BF16): an 8-bit mantissa, ~4e-3 relative per rounding, on
// q, k, v, dout, P and dS -> 1e-2 on out, 2e-2 on the gradients (METHOD: 1e-3..1e-2 for bf16).
TEST_F(CudaParity, AttentionFusedBF16) {
  cuda::set_matmul_precision(cuda::MatmulPrecision::BF16);
  attention_fused_cases(1e-2, 1e-2, 2e-2, " bf16");
  set_fp32(false);
}

TEST_F(CudaParity, AttentionFusedRejectsBadHeadSize) {
  // HS = 130 > 128 and HS = 6 (not a multiple of 4) have no fused kernel: a clear error.
  for (auto [C, NH] : {std::pair{260, 2}, std::pair{24, 4}}) {
    Tensor qkv = Tensor::zeros({1, 8, 3 * C}, DType::F32, Device::CUDA), out = Tensor::zeros({1, 8, C}, DType::F32, Device::CUDA);
    Tensor lse = Tensor::zeros({1, NH, 8}, DType::F32, Device::CUDA);
    EXPECT_FALSE(attention_fused_available(Device::CUDA, C / NH));
    EXPECT_THROW(attention_fused_forward(out, lse, qkv, NH), Error);
  }
  EXPECT_TRUE(attention_fused_available(Device::CUDA, 64));
  EXPECT_FALSE(attention_fused_available(Device::CPU, 64));
}

TEST_F(CudaParity, MatmulBF16) {
  // bf16 operands (8-bit mantissa): relative error ~2^-9 per product term -> 1e-2 on the norm.
  cuda::set_matmul_precision(cuda::MatmulPrecision::BF16);
  for (const Case& c : kCases) {
    int64_t N = (int64_t)c.B * c.T;
    matmul_case(c, N, c.C, 3 * c.C, true, 1e-2, " bf16");
    matmul_case(c, N, 4 * c.C, c.C, true, 1e-2, " bf16");
    matmul_case(c, N, c.C, c.Vp, false, 1e-2, " bf16 nobias");
  }
  set_fp32(false);
}
#endif

TEST_F(CudaParity, Gelu) {
  for (const Case& c : kCases) {
    Shape s{c.B, c.T, 4 * c.C};
    Tensor x = randn(s, 2.0);
    Tensor out_r = Tensor::empty(s, DType::F64);
    Tensor x64 = f64(x);
    gelu_forward(out_r, x64);
    Tensor out_g = Tensor::empty(s, DType::F32, Device::CUDA), x_g = gpu(x);
    gelu_forward(out_g, x_g);
    expect_close("gelu_forward out", c, out_g, out_r, 5e-6);
    Tensor inplace = gpu(x);
    gelu_forward(inplace, inplace);
    expect_close("gelu_forward out (in place)", c, inplace, out_r, 5e-6);

    Tensor dout = randn(s), dinp = randn(s);
    Tensor dinp_r = f64(dinp);
    gelu_backward(dinp_r, x64, f64(dout));
    Tensor dinp_g = gpu(dinp);
    gelu_backward(dinp_g, x_g, gpu(dout));
    expect_close("gelu_backward dinp", c, dinp_g, dinp_r, 5e-6);
  }
}

TEST_F(CudaParity, Residual) {
  for (const Case& c : kCases) {
    Shape s{c.B, c.T, c.C};
    Tensor a = randn(s), b = randn(s);
    Tensor out_r = Tensor::empty(s, DType::F64);
    residual_forward(out_r, f64(a), f64(b));
    Tensor out_g = Tensor::empty(s, DType::F32, Device::CUDA);
    residual_forward(out_g, gpu(a), gpu(b));
    expect_close("residual_forward out", c, out_g, out_r, 1e-6);

    Tensor dout = randn(s);
    Tensor da_r = f64(a), db_r = f64(b);
    residual_backward(da_r, db_r, f64(dout));
    Tensor da_g = gpu(a), db_g = gpu(b);
    residual_backward(da_g, db_g, gpu(dout));
    expect_close("residual_backward da", c, da_g, da_r, 1e-6);
    expect_close("residual_backward db", c, db_g, db_r, 1e-6);
  }
}

TEST_F(CudaParity, SoftmaxCrossEntropy) {
  std::vector<Case> cases = kCases;
  cases.push_back({1, 3, 8, 1, 59999, 60000});  // a row too long to cache in shared memory
  for (const Case& c : cases) {
    Shape s{c.B, c.T, c.Vp};
    Tensor logits = randn(s, 3.0), tgt = randint({c.B, c.T}, c.V);
    Tensor losses_r = Tensor::empty({c.B, c.T}, DType::F64), probs_r = Tensor::empty(s, DType::F64);
    softmax_crossentropy_forward(losses_r, probs_r, f64(logits), tgt, c.V);
    Tensor tgt_g = gpu(tgt);
    Tensor losses_g = Tensor::empty({c.B, c.T}, DType::F32, Device::CUDA), probs_g = gpu(logits);
    softmax_crossentropy_forward(losses_g, probs_g, probs_g, tgt_g, c.V);  // in place, as the model does
    expect_close("softmax_ce_forward losses (in place)", c, losses_g, losses_r, 1e-5);
    expect_close("softmax_ce_forward probs (in place)", c, probs_g, probs_r, 1e-5);
    Tensor probs2_g = Tensor::empty(s, DType::F32, Device::CUDA), losses2_g = Tensor::empty({c.B, c.T}, DType::F32, Device::CUDA);
    softmax_crossentropy_forward(losses2_g, probs2_g, gpu(logits), tgt_g, c.V);
    expect_close("softmax_ce_forward probs", c, probs2_g, probs_r, 1e-5);

    const double dloss = 1.0 / (c.B * c.T);
    Tensor dlogits_r = Tensor::empty(s, DType::F64);
    softmax_crossentropy_backward(dlogits_r, probs_r, tgt, dloss, c.V);
    softmax_crossentropy_backward(probs_g, probs_g, tgt_g, dloss, c.V);  // in place
    expect_close("softmax_ce_backward dlogits (in place)", c, probs_g, dlogits_r, 1e-5);
  }
}

TEST_F(CudaParity, AxpyScaleSumOfSquares) {
  for (int64_t n : {int64_t(1), int64_t(1001), int64_t(1) << 20, (int64_t(1) << 22) + 3}) {
    Case c{0, 0, 0, 0, 0, 0};
    std::string nm = " n=" + std::to_string(n);
    Tensor x = randn({n}), y = randn({n});
    Tensor y_r = f64(y), y_g = gpu(y), x_g = gpu(x);
    axpy_(y_r, -0.37, f64(x));
    axpy_(y_g, -0.37, x_g);
    expect_close("axpy_" + nm, c, y_g, y_r, 1e-6);
    scale_(y_r, 1.7);
    scale_(y_g, 1.7);
    expect_close("scale_" + nm, c, y_g, y_r, 1e-6);
    double s_r = sum_of_squares(f64(x)), s_g = sum_of_squares(x_g);
    double e = std::abs(s_g - s_r) / s_r;
    std::printf("[parity] %-34s %-32s rel.err %.2e  (tol %.0e)\n", ("sum_of_squares" + nm).c_str(), "", e, 1e-12);
    EXPECT_LE(e, 1e-12);
    // Unaligned view (odd offset): the scalar path.
    if (n > 1) {
      Tensor xv = x_g.view(1, {n - 1});
      double sv = sum_of_squares(xv), sv_r = sum_of_squares(f64(x).view(1, {n - 1}));
      EXPECT_LE(std::abs(sv - sv_r) / sv_r, 1e-12);
    }
  }
}

TEST_F(CudaParity, AdamW) {
  // grad_scale (lesson 05's unscaling) multiplies the gradient first: with gradients 1024x larger
  // and grad_scale = 1/1024, a kernel that ignored it would leave m 1024x too large.
  for (int64_t n : {int64_t(7), int64_t(1) << 20}) {
    for (bool decay : {true, false}) {
      Case c{0, 0, 0, 0, 0, 0};
      const double gscale = decay ? 1.0 / 1024 : 1.0;
      std::string nm = std::string(" n=") + std::to_string(n) + (decay ? " decay gs=1/1024" : " nodecay");
      Tensor p = randn({n}), m = Tensor::zeros({n}), v = Tensor::zeros({n});
      Tensor p_r = f64(p), m_r = f64(m), v_r = f64(v), p_g = gpu(p), m_g = gpu(m), v_g = gpu(v);
      AdamWConfig cfg;
      cfg.lr = 1e-3;
      cfg.grad_scale = gscale;
      for (int t = 1; t <= 3; ++t) {
        Tensor g = randn({n}, 0.1 / gscale);
        adamw_update(p_r, f64(g), m_r, v_r, cfg, t, decay);
        adamw_update(p_g, gpu(g), m_g, v_g, cfg, t, decay);
      }
      expect_close("adamw_update param" + nm, c, p_g, p_r, 1e-6);
      expect_close("adamw_update m" + nm, c, m_g, m_r, 1e-6);
      expect_close("adamw_update v" + nm, c, v_g, v_r, 1e-6);
    }
  }
}

#if SGPT_WITH_CUDA
// The context's streams and events: an op on another stream gives the same result, and events time it.
TEST_F(CudaParity, ContextStreamsAndEvents) {
  const Case& c = kCases[1];
  Shape s{c.B, c.T, c.C};
  Tensor x = gpu(randn(s)), w = gpu(randn({c.C})), b = gpu(randn({c.C}));
  Tensor o1 = Tensor::empty(s, DType::F32, Device::CUDA), o2 = Tensor::empty(s, DType::F32, Device::CUDA);
  Tensor m = Tensor::empty({c.B, c.T}, DType::F32, Device::CUDA), r = Tensor::empty({c.B, c.T}, DType::F32, Device::CUDA);
  layernorm_forward(o1, m, r, x, w, b);
  EXPECT_EQ(cuda::current_stream(), cudaStreamLegacy);
  cuda::device_synchronize();  // the inputs were copied on the legacy stream
  cudaStream_t st = cuda::create_stream(true);
  {
    cuda::StreamGuard guard(st);
    EXPECT_EQ(cuda::current_stream(), st);
    cuda::Event start, stop;
    start.record();
    for (int i = 0; i < 10; ++i) layernorm_forward(o2, m, r, x, w, b);
    stop.record();
    stop.synchronize();
    EXPECT_GE(stop.elapsed_ms(start), 0.f);
    cuda::synchronize();  // o2 is read by a legacy-stream copy next
  }
  EXPECT_EQ(cuda::current_stream(), cudaStreamLegacy);
  cuda::destroy_stream(st);
  EXPECT_EQ(rel_err(o2, o1), 0.0);
}
#endif

#ifdef SGPT_TEST_HAVE_MODEL
// One training step of a small GPT on the GPU against the same step on the CPU (f64).
TEST_F(CudaParity, WholeModelOneStep) {
  GPTConfig cfg = gpt_config("d12");
  cfg.n_layer = 2;
  cfg.max_seq_len = 128;
  const int B = 2, T = 64;
  GPT cpu_model(cfg, 42, Device::CPU, DType::F64);
  GPT gpu_model(cfg, 42, Device::CUDA, DType::F32);
  Tensor tok = randint({B, T}, cfg.vocab_size), tgt = randint({B, T}, cfg.vocab_size);
  // Both start from the same parameters (the GPU's f32 init, widened), so only the step differs.
  Tensor p32 = gpu_model.params().to(Device::CPU);
  cpu_model.params().copy_from(p32.cast(DType::F64));
  double loss_c = cpu_model.forward(tok, tgt);
  double loss_g = gpu_model.forward(tok.to(Device::CUDA), tgt.to(Device::CUDA));
  cpu_model.zero_grad();
  gpu_model.zero_grad();
  cpu_model.backward();
  gpu_model.backward();
  double gn_c = std::sqrt(sum_of_squares(cpu_model.grads()));
  double gn_g = std::sqrt(sum_of_squares(gpu_model.grads()));
  Case c{B, T, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.padded_vocab_size};
  double le = std::abs(loss_g - loss_c) / std::abs(loss_c), ge = std::abs(gn_g - gn_c) / gn_c;
  std::printf("[parity] %-34s %-32s loss %.6f vs %.6f rel.err %.2e (tol 1e-4)\n", "model d12/L2 loss", c.name().c_str(),
              loss_g, loss_c, le);
  std::printf("[parity] %-34s %-32s norm %.6f vs %.6f rel.err %.2e (tol 2e-3)\n", "model d12/L2 grad norm",
              c.name().c_str(), gn_g, gn_c, ge);
  EXPECT_LE(le, 1e-4);
  EXPECT_LE(ge, 2e-3);
  expect_close("model d12/L2 all grads", c, gpu_model.grads(), cpu_model.grads(), 1e-2);
}

#if SGPT_WITH_CUDA
// A training step with the fused attention against the same step with the unfused one, and the
// memory the fused caches save: lse [B,NH,T] in place of att [B,NH,T,T].
TEST_F(CudaParity, WholeModelFusedAttention) {
  GPTConfig cfg = gpt_config("d12");
  cfg.n_layer = 2;
  cfg.max_seq_len = 256;
  const int B = 2, T = 130;
  Tensor tok = randint({B, T}, cfg.vocab_size), tgt = randint({B, T}, cfg.vocab_size);
  auto run = [&](bool fused, double* loss) {
    cuda::set_fused_attention(fused);
    GPT m(cfg, 7, Device::CUDA, DType::F32);
    *loss = m.forward(tok.to(Device::CUDA), tgt.to(Device::CUDA));
    m.zero_grad();
    m.backward();
    const BlockCache& bc = m.block_caches()[0];
    EXPECT_EQ(bc.att.defined(), !fused);
    EXPECT_EQ(bc.lse.defined(), fused);
    int64_t n = 0;
    for (const Tensor* t : {&bc.ln1, &bc.ln1_mean, &bc.ln1_rstd, &bc.qkv, &bc.att, &bc.atty, &bc.resid2, &bc.ln2,
                            &bc.ln2_mean, &bc.ln2_rstd, &bc.fch, &bc.fch_gelu, &bc.out, &bc.lse})
      n += t->defined() ? t->numel() : 0;
    EXPECT_EQ(n, block_cache_numel(cfg, B, T, fused));
    return m.grads().to(Device::CPU);
  };
  double loss_f = 0, loss_u = 0;
  Tensor g_f = run(true, &loss_f), g_u = run(false, &loss_u);
  cuda::set_fused_attention(true);
  Case c{B, T, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.padded_vocab_size};
  std::printf("[parity] %-34s %-32s loss %.6f vs %.6f\n", "model fused vs unfused attention", c.name().c_str(), loss_f,
              loss_u);
  EXPECT_LE(std::abs(loss_f - loss_u) / std::abs(loss_u), 1e-5);
  expect_close("model fused vs unfused all grads", c, g_f, g_u, 5e-3);
  EXPECT_EQ(block_cache_numel(cfg, B, T, false) - block_cache_numel(cfg, B, T, true),
            (int64_t)cfg.n_head * B * T * (T - 1));
}

// A training step with bf16 operands (linear layers and the fused attention) against the f64
// CPU step (the TF32 step's test above holds grads to 1e-2): bf16 rounding costs about one more
// decimal digit.
TEST_F(CudaParity, WholeModelBF16Matmuls) {
  GPTConfig cfg = gpt_config("d12");
  cfg.n_layer = 2;
  cfg.max_seq_len = 128;
  const int B = 2, T = 64;
  GPT cpu_model(cfg, 42, Device::CPU, DType::F64);
  GPT gpu_model(cfg, 42, Device::CUDA, DType::F32);
  Tensor tok = randint({B, T}, cfg.vocab_size), tgt = randint({B, T}, cfg.vocab_size);
  cpu_model.params().copy_from(gpu_model.params().to(Device::CPU).cast(DType::F64));
  cuda::set_matmul_precision(cuda::MatmulPrecision::BF16);
  double loss_c = cpu_model.forward(tok, tgt);
  double loss_g = gpu_model.forward(tok.to(Device::CUDA), tgt.to(Device::CUDA));
  cpu_model.zero_grad();
  gpu_model.zero_grad();
  cpu_model.backward();
  gpu_model.backward();
  set_fp32(false);
  Case c{B, T, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.padded_vocab_size};
  double le = std::abs(loss_g - loss_c) / std::abs(loss_c);
  std::printf("[parity] %-34s %-32s loss %.6f vs %.6f rel.err %.2e (tol 1e-3)\n", "model bf16 matmuls loss",
              c.name().c_str(), loss_g, loss_c, le);
  EXPECT_LE(le, 1e-3);
  expect_close("model bf16 matmuls all grads", c, gpu_model.grads(), cpu_model.grads(), 5e-2);
}
#endif
#endif

#if SGPT_WITH_CUDA
// ---- bf16 storage --------------------------------------------------------------------------------
//
// Every op with bf16 tensors on the GPU ("compute in f32, round on store") against the f64 CPU
// reference from the same bf16-rounded inputs (outputs that the op reads back, such as the
// LayerNorm statistics and the probabilities, are the GPU's own bf16 values, widened). Tolerances:
// a bf16 store rounds to 8 significant bits, a relative error of at most 2^-8 (3.9e-3: half an ulp
// at the bottom of a binade) per element and about 1.1e-3 in the relative norm of many elements;
// where one element dominates the norm (the target column of dlogits, ~1/(B*T)), the norm error
// reaches that bound (3.8e-3 measured on an H200). An op whose output is rounded once
// (element-wise, the matmuls from bf16 operands with f32 accumulation, the reductions) is held to
// 5e-3, two roundings to 1e-2; the fused attention rounds P and dS to bf16 inside as well (as
// AttentionFusedBF16: 1e-2, 2e-2); f32 outputs of bf16 inputs (an f32 accumulator += bf16, AdamW's
// f32 master) are f32 arithmetic on exact inputs: 1e-6; sums of squares in double: 1e-12.

namespace {
constexpr double kBf16Tol = 5e-3;

Tensor bf16_gpu(const Tensor& t) { return t.cast(DType::BF16).to(Device::CUDA); }     // rounded, on the GPU
Tensor bf16_ref(const Tensor& t) { return t.cast(DType::BF16).cast(DType::F64); }      // rounded, widened
Tensor gpu_as_f64(const Tensor& g) { return g.to(Device::CPU).cast(DType::F64); }       // a GPU result, widened
Tensor bf16_empty(const Shape& s) { return Tensor::empty(s, DType::BF16, Device::CUDA); }
}  // namespace

TEST_F(CudaParity, BF16EncoderLayerNormGeluResidual) {
  for (const Case& c : kCases) {
    const int maxT = c.T + 3;
    Shape s{c.B, c.T, c.C}, s4{c.B, c.T, 4 * c.C};
    Tensor tok = randint({c.B, c.T}, c.V), tok_g = gpu(tok);
    Tensor wte = randn({c.Vp, c.C}), wpe = randn({maxT, c.C});
    Tensor out_r = Tensor::empty(s, DType::F64), out_g = bf16_empty(s);
    encoder_forward(out_r, tok, bf16_ref(wte), bf16_ref(wpe));
    encoder_forward(out_g, tok_g, bf16_gpu(wte), bf16_gpu(wpe));
    expect_close("bf16 encoder_forward out", c, out_g, out_r, kBf16Tol);
    Tensor dout = randn(s), dwte = randn({c.Vp, c.C}), dwpe = randn({maxT, c.C});
    Tensor dwte_r = bf16_ref(dwte), dwpe_r = bf16_ref(dwpe), dwte_g = bf16_gpu(dwte), dwpe_g = bf16_gpu(dwpe);
    encoder_backward(dwte_r, dwpe_r, bf16_ref(dout), tok);
    encoder_backward(dwte_g, dwpe_g, bf16_gpu(dout), tok_g);
    expect_close("bf16 encoder_backward dwte", c, dwte_g, dwte_r, kBf16Tol);
    expect_close("bf16 encoder_backward dwpe", c, dwpe_g, dwpe_r, kBf16Tol);

    Tensor x = randn(s, 2.0), w = randn({c.C}), b = randn({c.C});
    float* px = x.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) px[i] += 3.0f;
    Tensor ln_r = Tensor::empty(s, DType::F64), mean_r = Tensor::empty({c.B, c.T}, DType::F64),
           rstd_r = Tensor::empty({c.B, c.T}, DType::F64);
    Tensor x64 = bf16_ref(x), w64 = bf16_ref(w), b64 = bf16_ref(b);
    layernorm_forward(ln_r, mean_r, rstd_r, x64, w64, b64);
    Tensor ln_g = bf16_empty(s), mean_g = bf16_empty({c.B, c.T}), rstd_g = bf16_empty({c.B, c.T});
    Tensor x_g = bf16_gpu(x), w_g = bf16_gpu(w), b_g = bf16_gpu(b);
    layernorm_forward(ln_g, mean_g, rstd_g, x_g, w_g, b_g);
    expect_close("bf16 layernorm_forward out", c, ln_g, ln_r, kBf16Tol);
    expect_close("bf16 layernorm_forward mean", c, mean_g, mean_r, kBf16Tol);
    expect_close("bf16 layernorm_forward rstd", c, rstd_g, rstd_r, kBf16Tol);
    Tensor dln = randn(s), dinp = randn(s), dw = randn({c.C}), db = randn({c.C});
    Tensor dinp_r = bf16_ref(dinp), dw_r = bf16_ref(dw), db_r = bf16_ref(db);
    layernorm_backward(dinp_r, dw_r, db_r, bf16_ref(dln), x64, w64, gpu_as_f64(mean_g), gpu_as_f64(rstd_g));
    Tensor dinp_g = bf16_gpu(dinp), dw_g = bf16_gpu(dw), db_g = bf16_gpu(db);
    layernorm_backward(dinp_g, dw_g, db_g, bf16_gpu(dln), x_g, w_g, mean_g, rstd_g);
    expect_close("bf16 layernorm_backward dinp", c, dinp_g, dinp_r, kBf16Tol);
    expect_close("bf16 layernorm_backward dweight", c, dw_g, dw_r, kBf16Tol);
    expect_close("bf16 layernorm_backward dbias", c, db_g, db_r, kBf16Tol);

    Tensor h = randn(s4, 2.0), h64 = bf16_ref(h), h_g = bf16_gpu(h);
    Tensor gl_r = Tensor::empty(s4, DType::F64), gl_g = bf16_empty(s4);
    gelu_forward(gl_r, h64);
    gelu_forward(gl_g, h_g);
    expect_close("bf16 gelu_forward out", c, gl_g, gl_r, kBf16Tol);
    Tensor dh = randn(s4), dgl = randn(s4);
    Tensor dh_r = bf16_ref(dh), dh_g = bf16_gpu(dh);
    gelu_backward(dh_r, h64, bf16_ref(dgl));
    gelu_backward(dh_g, h_g, bf16_gpu(dgl));
    expect_close("bf16 gelu_backward dinp", c, dh_g, dh_r, kBf16Tol);

    Tensor a = randn(s), a_r = bf16_ref(a), a_g = bf16_gpu(a), r_r = Tensor::empty(s, DType::F64), r_g = bf16_empty(s);
    residual_forward(r_r, a_r, x64);
    residual_forward(r_g, a_g, x_g);
    expect_close("bf16 residual_forward out", c, r_g, r_r, kBf16Tol);
    residual_backward(a_r, dinp_r, bf16_ref(dout));
    residual_backward(a_g, dinp_g, bf16_gpu(dout));
    expect_close("bf16 residual_backward da", c, a_g, a_r, kBf16Tol);
  }
}

TEST_F(CudaParity, BF16Matmul) {
  for (const Case& c : kCases) {
    const int64_t N = (int64_t)c.B * c.T;
    for (auto [C, OC, bias] : {std::tuple{c.C, 3 * c.C, true}, std::tuple{4 * c.C, c.C, true},
                                std::tuple{c.C, c.Vp, false}}) {
      std::string nm = " " + std::to_string(N) + "x" + std::to_string(C) + "->" + std::to_string(OC);
      Tensor x = randn({N, C}), w = randn({OC, C}, 0.05), b = bias ? randn({OC}) : Tensor();
      Tensor x64 = bf16_ref(x), w64 = bf16_ref(w), b64 = bias ? bf16_ref(b) : Tensor();
      Tensor x_g = bf16_gpu(x), w_g = bf16_gpu(w), b_g = bias ? bf16_gpu(b) : Tensor();
      Tensor out_r = Tensor::empty({N, OC}, DType::F64), out_g = bf16_empty({N, OC});
      matmul_forward(out_r, x64, w64, b64);
      matmul_forward(out_g, x_g, w_g, b_g);
      expect_close("bf16 matmul_forward out" + nm, c, out_g, out_r, kBf16Tol);
      Tensor dout = randn({N, OC}), dinp = randn({N, C}), dw = randn({OC, C}), db = randn({OC});
      Tensor dinp_r = bf16_ref(dinp), dw_r = bf16_ref(dw), db_r = bias ? bf16_ref(db) : Tensor();
      Tensor dinp_g = bf16_gpu(dinp), dw_g = bf16_gpu(dw), db_g = bias ? bf16_gpu(db) : Tensor();
      matmul_backward(dinp_r, dw_r, db_r, bf16_ref(dout), x64, w64);
      matmul_backward(dinp_g, dw_g, db_g, bf16_gpu(dout), x_g, w_g);
      expect_close("bf16 matmul_backward dinp" + nm, c, dinp_g, dinp_r, kBf16Tol);
      expect_close("bf16 matmul_backward dweight" + nm, c, dw_g, dw_r, kBf16Tol);
      if (bias) expect_close("bf16 matmul_backward dbias" + nm, c, db_g, db_r, kBf16Tol);
    }
  }
}

// bf16 qkv, out, dout, dqkv read and written in place by the mma.sync kernels (HS = 32, 64, 128:
// no packing pass; HS = 12, 20, 48: packed from bf16), lse f32.
TEST_F(CudaParity, BF16AttentionFused) {
  const std::vector<Case> cases = {{2, 37, 48, 4, 1, 1},    {2, 128, 768, 12, 1, 1}, {1, 255, 64, 2, 1, 1},
                                   {2, 200, 256, 2, 1, 1},  {3, 1, 64, 4, 1, 1},     {1, 300, 80, 4, 1, 1},
                                   {1, 65, 384, 6, 1, 1},   {2, 130, 128, 1, 1, 1}};
  for (const Case& c : cases) {
    Shape sq{c.B, c.T, 3 * c.C}, so{c.B, c.T, c.C}, sl{c.B, c.NH, c.T};
    Tensor qkv = randn(sq), qkv64 = bf16_ref(qkv), qkv_g = bf16_gpu(qkv);
    Tensor out_r = Tensor::empty(so, DType::F64), att_r = Tensor::empty({c.B, c.NH, c.T, c.T}, DType::F64);
    attention_forward(out_r, att_r, qkv64, c.NH);
    Tensor out_g = bf16_empty(so), lse_g = gpu_nan(sl);
    attention_fused_forward(out_g, lse_g, qkv_g, c.NH);
    expect_close("bf16 attention_fused_forward out", c, out_g, out_r, 1e-2);
    expect_close("bf16 attention_fused_forward lse", c, lse_g, lse_reference(qkv.cast(DType::BF16).cast(DType::F32), c.NH),
                 1e-2);
    Tensor dout = randn(so), dqkv = randn(sq);
    Tensor dqkv_r = bf16_ref(dqkv), dqkv_g = bf16_gpu(dqkv);
    attention_backward(dqkv_r, bf16_ref(dout), qkv64, att_r, c.NH);
    attention_fused_backward(dqkv_g, bf16_gpu(dout), qkv_g, out_g, lse_g, c.NH);
    expect_close("bf16 attention_fused_backward dqkv", c, dqkv_g, dqkv_r, 2e-2);
    if (c.T > 1) {
      Tensor d0_r = Tensor::zeros(sq, DType::F64), d0_g = Tensor::zeros(sq, DType::BF16, Device::CUDA);
      attention_backward(d0_r, bf16_ref(dout), qkv64, att_r, c.NH);
      attention_fused_backward(d0_g, bf16_gpu(dout), qkv_g, out_g, lse_g, c.NH);
      const char* names[3] = {"bf16 attention_fused_backward dq", "bf16 attention_fused_backward dk",
                              "bf16 attention_fused_backward dv"};
      for (int p = 0; p < 3; ++p) expect_close(names[p], c, qkv_part(d0_g, p), qkv_part(d0_r, p), 2e-2);
    }
  }
}

TEST_F(CudaParity, BF16SoftmaxCrossEntropy) {
  std::vector<Case> cases = kCases;
  cases.push_back({1, 3, 8, 1, 59999, 60000});
  for (const Case& c : cases) {
    Shape s{c.B, c.T, c.Vp};
    Tensor logits = randn(s, 3.0), tgt = randint({c.B, c.T}, c.V), tgt_g = gpu(tgt);
    Tensor losses_r = Tensor::empty({c.B, c.T}, DType::F64), probs_r = Tensor::empty(s, DType::F64);
    softmax_crossentropy_forward(losses_r, probs_r, bf16_ref(logits), tgt, c.V);
    Tensor losses_g = bf16_empty({c.B, c.T}), probs_g = bf16_gpu(logits);
    softmax_crossentropy_forward(losses_g, probs_g, probs_g, tgt_g, c.V);  // in place, as the model does
    expect_close("bf16 softmax_ce_forward losses", c, losses_g, losses_r, kBf16Tol);
    expect_close("bf16 softmax_ce_forward probs", c, probs_g, probs_r, kBf16Tol);
    const double dloss = 1.0 / (c.B * c.T);
    Tensor dlogits_r = Tensor::empty(s, DType::F64);
    softmax_crossentropy_backward(dlogits_r, gpu_as_f64(probs_g), tgt, dloss, c.V);
    softmax_crossentropy_backward(probs_g, probs_g, tgt_g, dloss, c.V);
    expect_close("bf16 softmax_ce_backward dlogits", c, probs_g, dlogits_r, kBf16Tol);
  }
}

TEST_F(CudaParity, BF16OptimizerAndMixedPrecisionHelpers) {
  for (int64_t n : {int64_t(7), int64_t(1001), (int64_t(1) << 20) + 3}) {
    Case c{0, 0, 0, 0, 0, 0};
    std::string nm = " n=" + std::to_string(n);
    Tensor x = randn({n}), y = randn({n});
    // bf16 += bf16; f32 += bf16 (lesson 05's f32 gradient accumulator).
    Tensor y_r = bf16_ref(y), y_g = bf16_gpu(y), x_g = bf16_gpu(x);
    axpy_(y_r, -0.37, bf16_ref(x));
    axpy_(y_g, -0.37, x_g);
    expect_close("bf16 axpy_" + nm, c, y_g, y_r, kBf16Tol);
    Tensor acc_r = f64(y), acc_g = gpu(y);
    axpy_(acc_r, 1.0, bf16_ref(x));
    axpy_(acc_g, 1.0, x_g);
    expect_close("f32 += bf16 axpy_" + nm, c, acc_g, acc_r, 1e-6);
    scale_(y_r, 1.7);
    scale_(y_g, 1.7);
    expect_close("bf16 scale_" + nm, c, y_g, y_r, 2 * kBf16Tol);  // two roundings: axpy_, then scale_
    const double s_r = sum_of_squares(bf16_ref(x)), s_g = sum_of_squares(x_g);
    EXPECT_LE(std::abs(s_g - s_r) / s_r, 1e-12) << "bf16 sum_of_squares" << nm;
    // copy_cast: the same bits as the CPU's rounding, both ways; count_nonfinite counts exactly.
    Tensor xb = bf16_empty({n});
    copy_cast(xb, gpu(x));
    EXPECT_EQ(rel_err(xb, bf16_ref(x)), 0.0) << "copy_cast f32 -> bf16" << nm;
    Tensor back = Tensor::empty({n}, DType::F32, Device::CUDA);
    copy_cast(back, xb);
    EXPECT_EQ(rel_err(back, bf16_ref(x)), 0.0) << "copy_cast bf16 -> f32" << nm;
    EXPECT_EQ(count_nonfinite(xb), 0);
    Tensor bad = x.cast(DType::F32);  // a copy
    bad.data<float>()[n / 2] = INFINITY;
    bad.data<float>()[n - 1] = NAN;
    const int64_t want = n / 2 == n - 1 ? 1 : 2;
    EXPECT_EQ(count_nonfinite(gpu(bad)), want) << nm;
    EXPECT_EQ(count_nonfinite(bf16_gpu(bad)), want) << nm;
    EXPECT_EQ(count_nonfinite(bad), want) << nm;
  }
  // AdamW as lesson 05 runs it: f32 master, f32 moments, bf16 gradients (grad_scale unscales);
  // and a bf16 parameter (rounded after each of the 3 steps: 3 roundings).
  for (int64_t n : {int64_t(7), int64_t(1) << 20}) {
    for (bool bf16_param : {false, true}) {
      Case c{0, 0, 0, 0, 0, 0};
      std::string nm = std::string(" n=") + std::to_string(n) + (bf16_param ? " bf16 param" : " f32 master");
      Tensor p = randn({n}), m = Tensor::zeros({n}), v = Tensor::zeros({n});
      Tensor p_r = bf16_param ? bf16_ref(p) : f64(p), m_r = f64(m), v_r = f64(v);
      Tensor p_g = bf16_param ? bf16_gpu(p) : gpu(p), m_g = gpu(m), v_g = gpu(v);
      AdamWConfig cfg;
      cfg.lr = 1e-2;
      cfg.grad_scale = 1.0 / 1024;
      for (int t = 1; t <= 3; ++t) {
        Tensor g = randn({n}, 0.1 * 1024);
        if (bf16_param) p_r = gpu_as_f64(p_g);  // the GPU's rounded parameter is the next step's input
        adamw_update(p_r, bf16_ref(g), m_r, v_r, cfg, t, true);
        adamw_update(p_g, bf16_gpu(g), m_g, v_g, cfg, t, true);
      }
      expect_close("adamw_update param" + nm, c, p_g, p_r, bf16_param ? kBf16Tol : 1e-6);
      expect_close("adamw_update m" + nm, c, m_g, m_r, 1e-6);
      expect_close("adamw_update v" + nm, c, v_g, v_r, 1e-6);
    }
  }
}

// adamw_update_segments (AdamW::step's one launch over the flat buffer) against one f64 CPU
// adamw_update per segment: segments of 1 to 5 elements and long ones, starts that are not
// multiples of 4 (the 16-byte groups straddle boundaries), gaps that no segment covers (left
// untouched, exactly), alternating decay flags, more segments than one launch takes (192), dirty
// moments, three steps, f32 and bf16 gradients with grad_scale. Tolerance 1e-6: f32 arithmetic on
// exact inputs (the per-segment kernel's own tolerance above).
TEST_F(CudaParity, AdamWSegmentsOneLaunch) {
  for (int64_t n : {int64_t(9), int64_t(4099), (int64_t(1) << 20) + 7}) {
    for (bool bf16_grad : {false, true}) {
      Case c{0, 0, 0, 0, 0, 0};
      std::string nm = " n=" + std::to_string(n) + (bf16_grad ? " bf16 grads" : " f32 grads");
      std::vector<AdamWSegment> segs;
      std::vector<char> covered(n, 0);
      uint64_t key = rng::stream_key(g_seed++, "segments");
      for (int64_t i = 1, k = 0; i < n; ++k) {  // element 0 is a gap; then runs and gaps
        int64_t len = k % 97 == 3 ? n / 50 + 1 : 1 + static_cast<int64_t>(rng::uniform(key, k) * (n < 100 ? 3 : 11));
        len = std::min(len, n - i);
        if (k % 5 != 4) {  // every 5th run is a gap
          segs.push_back({i, len, k % 2 == 0});
          for (int64_t j = i; j < i + len; ++j) covered[j] = 1;
        }
        i += len;
      }
      if (n > 1000) {
        EXPECT_GT(segs.size(), 192u) << "the test must span several launches" << nm;
      }
      Tensor p = randn({n}), m = randn({n}, 0.01), v = randn({n}, 0.01);
      for (int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::abs(v.data<float>()[i]);  // dirty, valid state
      Tensor p_r = f64(p), m_r = f64(m), v_r = f64(v), p_g = gpu(p), m_g = gpu(m), v_g = gpu(v);
      AdamWConfig cfg;
      cfg.lr = 1e-2;
      cfg.grad_scale = 1.0 / 64;
      for (int t = 1; t <= 3; ++t) {
        Tensor g = randn({n}, 0.1 * 64);
        Tensor g_r = bf16_grad ? bf16_ref(g) : f64(g), g_g = bf16_grad ? bf16_gpu(g) : gpu(g);
        for (const AdamWSegment& sg : segs) {
          Tensor pr = p_r.view(sg.begin, {sg.numel}), mr = m_r.view(sg.begin, {sg.numel}),
                 vr = v_r.view(sg.begin, {sg.numel});
          adamw_update(pr, g_r.view(sg.begin, {sg.numel}), mr, vr, cfg, t, sg.decay);
        }
        adamw_update_segments(p_g, g_g, m_g, v_g, cfg, t, segs);
      }
      expect_close("adamw_update_segments param" + nm, c, p_g, p_r, 1e-6);
      expect_close("adamw_update_segments m" + nm, c, m_g, m_r, 1e-6);
      expect_close("adamw_update_segments v" + nm, c, v_g, v_r, 1e-6);
      std::vector<double> pg = p_g.to_vector(), mg = m_g.to_vector(), p0 = p.to_vector(), m0 = m.to_vector();
      int64_t touched = 0;
      for (int64_t i = 0; i < n; ++i)
        if (!covered[i] && (pg[i] != p0[i] || mg[i] != m0[i])) ++touched;
      EXPECT_EQ(touched, 0) << "elements outside every segment were updated" << nm;
    }
  }
}

// f32 and bf16 mixed in one call (no kernel of its own: f32 copies, F32Stage) gives what the
// same call gives with every tensor bf16-rounded first, within one rounding.
TEST_F(CudaParity, BF16MixedWithF32) {
  const Case& c = kCases[0];
  const int64_t N = (int64_t)c.B * c.T;
  Tensor x = randn({N, c.C}), w = randn({3 * c.C, c.C}, 0.05), b = randn({3 * c.C});
  Tensor out_r = Tensor::empty({N, 3 * c.C}, DType::F64), out_g = bf16_empty({N, 3 * c.C});
  matmul_forward(out_r, bf16_ref(x), f64(w), f64(b));
  matmul_forward(out_g, bf16_gpu(x), gpu(w), gpu(b));  // bf16 activations, f32 weights
  expect_close("mixed matmul_forward (bf16 x, f32 W)", c, out_g, out_r, 1e-2);  // + f32 W used in TF32
  Shape s{c.B, c.T, c.C};
  Tensor h = randn(s), g_r = Tensor::empty(s, DType::F64), g_g = Tensor::empty(s, DType::F32, Device::CUDA);
  gelu_forward(g_r, bf16_ref(h));
  gelu_forward(g_g, bf16_gpu(h));  // bf16 in, f32 out
  expect_close("mixed gelu_forward (bf16 in, f32 out)", c, g_g, g_r, 5e-6);
  Tensor bad_f16 = Tensor::zeros(s, DType::F16, Device::CUDA);
  EXPECT_THROW(gelu_forward(g_g, bad_f16), Error);  // the GPU takes f32 and bf16 only: a clear error
}

#ifdef SGPT_TEST_HAVE_MODEL
// One training step of a bf16 GPT (parameters, gradients, activations bf16; lse f32) against the
// f64 CPU step from the same bf16-rounded parameters, and against the f32 GPU step.
TEST_F(CudaParity, WholeModelBF16Storage) {
  GPTConfig cfg = gpt_config("d12");
  cfg.n_layer = 2;
  cfg.max_seq_len = 128;
  const int B = 2, T = 64;
  GPT f32_model(cfg, 42, Device::CUDA, DType::F32);
  GPT bf_model(cfg, 42, Device::CUDA, DType::BF16);
  GPT cpu_model(cfg, 42, Device::CPU, DType::F64);
  copy_cast(bf_model.params(), f32_model.params());
  cpu_model.params().copy_from(gpu_as_f64(bf_model.params()));
  f32_model.params().copy_from(bf_model.params().to(Device::CPU).cast(DType::F32).to(Device::CUDA));
  Tensor tok = randint({B, T}, cfg.vocab_size), tgt = randint({B, T}, cfg.vocab_size);
  double loss_c = cpu_model.forward(tok, tgt);
  double loss_b = bf_model.forward(tok.to(Device::CUDA), tgt.to(Device::CUDA));
  double loss_f = f32_model.forward(tok.to(Device::CUDA), tgt.to(Device::CUDA));
  for (GPT* m : {&cpu_model, &bf_model, &f32_model}) {
    m->zero_grad();
    m->backward();
  }
  EXPECT_EQ(bf_model.block_caches()[0].lse.dtype(), DType::F32);
  EXPECT_EQ(bf_model.block_caches()[0].qkv.dtype(), DType::BF16);
  Case c{B, T, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.padded_vocab_size};
  const double le = std::abs(loss_b - loss_c) / std::abs(loss_c);
  std::printf("[parity] %-34s %-32s loss %.6f vs %.6f (f64) vs %.6f (f32 GPU) rel.err %.2e (tol 5e-3)\n",
              "model bf16 storage loss", c.name().c_str(), loss_b, loss_c, loss_f, le);
  EXPECT_LE(le, 5e-3);
  const double gn_b = std::sqrt(sum_of_squares(bf_model.grads())), gn_c = std::sqrt(sum_of_squares(cpu_model.grads()));
  std::printf("[parity] %-34s %-32s norm %.6f vs %.6f rel.err %.2e (tol 2e-2)\n", "model bf16 storage grad norm",
              c.name().c_str(), gn_b, gn_c, std::abs(gn_b - gn_c) / gn_c);
  EXPECT_LE(std::abs(gn_b - gn_c) / gn_c, 2e-2);
  expect_close("model bf16 storage all grads", c, bf_model.grads(), cpu_model.grads(), 1e-1);
  expect_close("model bf16 storage vs f32 GPU grads", c, bf_model.grads(), gpu_as_f64(f32_model.grads()), 1e-1);
}
#endif
#endif
