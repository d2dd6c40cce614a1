// The Hadamard rotation (hadamard.h) and the cache that uses it: orthonormal (inverse, norms, dot products), an
// outlier spread over every channel, and in the mixed cache the same attention output as without it at FP16,
// tokens read back unrotated, and a smaller INT2 error where one channel is an outlier.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "hadamard.h"
#include "kv_cache_mixed.h"
#include "test_util.h"

namespace mikv::test {
namespace {

TEST(Hadamard, IsOrthonormal) {
  std::mt19937 rng(1);
  for (int d : {2, 8, 64, 128, 1024}) {
    SCOPED_TRACE(d);
    const auto x = RandomVector(rng, d), y = RandomVector(rng, d);
    auto rx = x, ry = y;
    HadamardRotate(rx.data(), d);
    HadamardRotate(ry.data(), d);
    double xy = 0, rxy = 0, xx = 0, rxx = 0;
    for (int i = 0; i < d; ++i) {
      xy += (double)x[i] * y[i];
      rxy += (double)rx[i] * ry[i];
      xx += (double)x[i] * x[i];
      rxx += (double)rx[i] * rx[i];
    }
    EXPECT_NEAR(rxy, xy, 1e-4 * std::sqrt(xx) * d);
    EXPECT_NEAR(rxx, xx, 1e-5 * xx);
    EXPECT_NE(rx, x);  // it did rotate
    HadamardUnrotate(rx.data(), d);
    for (int i = 0; i < d; ++i) EXPECT_NEAR(rx[i], x[i], 1e-5f * (1 + std::fabs(x[i])));
  }
  EXPECT_TRUE(HadamardSizeOk(64));
  EXPECT_FALSE(HadamardSizeOk(80));
  EXPECT_FALSE(HadamardSizeOk(0));
}

TEST(Hadamard, SpreadsAnOutlierOverEveryChannel) {
  const int d = 64;
  std::vector<float> x(d, 0.0f);
  x[17] = 100.0f;
  HadamardRotate(x.data(), d);
  for (float v : x) EXPECT_NEAR(std::fabs(v), 100.0f / 8.0f, 1e-4f);
}

KvGeometry Geometry() {
  return OneLayerGeometry(2, 1, 64, 96);
}

// Feeds n tokens whose keys have an outlier channel; returns the last step's attention output for both heads.
std::vector<float> AttendAll(const KvCacheConfig& c, int n, std::vector<std::vector<float>>* keys = nullptr) {
  const KvGeometry g = Geometry();
  CacheUnderTest t(g, c);
  EXPECT_TRUE(t.status.ok()) << t.status.ToString();
  std::mt19937 rng(7);
  std::vector<float> out(g.n_heads * g.head_dim);
  for (int pos = 0; pos < n; ++pos) {
    std::vector<float> q = RandomVector(rng, g.n_heads * g.head_dim);
    const auto k = RandomVector(rng, g.head_dim, 12.0f, 5), v = RandomVector(rng, g.head_dim, 6.0f, 5);
    if (keys) keys->push_back(k);
    t.cache->Observe(0, 1, q.data());
    t.cache->Write(0, pos, 1, k.data(), v.data());
    t.cache->Attend(0, pos, 0, q.data(), out.data(), t.scratch.data());
  }
  if (keys) {  // every token reads back as it went in (FP16 rounding aside)
    std::vector<float> k(g.head_dim), v(g.head_dim);
    for (int pos = 0; pos < n; ++pos) {
      EXPECT_TRUE(t.cache->ReadToken(0, 0, pos, k.data(), v.data()));
      if (c.lo == KvPrecision::F16 || c.policy == KvPolicy::Full) {
        for (int i = 0; i < g.head_dim; ++i) EXPECT_NEAR(k[i], (*keys)[pos][i], 2e-3f * (1 + std::fabs(k[i])));
      }
    }
  }
  return out;
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

TEST(RotatedCache, FullPrecisionGivesTheSameAttention) {
  KvCacheConfig c;
  c.policy = KvPolicy::Full;
  std::vector<std::vector<float>> keys;
  const auto plain = AttendAll(c, 60);
  c.rotate = true;
  const auto rotated = AttendAll(c, 60, &keys);
  EXPECT_LT(RelativeError(rotated, plain), 2e-3);  // FP16 rounding of other numbers, nothing more
}

TEST(RotatedCache, Int2WithAnOutlierChannelLosesLess) {
  KvCacheConfig c;
  c.policy = KvPolicy::Uniform;
  c.lo = KvPrecision::Int2;
  c.balance_keys = false;
  c.group = 32;
  KvCacheConfig full;
  full.policy = KvPolicy::Full;
  const auto ref = AttendAll(full, 80);
  const double plain = RelativeError(AttendAll(c, 80), ref);
  c.rotate = true;
  std::vector<std::vector<float>> keys;
  const double rotated = RelativeError(AttendAll(c, 80, &keys), ref);
  std::printf("INT2 attention output error vs FP16: %.3f unrotated, %.3f rotated\n", plain, rotated);
  EXPECT_LT(rotated, 0.8 * plain);
}

TEST(RotatedCache, NeedsAPowerOfTwoHeadDimension) {
  KvGeometry g = Geometry();
  g.head_dim = 80;
  KvCacheConfig c;
  c.policy = KvPolicy::MiKV;
  c.rotate = true;
  c.group = 16;
  KvPlan plan;
  const Status s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("power of two"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace mikv::test
