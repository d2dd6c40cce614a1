// The AVX-512 VNNI table (qu4-qu2-kv-avx512vnni.cc) compiled with AVX-512 VBMI as well: INT3 codes are unpacked
// by vpermb + vpmultishiftqb (qu4-qu2-kv-scores-avx.h) instead of AVX2's shuffles and multiplies. Everything else,
// and every score, is the VNNI table's: the unpacked bytes are the same.
#define MIKV_VNNI_TABLE kAvx512VbmiKvKernels
#define MIKV_VNNI_TABLE_NAME "avx512vbmi"
#include "qu4-qu2-kv-avx512vnni.cc"
