// The AVX-512 VNNI table (qu4-qu2-kv-avx512vnni.cc) compiled with AVX-512 VBMI and GFNI as well: INT3 codes are
// unpacked by vpermb + vpmultishiftqb (qu4-qu2-kv-scores-avx.h) instead of AVX2's shuffles and multiplies, the INT2
// and INT4 values' row transposes are one byte permute where the VNNI table takes two, and bit fields (INT2's
// phases, INT4's high nibbles) one gf2p8affineqb where it takes a shift and a mask (BitField). Everything else, and
// every score, is the VNNI table's: the bytes are the same.
#define MIKV_VNNI_TABLE kAvx512VbmiKvKernels
#define MIKV_VNNI_TABLE_NAME "avx512vbmi"
#include "qu4-qu2-kv-avx512vnni.cc"
