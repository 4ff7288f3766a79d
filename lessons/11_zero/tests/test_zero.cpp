// Lesson 11 public tests, at 1, 2, 3 and 4 ranks (threads backend under -np 1, MPI processes under
// -np 2..4), on a tiny untied model whose parameter count (6902) and block units (2534) neither 3
// nor 4 divides, so shards are uneven:
//   - each rank's pieces follow the library's sharding rule; the formula reproduces the paper's
//     7.5B-parameter, 64-GPU table;
//   - the memory tracker sees, per rank and per category, exactly the bytes of this rank's pieces,
//     and within 1% the paper's formula (memory tests run one rank per process, so the tracker is
//     the rank's: the MPI world under -np N, one rank under -np 1);
//   - every stage trains like data parallelism (f64, clipping active, several steps, dirty
//     gradients and a warmed-up optimizer to start from; k = 1 and several micro-batches);
//   - the accounting shows the collectives and bytes each stage must move;
//   - a ZeRO checkpoint is the single-device file, and resuming it at another d (and stage)
//     continues like the single-device run.
//
// Tolerances: ZeRO adds the same terms as data parallelism, in another grouping (a reduce-scatter
// instead of an all-reduce, squared norms summed per piece), so in f64 losses and norms agree to
// 1e-12 relative and parameters after several AdamW steps to 1e-10 (see lesson 06).

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "core/safetensors.hpp"
#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson11;
using namespace lesson11_test;

// ---- task 1: pieces ---------------------------------------------------------------------------------

TEST(OwnedPieces, UnevenUnitsFollowTheLibraryRule) {
  const std::vector<ShardRange> units{{0, 10}, {10, 7}, {17, 3}, {20, 1}, {21, 0}, {21, 6902}};
  for (int d = 1; d <= 5; ++d) {
    std::vector<int64_t> next(units.size());
    for (size_t u = 0; u < units.size(); ++u) next[u] = units[u].begin;
    for (int r = 0; r < d; ++r) {
      const std::vector<ShardRange> pieces = owned_pieces(units, d, r);
      ASSERT_EQ(pieces.size(), units.size()) << "d=" << d << " r=" << r << ": one piece per unit";
      for (size_t u = 0; u < units.size(); ++u) {
        const int64_t want = units[u].count / d + (r < units[u].count % d ? 1 : 0);
        EXPECT_EQ(pieces[u].count, want) << "d=" << d << " r=" << r << " unit " << u << " (" << units[u].count
                                         << " elements): the first count % d ranks get one more";
        EXPECT_EQ(pieces[u].begin, next[u]) << "d=" << d << " r=" << r << " unit " << u
                                            << ": pieces follow each other in rank order";
        next[u] += want;
      }
    }
    for (size_t u = 0; u < units.size(); ++u)
      EXPECT_EQ(next[u], units[u].begin + units[u].count) << "d=" << d << " unit " << u << " not covered exactly";
  }
}

TEST(OwnedPieces, BadRankIsAClearError) {
  const std::vector<ShardRange> units{{0, 10}};
  expect_clear_error([&] { owned_pieces(units, 3, 3); }, {3}, "rank 3 of 3:");
  expect_clear_error([&] { owned_pieces(units, 2, -1); }, {-1, 2}, "rank -1:");
  expect_clear_error([&] { owned_pieces(units, 0, 0); }, {0}, "world 0:");
}

// ---- task 2: the formula ----------------------------------------------------------------------------

TEST(PredictedBytes, ReproducesThePaperTable) {
  // Rajbhandari et al. 2020, Figure 1 / Table 1: 7.5B parameters, mixed precision (K = 12), 64 GPUs:
  // baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB.
  const double psi = 7.5e9, GB = 1e9;
  const double want[4] = {120.0, 31.4, 16.6, 1.875};
  for (int s = 0; s <= 3; ++s) {
    const StateBytes b = predicted_bytes(s, Recipe::Mixed, psi, 64);
    EXPECT_NEAR(b.total() / GB, want[s], 0.05) << "stage " << s;
  }
  const StateBytes dp = predicted_bytes(0, Recipe::Mixed, psi, 64);
  EXPECT_DOUBLE_EQ(dp.params, 2 * psi);
  EXPECT_DOUBLE_EQ(dp.grads, 2 * psi);
  EXPECT_DOUBLE_EQ(dp.optimizer, 12 * psi);
  const StateBytes s2 = predicted_bytes(2, Recipe::Mixed, psi, 64);
  EXPECT_DOUBLE_EQ(s2.params, 2 * psi);
  EXPECT_DOUBLE_EQ(s2.grads, 2 * psi / 64);
  EXPECT_DOUBLE_EQ(s2.optimizer, 12 * psi / 64);
  // fp32: 4 + 4 + 8 bytes per parameter, 16 / d at stage 3.
  for (int d = 1; d <= 8; ++d) {
    EXPECT_DOUBLE_EQ(predicted_bytes(0, Recipe::FP32, 1000, d).total(), 16000.0) << "d=" << d;
    EXPECT_DOUBLE_EQ(predicted_bytes(1, Recipe::FP32, 1000, d).total(), 8000.0 + 8000.0 / d) << "d=" << d;
    EXPECT_DOUBLE_EQ(predicted_bytes(2, Recipe::FP32, 1000, d).total(), 4000.0 + 12000.0 / d) << "d=" << d;
    EXPECT_DOUBLE_EQ(predicted_bytes(3, Recipe::FP32, 1000, d).total(), 16000.0 / d) << "d=" << d;
  }
}

TEST(PredictedBytes, TransientUnitsAndBadInput) {
  const double psi = 6902;
  for (int d = 1; d <= 4; ++d) {
    for (Recipe rc : {Recipe::FP32, Recipe::Mixed}) {
      const double e = rc == Recipe::FP32 ? 4 : 2;
      const StateBytes s1 = predicted_bytes(1, rc, psi, d, 2534), s2 = predicted_bytes(2, rc, psi, d, 2534),
                       s3 = predicted_bytes(3, rc, psi, d, 2534);
      EXPECT_DOUBLE_EQ(s1.params, e * psi) << "stage 1 keeps no transient unit";
      EXPECT_DOUBLE_EQ(s1.grads, e * psi);
      EXPECT_DOUBLE_EQ(s2.params, e * psi);
      EXPECT_DOUBLE_EQ(s2.grads, e * psi / d + e * 2534) << "stage 2: the shard plus one unit";
      EXPECT_DOUBLE_EQ(s3.params, e * psi / d + e * 2534) << "stage 3: the shard plus one gathered unit";
      EXPECT_DOUBLE_EQ(s3.grads, e * psi / d + e * 2534);
      EXPECT_DOUBLE_EQ(s3.optimizer, (rc == Recipe::FP32 ? 8 : 12) * psi / d);
    }
  }
  expect_clear_error([] { predicted_bytes(4, Recipe::FP32, 10, 1); }, {4}, "stage 4:");
  expect_clear_error([] { predicted_bytes(1, Recipe::FP32, 10, 0); }, {0}, "world 0:");
}

// ---- task 3: stage 1 (and the state of every stage) ------------------------------------------------

namespace {
// A whole-buffer temporary allocated without a MemCategory (Other) is still a whole buffer: the
// memory tests bound what Other grows by during the steps to less than one unit. The reference
// allocates a few scalars there; a hidden full gradient or gathered-parameter buffer is 4 Ψ.
void expect_no_uncategorised_whole_buffer(int64_t other_before, const UnitRunner& runner, const std::string& at) {
  EXPECT_LT(sgpt::testing::peak(MemCategory::Other) - other_before, 4 * runner.largest_unit())
      << at << ": memory of category Other grew by a unit or more during the steps; allocate gradients and "
      << "parameters with their MemCategory, and keep no whole-buffer temporary";
}
}  // namespace

TEST(ZeroMemory, PerRankStateEqualsTheFormula) {
  on_processes([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    const int d = c.size(), r = c.rank();
    UnitRunner runner(cfg);
    const int64_t psi = runner.layout().numel(), big = runner.largest_unit();
    ASSERT_EQ(psi, 6902);
    using sgpt::testing::current;
    const MemCategory cats[3] = {MemCategory::Parameters, MemCategory::Gradients, MemCategory::OptimizerState};
    auto now = [&] { return std::vector<int64_t>{current(cats[0]), current(cats[1]), current(cats[2])}; };
    {  // plain data parallelism: a whole model and a whole AdamW
      const std::vector<int64_t> before = now();
      GPT m(cfg, 1);
      AdamW opt(m.layout(), AdamWConfig{}, DType::F32, Device::CPU);
      const std::vector<int64_t> after = now();
      EXPECT_EQ(after[0] - before[0], 4 * psi);
      EXPECT_EQ(after[1] - before[1], 4 * psi);
      EXPECT_EQ(after[2] - before[2], 8 * psi);
    }
    for (int stage = 1; stage <= 3; ++stage) {
      const std::string at = where(c) + " stage " + std::to_string(stage);
      const std::vector<int64_t> before = now();
      ZeroState z = make_zero_state(runner, c, stage, 1, AdamWConfig{});
      const std::vector<int64_t> after = now();
      const int64_t owned = owned_elements(stage_units(runner, stage), d, r);
      const int64_t want[3] = {stage == 3 ? 4 * owned + 4 * big : 4 * psi, stage >= 2 ? 4 * owned + 4 * big : 4 * psi,
                               8 * owned};
      const StateBytes f = predicted_bytes(stage, Recipe::FP32, double(psi), d, stage >= 2 ? big : 0);
      const double formula[3] = {f.params, f.grads, f.optimizer};
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(after[i] - before[i], want[i]) << at << " " << category_name(cats[i])
                                                 << ": this rank's pieces (" << owned << " elements) exactly";
        EXPECT_NEAR(double(after[i] - before[i]), formula[i], 0.01 * formula[i])
            << at << " " << category_name(cats[i]) << " vs the formula";
      }
    }
  });
}

TEST(ZeroTrain, Stage1MatchesDataParallel) {
  on_groups([](Communicator& c) {
    expect_matches_dp(c, 1, 3, 12, 1, 5, tiny_config(), where(c));
    expect_matches_dp(c, 1, 3, 12, 3, 6, tiny_config(), where(c));
  });
}

TEST(ZeroTrain, IndivisibleMicroBatchIsAClearErrorOnEveryRank) {
  on_groups([](Communicator& c) {
    UnitRunner runner(tiny_config());
    for (int stage = 1; stage <= 3; ++stage) {
      ZeroState z = make_zero_state(runner, c, stage, 1, AdamWConfig{});
      auto [gx, gy] = global_batch(12, 61, 1);
      const Tensor x = rows_of(gx, c.rank(), c.size()), y = rows_of(gy, c.rank(), c.size());
      const int64_t b = 12 / c.size();
      c.reset_stats();
      expect_clear_error([&] { zero_step(z, runner, c, x, y, 5, 1e-3, 1.0); }, {5, b},
                         where(c) + " stage " + std::to_string(stage) + " micro-batch 5:");
      EXPECT_EQ(c.stats().total().calls, 0) << where(c) << " the error must come before any communication";
    }
  });
  expect_clear_error([] { UnitRunner r(tiny_config()); sgpt::testing::on_groups({1}, [&](Communicator& c) {
                           make_zero_state(r, c, 4, 1, AdamWConfig{}); }); }, {4}, "stage 4:");
}

// ---- task 4: stage 2 ----------------------------------------------------------------------------------

TEST(ZeroTrain, Stage2MatchesDataParallel) {
  on_groups([](Communicator& c) {
    expect_matches_dp(c, 2, 3, 12, 1, 5, tiny_config(), where(c));
    expect_matches_dp(c, 2, 3, 12, 3, 6, tiny_config(), where(c));
  });
}

// One step at k = 1: what each collective moved, on this rank.
static CommStats one_step_stats(Communicator& c, int stage, const GPTConfig& cfg) {
  UnitRunner runner(cfg, DType::F64);
  ZeroState z = make_zero_state(runner, c, stage, 3, AdamWConfig{}, DType::F64);
  auto [gx, gy] = global_batch(12, cfg.vocab_size, 2);
  const Tensor x = rows_of(gx, c.rank(), c.size()), y = rows_of(gy, c.rank(), c.size());
  c.reset_stats();
  zero_step(z, runner, c, x, y, x.size(0), 1e-3, 1.0);
  return c.stats();
}

static double bus(const CommStats& s, int d) {
  double b = 0;
  for (OpKind k : {OpKind::AllReduce, OpKind::ReduceScatter, OpKind::AllGather})
    b += bus_bytes(k, double(s[k].bytes), d);
  return b;
}

TEST(ZeroComm, Stages1And2MoveWhatDataParallelMoves) {
  on_groups([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    const int d = c.size();
    const int64_t n = 6902 * 8;  // f64 payload of the whole buffer
    GPT ref(cfg, 3, Device::CPU, DType::F64);
    AdamW ref_opt(ref.layout(), AdamWConfig{}, DType::F64, Device::CPU);
    auto [gx, gy] = global_batch(12, cfg.vocab_size, 2);
    const Tensor x = rows_of(gx, c.rank(), d), y = rows_of(gy, c.rank(), d);
    c.reset_stats();
    data_parallel_step(ref, ref_opt, c, x, y, x.size(0), 1e-3, 1.0);
    const double dp_bus = bus_bytes(OpKind::AllReduce, double(n), d);
    for (int stage = 1; stage <= 2; ++stage) {
      const std::string at = where(c) + " stage " + std::to_string(stage);
      const CommStats s = one_step_stats(c, stage, cfg);
      const int64_t units = stage == 1 ? 1 : cfg.n_layer + 2;
      EXPECT_EQ(s[OpKind::ReduceScatter].calls, units) << at << ": one reduce-scatter per unit";
      EXPECT_EQ(s[OpKind::ReduceScatter].bytes, n) << at << ": the whole gradient, once";
      EXPECT_EQ(s[OpKind::AllGather].calls, units) << at << ": one all-gather per unit";
      EXPECT_EQ(s[OpKind::AllGather].bytes, n) << at << ": the whole parameter buffer, once";
      EXPECT_EQ(s[OpKind::AllReduce].calls, 2) << at << ": only the loss and the squared norm are all-reduced";
      EXPECT_EQ(s[OpKind::AllReduce].bytes, 16) << at;
      EXPECT_NEAR(bus(s, d) - bus_bytes(OpKind::AllReduce, 16, d), dp_bus, 1e-9 * n)
          << at << ": reduce-scatter + all-gather move what one all-reduce moves";
    }
  });
}

TEST(ZeroMemory, Stage2NeverHoldsAFullGradient) {
  on_processes([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    UnitRunner runner(cfg);
    const int64_t before = sgpt::testing::current(MemCategory::Gradients);
    const int64_t other_before = sgpt::testing::current(MemCategory::Other);
    ZeroState z = make_zero_state(runner, c, 2, 1, AdamWConfig{});
    MemoryTracker::instance().reset_peak();
    auto [gx, gy] = global_batch(12, cfg.vocab_size, 3);
    const Tensor x = rows_of(gx, c.rank(), c.size()), y = rows_of(gy, c.rank(), c.size());
    for (int step = 0; step < 2; ++step) zero_step(z, runner, c, x, y, 12 / c.size(), 1e-3, 1.0);
    const int64_t owned = owned_elements(z.units, c.size(), c.rank());
    EXPECT_EQ(sgpt::testing::peak(MemCategory::Gradients) - before, 4 * owned + 4 * runner.largest_unit())
        << where(c) << ": the peak gradient memory is this rank's pieces plus one unit";
    expect_no_uncategorised_whole_buffer(other_before, runner, where(c));
  });
}

// ---- task 5: stage 3 ------------------------------------------------------------------------------

TEST(ZeroTrain, Stage3MatchesDataParallel) {
  on_groups([](Communicator& c) {
    expect_matches_dp(c, 3, 3, 12, 1, 5, tiny_config(), where(c));
    expect_matches_dp(c, 3, 3, 12, 3, 6, tiny_config(), where(c));
  });
}

TEST(ZeroComm, Stage3MovesOneAndAHalfTimesAsMuch) {
  on_groups([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    const int d = c.size();
    const int64_t n = 6902 * 8;
    const CommStats s = one_step_stats(c, 3, cfg);
    const int64_t units = cfg.n_layer + 2;
    EXPECT_EQ(s[OpKind::AllGather].calls, 2 * units) << where(c) << ": each unit gathered before forward and backward";
    EXPECT_EQ(s[OpKind::AllGather].bytes, 2 * n) << where(c);
    EXPECT_EQ(s[OpKind::ReduceScatter].calls, units) << where(c);
    EXPECT_EQ(s[OpKind::ReduceScatter].bytes, n) << where(c);
    EXPECT_EQ(s[OpKind::AllReduce].bytes, 16) << where(c);
    EXPECT_NEAR(bus(s, d) - bus_bytes(OpKind::AllReduce, 16, d), 1.5 * bus_bytes(OpKind::AllReduce, double(n), d), 1e-9 * n)
        << where(c) << ": stage 3 moves 1.5 times what data parallelism moves";
  });
}

TEST(ZeroMemory, Stage3GathersOneUnitAtATime) {
  on_processes([](Communicator& c) {
    const GPTConfig cfg = tiny_config(3);
    UnitRunner runner(cfg);
    const int64_t before = sgpt::testing::current(MemCategory::Parameters);
    const int64_t other_before = sgpt::testing::current(MemCategory::Other);
    ZeroState z = make_zero_state(runner, c, 3, 1, AdamWConfig{});
    MemoryTracker::instance().reset_peak();
    auto [gx, gy] = global_batch(12, cfg.vocab_size, 3);
    const Tensor x = rows_of(gx, c.rank(), c.size()), y = rows_of(gy, c.rank(), c.size());
    for (int step = 0; step < 2; ++step) zero_step(z, runner, c, x, y, 12 / c.size(), 1e-3, 1.0);
    const int64_t owned = owned_elements(z.units, c.size(), c.rank());
    EXPECT_EQ(sgpt::testing::peak(MemCategory::Parameters) - before, 4 * owned + 4 * runner.largest_unit())
        << where(c) << ": the peak parameter memory is this rank's pieces plus one gathered unit";
    EXPECT_EQ(sgpt::testing::current(MemCategory::Parameters) - before, 4 * owned + 4 * runner.largest_unit())
        << where(c) << ": nothing gathered stays alive after the step";
    expect_no_uncategorised_whole_buffer(other_before, runner, where(c));
  });
}

// ---- task 6: checkpoints ------------------------------------------------------------------------------

namespace {
// A file name every rank of `c` agrees on (rank 0's process id; collective).
std::string temp_path(Communicator& c, const std::string& what) {
  Tensor pid = Tensor::from(std::vector<int32_t>{int32_t(::getpid())}, {1});
  c.broadcast(pid, 0);
  return (std::filesystem::temp_directory_path() /
          ("sgpt_l11_" + std::to_string(pid.to_vector()[0]) + "_" + std::to_string(c.size()) + "_" + what + ".safetensors"))
      .string();
}
// The single-device run of the same steps: one GPT, the whole global batch, the same dirty start.
struct OneDevice {
  GPT m;
  AdamW opt;
  OneDevice(const GPTConfig& cfg, uint64_t seed, const AdamWConfig& ac)
      : m(cfg, seed, Device::CPU, DType::F64), opt(m.layout(), ac, DType::F64, Device::CPU) {}
  void step(const Tensor& gx, const Tensor& gy, double lr, double clip) {
    m.zero_grad();
    m.forward(gx, gy);
    m.backward();
    clip_grad_norm(m.grads(), clip);
    opt.step(m.params(), m.grads(), lr);
  }
};
constexpr double kLr = 3e-3, kClip = 0.05;
}  // namespace

TEST(ZeroCheckpoint, ConsolidatedFileEqualsSingleDevice) {
  on_groups([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    const int d = c.size(), r = c.rank();
    AdamWConfig ac;
    for (int stage = 1; stage <= 3; ++stage) {
      const std::string at = where(c) + " stage " + std::to_string(stage);
      UnitRunner runner(cfg, DType::F64);
      ZeroState z = make_zero_state(runner, c, stage, 9, ac, DType::F64);
      dirty_zero(z);
      OneDevice one(cfg, 9, ac);
      dirty_optimizer(one.opt, 0);
      for (int step = 0; step < 2; ++step) {
        auto [gx, gy] = global_batch(12, cfg.vocab_size, 70 + uint64_t(step));
        zero_step(z, runner, c, rows_of(gx, r, d), rows_of(gy, r, d), 12 / d, kLr, kClip);
        one.step(gx, gy, kLr, kClip);
      }
      TrainState st;
      st.step = 2;
      st.seed = 9;
      const std::string zpath = temp_path(c, "zero" + std::to_string(stage)), opath = temp_path(c, "one");
      save_zero_checkpoint(zpath, z, runner, c, st);
      if (r == 0) {
        save_checkpoint(opath, one.m, one.opt, st);
        const SafeTensors zf = load_safetensors(zpath), of = load_safetensors(opath);
        ASSERT_EQ(zf.tensors.size(), of.tensors.size()) << at << " tensors in the file";
        for (size_t i = 0; i < of.tensors.size(); ++i) {
          const auto& [name, t] = of.tensors[i];
          ASSERT_EQ(zf.tensors[i].first, name) << at << " tensor " << i;
          ASSERT_EQ(zf.tensors[i].second.shape(), t.shape()) << at << " " << name;
          ASSERT_EQ(zf.tensors[i].second.dtype(), t.dtype()) << at << " " << name;
          EXPECT_LE(max_diff(zf.tensors[i].second.to_vector(), t.to_vector()), 1e-10) << at << " " << name;
        }
        for (const auto& [key, value] : of.metadata)
          if (key.find("checksum") == std::string::npos) {
            EXPECT_EQ(zf.metadata.count(key) ? zf.metadata.at(key) : "(missing)", value) << at << " metadata " << key;
          }
        verify_checkpoint(zpath);  // a complete, checksummed file (written atomically)
        std::remove(opath.c_str());
        std::remove(zpath.c_str());
      }
      c.barrier();
    }
  });
}

TEST(ZeroCheckpoint, ResumeWithAnotherWorldSizeContinuesExactly) {
  on_groups([](Communicator& c) {
    const GPTConfig cfg = tiny_config();
    const int d = c.size();
    AdamWConfig ac;
    for (int stage = 1; stage <= 3; ++stage) {
      const std::string at = where(c) + " stage " + std::to_string(stage);
      const std::string path = temp_path(c, "resume" + std::to_string(stage));
      {
        UnitRunner runner(cfg, DType::F64);
        ZeroState z = make_zero_state(runner, c, stage, 11, ac, DType::F64);
        dirty_zero(z);
        for (int step = 0; step < 2; ++step) {
          auto [gx, gy] = global_batch(12, cfg.vocab_size, 80 + uint64_t(step));
          zero_step(z, runner, c, rows_of(gx, c.rank(), d), rows_of(gy, c.rank(), d), 12 / d, kLr, kClip);
        }
        TrainState st;
        st.step = 2;
        st.seed = 11;
        save_zero_checkpoint(path, z, runner, c, st);
      }
      // Resume on another number of ranks (d - 1; 1 when d = 1) and with the next stage, and
      // compare with the single-device run resumed from the same file.
      const int d2 = d > 1 ? d - 1 : 1, stage2 = stage % 3 + 1;
      auto sub = c.split(c.rank() < d2 ? 0 : -1, c.rank(), "resume");
      if (sub) {
        UnitRunner runner(cfg, DType::F64);
        ZeroState z = make_zero_state(runner, *sub, stage2, 123, ac, DType::F64);  // another seed: the file wins
        dirty_zero(z);
        const TrainState st = load_zero_checkpoint(path, z, runner);
        EXPECT_EQ(st.step, 2) << at;
        OneDevice one(cfg, 0, ac);
        load_checkpoint(path, one.m, one.opt);
        for (int step = 2; step < 4; ++step) {
          auto [gx, gy] = global_batch(12, cfg.vocab_size, 80 + uint64_t(step));
          zero_step(z, runner, *sub, rows_of(gx, sub->rank(), d2), rows_of(gy, sub->rank(), d2), 12 / d2, kLr, kClip);
          one.step(gx, gy, kLr, kClip);
          const Tensor full = gathered_params(z, *sub, one.m.layout().numel());
          EXPECT_LE(max_diff(full.to_vector(), one.m.params().to_vector()), 1e-10)
              << at << " resumed at d=" << d2 << " stage " << stage2 << " step " << step;
        }
      }
      c.barrier();
      if (c.rank() == 0) std::remove(path.c_str());
    }
  });
}
