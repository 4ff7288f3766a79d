// Agreement between ranks (comm/agreement.hpp) on real MPI processes: strings gathered, settings
// compared with the first difference named on every rank, one rank's set-up failure shared; and
// the communication timeout's setter.

#include <gtest/gtest.h>

#include <cmath>

#include "comm/agreement.hpp"
#include "comm/testing/mpi_test.hpp"

namespace sgpt {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const CollectiveError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a CollectiveError: ") + e.what();
  }
  return "";
}

TEST(Agreement, GathersStringsOfEveryLength) {
  Communicator& w = testing::world();
  const std::string mine(static_cast<std::size_t>(3 * w.rank()), static_cast<char>('a' + w.rank()));
  std::vector<std::string> all = all_gather_strings(w, mine);
  ASSERT_EQ(all.size(), static_cast<std::size_t>(w.size()));
  for (int r = 0; r < w.size(); ++r)
    EXPECT_EQ(all[r], std::string(static_cast<std::size_t>(3 * r), static_cast<char>('a' + r)));
  EXPECT_EQ(all_gather_strings(w, ""), std::vector<std::string>(w.size()));
}

TEST(Agreement, EqualSettingsPass) {
  Communicator& w = testing::world();
  EXPECT_NO_THROW(check_same_on_all_ranks(w, {{"--lr", "0.003"}, {"--seed", "5"}}, "flags"));
}

TEST(Agreement, TheFirstDifferingSettingIsNamedOnEveryRank) {
  Communicator& w = testing::world();
  const int last = w.size() - 1;
  // The last rank differs in --seed and in --batch; --seed comes first and is the one named.
  std::vector<Setting> s{{"--lr", "0.003"},
                         {"--seed", w.rank() == last ? "7" : "5"},
                         {"--batch", w.rank() == last ? "3" : "2"}};
  const std::string m = error_of([&] { check_same_on_all_ranks(w, s, "flags"); });
  EXPECT_NE(m.find(str("[rank ", w.rank(), "]")), std::string::npos) << m;
  EXPECT_NE(m.find("were started with different flags: --seed is"), std::string::npos) << m;
  EXPECT_NE(m.find(str("'7' on rank ", last)), std::string::npos) << m;
  EXPECT_NE(m.find("'5' on rank 0"), std::string::npos) << m;
  EXPECT_EQ(m.find("--batch"), std::string::npos) << m;
}

TEST(Agreement, OneRanksSetUpFailureStopsEveryRank) {
  Communicator& w = testing::world();
  const int last = w.size() - 1;
  const std::string m = error_of([&] {
    run_on_all_ranks(&w, [&] {
      if (w.rank() == last) throw Error("train.bin is missing on this node");
    });
  });
  EXPECT_NE(m.find("train.bin is missing on this node"), std::string::npos) << m;
  if (w.rank() != last) {
    EXPECT_NE(m.find(str("rank ", last, " failed")), std::string::npos) << m;
  }
  // And nothing is thrown when every rank succeeds.
  EXPECT_EQ(error_of([&] { run_on_all_ranks(&w, [] {}); }), "");
}

TEST(Agreement, TheTimeoutIsValidatedAndInheritedBySubGroups) {
  Communicator& w = testing::world();
  const double before = w.timeout();
  EXPECT_THROW(w.set_timeout(-1), Error);
  EXPECT_THROW(w.set_timeout(std::nan("")), Error);
  w.set_timeout(42);
  auto sub = w.split(w.rank() % 2, w.rank());
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->timeout(), 42);
  w.set_timeout(before);
}

}  // namespace
}  // namespace sgpt
