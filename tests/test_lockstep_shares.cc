// LockstepShares: equal shares of every projection to begin with (Linear::ShareOfRows'), rows moving towards the
// threads that work faster, within bounds, always every row once, in Run's tiles.
#include <gtest/gtest.h>

#include <vector>

#include "linear.h"
#include "lockstep_shares.h"

namespace mikv {
namespace {

// Every matrix's rows, each exactly once, in thread order; returns thread t's share of matrix m in rows.
void ExpectSharesCoverEveryRowOnce(const LockstepShares& s, size_t threads, const size_t (&rows)[4]) {
  for (int m = 0; m < LockstepShares::kMatrices; ++m) {
    size_t next = 0;
    for (size_t t = 0; t < threads; ++t) {
      const auto [begin, end] = s.Rows((LockstepShares::Matrix)m, t);
      EXPECT_EQ(begin, next) << "matrix " << m << ", thread " << t;
      EXPECT_LE(begin, end);
      EXPECT_TRUE(begin % 16 == 0 || begin == rows[m]) << "a share starts on a tile";
      next = end;
    }
    EXPECT_EQ(next, rows[m]) << "matrix " << m;
  }
}

TEST(LockstepShares, StartEqualAsTheTilesShareOut) {
  const size_t rows[4] = {480, 288, 1536, 288};
  for (size_t threads : {1, 2, 3, 4, 7}) {
    LockstepShares s(threads, rows);
    for (int m = 0; m < LockstepShares::kMatrices; ++m)
      for (size_t t = 0; t < threads; ++t)
        EXPECT_EQ(s.Rows((LockstepShares::Matrix)m, t), Linear::ShareOfRows(rows[m], t, threads));
    ExpectSharesCoverEveryRowOnce(s, threads, rows);
  }
}

TEST(LockstepShares, RowsMoveTowardsTheFasterThreadAndSettleAtItsPace) {
  const size_t rows[4] = {576, 576, 1536, 576};
  LockstepShares s(2, rows);
  // Thread 1 takes 1.25x as long for the same rows: its pace is 0.8 of thread 0's, so thread 0 should end up with
  // 1 / 1.8 = 0.556 of the rows.
  for (int step = 0; step < 60; ++step) {
    const double busy[2] = {s.Weight(0) * 1.0, s.Weight(1) * 1.25};
    s.Rebalance(busy);
    ExpectSharesCoverEveryRowOnce(s, 2, rows);
  }
  EXPECT_NEAR(s.Weight(0), 1 / 1.8, 1e-3);
  EXPECT_NEAR(s.Weight(0) + s.Weight(1), 1.0, 1e-12);
  const auto [b0, e0] = s.Rows(LockstepShares::kGate, 0);
  EXPECT_EQ(b0, 0u);
  EXPECT_NEAR((double)e0 / 1536, 1 / 1.8, 16.0 / 1536);  // within a tile
  // Equal pace again: back to halves.
  for (int step = 0; step < 60; ++step) {
    const double busy[2] = {s.Weight(0), s.Weight(1)};
    s.Rebalance(busy);
  }
  EXPECT_NEAR(s.Weight(0), 0.5, 1e-3);
}

TEST(LockstepShares, AThreadFarBehindKeepsHalfAnEqualShareAndNoClockChangesNothing) {
  const size_t rows[4] = {480, 288, 1536, 288};
  LockstepShares s(4, rows);
  for (int step = 0; step < 100; ++step) {
    const double busy[4] = {s.Weight(0) * 100, s.Weight(1), s.Weight(2), s.Weight(3)};
    s.Rebalance(busy);
    ExpectSharesCoverEveryRowOnce(s, 4, rows);
  }
  EXPECT_GE(s.Weight(0), 0.1);  // clamped at half of an equal share (0.125), then the weights renormalized
  EXPECT_LT(s.Weight(0), 0.2);
  const double before = s.Weight(0);
  const double no_clock[4] = {0, 1, 1, 1};
  s.Rebalance(no_clock);
  EXPECT_EQ(s.Weight(0), before);
  // Set by hand: proportions, or nothing at all from weights that are not positive and finite.
  const double set[4] = {1, 1, 1, 5};
  ASSERT_TRUE(s.SetWeights(set));
  EXPECT_DOUBLE_EQ(s.Weight(3), 0.625);
  ExpectSharesCoverEveryRowOnce(s, 4, rows);
  const double bad[4] = {1, 0, 1, 1};
  EXPECT_FALSE(s.SetWeights(bad));
  EXPECT_DOUBLE_EQ(s.Weight(3), 0.625);
}

}  // namespace
}  // namespace mikv
