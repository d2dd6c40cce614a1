// The Hadamard rotation (hadamard.h) and the cache that uses it: orthonormal (inverse, norms, dot products) for
// power-of-two heads and for heads with a Paley factor (48, 80, 96, 120, ...), an outlier spread over every channel,
// and in the mixed cache the same attention output as without it at FP16, tokens read back unrotated, and a smaller
// INT2 error where one channel is an outlier.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "hadamard.h"
#include "kv_codec.h"
#include "kv_cache_mixed.h"
#include "test_util.h"

namespace mikv::test {
namespace {

TEST(Hadamard, IsOrthonormal) {
  std::mt19937 rng(1);
  for (int d : {2, 8, 12, 20, 24, 40, 48, 64, 80, 96, 120, 128, 1024}) {
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
}

TEST(Hadamard, TakesPowersOfTwoAndPaleyFactors) {
  for (int d : {2, 4, 64, 1024, 12, 20, 24, 40, 44, 48, 80, 96, 120, 160, 192, 768})
    EXPECT_TRUE(HadamardSizeOk(d)) << d;
  // 6 and 10 are no multiple of 4; 56 = 8·7 and 112 = 16·7 have no factor q + 1 (q ≡ 3 mod 4 prime) with a power
  // of two left over (28's q = 27 is not prime); 2048 is above the largest head.
  for (int d : {0, 1, 3, 6, 10, 56, 112, 2048}) EXPECT_FALSE(HadamardSizeOk(d)) << d;
}

// R's rows, from the images of the unit vectors, are orthonormal with every entry ±1/sqrt(d) (H's entries are ±1),
// and Unrotate is R's transpose.
TEST(Hadamard, IsASignedHadamardMatrixOverSqrtD) {
  for (int d : {12, 20, 24, 44, 48, 80, 88, 96, 120, 192, 240, 64}) {  // every P of PaleyAcrossBlocks, m 12, 20, 44, 60
    SCOPED_TRACE(d);
    std::vector<float> r((size_t)d * d), u((size_t)d * d);  // column j: R e_j, Rᵀ e_j
    for (int j = 0; j < d; ++j) {
      std::vector<float> e(d, 0.0f), f(d, 0.0f);
      e[j] = f[j] = 1.0f;
      HadamardRotate(e.data(), d);
      HadamardUnrotate(f.data(), d);
      for (int i = 0; i < d; ++i) {
        r[(size_t)i * d + j] = e[i];
        u[(size_t)i * d + j] = f[i];
      }
    }
    const float entry = 1.0f / std::sqrt((float)d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) {
        ASSERT_NEAR(std::fabs(r[(size_t)i * d + j]), entry, 1e-6f) << i << "," << j;
        ASSERT_NEAR(u[(size_t)i * d + j], r[(size_t)j * d + i], 1e-6f) << i << "," << j;
        double dot = 0;  // row i · row j
        for (int k = 0; k < d; ++k) dot += (double)r[(size_t)i * d + k] * r[(size_t)j * d + k];
        ASSERT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-5) << i << "," << j;
      }
  }
}

TEST(Hadamard, SpreadsAnOutlierOverEveryChannel) {
  for (int d : {64, 48, 80}) {
    SCOPED_TRACE(d);
    std::vector<float> x(d, 0.0f);
    x[17] = 100.0f;
    HadamardRotate(x.data(), d);
    for (float v : x) EXPECT_NEAR(std::fabs(v), 100.0f / std::sqrt((float)d), 1e-4f);
  }
}

// The round trip through INT2 codes (KvCodec, fitted ranges where rotated, as the cache does) of 500 vectors with an
// outlier channel: rotating first takes the error to 0.46-0.64 of the unrotated one for every head shape, power of
// two or not, in its default group (measured: 64 0.46, 48 0.50, 80 0.64, 96 0.51).
TEST(Hadamard, HalvesTheInt2RoundTripErrorOfAVectorWithAnOutlier) {
  for (int d : {64, 48, 80, 96}) {
    SCOPED_TRACE(d);
    double err[2] = {0, 0}, norm = 0;
    for (int rotate = 0; rotate < 2; ++rotate) {
      const KvCodec codec(KvPrecision::Int2, d, KvAutoGroup(d), rotate == 1);
      std::vector<uint8_t> row(codec.bytes());
      std::mt19937 rng(11);
      for (int i = 0; i < 500; ++i) {
        const auto x = RandomVector(rng, d, 12.0f, 5);
        auto y = x;
        if (rotate) HadamardRotate(y.data(), d);
        codec.Encode(y.data(), row.data());
        codec.Decode(row.data(), y.data());
        if (rotate) HadamardUnrotate(y.data(), d);
        for (int c = 0; c < d; ++c) {
          err[rotate] += (double)(y[c] - x[c]) * (y[c] - x[c]);
          if (!rotate) norm += (double)x[c] * x[c];
        }
      }
    }
    const double plain = std::sqrt(err[0] / norm), rotated = std::sqrt(err[1] / norm);
    std::printf("head %d: INT2 round trip error %.3f unrotated, %.3f rotated\n", d, plain, rotated);
    EXPECT_LT(rotated, 0.75 * plain);
  }
}

KvGeometry Geometry(int head_dim = 64) {
  return OneLayerGeometry(2, 1, head_dim, 96);
}

// Feeds n tokens whose keys have an outlier channel; returns the last step's attention output for both heads.
std::vector<float> AttendAll(const KvCacheConfig& c, int n, std::vector<std::vector<float>>* keys = nullptr,
                             int head_dim = 64) {
  const KvGeometry g = Geometry(head_dim);
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
  for (int d : {64, 48}) {
    SCOPED_TRACE(d);
    KvCacheConfig c;
    c.policy = KvPolicy::Full;
    std::vector<std::vector<float>> keys;
    const auto plain = AttendAll(c, 60, nullptr, d);
    c.rotate = true;
    const auto rotated = AttendAll(c, 60, &keys, d);
    EXPECT_LT(RelativeError(rotated, plain), 2e-3);  // FP16 rounding of other numbers, nothing more
  }
}

// One run of 80 tokens each, so a noisy measure: heads of 64 in groups of 32, of 48 (stories15M's) in their default
// groups of 24, of 96 (a Paley factor of 12) in groups of 32. (Groups of 16 or 8 gain less here, and at 48/16 the
// rotated output came out 6% worse in this one sample, though the round trip below gains there too.)
TEST(RotatedCache, Int2WithAnOutlierChannelLosesLess) {
  for (auto [d, group] : {std::pair{64, 32}, {48, kKvGroupAuto}, {96, 32}}) {
    SCOPED_TRACE(d);
    KvCacheConfig c;
    c.policy = KvPolicy::Uniform;
    c.lo = KvPrecision::Int2;
    c.balance_keys = false;
    c.group = group;
    KvCacheConfig full;
    full.policy = KvPolicy::Full;
    const auto ref = AttendAll(full, 80, nullptr, d);
    const double plain = RelativeError(AttendAll(c, 80, nullptr, d), ref);
    c.rotate = true;
    std::vector<std::vector<float>> keys;
    const double rotated = RelativeError(AttendAll(c, 80, &keys, d), ref);
    std::printf("head %d, group %d: INT2 attention output error vs FP16: %.3f unrotated, %.3f rotated\n", d, group,
                plain, rotated);
    EXPECT_LT(rotated, 0.8 * plain);
  }
}

TEST(RotatedCache, NeedsAHeadDimensionWithAHadamardMatrix) {
  KvGeometry g = Geometry();
  g.head_dim = 112;
  KvCacheConfig c;
  c.policy = KvPolicy::MiKV;
  c.rotate = true;
  c.group = 16;
  KvPlan plan;
  const Status s = PlanKvCache(g, c, &plan);
  EXPECT_EQ(s.code(), MIKV_ERR_INVALID_ARGUMENT);
  EXPECT_NE(s.message().find("112"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("power of two"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace mikv::test
