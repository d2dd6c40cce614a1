// ggml's block formats and the qb32 matrix-product kernels: quantizers against their definitions, the scalar
// reference against dequantized float arithmetic, and every SIMD variant against the scalar reference on random
// shapes (odd batch sizes, partial output ranges and row groups, rows of up to 200 blocks, codes at their extremes):
// every packed kernel (x86, NEON with and without SDOT) bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "fp16.h"
#include "ggml_blocks.h"
#include "qb32_gemm.h"

namespace mikv {
#if defined(MIKV_TEST_NEON_EMULATED)
extern const Qb32Kernels kNeonQb32KernelsEmulated;     // kernels_neon/ through SIMDe
extern const Qb32Kernels kNeonDotQb32KernelsEmulated;  // the same, its SDOT path
#endif
namespace {

std::vector<const Qb32Kernels*> SimdVariants() {
  std::vector<const Qb32Kernels*> v;
  for (const char* isa : {"avx2", "avx512vnni", "neon", "neon-dotprod"})
    if (const Qb32Kernels* k = GetQb32Kernels(isa)) v.push_back(k);
#if defined(MIKV_TEST_NEON_EMULATED)
  v.push_back(&kNeonQb32KernelsEmulated);
  v.push_back(&kNeonDotQb32KernelsEmulated);
#endif
  return v;
}

std::vector<float> Random(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = d(rng);
  return x;
}

TEST(GgmlBlocks, QuantizersStayWithinHalfAStepAndRoundTrip) {
  std::mt19937 rng(3);
  const size_t n = 32 * 50;
  std::vector<float> x = Random(n, rng, 0.7f);
  x[5] = 0.0f;
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block: scale 0, codes 0
  std::vector<uint8_t> q8(n / 32 * kQ8_0BlockBytes), q4(n / 32 * kQ4_0BlockBytes);
  QuantizeRowQ8_0(x.data(), n, q8.data());
  QuantizeRowQ4_0(x.data(), n, q4.data());
  std::vector<float> y8(n), y4(n);
  DequantizeRowQ8_0(q8.data(), n, y8.data());
  DequantizeRowQ4_0(q4.data(), n, y4.data());
  for (size_t b = 0; b < n / 32; ++b) {
    const float d8 = std::fabs(GgmlBlockScale(&q8[b * kQ8_0BlockBytes]));
    const float d4 = std::fabs(GgmlBlockScale(&q4[b * kQ4_0BlockBytes]));
    for (size_t j = b * 32; j < b * 32 + 32; ++j) {
      // f16 rounding of the scale adds at most 2^-11 relative on top of half a step. Q4_0's codes reach −8·d on
      // the side of the block's extreme but only +7·d on the other, so there a value may be a whole step off.
      EXPECT_LE(std::fabs(x[j] - y8[j]), 0.5f * d8 + std::fabs(x[j]) * 1e-3f) << j;
      EXPECT_LE(std::fabs(x[j] - y4[j]), 1.0f * d4 + std::fabs(x[j]) * 1e-3f) << j;
    }
  }
  EXPECT_EQ(GgmlBlockScale(&q8[2 * kQ8_0BlockBytes]), 0.0f);
  // Requantizing dequantized values reproduces the blocks (the codes are a fixed point).
  std::vector<uint8_t> again(q8.size());
  QuantizeRowQ8_0(y8.data(), n, again.data());
  EXPECT_EQ(again, q8);
}

TEST(GgmlBlocks, ActivationCodesAreRoundedHalfEvenOnTheAmaxScale) {
  // amax 127 makes the step exactly 1, so x = k + 0.5 is a tie: llama.cpp's SIMD rounding goes to even.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = 3.5f;
  x[3] = -2.5f;
  x[4] = 0.49f;
  x[5] = std::nanf("");  // must not be undefined behaviour
  std::vector<uint8_t> q(kQ8_0BlockBytes);
  QuantizeActivationsQ8_0(x.data(), 32, q.data());
  const int8_t* c = reinterpret_cast<const int8_t*>(q.data() + 2);
  EXPECT_EQ(GgmlBlockScale(q.data()), 1.0f);
  EXPECT_EQ(c[0], 127);
  EXPECT_EQ(c[1], 2);
  EXPECT_EQ(c[2], 4);
  EXPECT_EQ(c[3], -2);
  EXPECT_EQ(c[4], 0);
}

// Every table's activation quantizer (the SIMD ones run before each product of a decode step) writes the
// reference's bytes and sums: blocks of random magnitudes, exact ties on a step of 1, an all-zero block, values that
// clamp, NaN (left out of amax, code −127), infinities, −0 and subnormals, and the row length in whole blocks only.
TEST(Qb32Gemm, EveryVariantQuantizesActivationsAsTheReference) {
  std::mt19937 rng(17);
  std::vector<const Qb32Kernels*> tables = SimdVariants();
  tables.push_back(&kScalarQb32Kernels);
  const float nan = std::nanf(""), inf = INFINITY;
  for (int trial = 0; trial < 60; ++trial) {
    const size_t blocks = 1 + rng() % 40, n = blocks * kQBlock;
    std::vector<float> x(n + 7, 1234.0f);  // past n: must not be read into any block
    std::uniform_real_distribution<float> scale_exp(-30.0f, 30.0f);
    for (size_t b = 0; b < blocks; ++b) {
      const float scale = std::exp2(scale_exp(rng));
      std::normal_distribution<float> normal(0.0f, scale);
      float* v = x.data() + b * kQBlock;
      for (size_t j = 0; j < kQBlock; ++j) v[j] = normal(rng);
      switch (rng() % 6) {
        case 0:  // a step of exactly 1: every k + 0.5 a tie
          v[0] = 127.0f;
          for (size_t j = 1; j < kQBlock; ++j) v[j] = (float)((int)(rng() % 255) - 127) + (rng() % 2 ? 0.5f : 0.0f);
          break;
        case 1:
          std::fill(v, v + kQBlock, 0.0f);
          if (rng() % 2) v[rng() % kQBlock] = -0.0f;
          break;
        case 2:
          v[rng() % kQBlock] = nan;
          v[rng() % kQBlock] = -nan;
          break;
        case 3:
          v[rng() % kQBlock] = rng() % 2 ? inf : -inf;
          break;
        case 4:
          for (size_t j = 0; j < kQBlock; ++j) v[j] = (float)((int)(rng() % 2001) - 1000) * 1e-41f;  // subnormal
          break;
        default:
          break;
      }
    }
    std::vector<uint8_t> want(blocks * kQ8_0BlockBytes, 0x5a);
    std::vector<int32_t> want_sums(blocks, -99);
    QuantizeActivationsQ8_0(x.data(), n, want.data(), want_sums.data());
    for (const Qb32Kernels* k : tables) {
      std::vector<uint8_t> got(blocks * kQ8_0BlockBytes + 5, 0xa5);
      std::vector<int32_t> got_sums(blocks + 1, 77);
      k->quantize_activations(x.data(), n, got.data(), got_sums.data());
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(got[i], want[i]) << k->isa << " trial " << trial << ": block " << i / kQ8_0BlockBytes << " byte "
                                   << i % kQ8_0BlockBytes;
      for (size_t b = 0; b < blocks; ++b) ASSERT_EQ(got_sums[b], want_sums[b]) << k->isa << " trial " << trial << " block " << b;
      EXPECT_EQ(got[want.size()], 0xa5) << k->isa << ": wrote past its blocks";
      EXPECT_EQ(got_sums[blocks], 77) << k->isa << ": wrote past its sums";
      // Without sums: the same blocks.
      std::vector<uint8_t> no_sums(blocks * kQ8_0BlockBytes, 0);
      k->quantize_activations(x.data(), n, no_sums.data(), nullptr);
      EXPECT_EQ(no_sums, want) << k->isa;
    }
  }
}

// y = W · x for weights `w` (rows of `blocks` blocks) and activations quantized from x.
struct Problem {
  size_t rows, blocks, batch;
  std::vector<uint8_t> w, x;
  std::vector<int32_t> x_sums;
  std::vector<float> w_f32, x_f32;  // the values the blocks stand for
  std::vector<uint8_t> packed;      // w packed for kernels that take packed weights
  // The arguments for `kernels`: the rows as they are, or packed as the kernels want them.
  Qb32GemmArgs Args(size_t w_block_bytes, float* y, const Qb32Kernels& kernels) {
    const uint8_t* weights = w.data();
    if (kernels.packed_rows != 0) {
      packed.assign(Qb32PackedBytes(rows, blocks, w_block_bytes), 0xa5);
      PackQb32Rows8(w.data(), blocks * w_block_bytes, rows, blocks, w_block_bytes, packed.data());
      weights = packed.data();
    }
    return {weights, blocks * w_block_bytes, x.data(), blocks * kQ8_0BlockBytes, blocks, batch, y, rows, x_sums.data()};
  }
};

Problem MakeProblem(size_t rows, size_t blocks, size_t batch, bool q4, std::mt19937& rng) {
  Problem p{rows, blocks, batch, {}, {}, {}, {}, {}, {}};
  const size_t cols = blocks * 32, wbb = q4 ? kQ4_0BlockBytes : kQ8_0BlockBytes;
  std::vector<float> wf = Random(rows * cols, rng, 0.05f);
  p.w.resize(rows * blocks * wbb);
  p.w_f32.resize(rows * cols);
  for (size_t r = 0; r < rows; ++r) {
    uint8_t* row = p.w.data() + r * blocks * wbb;
    if (q4) {
      QuantizeRowQ4_0(wf.data() + r * cols, cols, row);
      DequantizeRowQ4_0(row, cols, p.w_f32.data() + r * cols);
    } else {
      QuantizeRowQ8_0(wf.data() + r * cols, cols, row);
      reinterpret_cast<int8_t*>(row + 2)[7] = -128;  // a code llama.cpp's quantizer never writes, but a file may hold
      DequantizeRowQ8_0(row, cols, p.w_f32.data() + r * cols);
    }
  }
  std::vector<float> xf = Random(batch * cols, rng, 2.0f);
  p.x.resize(batch * blocks * kQ8_0BlockBytes);
  p.x_sums.resize(batch * blocks);
  p.x_f32.resize(batch * cols);
  for (size_t b = 0; b < batch; ++b) {
    QuantizeActivationsQ8_0(xf.data() + b * cols, cols, p.x.data() + b * blocks * kQ8_0BlockBytes,
                            p.x_sums.data() + b * blocks);
    DequantizeRowQ8_0(p.x.data() + b * blocks * kQ8_0BlockBytes, cols, p.x_f32.data() + b * cols);
  }
  return p;
}

TEST(Qb32Gemm, ScalarReferenceIsTheDotProductOfTheDequantizedValues) {
  std::mt19937 rng(5);
  for (bool q4 : {false, true}) {
    Problem p = MakeProblem(7, 9, 3, q4, rng);
    std::vector<float> y(p.batch * p.rows, -1.0f);
    const Qb32GemmFn fn = q4 ? kScalarQb32Kernels.q4_0 : kScalarQb32Kernels.q8_0;
    fn(p.Args(q4 ? kQ4_0BlockBytes : kQ8_0BlockBytes, y.data(), kScalarQb32Kernels), 0, p.rows);
    for (size_t b = 0; b < p.batch; ++b)
      for (size_t o = 0; o < p.rows; ++o) {
        double ref = 0, mag = 0;
        for (size_t c = 0; c < p.blocks * 32; ++c) {
          ref += (double)p.w_f32[o * p.blocks * 32 + c] * p.x_f32[b * p.blocks * 32 + c];
          mag += std::fabs((double)p.w_f32[o * p.blocks * 32 + c] * p.x_f32[b * p.blocks * 32 + c]);
        }
        EXPECT_NEAR(y[b * p.rows + o], ref, 1e-5 * mag + 1e-7) << (q4 ? "q4_0" : "q8_0") << " b=" << b << " o=" << o;
      }
  }
}

TEST(Qb32Gemm, EverySimdVariantEqualsTheScalarReference) {
  std::mt19937 rng(9);
  const std::vector<const Qb32Kernels*> variants = SimdVariants();
  std::printf("qb32 variants here: scalar");
  for (const Qb32Kernels* k : variants) std::printf(" %s", k->isa);
  std::printf(" (active: %s)\n", ActiveQb32Kernels().isa);
  for (int trial = 0; trial < 40; ++trial) {
    const bool q4 = trial % 2;
    const size_t rows = 1 + rng() % 29, blocks = 1 + rng() % 200, batch = 1 + rng() % 9;
    Problem p = MakeProblem(rows, blocks, batch, q4, rng);
    const size_t wbb = q4 ? kQ4_0BlockBytes : kQ8_0BlockBytes;
    for (const Qb32Kernels* k : variants) {
      // Packed kernels start at a group of rows (the thread pool hands out tiles of 16).
      const size_t groups = k->packed_rows ? k->packed_rows : 1;
      const size_t o_begin = rng() % rows / groups * groups, o_end = o_begin + 1 + rng() % (rows - o_begin);
      std::vector<float> ref(batch * rows, 0.0f);
      (q4 ? kScalarQb32Kernels.q4_0 : kScalarQb32Kernels.q8_0)(p.Args(wbb, ref.data(), kScalarQb32Kernels), o_begin, o_end);
      std::vector<float> y(batch * rows, 0.0f);
      (q4 ? k->q4_0 : k->q8_0)(p.Args(wbb, y.data(), *k), o_begin, o_end);
      for (size_t b = 0; b < batch; ++b)
        for (size_t o = 0; o < rows; ++o) {
          const float r = ref[b * rows + o], v = y[b * rows + o];
          if (o < o_begin || o >= o_end) {
            EXPECT_EQ(v, 0.0f) << k->isa << ": wrote outside its rows";
            continue;
          }
          // The same integer sums and the reference's float operations in its order: bit for bit.
          EXPECT_EQ(v, r) << k->isa << (q4 ? " q4_0" : " q8_0") << " trial " << trial << " b=" << b << " o=" << o;
        }
    }
  }
}

}  // namespace
}  // namespace mikv
