// Linear's fused operators (q/k/v, gate/up in one): for every weight encoding, the fused operator's outputs are the
// parts' own outputs side by side, biases included, for a decode row and a prefill batch; matrices that cannot share
// one operator are refused; a thread's share of a q8_0/q4_0 operator's rows is Run's rows.
#include <gtest/gtest.h>

#include <random>

#include "convert/quantize.h"
#include "fp16.h"
#include "ggml_blocks.h"
#include "linear.h"

namespace mikv {
namespace {

// One matrix in one encoding, with the storage its view points into.
struct Matrix {
  TensorView view;
  std::vector<uint8_t> data;
  std::vector<float> scales;
};

Matrix MakeMatrix(WeightType type, size_t rows, size_t cols, std::mt19937& rng, const std::string& name) {
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = normal(rng);
  Matrix m;
  m.view.name = name;
  m.view.type = type;
  m.view.rank = 2;
  m.view.shape[0] = rows;
  m.view.shape[1] = cols;
  switch (type) {
    case WeightType::F32:
      m.data.resize(w.size() * sizeof(float));
      std::memcpy(m.data.data(), w.data(), m.data.size());
      break;
    case WeightType::F16:
      m.data.resize(w.size() * 2);
      for (size_t i = 0; i < w.size(); ++i) {
        const uint16_t h = FloatToHalf(w[i]);
        std::memcpy(m.data.data() + 2 * i, &h, 2);
      }
      break;
    case WeightType::Int8PerChannel:
      convert::QuantizeInt8PerRow(w.data(), rows, cols, &m.data, &m.scales);
      break;
    case WeightType::Int4Group: {
      std::vector<uint8_t> codes;
      convert::QuantizeInt4Groups(w.data(), rows, cols, 32, &codes, &m.scales);
      m.data = convert::PackNibbles(codes);
      m.view.group_size = 32;
      break;
    }
    case WeightType::Q8_0:
    case WeightType::Q4_0: {
      const size_t row_bytes = cols / kQBlock * (type == WeightType::Q8_0 ? kQ8_0BlockBytes : kQ4_0BlockBytes);
      m.data.resize(rows * row_bytes);
      for (size_t r = 0; r < rows; ++r)
        (type == WeightType::Q8_0 ? QuantizeRowQ8_0 : QuantizeRowQ4_0)(w.data() + r * cols, cols, m.data.data() + r * row_bytes);
      break;
    }
  }
  m.view.data = m.data.data();
  m.view.data_size = m.data.size();
  m.view.scales = m.scales.empty() ? nullptr : m.scales.data();
  m.view.scale_count = m.scales.size();
  return m;
}

// y[batch][out] through `op`, with the input prepared as the forward pass prepares it.
std::vector<float> Apply(Linear& op, const std::vector<float>& x, size_t batch, size_t cols) {
  DynamicQuantizer quantizer;
  EXPECT_TRUE(quantizer.Create().ok());
  std::vector<int8_t> qd8(batch * cols + XNN_EXTRA_BYTES);
  std::vector<xnn_quantization_params> params(batch + XNN_EXTRA_QUANTIZATION_PARAMS);
  std::vector<uint8_t> blocks(batch * cols / kQBlock * kQ8_0BlockBytes);
  std::vector<int32_t> sums(batch * cols / kQBlock);
  LinearInput in{x.data(), nullptr, nullptr, batch};
  if (op.needs_qd8()) {
    EXPECT_TRUE(quantizer.Quantize(cols, qd8.data(), params.data(), &in, nullptr).ok());
  }
  if (op.needs_q8_blocks()) {
    for (size_t b = 0; b < batch; ++b)
      QuantizeActivationsQ8_0(x.data() + b * cols, cols, blocks.data() + b * cols / kQBlock * kQ8_0BlockBytes,
                              sums.data() + b * cols / kQBlock);
    in.q8_blocks = blocks.data();
    in.q8_sums = sums.data();
  }
  std::vector<float> y(batch * op.out_features(), -1.0f);
  const Status s = op.Run(in, y.data(), nullptr);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return y;
}

TEST(Linear, FusedOperatorGivesEachPartsOutputsSideBySide) {
  const size_t cols = 96;
  const size_t rows[] = {40, 24, 24};  // q, k, v of a GQA layer (multiples of the packed kernels' 8 and not of 16)
  for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::Int8PerChannel, WeightType::Int4Group,
                          WeightType::Q8_0, WeightType::Q4_0}) {
    std::mt19937 rng(17);
    std::vector<Matrix> parts;
    std::vector<std::vector<float>> biases;
    for (size_t i = 0; i < 3; ++i) {
      parts.push_back(MakeMatrix(type, rows[i], cols, rng, "part" + std::to_string(i)));
      std::vector<float> b(rows[i]);
      for (float& v : b) v = (float)(rng() % 100) / 50.0f - 1.0f;
      biases.push_back(b);
    }
    // The middle part without a bias: the fused operator adds zeros there.
    const std::vector<const float*> bias_of = {biases[0].data(), nullptr, biases[2].data()};
    ASSERT_TRUE(Linear::CanFuse({&parts[0].view, &parts[1].view, &parts[2].view}));
    Linear fused;
    const Status created = fused.CreateFused({&parts[0].view, &parts[1].view, &parts[2].view}, bias_of);
    ASSERT_TRUE(created.ok()) << created.ToString();
    for (size_t batch : {1, 5}) {
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> x(batch * cols);
      for (float& v : x) v = normal(rng);
      const std::vector<float> y = Apply(fused, x, batch, cols);
      size_t offset = 0;
      for (size_t i = 0; i < 3; ++i) {
        Linear alone;
        ASSERT_TRUE(alone.Create(parts[i].view, bias_of[i]).ok());
        const std::vector<float> expected = Apply(alone, x, batch, cols);
        // mikv's own q8_0/q4_0 kernels compute each row alone: bit for bit. XNNPACK's micro-kernels may sum a row in
        // another order where it sits elsewhere in a tile (f32: one ulp seen), so there within 1e-5 of values ~1
        // (a wrong row, offset or bias is off by ~0.1 or more).
        const bool exact = type == WeightType::Q8_0 || type == WeightType::Q4_0;
        for (size_t b = 0; b < batch; ++b)
          for (size_t o = 0; o < rows[i]; ++o) {
            const float got = y[b * fused.out_features() + offset + o], want = expected[b * rows[i] + o];
            if (exact) {
              ASSERT_EQ(got, want) << WeightTypeName(type) << " part " << i << " batch " << batch << " row " << b << " output " << o;
            } else {
              ASSERT_NEAR(got, want, 1e-5) << WeightTypeName(type) << " part " << i << " batch " << batch << " row " << b << " output " << o;
            }
          }
        offset += rows[i];
      }
    }
  }
}

// The lockstep decode's equal shares: thread t of T runs rows ShareOfRows(rows, t, T) (RunRows) and writes only those,
// biases included, the shares cover every row once, and each row is Run's bit for bit.
TEST(Linear, SharesOfRowsCoverEveryRowOnceAndAreRunsRows) {
  const size_t cols = 96;
  for (WeightType type : {WeightType::Q8_0, WeightType::Q4_0}) {
    for (size_t rows : {8, 40, 100}) {
      std::mt19937 rng(23);
      const Matrix m = MakeMatrix(type, rows, cols, rng, "w");
      std::vector<float> bias(rows);
      for (float& v : bias) v = (float)(rng() % 100) / 50.0f - 1.0f;
      Linear op;
      ASSERT_TRUE(op.Create(m.view, bias.data()).ok());
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> x(cols);
      for (float& v : x) v = normal(rng);
      const std::vector<float> want = Apply(op, x, 1, cols);
      std::vector<uint8_t> blocks(cols / kQBlock * kQ8_0BlockBytes);
      std::vector<int32_t> sums(cols / kQBlock);
      op.QuantizeQ8Blocks(x.data(), blocks.data(), sums.data());
      const LinearInput in{x.data(), nullptr, nullptr, 1, blocks.data(), sums.data()};
      for (size_t threads : {1, 2, 3, 4, 8}) {
        std::vector<float> y(rows, -7.0f);
        std::vector<int> written(rows, 0);
        for (size_t t = 0; t < threads; ++t) {
          const auto [begin, end] = Linear::ShareOfRows(rows, t, threads);
          std::vector<float> before = y;
          op.RunRows(in, y.data(), begin, end);
          for (size_t o = 0; o < rows; ++o) {
            if (o >= begin && o < end) ++written[o];
            else ASSERT_EQ(y[o], before[o]) << "thread " << t << " of " << threads << " wrote row " << o;
          }
        }
        for (size_t o = 0; o < rows; ++o) {
          ASSERT_EQ(written[o], 1) << WeightTypeName(type) << ", " << threads << " threads, row " << o;
          ASSERT_EQ(y[o], want[o]) << WeightTypeName(type) << ", " << threads << " threads, row " << o;
        }
      }
    }
  }
}

TEST(Linear, MatricesOfDifferentEncodingsOrWidthsAreNotFused) {
  std::mt19937 rng(3);
  const Matrix a = MakeMatrix(WeightType::Q4_0, 16, 64, rng, "a");
  const Matrix b = MakeMatrix(WeightType::Q8_0, 16, 64, rng, "b");
  const Matrix c = MakeMatrix(WeightType::Q4_0, 16, 96, rng, "c");
  EXPECT_FALSE(Linear::CanFuse({&a.view, &b.view}));
  EXPECT_FALSE(Linear::CanFuse({&a.view, &c.view}));
  EXPECT_TRUE(Linear::CanFuse({&a.view, &a.view}));
  Linear op;
  EXPECT_EQ(op.CreateFused({&a.view, &b.view}, {nullptr, nullptr}).code(), MIKV_ERR_INTERNAL);
}

}  // namespace
}  // namespace mikv
