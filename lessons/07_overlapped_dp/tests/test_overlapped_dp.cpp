// Lesson 07 public tests, at 1, 2, 3 and 4 ranks (threads backend under -np 1, MPI processes under
// -np 2..4), in f64:
//   - bucket boundaries and counts follow the README's rule for several caps; a cap below one
//     element is an error, a cap above the buffer gives one bucket;
//   - from the recorded trace: one async all-reduce per bucket per step, issued in backward order,
//     each after the backward stage that finished its gradients and before backward goes on (so
//     all but the last ones before backward ends), only in the last micro-batch (no_sync), and
//     each waited for before the optimizer step reads the gradients;
//   - results equal naive data parallelism (lesson 06: one all-reduce after backward) bit for bit
//     where the sums run in the same order (threads backend: every element is summed rank 0 + 1 +
//     ... whatever the message; MPI with 2 ranks: a + b either way), else to 1e-12 relative; and
//     equal the one-rank run on the whole global batch to lesson 06's tolerances.

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson07;
using namespace lesson07_test;

namespace {
constexpr int64_t kT = 8;
}  // namespace

// ---- task 1: buckets -----------------------------------------------------------------------------

TEST(MakeBuckets, BoundariesFollowTheRule) {
  for (const char* name : {"nano", "micro"}) {
    const ParameterLayout layout(gpt_config(name));
    for (int64_t es : {int64_t(4), int64_t(8)}) {
      for (int64_t cap : {es, int64_t(1000), int64_t(4096), int64_t(16384), int64_t(65536), int64_t(1) << 20,
                          layout.numel() * es, layout.numel() * es + 1}) {
        const std::string at = std::string(name) + " element " + std::to_string(es) + " B, cap " + std::to_string(cap);
        const std::vector<Bucket> got = make_buckets(layout, cap, es);
        const auto want = expected_buckets(layout, cap, es);
        ASSERT_EQ(got.size(), want.size()) << at << " bucket count";
        int64_t end = layout.numel();
        for (size_t i = 0; i < got.size(); ++i) {
          EXPECT_EQ(got[i].begin, want[i].first) << at << " bucket " << i << " begin";
          EXPECT_EQ(got[i].count, want[i].second) << at << " bucket " << i << " count";
          EXPECT_EQ(got[i].begin + got[i].count, end) << at << " bucket " << i << " must end where bucket " << i - 1
                                                      << " begins (backward order, no gaps)";
          end = got[i].begin;
          ASSERT_GE(got[i].first_param, 0);
          ASSERT_GE(got[i].num_params, 1);
          ASSERT_LE(size_t(got[i].first_param + got[i].num_params), layout.params().size());
          const ParamInfo& first = layout.params()[size_t(got[i].first_param)];
          const ParamInfo& lastp = layout.params()[size_t(got[i].first_param + got[i].num_params - 1)];
          EXPECT_EQ(first.offset, got[i].begin) << at << " bucket " << i << " first_param";
          EXPECT_EQ(lastp.offset + lastp.numel, got[i].begin + got[i].count) << at << " bucket " << i << " num_params";
        }
        EXPECT_EQ(end, 0) << at << " the buckets must cover the buffer";
      }
    }
  }
}

TEST(MakeBuckets, BelowOneElementIsAnErrorAboveTheBufferIsOneBucket) {
  const ParameterLayout layout(gpt_config("nano"));
  expect_clear_error([&] { make_buckets(layout, 7, 8); }, {7, 8}, "cap 7 B, f64:");
  expect_clear_error([&] { make_buckets(layout, 0, 4); }, {0, 4}, "cap 0 B, f32:");
  for (int64_t cap : {layout.numel() * 8, layout.numel() * 8 * 100}) {
    const std::vector<Bucket> one = make_buckets(layout, cap, 8);
    ASSERT_EQ(one.size(), 1u) << "cap " << cap;
    EXPECT_EQ(one[0], (Bucket{0, layout.numel(), 0, int(layout.params().size())}));
  }
  // One element per bucket at most: every parameter is larger, so each is a bucket of its own.
  const std::vector<Bucket> each = make_buckets(layout, 8, 8);
  ASSERT_EQ(each.size(), layout.params().size());
  for (size_t i = 0; i < each.size(); ++i) {
    const ParamInfo& p = layout.params()[layout.params().size() - 1 - i];
    EXPECT_EQ(each[i], (Bucket{p.offset, p.numel, int(layout.params().size() - 1 - i), 1})) << "bucket " << i;
  }
}

// ---- task 2: start each bucket when backward has finished it -------------------------------------------

TEST(Overlap, EachBucketStartsWhenItsGradientsAreFinal) {
  const GPTConfig cfg = gpt_config("nano");
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    auto [gx, gy] = global_batch(4 * p, kT, cfg.vocab_size, 1);
    for (int64_t cap : {int64_t(8), int64_t(8192), int64_t(40000), int64_t(1) << 30}) {
      const std::string at = where(c) + " cap " + std::to_string(cap);
      GPT m(cfg, 5, Device::CPU, DType::F64), ref(cfg, 5, Device::CPU, DType::F64);
      OverlappedReducer red(c, m.grads(), make_buckets(m.layout(), cap, 8));
      TraceRecorder& rec = TraceRecorder::current();
      rec.set_enabled(true);
      rec.clear();
      m.forward(rows_of(gx, r, p), rows_of(gy, r, p));
      m.backward(1.0, [&](int64_t f) { red.on_grads_ready(f); });
      red.finish();
      TraceRecorder::current().add("optimizer_step", TraceCategory::Compute, rec.now_us(), 0);  // the reader's stand-in
      expect_overlapped_schedule(rec.events(), red.buckets(), m, 1, 8, at);
      rec.set_enabled(false);
      ref.forward(rows_of(gx, r, p), rows_of(gy, r, p));
      ref.backward();
      c.all_reduce(ref.grads(), ReduceOp::Avg);
      if (same_order(c))
        EXPECT_TRUE(bit_equal(m.grads(), ref.grads())) << at << " the bucketed average differs from the whole-buffer one";
      else
        EXPECT_LE(max_diff(m.grads().to_vector(), ref.grads().to_vector()), 1e-14) << at;
    }
  });
}

// ---- task 3: wait for every bucket --------------------------------------------------------------------

TEST(Finish, WaitsForEveryBucketAndResetsForTheNextStep) {
  const GPTConfig cfg = gpt_config("nano");
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    GPT m(cfg, 6, Device::CPU, DType::F64), ref(cfg, 6, Device::CPU, DType::F64);
    OverlappedReducer red(c, m.grads(), make_buckets(m.layout(), 20000, 8));
    const size_t nb = red.buckets().size();
    TraceRecorder& rec = TraceRecorder::current();
    for (int step = 0; step < 3; ++step) {
      auto [gx, gy] = global_batch(2 * p, kT, cfg.vocab_size, 10 + uint64_t(step));
      rec.set_enabled(true);
      rec.clear();
      m.zero_grad();
      m.forward(rows_of(gx, r, p), rows_of(gy, r, p));
      m.backward(1.0, [&](int64_t f) { red.on_grads_ready(f); });
      red.finish();
      const size_t completed = read_trace(rec.events()).reduces.size();  // recorded when a wait sees them done
      rec.set_enabled(false);
      EXPECT_EQ(completed, nb) << where(c) << " step " << step << ": finish() must wait for every bucket";
      ref.zero_grad();
      ref.forward(rows_of(gx, r, p), rows_of(gy, r, p));
      ref.backward();
      c.all_reduce(ref.grads(), ReduceOp::Avg);
      EXPECT_LE(max_diff(m.grads().to_vector(), ref.grads().to_vector()), 1e-14) << where(c) << " step " << step;
    }
    // A backward without the hook started nothing: finish() says so, on every rank, without hanging.
    m.zero_grad();
    m.forward(rows_of(global_batch(2 * p, kT, cfg.vocab_size, 1).first, r, p),
              rows_of(global_batch(2 * p, kT, cfg.vocab_size, 1).second, r, p));
    m.backward();
    expect_clear_error([&] { red.finish(); }, {int64_t(nb)}, where(c) + " no bucket started:");
    c.barrier();
  });
}

// ---- task 4: the overlapped step with no_sync accumulation ----------------------------------------------

TEST(TrainStep, MatchesNaiveDataParallelAndOneRank) {
  // 4 steps of AdamW with clipping from dirty gradients and a warmed-up optimizer; global batch 12
  // (b = 12/p rows per rank) in k = 1 or several micro-batches (k = 3, or b when 3 does not divide
  // b), with one-element buckets, 30000-byte buckets and one bucket.
  const GPTConfig cfg = gpt_config("nano");
  AdamWConfig ac;
  ac.weight_decay = 0.1;
  const double lr = 3e-3, clip = 0.05;
  const int64_t gbs = 12;
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    const int64_t b = gbs / p;
    const int64_t few = b % 3 == 0 ? b / 3 : int64_t(1);  // several micro-batches
    for (auto [cap, mbs] : {std::pair<int64_t, int64_t>{8, few}, {30000, b}, {30000, few}, {int64_t(1) << 30, b}}) {
      {
        const std::string at = where(c) + " cap " + std::to_string(cap) + " micro-batch " + std::to_string(mbs);
        GPT m(cfg, 8, Device::CPU, DType::F64), naive(cfg, 8, Device::CPU, DType::F64),
            one(cfg, 8, Device::CPU, DType::F64);
        AdamW opt(m.layout(), ac, DType::F64, Device::CPU), naive_opt(m.layout(), ac, DType::F64, Device::CPU),
            one_opt(m.layout(), ac, DType::F64, Device::CPU);
        OverlappedReducer red(c, m.grads(), make_buckets(m.layout(), cap, 8));
        auto [wx, wy] = global_batch(gbs, kT, cfg.vocab_size, 99);  // warm-up: the same full-batch step on all three
        for (auto [mm, oo] : {std::pair<GPT*, AdamW*>{&m, &opt}, {&naive, &naive_opt}, {&one, &one_opt}}) {
          mm->zero_grad();
          mm->forward(wx, wy);
          mm->backward();
          clip_grad_norm(mm->grads(), clip);
          oo->step(mm->params(), mm->grads(), lr);
        }
        dirty(m.grads(), -0.25);
        for (int step = 0; step < 4; ++step) {
          auto [gx, gy] = global_batch(gbs, kT, cfg.vocab_size, 20 + uint64_t(step));
          const Tensor x = rows_of(gx, r, p), y = rows_of(gy, r, p);
          const StepStats s = train_step(m, opt, red, c, x, y, mbs, lr, clip);
          const auto [nloss, nnorm] = data_parallel_step(naive, naive_opt, c, x, y, mbs, lr, clip);
          one.zero_grad();
          const double oloss = one.forward(gx, gy);
          one.backward();
          const double onorm = clip_grad_norm(one.grads(), clip);
          one_opt.step(one.params(), one.grads(), lr);
          const std::string st = at + " step " + std::to_string(step);
          if (same_order(c)) {
            EXPECT_EQ(s.loss, nloss) << st;
            EXPECT_EQ(s.grad_norm, nnorm) << st;
            EXPECT_TRUE(bit_equal(m.params(), naive.params())) << st << " parameters differ from naive data parallelism";
          } else {
            EXPECT_NEAR(s.grad_norm, nnorm, 1e-12 * nnorm) << st;
            EXPECT_LE(max_diff(m.params().to_vector(), naive.params().to_vector()), 1e-12) << st;
          }
          EXPECT_NEAR(s.loss, oloss, 1e-12 * oloss) << st << " loss vs one rank";
          EXPECT_NEAR(s.grad_norm, onorm, 1e-10 * onorm) << st << " gradient norm vs one rank";
          EXPECT_LE(max_diff(m.params().to_vector(), one.params().to_vector()), 1e-10) << st << " parameters vs one rank";
          EXPECT_TRUE(identical_on_all_ranks(c, m.params())) << st << " parameters not bit-identical across ranks";
        }
      }
    }
  });
}

TEST(TrainStep, OneAllReducePerBucketPerStepInBackwardOrder) {
  const GPTConfig cfg = gpt_config("nano");
  const int64_t gbs = 12;
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    const int64_t b = gbs / p;
    for (int64_t cap : {int64_t(8), int64_t(10000), int64_t(1) << 30}) {
      for (int64_t mbs : {b, int64_t(1)}) {
        const int64_t k = b / mbs;
        const std::string at = where(c) + " cap " + std::to_string(cap) + " k " + std::to_string(k);
        GPT m(cfg, 9, Device::CPU, DType::F64);
        AdamW opt(m.layout(), AdamWConfig{}, DType::F64, Device::CPU);
        OverlappedReducer red(c, m.grads(), make_buckets(m.layout(), cap, 8));
        const int64_t nb = int64_t(red.buckets().size()), G = int64_t(m.grads().nbytes());
        TraceRecorder& rec = TraceRecorder::current();
        c.reset_stats();
        const int steps = 2;
        for (int step = 0; step < steps; ++step) {
          auto [gx, gy] = global_batch(gbs, kT, cfg.vocab_size, 30 + uint64_t(step));
          rec.set_enabled(true);
          rec.clear();
          train_step(m, opt, red, c, rows_of(gx, r, p), rows_of(gy, r, p), mbs, 1e-3, 1.0);
          expect_overlapped_schedule(rec.events(), red.buckets(), m, k, 8, at + " step " + std::to_string(step));
          rec.set_enabled(false);
        }
        const CommStats& st = c.stats();
        EXPECT_EQ(st[OpKind::AllReduce].calls, steps * (nb + 1)) << at << " one all-reduce per bucket and one for "
                                                                  << "the loss per step, whatever k is";
        EXPECT_EQ(st[OpKind::AllReduce].bytes, steps * (G + 8)) << at;
        EXPECT_EQ(st.total().calls, st[OpKind::AllReduce].calls) << at << " " << st.report();
      }
    }
  });
}

TEST(TrainStep, IndivisibleMicroBatchIsAClearErrorOnEveryRank) {
  const GPTConfig cfg = gpt_config("nano");
  on_groups([&](Communicator& c) {
    const int p = c.size(), r = c.rank();
    GPT m(cfg, 3, Device::CPU, DType::F64);
    AdamW opt(m.layout(), AdamWConfig{}, DType::F64, Device::CPU);
    OverlappedReducer red(c, m.grads(), make_buckets(m.layout(), 4096, 8));
    auto [gx, gy] = global_batch(3 * p, kT, cfg.vocab_size, 2);
    c.reset_stats();
    expect_clear_error([&] { train_step(m, opt, red, c, rows_of(gx, r, p), rows_of(gy, r, p), 2, 1e-3, 1.0); },
                       {2, 3 * p}, where(c));
    EXPECT_EQ(c.stats().total().calls, 0) << where(c) << " check the sizes before communicating";
    c.barrier();
  });
}
