// f32-fwht, AVX2: the stages h = 1, 2, 4 inside each register of eight floats (a lane permute, an add, a subtract, a
// blend), as many of them as the block has, the later ones between registers. Same operations, same order as the
// scalar reference, so bit-identical.
#include "kv-avx.h"

namespace mikv::avx {

namespace {

// One in-register stage: lanes whose bit h is clear get a + partner, the others partner - a.
template <int BLEND>
inline __m256 Stage(__m256 a, __m256 partner) {
  return _mm256_blend_ps(_mm256_add_ps(a, partner), _mm256_sub_ps(partner, a), BLEND);
}

// The stages h < min(BLOCK, 8) in every register of x[d].
template <int BLOCK>
void StagesInRegisters(float* x, int d) {
  for (int i = 0; i < d; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    v = Stage<0xAA>(v, _mm256_permute_ps(v, 0xB1));                                // h = 1: swap neighbours
    if constexpr (BLOCK > 2) v = Stage<0xCC>(v, _mm256_permute_ps(v, 0x4E));      // h = 2: swap pairs
    if constexpr (BLOCK > 4) v = Stage<0xF0>(v, _mm256_permute2f128_ps(v, v, 0x01));  // h = 4: swap halves
    _mm256_storeu_ps(x + i, v);
  }
}

}  // namespace

void FwhtAvx2(float* x, int d, int block) {
  if (d % 8 != 0) return FwhtScalar(x, d, block);  // d of 2 or 4 (a head's blocks beside a Paley factor are 8k)
  switch (block) {
    case 1: return;
    case 2: return StagesInRegisters<2>(x, d);
    case 4: return StagesInRegisters<4>(x, d);
    default: StagesInRegisters<8>(x, d);
  }
  for (int h = 8; h < block; h *= 2)
    for (int i = 0; i < d; i += 2 * h)
      for (int j = i; j < i + h; j += 8) {
        const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);
        _mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
        _mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
      }
}

}  // namespace mikv::avx
