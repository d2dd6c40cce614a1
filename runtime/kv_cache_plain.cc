#include <cmath>

#include "fp16.h"
#include "kv_cache.h"
#include "kv_codec.h"
#include "kv_kernels.h"

namespace mikv {

void PlainKvCache::Carve(Arena* arena) {
  const size_t n = (size_t)g_.n_layers * g_.n_kv_heads * g_.capacity * g_.head_dim;
  const size_t elem = storage_ == KvStorage::F32 ? 4 : 2;
  keys_ = arena->TakeBytes(n * elem, "kv-cache");
  values_ = arena->TakeBytes(n * elem, "kv-cache");
}

void PlainKvCache::Write(int layer, int pos, int n, const float* k, const float* v) {
  const int kv_dim = g_.kv_dim();
  if (layer == 0) used_ = pos + n;
  for (int t = 0; t < n; ++t) {
    for (int h = 0; h < g_.n_kv_heads; ++h) {
      const size_t dst = Offset(layer, h, pos + t);
      const float* ks = k + (size_t)t * kv_dim + (size_t)h * g_.head_dim;
      const float* vs = v + (size_t)t * kv_dim + (size_t)h * g_.head_dim;
      if (storage_ == KvStorage::F32) {
        float* kd = static_cast<float*>(keys_) + dst;
        float* vd = static_cast<float*>(values_) + dst;
        for (int i = 0; i < g_.head_dim; ++i) { kd[i] = ks[i]; vd[i] = vs[i]; }
      } else {
        uint16_t* kd = static_cast<uint16_t*>(keys_) + dst;
        uint16_t* vd = static_cast<uint16_t*>(values_) + dst;
        for (int i = 0; i < g_.head_dim; ++i) { kd[i] = FloatToHalf(ks[i]); vd[i] = FloatToHalf(vs[i]); }
      }
    }
  }
}

void PlainKvCache::Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) {
  const int group = g_.group();
  for (int h = 0; h < group; ++h)
    AttendHead(layer, pos, kv_head * group + h, q + (size_t)h * g_.head_dim, out + (size_t)h * g_.head_dim, scratch);
}

// Attention over positions [0, pos]: scores, softmax, weighted values. FP16 storage goes through the KV kernels
// as the mixed cache's attention does (exps against the greatest score, the values weighed by them, then 1 / their
// sum), so its `full` policy agrees with this bit for bit; f32 storage is plain loops.
void PlainKvCache::AttendHead(int layer, int pos, int head, const float* q, float* out, float* scores) const {
  const int d = g_.head_dim;
  const int kv_head = head / g_.group();
  const float scale = 1.0f / std::sqrt((float)d);
  const size_t base = Offset(layer, kv_head, 0);
  const size_t n = (size_t)pos + 1;
  for (int i = 0; i < d; ++i) out[i] = 0.0f;
  if (storage_ == KvStorage::F16) {
    const KvKernels& kk = ActiveKvKernels();
    const KvRowFormat f{KvPrecision::F16, d, d, (size_t)d * 2};
    kk.scores[0](f, q, nullptr, reinterpret_cast<const uint8_t*>(static_cast<const uint16_t*>(keys_) + base), n, scale, scores);
    const float max = kk.greatest(scores, n);  // (position pos itself is never masked: max > -inf)
    const float factor = 1.0f / kk.exp_sum(scores, n, max);
    kk.values[0](f, scores, reinterpret_cast<const uint8_t*>(static_cast<const uint16_t*>(values_) + base), n, out);
    for (int i = 0; i < d; ++i) out[i] *= factor;
    return;
  }
  const float* keys = static_cast<const float*>(keys_) + base;
  const float* values = static_cast<const float*>(values_) + base;
  for (size_t t = 0; t < n; ++t) {
    float s = 0.0f;
    for (int i = 0; i < d; ++i) s += q[i] * keys[t * d + i];
    scores[t] = s * scale;
  }
  SoftmaxInPlace(scores, n);
  for (size_t t = 0; t < n; ++t)
    for (int i = 0; i < d; ++i) out[i] += scores[t] * values[t * d + i];
}

}  // namespace mikv
