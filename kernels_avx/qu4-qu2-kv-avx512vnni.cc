// qu4-kv-scores and qu2-kv-scores, AVX-512 VNNI + VL (vpdpbusd: four unsigned-by-signed byte products summed into
// each int32 lane, no int16 step): the integer definition of kv_kernels.h.
//
// Scores: the AVX2 kernels' eight-row scheme (qu4-qu2-kv-scores-avx.h: codes read as they lie, eight rows' lanes
// reduced to group sums at once, scales and zeros loaded as columns and applied to eight rows per instruction), with
// vpdpbusd on 256-bit registers for the byte dot products (AVX-512 VL): one instruction per code register straight
// into int32 lanes where AVX2 needs vpmaddubsw, vpaddw and vpmaddwd. The same integer sums, so the same scores.
// (The first VNNI scores spread each row's scales over its lanes one row at a time, and were slower than AVX2's.)
// Values: the AVX2 integer kernels (qu4-qu2-kv-values-avx.h) compiled here, where AVX-512 VL gives them 32 vector
// registers: a GQA group's int16 accumulators no longer spill to the stack (and under VBMI the INT3 codes unpack by
// vpermb). A VNNI values kernel (four rows per vpdpbusd, interleaved by one vpermb) was measured slower than the
// AVX2 ones on the device's Xeon (docs/bench/avx512-device.json), most of all for GQA groups, which it read once per
// query head; it was removed.
// Shapes: head_dim 64 or 128, groups of 32, 64 or 128 channels; others go to the AVX2 entry points.
#include "qu4-qu2-kv-scores-avx.h"
#include "qu4-qu2-kv-values-avx.h"

// qu4-qu2-kv-avx512vbmi.cc compiles this file again for AVX-512 VBMI, as its own table.
#ifndef MIKV_VNNI_TABLE
#define MIKV_VNNI_TABLE kAvx512VnniKvKernels
#define MIKV_VNNI_TABLE_NAME "avx512vnni"
#endif

namespace mikv::avx {

void F16KvScoresAvx512Entry(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                            float scale, float* out);
void F16KvValuesAvx512Entry(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc);

namespace {

// The scores' byte dot products with AVX-512 VNNI on 256-bit registers (qu4-qu2-kv-scores-avx.h).
struct VnniDot {
  static __m256i Int4(__m256i a, __m256i b, __m256i qa, __m256i qb) {
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a, qa), b, qb);
  }
  static __m256i Int2(const __m256i* p, const __m256i* qk) {
    __m256i acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), p[0], qk[0]);
    for (int k = 1; k < 4; ++k) acc = _mm256_dpbusd_epi32(acc, p[k], qk[k]);
    return acc;
  }
};

void Qu4Qu2ScoresGroupVnni(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n,
                           float scale, float* out, size_t out_stride) {
  if (!FastShape(f)) return Qu4Qu2KvScoresGroupAvx2(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int2) return ScoresOfShape<VnniDot, 2>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  if (f.precision == KvPrecision::Int3) return ScoresOfShape<VnniDot, 3>(f, nq, q, qsum, rows, n, scale, out, out_stride);
  return ScoresOfShape<VnniDot, 4>(f, nq, q, qsum, rows, n, scale, out, out_stride);
}

void Qu4Qu2ScoresVnni(const KvRowFormat& f, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale,
                      float* out) {
  Qu4Qu2ScoresGroupVnni(f, 1, q, qsum, rows, n, scale, out, n);
}

void Qu4Qu2ValuesGroupVnni(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n,
                           float* acc) {
  if (!FastShape(f)) return Qu4Qu2KvValuesGroupAvx2(f, nq, p, p_stride, rows, n, acc);
  ValuesOfShape(f, nq, p, p_stride, rows, n, acc);
}

void Qu4Qu2ValuesVnni(const KvRowFormat& f, const float* p, const uint8_t* rows, size_t n, float* acc) {
  Qu4Qu2ValuesGroupVnni(f, 1, p, n, rows, n, acc);
}

}  // namespace
}  // namespace mikv::avx

namespace mikv {
extern const KvKernels MIKV_VNNI_TABLE = {
    MIKV_VNNI_TABLE_NAME,
    {avx::F16KvScoresAvx512Entry, avx::QuKvScoresAvx2, avx::Qu4Qu2ScoresVnni, avx::Qu4Qu2ScoresVnni, avx::Qu4Qu2ScoresVnni},
    {avx::F16KvValuesAvx512Entry, avx::QuKvValuesAvx2, avx::Qu4Qu2ValuesVnni, avx::Qu4Qu2ValuesVnni, avx::Qu4Qu2ValuesVnni},
    avx::FwhtAvx2,
    avx::SoftmaxAvx2,
    avx::KvEncodeAvx2,
    {KvScoresEachQuery<avx::F16KvScoresAvx512Entry>, avx::QuKvScoresGroupAvx2,
     avx::Qu4Qu2ScoresGroupVnni, avx::Qu4Qu2ScoresGroupVnni, avx::Qu4Qu2ScoresGroupVnni},
    {KvValuesEachQuery<avx::F16KvValuesAvx512Entry>, avx::QuKvValuesGroupAvx2,
     avx::Qu4Qu2ValuesGroupVnni, avx::Qu4Qu2ValuesGroupVnni, avx::Qu4Qu2ValuesGroupVnni},
};
}  // namespace mikv
