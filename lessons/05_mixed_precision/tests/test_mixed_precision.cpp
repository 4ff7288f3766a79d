// Lesson 05 public tests: bit-exact 16-bit conversions, the loss scaler's schedule, the
// mixed-precision step against f32 and against AdamW on the master, and bytes from the tracker.
//
// Conversions are checked against hand-picked bit patterns and against a brute-force reference
// (test_util.hpp: nearest value by search over every pattern's exact value), never against the
// library's own conversions. Model runs use the nano preset (34.7k parameters) on the CPU.
// Tolerances, stated once:
//   bf16 (fp32 master) vs f32 training, 10 steps: |loss_bf16 - loss_f32| <= 0.01 every step
//   fp16 with loss scaling vs f32, 10 steps:      |loss_fp16 - loss_f32| <= 0.003 every step
// (measured: at most 0.002 and 0.0003 on the 4 x 32-token batch that the model memorises).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "mixed_precision.hpp"
#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson05;
using namespace lesson05_test;

namespace {

struct Case {
  uint32_t f32;   // input bits
  uint16_t want;  // expected 16-bit pattern
  const char* what;
};

void check_table(const std::vector<Case>& cases, uint16_t (*narrow)(float)) {
  for (const Case& c : cases) {
    const uint16_t got = narrow(from_bits(c.f32));
    EXPECT_EQ(got, c.want) << c.what << ": f32 0x" << std::hex << c.f32 << " -> 0x" << got << ", expected 0x"
                           << c.want;
  }
}

// Every pattern widens to its exact value and narrows back to itself; NaNs come back quiet.
void check_round_trip(const Format& f, float (*widen)(uint16_t), uint16_t (*narrow)(float)) {
  int64_t bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t p = static_cast<uint16_t>(h);
    const float x = widen(p);
    if (f.is_nan(p)) {
      const bool ok = bits_of(x) == expected_widened_nan(p, f) && narrow(x) == (p | (1u << (f.man_bits - 1)));
      if (!ok && bad++ < 5) ADD_FAILURE() << "NaN 0x" << std::hex << h << " widened to 0x" << bits_of(x);
      continue;
    }
    const bool ok = double(x) == f.decode(p) && std::signbit(x) == bool(p & 0x8000u) && narrow(x) == p;
    if (!ok && bad++ < 5)
      ADD_FAILURE() << "pattern 0x" << std::hex << h << ": widened " << x << " (exact " << f.decode(p)
                    << "), narrowed back to 0x" << narrow(x);
  }
  EXPECT_EQ(bad, 0) << "patterns that failed";
}

// Random f32 bit patterns against the brute-force reference.
void check_random(const Format& f, uint16_t (*narrow)(float), const std::vector<uint32_t>& inputs) {
  const std::vector<double> table = positive_values(f);
  int64_t bad = 0;
  for (uint32_t u : inputs) {
    const float x = from_bits(u);
    const uint16_t want = std::isnan(x) ? expected_nan(x, f) : brute_force_round(x, f, table);
    const uint16_t got = narrow(x);
    if (got != want && bad++ < 5)
      ADD_FAILURE() << "f32 0x" << std::hex << u << " (" << x << ") -> 0x" << got << ", expected 0x" << want;
  }
  EXPECT_EQ(bad, 0) << "of " << inputs.size() << " inputs";
}

// Fully random patterns, plus patterns whose dropped bits are exactly a tie or one off it.
std::vector<uint32_t> random_patterns(uint32_t seed, int64_t n, int dropped_bits, uint32_t exp_lo, uint32_t exp_hi) {
  std::mt19937 gen(seed);
  std::vector<uint32_t> v;
  v.reserve(3 * n);
  const uint32_t half = 1u << (dropped_bits - 1), low = (1u << dropped_bits) - 1u;
  std::uniform_int_distribution<uint32_t> expo(exp_lo, exp_hi);
  for (int64_t i = 0; i < n; ++i) {
    v.push_back(gen());                                               // anything, NaNs included
    const uint32_t r = (gen() & 0x807fffffu) | (expo(gen) << 23);  // in the interesting exponents
    v.push_back(r);
    const uint32_t tie = (r & ~low) | half;
    v.push_back(tie + (gen() % 3) - 1);  // tie - 1, tie, tie + 1
  }
  return v;
}

}  // namespace

// ---- task 1: bf16 -----------------------------------------------------------------------------------

TEST(Bf16Conversion, HandPickedTable) {
  check_table({{0x3f800000, 0x3f80, "1.0 exactly"},
               {0x3f808000, 0x3f80, "1 + half ulp: tie to even (down, 0x3f80 is even)"},
               {0x3f818000, 0x3f82, "tie with odd kept part: up to even"},
               {0x3f808001, 0x3f81, "just above the tie: up"},
               {0x3f807fff, 0x3f80, "just below the tie: down (truncation would also say so)"},
               {0x3f80ffff, 0x3f81, "0x...ffff rounds up (truncation says 0x3f80)"},
               {0xbf80c000, 0xbf81, "negative: rounds the magnitude"},
               {0x3fffffff, 0x4000, "rounding carries into the exponent"},
               {0x7f7f0000, 0x7f7f, "largest finite bf16 (3.3895e38)"},
               {0x7f7f7fff, 0x7f7f, "below half an ulp past the largest: stays finite"},
               {0x7f7f8000, 0x7f80, "tie past the largest finite: inf (the even neighbour)"},
               {0x7f7fffff, 0x7f80, "largest f32 overflows to inf"},
               {0xff7fffff, 0xff80, "and -inf"},
               {0x7f800000, 0x7f80, "+inf"},
               {0xff800000, 0xff80, "-inf"},
               {0x00000000, 0x0000, "+0"},
               {0x80000000, 0x8000, "-0 keeps its sign"},
               {0x00000001, 0x0000, "smallest f32 subnormal rounds to +0"},
               {0x80000001, 0x8000, "... and to -0 when negative"},
               {0x00010000, 0x0001, "smallest bf16 subnormal 2^-133"},
               {0x00018000, 0x0002, "subnormal tie, odd: up"},
               {0x00008000, 0x0000, "half the smallest subnormal: tie to 0"},
               {0x00008001, 0x0001, "just above it: the smallest subnormal"},
               {0x007fffff, 0x0080, "largest f32 subnormal rounds to the smallest normal 2^-126"},
               {0x7fc00000, 0x7fc0, "the default quiet NaN"},
               {0xffc00001, 0xffc0, "negative NaN, payload only in dropped bits: stays NaN"},
               {0x7f800001, 0x7fc0, "signalling NaN with a low payload: quiet, not inf"},
               {0x7fa12345, 0x7fe1, "signalling NaN: top payload bits kept, made quiet"},
               {0x7fff8000, 0x7fff, "NaN is never rounded (rounding would carry into the sign)"}},
              float_to_bf16);
  EXPECT_EQ(bits_of(bf16_to_float(0x3f80)), 0x3f800000u);
  EXPECT_EQ(bits_of(bf16_to_float(0x0001)), 0x00010000u) << "2^-133";
  EXPECT_EQ(bits_of(bf16_to_float(0xff80)), 0xff800000u) << "-inf";
  EXPECT_EQ(bits_of(bf16_to_float(0x7f81)), 0x7fc10000u) << "signalling NaN comes out quiet";
}

TEST(Bf16Conversion, EveryBf16ValueRoundTrips) { check_round_trip(kBf16, bf16_to_float, float_to_bf16); }

TEST(Bf16Conversion, RandomBitsMatchBruteForce) {
  check_random(kBf16, float_to_bf16, random_patterns(2026, 700000, 16, 0, 255));
}

// ---- task 2: fp16 -----------------------------------------------------------------------------------

TEST(Fp16Conversion, HandPickedTable) {
  check_table({{0x3f800000, 0x3c00, "1.0"},
               {0x3f801000, 0x3c00, "1 + half an fp16 ulp (2^-11): tie, down to even"},
               {0x3f803000, 0x3c02, "tie with odd kept part: up"},
               {0x3f801001, 0x3c01, "just above the tie: up"},
               {0x3f801fff, 0x3c01, "0x...1fff rounds up (truncation says 0x3c00)"},
               {0xc0490fdb, 0xc248, "-pi"},
               {0x477fe000, 0x7bff, "65504, the largest finite fp16"},
               {0x477fefff, 0x7bff, "65519.99: below the tie, stays 65504"},
               {0x477ff000, 0x7c00, "65520: the tie past the largest finite goes to inf"},
               {0x47800000, 0x7c00, "65536 overflows"},
               {0xc7800000, 0xfc00, "-65536 overflows to -inf"},
               {0x7f7fffff, 0x7c00, "the largest f32 overflows"},
               {0x7f800000, 0x7c00, "+inf"},
               {0xff800000, 0xfc00, "-inf"},
               {0x80000000, 0x8000, "-0"},
               {0x38800000, 0x0400, "2^-14, the smallest normal"},
               {0x387fc000, 0x03ff, "the largest subnormal (1023 x 2^-24)"},
               {0x387fe000, 0x0400, "the tie between it and 2^-14: up to the even 0x0400"},
               {0x33800000, 0x0001, "2^-24, the smallest subnormal"},
               {0x33000000, 0x0000, "2^-25, half the smallest subnormal: tie to +0"},
               {0x33000001, 0x0001, "just above 2^-25: the smallest subnormal"},
               {0x33c00000, 0x0002, "1.5 x 2^-24: tie, up to the even 2"},
               {0x34200000, 0x0002, "2.5 x 2^-24: tie, down to the even 2"},
               {0xb3c00000, 0x8002, "negative subnormal"},
               {0x32ffffff, 0x0000, "below 2^-25 flushes to +0"},
               {0x00000001, 0x0000, "the smallest f32 subnormal flushes"},
               {0x7fc00000, 0x7e00, "the default quiet NaN"},
               {0x7f800001, 0x7e00, "signalling NaN, payload in dropped bits: quiet NaN, not inf"},
               {0xffa12345, 0xff09, "negative signalling NaN: top payload bits kept, quiet"}},
              float_to_fp16);
  EXPECT_EQ(bits_of(fp16_to_float(0x0001)), 0x33800000u) << "2^-24";
  EXPECT_EQ(bits_of(fp16_to_float(0x03ff)), 0x387fc000u) << "largest subnormal";
  EXPECT_EQ(bits_of(fp16_to_float(0x7bff)), 0x477fe000u) << "65504";
  EXPECT_EQ(bits_of(fp16_to_float(0x8000)), 0x80000000u) << "-0";
  EXPECT_EQ(bits_of(fp16_to_float(0x7c01)), 0x7fc02000u) << "signalling NaN comes out quiet";
}

TEST(Fp16Conversion, EveryFp16ValueRoundTrips) { check_round_trip(kFp16, fp16_to_float, float_to_fp16); }

TEST(Fp16Conversion, RandomBitsMatchBruteForce) {
  // f32 exponents 98..144 cover everything from "flushes to zero" to "overflows".
  check_random(kFp16, float_to_fp16, random_patterns(7, 700000, 13, 98, 144));
}

// ---- task 3: loss scaling --------------------------------------------------------------------------------

// The README's table: init 2^16, factor 2 up and 1/2 down, growth interval 3.
TEST(LossScaler, ScriptedOverflowsMatchTheReadmeTable) {
  LossScalerConfig cfg;
  cfg.growth_interval = 3;
  DynamicLossScaler s(cfg);
  const bool overflow[] = {0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0};
  const double used[] = {65536, 65536, 65536, 131072, 65536, 65536, 32768, 32768,
                         32768, 65536, 65536, 65536, 131072, 65536, 32768, 32768};
  const bool applied[] = {1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1};
  for (int i = 0; i < 16; ++i) {
    SCOPED_TRACE("step " + std::to_string(i + 1));
    EXPECT_EQ(s.scale(), used[i]);
    EXPECT_EQ(s.update(overflow[i]), applied[i]);
  }
  EXPECT_EQ(s.scale(), 32768.0);
  EXPECT_EQ(s.skipped_steps(), 4);
  EXPECT_EQ(s.good_steps(), 2);
}

TEST(LossScaler, FindsInfAndNanInEveryDtype) {
  const int64_t n = 1001;  // odd, not a multiple of anything
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    SCOPED_TRACE(dtype_name(dt));
    const float bad[] = {INFINITY, -INFINITY, NAN, -NAN};
    for (float b : bad) {
      for (int64_t where : {int64_t(0), n / 2, n - 1}) {
        std::vector<float> v(n, 0.5f);
        v[1] = dt == DType::F16 ? 65504.0f : 3e38f;  // the largest finite values are not overflows
        v[where] = b;
        Tensor t = Tensor::from(v, {n}).cast(dt);
        EXPECT_TRUE(has_inf_or_nan(t)) << b << " at " << where;
        v[where] = -0.0f;
        EXPECT_FALSE(has_inf_or_nan(Tensor::from(v, {n}).cast(dt)));
      }
    }
  }
}

// The constructed case: gradients 2^-10 .. 2^-34. In fp16, 2^-25 and below become 0 (2^-25 is a
// tie between 0 and 2^-24 and goes to the even 0): 10 of 25 flush. Scaled by 2^16 first, every one
// survives, and dividing by the scale in f32 gives each back exactly.
TEST(LossScaler, ScalingKeepsSmallFp16Gradients) {
  DynamicLossScaler s;
  ASSERT_EQ(s.scale(), 65536.0) << "init scale 2^16";
  int flushed = 0, flushed_scaled = 0, exact = 0;
  for (int e = 10; e <= 34; ++e) {
    const float g = std::ldexp(1.0f, -e);
    if (fp16_to_float(float_to_fp16(g)) == 0.0f) ++flushed;
    const float back = fp16_to_float(float_to_fp16(g * float(s.scale())));
    if (back == 0.0f) ++flushed_scaled;
    if (back / float(s.scale()) == g) ++exact;
  }
  EXPECT_EQ(flushed, 10) << "unscaled: 2^-25 .. 2^-34 flush";
  EXPECT_EQ(flushed_scaled, 0);
  EXPECT_EQ(exact, 25);
}

TEST(LossScaler, BadConstantsAreClearErrors) {
  auto expect_error = [](LossScalerConfig c, const char* what) {
    try {
      DynamicLossScaler s(c);
      ADD_FAILURE() << "expected an error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  LossScalerConfig c;
  c.growth_interval = 0;
  expect_error(c, "growth_interval");
  c = {};
  c.backoff_factor = 1.0;
  expect_error(c, "backoff_factor");
  c = {};
  c.init_scale = -1;
  expect_error(c, "init_scale");
}

// ---- task 4: the mixed-precision step -----------------------------------------------------------------

namespace {
const GPTConfig kNano = gpt_config("nano");
constexpr double kBf16Tol = 0.01, kFp16Tol = 0.003;

std::vector<double> losses_of(const Recipe& r, int steps, int64_t rows, int64_t mb, double lr, double clip,
                              uint64_t seed = 5) {
  // One fixed batch: the model memorises it, so the loss falls fast and the curves can be compared.
  MixedPrecisionTrainer tr(kNano, seed, r, test_adamw());
  std::vector<double> out;
  Tensor x = random_tokens(rows, 32, kNano.vocab_size, 100), y = random_tokens(rows, 32, kNano.vocab_size, 200);
  for (int s = 0; s < steps; ++s) out.push_back(tr.step(x, y, mb, lr, clip).loss);
  return out;
}
Recipe recipe(Precision p, bool accum = false, bool scaling = false) {
  Recipe r;
  r.precision = p;
  r.fp32_grad_accum = accum;
  r.loss_scaling = scaling;
  return r;
}
}  // namespace

// With f32 there is nothing to round: the recipe is lesson 02's step, to f32 rounding.
TEST(MixedPrecisionStep, F32RecipeIsPlainAdamW) {
  MixedPrecisionTrainer tr(kNano, 3, recipe(Precision::F32), test_adamw());
  GPT ref(kNano, 3);
  AdamW opt(ref.layout(), test_adamw(), DType::F32, Device::CPU);
  for (int s = 0; s < 3; ++s) {
    Tensor x = random_tokens(4, 32, kNano.vocab_size, s), y = random_tokens(4, 32, kNano.vocab_size, 50 + s);
    const StepResult r = tr.step(x, y, 2, 1e-3, 0.5);
    ref.zero_grad();
    double loss = 0;
    for (int i = 0; i < 2; ++i) {
      loss += ref.forward(x.slice(2 * i, 2 * i + 2), y.slice(2 * i, 2 * i + 2));
      ref.backward(0.5);
    }
    const double norm = clip_grad_norm(ref.grads(), 0.5);
    opt.step(ref.params(), ref.grads(), 1e-3);
    EXPECT_NEAR(r.loss, loss / 2, 1e-6);
    EXPECT_NEAR(r.grad_norm, norm, 1e-5 * norm);
    EXPECT_FALSE(r.skipped);
    const std::vector<double> a = tr.master().to_vector(), b = ref.params().to_vector();
    double diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    EXPECT_LE(diff, 1e-6) << "step " << s;
  }
}

// The update goes to the f32 master with exactly the gradients the bf16 backward produced, and the
// working copy is the master rounded to nearest even. Three steps, so the moments are not fresh.
TEST(MixedPrecisionStep, AdamWUpdatesTheMasterAndTheCopyIsItsRounding) {
  MixedPrecisionTrainer tr(kNano, 8, recipe(Precision::BF16), test_adamw());
  Tensor ref_master = Tensor::empty({tr.master().numel()}, DType::F32);
  init_parameters(ref_master, tr.model().layout(), 8);
  AdamW ref(tr.model().layout(), test_adamw(), DType::F32, Device::CPU);
  const std::vector<double> table = positive_values(kBf16);
  for (int s = 0; s < 3; ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    Tensor x = random_tokens(4, 32, kNano.vocab_size, 10 + s), y = random_tokens(4, 32, kNano.vocab_size, 20 + s);
    tr.step(x, y, 4, 2e-3, 0.0);
    ASSERT_EQ(tr.model().grads().dtype(), DType::BF16);
    ref.step(ref_master, tr.model().grads(), 2e-3);  // the library's AdamW on an f32 copy, bf16 gradients
    const std::vector<double> got = tr.master().to_vector(), want = ref_master.to_vector();
    int64_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
    EXPECT_EQ(bad, 0) << "master elements that differ from AdamW(master, bf16 grads)";
    const std::vector<uint16_t> copy = bits16(tr.model().params());
    const float* m = tr.master().data<float>();
    int64_t wrong = 0;
    for (size_t i = 0; i < copy.size(); ++i) wrong += copy[i] != brute_force_round(m[i], kBf16, table);
    EXPECT_EQ(wrong, 0) << "working-copy elements that are not the rounded master";
  }
}

// The constructed case. LayerNorm gains start at 1.0, where a bf16 ulp is 2^-7 above and 2^-8
// below: an update of 1e-4 is far below half an ulp (2^-9 = 0.00195). Applied to a bf16 tensor it
// vanishes; applied to the f32 master it stays, and 8 steps (at most 8e-4) still round to 1.0.
TEST(MixedPrecisionStep, SmallUpdatesSurviveOnlyInTheMaster) {
  const double lr = 1e-4;
  {  // without a master copy (the library's AdamW straight on bf16): every update rounds away
    Tensor p = Tensor::from(std::vector<float>(64, 1.0f), {64}).cast(DType::BF16);
    Tensor g = Tensor::from(std::vector<float>(64, 1.0f), {64}).cast(DType::BF16);
    Tensor m = Tensor::zeros({64}), v = Tensor::zeros({64});
    for (int t = 1; t <= 8; ++t) adamw_update(p, g, m, v, [&] { auto c = test_adamw(0.0); c.lr = lr; return c; }(), t, false);
    for (uint16_t b : bits16(p)) ASSERT_EQ(b, 0x3f80) << "an update below half an ulp survived in bf16";
  }
  MixedPrecisionTrainer tr(kNano, 4, recipe(Precision::BF16), test_adamw(0.0));
  for (int s = 0; s < 8; ++s) {
    Tensor x = random_tokens(4, 32, kNano.vocab_size, 30 + s), y = random_tokens(4, 32, kNano.vocab_size, 40 + s);
    tr.step(x, y, 4, lr, 0.0);
  }
  int64_t gains = 0, moved = 0, copy_at_one = 0;
  const std::vector<double> master = tr.master().to_vector();
  const std::vector<uint16_t> copy = bits16(tr.model().params());
  for (const ParamInfo& p : tr.model().layout().params()) {
    if (p.init != InitKind::Ones) continue;
    for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
      ++gains;
      moved += master[i] != 1.0;
      copy_at_one += copy[i] == 0x3f80;
    }
  }
  ASSERT_GT(gains, 0);
  EXPECT_GE(double(moved) / double(gains), 0.95) << "the master must accumulate the small updates";
  EXPECT_EQ(copy_at_one, gains) << "8 updates of 1e-4 are still within half an ulp of 1.0";
}

// bf16 with an fp32 master follows the f32 run.
TEST(MixedPrecisionStep, Bf16FollowsF32) {
  const std::vector<double> f32 = losses_of(recipe(Precision::F32), 10, 4, 2, 3e-3, 1.0);
  const std::vector<double> bf16 = losses_of(recipe(Precision::BF16), 10, 4, 2, 3e-3, 1.0);
  for (size_t s = 0; s < f32.size(); ++s) EXPECT_NEAR(bf16[s], f32[s], kBf16Tol) << "step " << s;
  EXPECT_LT(bf16.back(), bf16.front() - 0.5) << "and it learns";
}

// With fp32_grad_accum the micro-batch gradients are summed in f32: the accumulator holds exactly
// the f32 sum of the k bf16 micro-batch gradients. A first step leaves dirty state behind.
TEST(MixedPrecisionStep, Fp32AccumulatorSumsTheMicroBatches) {
  MixedPrecisionTrainer tr(kNano, 6, recipe(Precision::BF16, true), test_adamw());
  ASSERT_TRUE(tr.grad_accum().defined());
  Tensor x0 = random_tokens(6, 32, kNano.vocab_size, 1), y0 = random_tokens(6, 32, kNano.vocab_size, 2);
  tr.step(x0, y0, 3, 1e-3, 1.0);
  GPT ref(kNano, 6, Device::CPU, DType::BF16);
  ref.params().copy_from(tr.model().params());
  Tensor sum = Tensor::zeros({tr.master().numel()});
  Tensor x = random_tokens(8, 32, kNano.vocab_size, 3), y = random_tokens(8, 32, kNano.vocab_size, 4);
  for (int i = 0; i < 4; ++i) {
    ref.zero_grad();
    ref.forward(x.slice(2 * i, 2 * i + 2), y.slice(2 * i, 2 * i + 2));
    ref.backward(0.25);
    axpy_(sum, 1.0, ref.grads());
  }
  tr.step(x, y, 2, 1e-3, 1.0);
  const std::vector<double> got = tr.grad_accum().to_vector(), want = sum.to_vector();
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
  EXPECT_EQ(bad, 0) << "accumulator elements that differ from the f32 sum of the micro-batch gradients";
}

// fp16 with loss scaling follows f32. Without scaling it loses small gradients: the constructed
// case is a model that has memorised its batch (loss < 0.01 after 80 f32 steps on 2 x 8 tokens),
// so that its probabilities are confident and most of its gradients lie below fp16's smallest
// normal 2^-14. Starting from those weights, one fp16 backward without scaling flushes at least 10%
// of the gradient elements that are non-zero in f32 to zero; with the scaler (2^16), none.
TEST(MixedPrecisionStep, Fp16NeedsLossScaling) {
  const std::vector<double> f32 = losses_of(recipe(Precision::F32), 10, 4, 2, 3e-3, 1.0);
  const std::vector<double> fp16 = losses_of(recipe(Precision::FP16, false, true), 10, 4, 2, 3e-3, 1.0);
  for (size_t s = 0; s < f32.size(); ++s) EXPECT_NEAR(fp16[s], f32[s], kFp16Tol) << "step " << s;

  MixedPrecisionTrainer pre(kNano, 9, recipe(Precision::F32), test_adamw(0.0));
  Tensor x = random_tokens(2, 8, kNano.vocab_size, 1), y = random_tokens(2, 8, kNano.vocab_size, 2);
  double loss = 0;
  for (int i = 0; i < 80; ++i) loss = pre.step(x, y, 2, 1e-2, 1.0).loss;
  ASSERT_LT(loss, 0.01) << "the constructed case needs a memorised batch";
  pre.step(x, y, 2, 0.0, 0.0);  // lr 0: the f32 gradient at the final weights
  const std::vector<double> g32 = pre.model().grads().to_vector();
  auto flushed = [&](bool scaling) {
    MixedPrecisionTrainer tr(kNano, 9, recipe(Precision::FP16, false, scaling), test_adamw());
    tr.master().copy_from(pre.master());
    cast_into(tr.model().params(), tr.master());
    tr.step(x, y, 2, 0.0, 0.0);  // lr 0: only the gradients matter
    const std::vector<double> g = tr.model().grads().to_vector();
    int64_t nonzero = 0, zero = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      if (g32[i] == 0) continue;
      ++nonzero;
      zero += g[i] == 0;
    }
    return double(zero) / double(nonzero);
  };
  EXPECT_GE(flushed(false), 0.10) << "without scaling, small gradients flush to zero";
  EXPECT_LE(flushed(true), 0.001) << "with scaling, they survive";
}

// An overflow skips the step: nothing is updated and the scale halves, until it fits.
TEST(MixedPrecisionStep, OverflowSkipsTheStep) {
  Recipe r = recipe(Precision::FP16, false, true);
  r.scaler.init_scale = std::ldexp(1.0, 32);  // far too large: the first backward overflows
  MixedPrecisionTrainer tr(kNano, 2, r, test_adamw());
  const std::vector<double> master0 = tr.master().to_vector();
  Tensor x = random_tokens(2, 16, kNano.vocab_size, 7), y = random_tokens(2, 16, kNano.vocab_size, 8);
  double expected_scale = r.scaler.init_scale;
  int skipped = 0;
  StepResult res;
  for (int s = 0; s < 60; ++s) {
    res = tr.step(x, y, 1, 1e-3, 1.0);
    EXPECT_EQ(res.loss_scale, expected_scale);
    EXPECT_TRUE(std::isfinite(res.loss));
    if (!res.skipped) break;
    ++skipped;
    expected_scale /= 2;
    EXPECT_EQ(tr.master().to_vector(), master0) << "a skipped step must not touch the master";
    EXPECT_EQ(tr.optimizer().t(), 0) << "nor the optimizer";
  }
  ASSERT_FALSE(res.skipped) << "the scale never came down far enough";
  EXPECT_GE(skipped, 5);
  EXPECT_EQ(tr.scaler().skipped_steps(), skipped);
  EXPECT_EQ(tr.optimizer().t(), 1);
  EXPECT_NE(tr.master().to_vector(), master0);
  EXPECT_TRUE(std::isfinite(res.grad_norm));
}

// ---- task 5: bytes --------------------------------------------------------------------------------------

TEST(Bytes, PerParameterByHand) {
  const int64_t n = 1000;
  const ModelStateBytes f32 = model_state_bytes(recipe(Precision::F32), n);
  EXPECT_EQ(f32.parameters, 4 * n);
  EXPECT_EQ(f32.gradients, 4 * n);
  EXPECT_EQ(f32.optimizer_state, 8 * n);
  const ModelStateBytes bf = model_state_bytes(recipe(Precision::BF16), n);
  EXPECT_EQ(bf.parameters, 2 * n);
  EXPECT_EQ(bf.gradients, 2 * n);
  EXPECT_EQ(bf.optimizer_state, 12 * n) << "fp32 master 4 + m 4 + v 4";
  EXPECT_EQ(bf.total(), 16 * n) << "2 + 2 + 4 + 8";
  const ModelStateBytes acc = model_state_bytes(recipe(Precision::BF16, true), n);
  EXPECT_EQ(acc.gradients, 6 * n);
  EXPECT_EQ(acc.total(), 20 * n);
  EXPECT_EQ(model_state_bytes(recipe(Precision::FP16, false, true), n).total(), 16 * n);
}

TEST(Bytes, ModelStateMatchesTheTracker) {
  struct R {
    Recipe r;
    int64_t per_param;
  };
  for (const R& c : {R{recipe(Precision::F32), 16}, R{recipe(Precision::BF16), 16}, R{recipe(Precision::BF16, true), 20},
                     R{recipe(Precision::FP16, false, true), 16}}) {
    SCOPED_TRACE(std::string(precision_name(c.r.precision)) + (c.r.fp32_grad_accum ? " + fp32 accumulation" : ""));
    const int64_t p0 = current(MemCategory::Parameters), g0 = current(MemCategory::Gradients),
                  o0 = current(MemCategory::OptimizerState);
    MixedPrecisionTrainer tr(kNano, 1, c.r, test_adamw());
    const int64_t n = tr.model().layout().numel();
    const ModelStateBytes b = model_state_bytes(c.r, n);
    EXPECT_EQ(current(MemCategory::Parameters) - p0, b.parameters);
    EXPECT_EQ(current(MemCategory::Gradients) - g0, b.gradients);
    EXPECT_EQ(current(MemCategory::OptimizerState) - o0, b.optimizer_state);
    EXPECT_EQ(b.total(), c.per_param * n);
  }
}

TEST(Bytes, ActivationsHalveInBf16) {
  const int64_t B = 3, T = 20;  // T below the context, B odd
  int64_t measured[2];
  int k = 0;
  for (Precision p : {Precision::F32, Precision::BF16}) {
    MixedPrecisionTrainer tr(kNano, 1, recipe(p), test_adamw());
    const int64_t a0 = current(MemCategory::Activations);
    Tensor x = random_tokens(B, T, kNano.vocab_size, 1), y = random_tokens(B, T, kNano.vocab_size, 2);
    tr.step(x, y, B, 1e-3, 1.0);
    measured[k] = current(MemCategory::Activations) - a0;  // the caches stay allocated after the step
    EXPECT_EQ(measured[k], activation_bytes(kNano, B, T, precision_dtype(p))) << precision_name(p);
    ++k;
  }
  const int64_t tokens = 2 * B * T * 4;  // i32 tokens and targets do not shrink
  EXPECT_EQ(2 * (measured[1] - tokens), measured[0] - tokens);
}
