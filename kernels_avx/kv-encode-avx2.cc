// f32 -> f16 / qu8 / qu4 / qu2 KV row encoding (a new token, or one being demoted), AVX2 + F16C: the codec's
// definition (kv_codec.h, KvCodec::Encode) with the same float operations in the same order, so the bytes are
// identical: per group min and max, scale and zero from the codec's KvFitGroup, code = round-half-even of
// (x - zero)·(1 / scale) clamped to [0, qmax]; eight codes at a time, packed with shifts, ORs and one byte shuffle.
// INT3 (codes straddle bytes) goes to the reference.
#include "kv-avx.h"
#include "kv_codec.h"

namespace mikv::avx {

namespace {

inline uint16_t ToHalf(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

template <int BITS>
void EncodeQuantized(const KvRowFormat& f, const float* x, uint8_t* dst) {
  const int d = f.head_dim, group = f.group, ng = d / group;
  constexpr int qmax = (1 << BITS) - 1;
  const size_t code_bytes = KvCodeBytes(d, BITS);
  uint16_t* scales = reinterpret_cast<uint16_t*>(dst + code_bytes);
  uint16_t* zeros = scales + ng;
  const __m128i pick_even = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m128i pick_quads = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  for (int g = 0; g < ng; ++g) {
    const float* xg = x + (size_t)g * group;
    __m256 vlo = _mm256_loadu_ps(xg), vhi = vlo;
    for (int i = 8; i < group; i += 8) {
      const __m256 v = _mm256_loadu_ps(xg + i);
      vlo = _mm256_min_ps(vlo, v);
      vhi = _mm256_max_ps(vhi, v);
    }
    const float lo = HorizontalMin(vlo), hi = HorizontalMax(vhi);
    KvFitGroup(xg, group, BITS, lo, hi, f.fit, &scales[g], &zeros[g]);
    const float s = Half(scales[g]), z = Half(zeros[g]);
    const __m256 inv = _mm256_set1_ps(s > 0 ? 1.0f / s : 0.0f), vz = _mm256_set1_ps(z);
    for (int i = 0; i < group; i += 8) {
      const __m256i c32 = _mm256_min_epi32(
          _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xg + i), vz), inv)),
                           _mm256_setzero_si256()),
          _mm256_set1_epi32(qmax));
      const __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(c32), _mm256_extracti128_si256(c32, 1));
      const __m128i c8 = _mm_packus_epi16(c16, c16);  // eight codes in the low bytes
      uint8_t* out = dst + (size_t)(g * group + i) * BITS / 8;
      if (BITS == 8) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out), c8);
      } else if (BITS == 4) {
        const int32_t packed = _mm_cvtsi128_si32(_mm_shuffle_epi8(_mm_or_si128(c8, _mm_srli_epi16(c8, 4)), pick_even));
        std::memcpy(out, &packed, 4);
      } else {
        const __m128i pairs = _mm_or_si128(c8, _mm_srli_epi16(c8, 6));       // byte 2k: c[2k] | c[2k+1] << 2
        const __m128i quads = _mm_or_si128(pairs, _mm_srli_epi32(pairs, 12));  // byte 4m: four codes
        const uint16_t packed = (uint16_t)_mm_cvtsi128_si32(_mm_shuffle_epi8(quads, pick_quads));
        std::memcpy(out, &packed, 2);
      }
    }
  }
}

}  // namespace

void KvEncodeAvx2(const KvRowFormat& f, const float* x, uint8_t* dst) {
  switch (f.precision) {
    case KvPrecision::F16: {
      uint16_t* h = reinterpret_cast<uint16_t*>(dst);
      int i = 0;
      for (; i + 8 <= f.head_dim; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
      for (; i < f.head_dim; ++i) h[i] = ToHalf(x[i]);
      return;
    }
    case KvPrecision::Int8: return f.group % 8 == 0 ? EncodeQuantized<8>(f, x, dst) : KvEncodeScalar(f, x, dst);
    case KvPrecision::Int4: return f.group % 8 == 0 ? EncodeQuantized<4>(f, x, dst) : KvEncodeScalar(f, x, dst);
    case KvPrecision::Int2: return f.group % 8 == 0 ? EncodeQuantized<2>(f, x, dst) : KvEncodeScalar(f, x, dst);
    default: return KvEncodeScalar(f, x, dst);
  }
}

}  // namespace mikv::avx
