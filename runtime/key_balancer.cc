#include "key_balancer.h"

#include <algorithm>
#include <cmath>

namespace mikv {

void KeyBalancer::Carve(Arena* arena) {
  const size_t n = (size_t)g_.n_layers * g_.n_kv_heads;
  factors_ = arena->Take<float>(n * g_.head_dim, "kv-tables");
  qmax_ = arena->Take<float>(n * g_.head_dim, "kv-tables");
  kmax_ = arena->Take<float>(n * g_.head_dim, "kv-tables");
  fixed_ = arena->Take<uint8_t>(n, "kv-tables");
}

void KeyBalancer::Reset() {
  const size_t n = (size_t)g_.n_layers * g_.n_kv_heads;
  std::fill(factors_, factors_ + n * g_.head_dim, 1.0f);
  std::fill(qmax_, qmax_ + n * g_.head_dim, 0.0f);
  std::fill(kmax_, kmax_ + n * g_.head_dim, 0.0f);
  std::fill(fixed_, fixed_ + n, enabled_ ? 0 : 1);  // disabled: factors stay 1, fixed from the start
}

void KeyBalancer::ObserveQueries(int layer, int n, const float* q) {
  for (int kvh = 0; kvh < g_.n_kv_heads; ++kvh) ObserveQueries(layer, kvh, n, q);
}

void KeyBalancer::ObserveKeys(int layer, int n, const float* k) {
  for (int kvh = 0; kvh < g_.n_kv_heads; ++kvh) ObserveKeys(layer, kvh, n, k);
}

void KeyBalancer::ObserveQueries(int layer, int kvh, int n, const float* q) {
  const int d = g_.head_dim, group = g_.group();
  const size_t s = Stream(layer, kvh);
  if (fixed_[s]) return;
  float* m = qmax_ + s * d;
  for (int t = 0; t < n; ++t)
    for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
      const float* row = q + ((size_t)t * g_.n_heads + h) * d;
      for (int c = 0; c < d; ++c) m[c] = std::max(m[c], std::fabs(row[c]));
    }
}

void KeyBalancer::ObserveKeys(int layer, int kvh, int n, const float* k) {
  const int d = g_.head_dim;
  const size_t s = Stream(layer, kvh);
  if (fixed_[s]) return;
  float* m = kmax_ + s * d;
  for (int t = 0; t < n; ++t) {
    const float* row = k + ((size_t)t * g_.n_kv_heads + kvh) * d;
    for (int c = 0; c < d; ++c) m[c] = std::max(m[c], std::fabs(row[c]));
  }
}

const float* KeyBalancer::Factors(int layer, int kv_head) {
  const size_t s = Stream(layer, kv_head);
  float* f = factors_ + s * g_.head_dim;
  if (!fixed_[s]) {
    for (int c = 0; c < g_.head_dim; ++c) {
      const float q = qmax_[s * g_.head_dim + c], k = kmax_[s * g_.head_dim + c];
      const float b = (q > 0 && k > 0) ? std::sqrt(q / k) : 1.0f;
      f[c] = std::min(kMaxFactor, std::max(kMinFactor, b));
    }
    fixed_[s] = 1;
  }
  return f;
}

}  // namespace mikv
