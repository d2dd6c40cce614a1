// SwiGlu: silu(gate)·up in place, for the two layouts the graph hands it (gate and up side by side per row, as the
// fused gate/up operator writes them, and all gates then all ups, as two operators write them), one row and several:
// every output row is the formula's, up to float rounding, though it is written over rows still being read.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "swiglu.h"

namespace mikv {
namespace {

TEST(SwiGlu, BothLayoutsGiveSiluOfGateTimesUpInPlace) {
  SwiGlu swiglu;
  ASSERT_TRUE(swiglu.Create().ok());
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const size_t hidden = 37;  // not a multiple of any vector width
  for (size_t n : {1, 2, 5})
    for (bool side_by_side : {true, false}) {
      SCOPED_TRACE(std::to_string(n) + (side_by_side ? " rows side by side" : " rows, gates then ups"));
      std::vector<float> h(2 * n * hidden);
      for (float& v : h) v = normal(rng);
      const size_t row = side_by_side ? 2 * hidden : hidden, up = side_by_side ? hidden : n * hidden;
      std::vector<float> want(n * hidden);
      for (size_t t = 0; t < n; ++t)
        for (size_t i = 0; i < hidden; ++i) {
          const double g = h[t * row + i], u = h[t * row + up + i];
          want[t * hidden + i] = (float)(g / (1.0 + std::exp(-g)) * u);
        }
      ASSERT_TRUE(swiglu.Run(h.data(), n, hidden, row, up).ok());
      for (size_t i = 0; i < n * hidden; ++i)
        ASSERT_NEAR(h[i], want[i], 1e-5f * (1.0f + std::fabs(want[i]))) << "row " << i / hidden << ", element " << i % hidden;
    }
}

// RunInto (the lockstep decode's, out of place) gives Run's bits: the same products in the same order.
TEST(SwiGlu, RunIntoIsRunBitForBitAndLeavesItsInputs) {
  SwiGlu swiglu;
  ASSERT_TRUE(swiglu.Create().ok());
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (size_t hidden : {1, 37, 1536}) {
    std::vector<float> h(2 * hidden);
    for (float& v : h) v = normal(rng);
    const std::vector<float> inputs = h;
    std::vector<float> product(hidden), out(hidden);
    ASSERT_TRUE(swiglu.RunInto(h.data(), h.data() + hidden, hidden, product.data(), out.data()).ok());
    ASSERT_EQ(h, inputs) << "gate and up are only read";
    ASSERT_TRUE(swiglu.Run(h.data(), 1, hidden, 2 * hidden, hidden).ok());
    for (size_t i = 0; i < hidden; ++i) ASSERT_EQ(out[i], h[i]) << "hidden " << hidden << ", element " << i;
  }
}

}  // namespace
}  // namespace mikv
