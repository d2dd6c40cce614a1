// Session 46: the x86 any-shape kernels (kernels_avx/qu-kv-anyshape-avx2.cc) of two revisions in one process, their
// calls alternated, medians of each. Built as (R = the repository root, old.cc = `git show 2de08b3:kernels_avx/
// qu-kv-anyshape-avx2.cc`):
//   F="-O2 -std=c++17 -mavx2 -mfma -mf16c -DMIKV_HAVE_AVX_KERNELS=1 -I$R/runtime -I$R/kernels_avx"
//   c++ $F -DQuKvScoresAnyShapeAvx2=OldScores -DQuKvValuesAnyShapeAvx2=OldValues -c old.cc -o old.o
//   c++ $F -DQuKvScoresAnyShapeAvx2=NewScores -DQuKvValuesAnyShapeAvx2=NewValues -c $R/kernels_avx/qu-kv-anyshape-avx2.cc -o new.o
//   c++ -O2 -std=c++17 -DMIKV_HAVE_AVX_KERNELS=1 -I$R/runtime anyshape-passes-session46-ab.cc old.o new.o \
//     $R/build/runtime/libmikv.a -lpthread -o ab && taskset -c 3 ./ab 400
// (INT8 values of these shapes are not the any-shape kernels': their rows print the scalar reference twice.)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "kv_codec.h"
#include "kv_kernels.h"
namespace mikv::avx {
void OldScores(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out, size_t out_stride);
void NewScores(const KvRowFormat& f, int nq, const float* q, const float* qsum, const uint8_t* rows, size_t n, float scale, float* out, size_t out_stride);
void OldValues(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc);
void NewValues(const KvRowFormat& f, int nq, const float* p, size_t p_stride, const uint8_t* rows, size_t n, float* acc);
}
using namespace mikv;
int main(int argc, char** argv) {
  const int calls = argc > 1 ? atoi(argv[1]) : 400;
  struct S { KvPrecision p; int d, g, nq; } shapes[] = {
    {KvPrecision::Int2, 96, 32, 4}, {KvPrecision::Int2, 96, 32, 3}, {KvPrecision::Int2, 96, 32, 2}, {KvPrecision::Int2, 80, 16, 4}, {KvPrecision::Int2, 48, 24, 1},
    {KvPrecision::Int4, 96, 32, 4}, {KvPrecision::Int4, 80, 16, 4}, {KvPrecision::Int4, 48, 24, 1},
    {KvPrecision::Int8, 96, 32, 4}, {KvPrecision::Int8, 80, 16, 4}, {KvPrecision::Int8, 48, 24, 1}};
  const size_t n = 4096;
  for (const S& s : shapes) {
    const KvCodec codec(s.p, s.d, s.g);
    std::mt19937 rng(1); std::normal_distribution<float> normal;
    std::vector<uint8_t> rows(n * codec.bytes() + 64);
    std::vector<float> x(s.d);
    for (size_t t = 0; t < n; ++t) { for (float& v : x) v = normal(rng); codec.Encode(x.data(), rows.data() + t * codec.bytes()); }
    const int ng = s.d / s.g;
    std::vector<float> q(s.nq * s.d), qsum(s.nq * ng), out(s.nq * n), p(s.nq * n), acc(s.nq * s.d);
    for (float& v : q) v = normal(rng);
    for (int h = 0; h < s.nq; ++h) KvQuerySums(q.data() + h * s.d, s.d, s.g, qsum.data() + h * ng);
    for (float& v : p) v = std::fabs(normal(rng));
    const KvRowFormat f{s.p, s.d, s.g, codec.bytes()};
    std::vector<double> t[4];
    for (int c = 0; c < calls; ++c)
      for (int k = 0; k < 4; ++k) {
        const int which = (c % 2) ? 3 - k : k;  // alternate the order
        const auto a = std::chrono::steady_clock::now();
        if (which == 0) avx::OldScores(f, s.nq, q.data(), qsum.data(), rows.data(), n, 0.125f, out.data(), n);
        else if (which == 1) avx::NewScores(f, s.nq, q.data(), qsum.data(), rows.data(), n, 0.125f, out.data(), n);
        else if (which == 2) avx::OldValues(f, s.nq, p.data(), n, rows.data(), n, acc.data());
        else avx::NewValues(f, s.nq, p.data(), n, rows.data(), n, acc.data());
        t[which].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count());
      }
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    std::printf("%s d=%d g=%d nq=%d 4k rows: scores old %.1f new %.1f us (%.3fx)  values old %.1f new %.1f us (%.3fx)\n",
                KvPrecisionName(s.p), s.d, s.g, s.nq, med(t[0]), med(t[1]), med(t[1]) / med(t[0]), med(t[2]), med(t[3]), med(t[3]) / med(t[2]));
  }
}
