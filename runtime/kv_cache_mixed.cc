#include "kv_cache_mixed.h"

#include "hadamard.h"
#include "kv_kernels.h"

#include <algorithm>
#include <cmath>
#include <cassert>
#include <cstdint>
#include <cstring>

namespace mikv {

MixedKvCache::MixedKvCache(const KvGeometry& g, const KvCacheConfig& config, const KvPlan& plan)
    : g_(g), config_(config), balancer_(g, config.balance_keys) {
  const int group = config.group == 0 ? g.head_dim : config.group;
  group_ = group;
  hi_.codec = KvCodec(config.hi, g.head_dim, group);
  lo_.codec = KvCodec(config.lo, g.head_dim, group);
  hi_.capacity = plan.hi_tokens;
  lo_.capacity = plan.lo_tokens;
  quantizes_ = (hi_.codec.quantized() && hi_.capacity > 0) || (lo_.codec.quantized() && lo_.capacity > 0);
}

void MixedKvCache::Carve(Arena* arena) {
  const size_t streams = (size_t)g_.n_layers * g_.n_kv_heads;
  for (Region* r : {&hi_, &lo_}) {
    const char* label = r == &hi_ ? "kv-hi" : "kv-lo";
    r->keys = arena->Take<uint8_t>(streams * r->capacity * r->codec.bytes(), label);
    r->values = arena->Take<uint8_t>(streams * r->capacity * r->codec.bytes(), label);
    r->positions = arena->Take<int32_t>(streams * r->capacity, "kv-tables");
    r->importance = arena->Take<float>(streams * r->capacity, "kv-tables");
    r->used = arena->Take<int32_t>(streams, "kv-tables");
  }
  if (quantizes_) balancer_.Carve(arena);
  tmp_ = arena->Take<float>((size_t)4 * g_.head_dim, "kv-tables");
  if (!arena->measuring()) Reset();
}

void MixedKvCache::Reset() {
  const size_t streams = (size_t)g_.n_layers * g_.n_kv_heads;
  std::fill(hi_.used, hi_.used + streams, 0);
  std::fill(lo_.used, lo_.used + streams, 0);
  if (quantizes_) balancer_.Reset();
  evicted_ = 0;
}

KvOccupancy MixedKvCache::Occupancy() const {
  return KvOccupancy{hi_.used[0], lo_.used[0], evicted_ / ((int64_t)g_.n_layers * g_.n_kv_heads)};
}

Status MixedKvCache::Reserve(int n) const {
  const bool keeps_all = config_.policy == KvPolicy::MiKV || config_.policy == KvPolicy::Uniform;
  if (!keeps_all || config_.on_full != KvOnFull::Refuse) return OkStatus();
  const int free = hi_.capacity + lo_.capacity - hi_.used[0] - lo_.used[0];
  if (n <= free) return OkStatus();
  return Status(MIKV_ERR_CACHE_FULL, "the " + std::string(name()) + " KV cache holds " +
                                         std::to_string(hi_.capacity + lo_.capacity) + " tokens and has room for " +
                                         std::to_string(free) + ", not " + std::to_string(n) +
                                         " (it is set to refuse rather than evict)");
}

size_t MixedKvCache::ScratchFloats() const {
  // For each head of a GQA group (attended together): scores of every slot; the balanced query, the group sums, the
  // plain and balanced queries rotated.
  return (size_t)g_.group() * (ScoreStride() + 4 * (size_t)g_.head_dim);
}

void MixedKvCache::Transform(const Region& r, int layer, int kv_head, const float** k, const float** v) {
  const int d = g_.head_dim;
  float* tk = tmp_ + 2 * g_.head_dim;
  float* tv = tmp_ + 3 * g_.head_dim;
  if (Balanced(r)) {
    const float* b = balancer_.Factors(layer, kv_head);
    for (int c = 0; c < d; ++c) tk[c] = (*k)[c] * b[c];
    *k = tk;
  }
  if (config_.rotate) {
    if (*k != tk) std::memcpy(tk, *k, d * sizeof(float));
    std::memcpy(tv, *v, d * sizeof(float));
    HadamardRotate(tk, d);
    HadamardRotate(tv, d);
    *k = tk;
    *v = tv;
  }
}

void MixedKvCache::Untransform(const Region& r, int layer, int kv_head, float* k, float* v) {
  const int d = g_.head_dim;
  if (config_.rotate) {
    HadamardUnrotate(k, d);
    HadamardUnrotate(v, d);
  }
  if (Balanced(r)) {
    const float* b = balancer_.Factors(layer, kv_head);
    for (int c = 0; c < d; ++c) k[c] /= b[c];
  }
}

void MixedKvCache::Store(Region& r, size_t s, int slot, int layer, int kv_head, const float* k, const float* v,
                         int pos, float imp) {
  assert(slot >= 0 && slot < r.capacity && s < (size_t)g_.n_layers * g_.n_kv_heads);
  Transform(r, layer, kv_head, &k, &v);
  const KvRowFormat f{r.codec.precision(), g_.head_dim, group_, r.codec.bytes()};
  const KvEncodeFn encode = ActiveKvKernels().encode;
  encode(f, k, r.K(s, slot));
  encode(f, v, r.V(s, slot));
  r.positions[s * r.capacity + slot] = pos;
  r.importance[s * r.capacity + slot] = imp;
}

void MixedKvCache::RemoveSlot(Region& r, size_t s, int slot) {
  const int last = --r.used[s];
  if (slot == last) return;
  std::memcpy(r.K(s, slot), r.K(s, last), r.codec.bytes());
  std::memcpy(r.V(s, slot), r.V(s, last), r.codec.bytes());
  r.positions[s * r.capacity + slot] = r.positions[s * r.capacity + last];
  r.importance[s * r.capacity + slot] = r.importance[s * r.capacity + last];
}

static int LeastImportant(const float* imp, const int32_t* pos, int used, int first_movable, int last_movable) {
  int victim = -1;
  for (int i = 0; i < used; ++i) {
    if (pos[i] < first_movable || pos[i] > last_movable) continue;
    if (victim < 0 || imp[i] < imp[victim] || (imp[i] == imp[victim] && pos[i] < pos[victim])) victim = i;
  }
  return victim;
}

void MixedKvCache::InsertLow(size_t s, int layer, int kv_head, const float* k, const float* v, int pos, float imp,
                             bool demoted) {
  int slot;
  if (lo_.used[s] < lo_.capacity) {
    slot = lo_.used[s]++;
  } else {
    // Full (Reserve refused earlier if the caller asked for that). A demoted token competes with the low tokens
    // on importance; a new token (uniform) always enters, replacing the least important one that is neither a
    // sink nor recent.
    ++evicted_;
    if (lo_.capacity == 0) return;
    const float* imps = lo_.importance + s * lo_.capacity;
    const int32_t* poss = lo_.positions + s * lo_.capacity;
    if (demoted) {
      slot = LeastImportant(imps, poss, lo_.used[s], 0, INT32_MAX);
      if (imps[slot] > imp) return;
    } else {
      slot = LeastImportant(imps, poss, lo_.used[s], config_.sinks, pos - config_.window);
      if (slot < 0) slot = LeastImportant(imps, poss, lo_.used[s], 0, INT32_MAX);
    }
  }
  Store(lo_, s, slot, layer, kv_head, k, v, pos, imp);
}

void MixedKvCache::MakeRoomHigh(size_t s, int layer, int kv_head, int newest) {
  const float* imp = hi_.importance + s * hi_.capacity;
  const int32_t* pos = hi_.positions + s * hi_.capacity;
  const int first = config_.sinks, last = newest - config_.window;  // movable: not a sink, not recent
  int victim = -1;
  if (config_.policy == KvPolicy::Sinks) {
    for (int i = 0; i < hi_.used[s]; ++i)
      if (pos[i] >= first && pos[i] <= last && (victim < 0 || pos[i] < pos[victim])) victim = i;
  } else {
    victim = LeastImportant(imp, pos, hi_.used[s], first, last);
  }
  if (victim < 0) victim = 0;  // unreachable when hi holds >= sinks + window (PlanKvCache checks it)
  if (config_.policy == KvPolicy::MiKV) {
    float* k = tmp_;
    float* v = tmp_ + g_.head_dim;
    hi_.codec.Decode(hi_.K(s, victim), k);
    hi_.codec.Decode(hi_.V(s, victim), v);
    Untransform(hi_, layer, kv_head, k, v);  // back to plain keys and values; InsertLow transforms for lo
    InsertLow(s, layer, kv_head, k, v, pos[victim], imp[victim], /*demoted=*/true);
  } else {
    ++evicted_;
  }
  RemoveSlot(hi_, s, victim);
}

void MixedKvCache::Write(int layer, int pos, int n, const float* k, const float* v) {
  if (quantizes_) balancer_.ObserveKeys(layer, n, k);
  const int d = g_.head_dim;
  for (int kvh = 0; kvh < g_.n_kv_heads; ++kvh) {
    const size_t s = Stream(layer, kvh);
    for (int t = 0; t < n; ++t) {
      const float* kr = k + ((size_t)t * g_.n_kv_heads + kvh) * d;
      const float* vr = v + ((size_t)t * g_.n_kv_heads + kvh) * d;
      if (hi_.capacity == 0) {
        InsertLow(s, layer, kvh, kr, vr, pos + t, 0.0f, /*demoted=*/false);
        continue;
      }
      if (hi_.used[s] == hi_.capacity) MakeRoomHigh(s, layer, kvh, pos + n - 1);
      const int slot = hi_.used[s]++;
      Store(hi_, s, slot, layer, kvh, kr, vr, pos + t, 0.0f);
    }
  }
}

// Scores q·k/sqrt(d) of a region's slots [first, first + n) for the group's nq queries (q[h·d], qsum[h·ng]) into
// scores[h·stride + slot]; -inf for tokens after `pos` (a prefill chunk's later tokens).
void MixedKvCache::AttendRegion(const Region& r, size_t s, int first, int n, int pos, int nq, const float* q,
                                const float* qsum, float scale, float* scores, size_t stride) const {
  if (n <= 0) return;
  const KvRowFormat f{r.codec.precision(), g_.head_dim, group_, r.codec.bytes()};
  ActiveKvKernels().scores_group[(int)f.precision](f, nq, q, r.codec.quantized() ? qsum : nullptr, r.K(s, first),
                                                    (size_t)n, scale, scores + first, stride);
  const int32_t* p = r.positions + s * r.capacity;
  for (int i = first; i < first + n; ++i)
    if (p[i] > pos)
      for (int h = 0; h < nq; ++h) scores[h * stride + i] = -INFINITY;
}

// A block's share of a stream: hi slots [hi0, hi1), lo slots [lo0, lo1). Cuts fall on multiples of
// kKvValueBlockMax, so the integer values kernels quantize the same blocks of weights however the rows are split.
MixedKvCache::Rows MixedKvCache::BlockRows(size_t s, int block, int blocks) const {
  auto cut = [&](int n, int b) {
    if (b >= blocks) return n;
    return std::min(n, (int)((int64_t)n * b / blocks) / kKvValueBlockMax * kKvValueBlockMax);
  };
  const int nh = hi_.used[s], nl = lo_.used[s];
  return Rows{cut(nh, block), cut(nh, block + 1), cut(nl, block), cut(nl, block + 1)};
}

// The group's queries as the regions take them, in `buf` (4 × group × head_dim floats): integer regions store
// balanced keys (when the balancer is on) and take the balanced query; with the rotation every region's keys are
// rotated, and so is the query each region takes.
MixedKvCache::Queries MixedKvCache::PrepareQueries(int layer, int kv_head, const float* q, float* buf) {
  const int d = g_.head_dim, group = g_.group();
  const size_t s = Stream(layer, kv_head);
  const int nh = hi_.used[s], nl = lo_.used[s];
  float* qb = buf;  // balanced
  float* qsum = qb + group * d;
  float* qr = qsum + group * d;  // plain, rotated
  float* qbr = qr + group * d;   // balanced, rotated
  const bool rotate = config_.rotate;
  // (The factors were fixed when the first of these tokens was stored: this only reads them.)
  const float* b = nullptr;
  if ((Balanced(hi_) && nh > 0) || (Balanced(lo_) && nl > 0)) b = balancer_.Factors(layer, kv_head);
  const bool any_quantized = (hi_.codec.quantized() && nh > 0) || (lo_.codec.quantized() && nl > 0);
  Queries out;
  out.plain = rotate ? qr : q;
  out.balanced = b ? (rotate ? qbr : qb) : out.plain;
  out.qsum = qsum;
  for (int h = 0; h < group; ++h) {
    const float* qh = q + (size_t)h * d;
    if (b)
      for (int c = 0; c < d; ++c) qb[h * d + c] = qh[c] / b[c];
    if (rotate) {
      std::memcpy(qr + h * d, qh, d * sizeof(float));
      HadamardRotate(qr + h * d, d);
      if (b) {
        std::memcpy(qbr + h * d, qb + h * d, d * sizeof(float));
        HadamardRotate(qbr + h * d, d);
      }
    }
    if (any_quantized) KvQuerySums(out.balanced + h * d, d, group_, qsum + h * (d / group_));
  }
  return out;
}

// All heads of the group read each row once; hi rows first (for `full` the slots are in position order and these
// are the plain cache's kernels, so the logits are identical).
void MixedKvCache::ScoreRows(size_t s, int pos, const Rows& rows, const Queries& q, float* scores, size_t stride) const {
  const int group = g_.group();
  const float scale = 1.0f / std::sqrt((float)g_.head_dim);
  AttendRegion(hi_, s, rows.hi0, rows.hi1 - rows.hi0, pos, group, Balanced(hi_) ? q.balanced : q.plain, q.qsum, scale,
               scores, stride);
  AttendRegion(lo_, s, rows.lo0, rows.lo1 - rows.lo0, pos, group, Balanced(lo_) ? q.balanced : q.plain, q.qsum, scale,
               scores + hi_.used[s], stride);
}

// out[h·d] += Σ p·v over the rows (probabilities in scores[h·stride + slot], lo slots after the hi ones), and each
// row's importance += its probabilities over the group's heads.
void MixedKvCache::WeighRows(size_t s, const Rows& rows, const float* scores, size_t stride, float* out) {
  const int d = g_.head_dim, group = g_.group(), nh = hi_.used[s];
  const KvKernels& kk = ActiveKvKernels();
  if (rows.hi1 > rows.hi0) {
    const KvRowFormat f{hi_.codec.precision(), d, group_, hi_.codec.bytes()};
    kk.values_group[(int)f.precision](f, group, scores + rows.hi0, stride, hi_.V(s, rows.hi0),
                                      (size_t)(rows.hi1 - rows.hi0), out);
  }
  if (rows.lo1 > rows.lo0) {
    const KvRowFormat f{lo_.codec.precision(), d, group_, lo_.codec.bytes()};
    kk.values_group[(int)f.precision](f, group, scores + nh + rows.lo0, stride, lo_.V(s, rows.lo0),
                                      (size_t)(rows.lo1 - rows.lo0), out);
  }
  float* imp_hi = hi_.importance + s * hi_.capacity;
  float* imp_lo = lo_.importance + s * lo_.capacity;
  for (int h = 0; h < group; ++h) {
    for (int i = rows.hi0; i < rows.hi1; ++i) imp_hi[i] += scores[h * stride + i];
    for (int i = rows.lo0; i < rows.lo1; ++i) imp_lo[i] += scores[h * stride + nh + i];
  }
}

void MixedKvCache::Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) {
  const int d = g_.head_dim, group = g_.group();
  const size_t s = Stream(layer, kv_head);
  const int nh = hi_.used[s], nl = lo_.used[s];
  const size_t stride = ScoreStride();
  float* scores = scratch;  // per head h of the group: scores[h·stride]
  const Queries queries = PrepareQueries(layer, kv_head, q, scratch + group * stride);
  const Rows all{0, nh, 0, nl};
  ScoreRows(s, pos, all, queries, scores, stride);
  // Softmax over both regions, hi rows first.
  for (int h = 0; h < group; ++h) ActiveKvKernels().softmax(scores + h * stride, (size_t)(nh + nl));
  for (int i = 0; i < group * d; ++i) out[i] = 0.0f;
  WeighRows(s, all, scores, stride, out);
  UnrotateOutputs(out);
}

void MixedKvCache::UnrotateOutputs(float* out) const {
  if (!config_.rotate) return;
  for (int h = 0; h < g_.group(); ++h) HadamardUnrotate(out + (size_t)h * g_.head_dim, g_.head_dim);  // Σ p·(R v) = R·Σ p·v
}

// The split's shared floats, per kv head: the group's scores [group][stride], then each block's share of the
// output [blocks][group][head_dim].
size_t MixedKvCache::SplitStride(int blocks) const {
  return ((size_t)g_.group() * (ScoreStride() + (size_t)blocks * g_.head_dim) + 15) / 16 * 16;
}

float* MixedKvCache::SplitScores(float* shared, int kv_head, int blocks) const {
  return shared + kv_head * SplitStride(blocks);
}

float* MixedKvCache::SplitShare(float* shared, int kv_head, int block, int blocks) const {
  return SplitScores(shared, kv_head, blocks) + g_.group() * (ScoreStride() + (size_t)block * g_.head_dim);
}

size_t MixedKvCache::SplitScratchFloats(int blocks) const { return (size_t)g_.n_kv_heads * SplitStride(blocks); }

void MixedKvCache::AttendBlockScores(int layer, int pos, int kv_head, int block, int blocks, const float* q,
                                     float* shared, float* scratch) {
  const size_t s = Stream(layer, kv_head);
  const Queries queries = PrepareQueries(layer, kv_head, q, scratch);  // each block its own copy: a few µs at most
  ScoreRows(s, pos, BlockRows(s, block, blocks), queries, SplitScores(shared, kv_head, blocks), ScoreStride());
}

void MixedKvCache::AttendSoftmax(int layer, int kv_head, int head, int blocks, float* shared) {
  const size_t s = Stream(layer, kv_head);
  float* scores = SplitScores(shared, kv_head, blocks) + head * ScoreStride();
  ActiveKvKernels().softmax(scores, (size_t)(hi_.used[s] + lo_.used[s]));
}

void MixedKvCache::AttendBlockValues(int layer, int kv_head, int block, int blocks, float* shared) {
  const size_t s = Stream(layer, kv_head);
  float* share = SplitShare(shared, kv_head, block, blocks);
  std::fill(share, share + (size_t)g_.group() * g_.head_dim, 0.0f);
  WeighRows(s, BlockRows(s, block, blocks), SplitScores(shared, kv_head, blocks), ScoreStride(), share);
}

void MixedKvCache::AttendSum(int layer, int kv_head, int blocks, float* out, float* shared) {
  (void)layer;
  const size_t n = (size_t)g_.group() * g_.head_dim;
  const float* shares = SplitShare(shared, kv_head, 0, blocks);
  for (size_t i = 0; i < n; ++i) {
    float sum = 0.0f;
    for (int b = 0; b < blocks; ++b) sum += shares[(size_t)b * n + i];
    out[i] = sum;
  }
  UnrotateOutputs(out);
}

int MixedKvCache::Slots(int layer, int kv_head, SlotView* out, int max) const {
  const size_t s = Stream(layer, kv_head);
  int n = 0;
  for (const Region* r : {&hi_, &lo_})
    for (int i = 0; i < r->used[s] && n < max; ++i)
      out[n++] = SlotView{r->positions[s * r->capacity + i], r->importance[s * r->capacity + i], r == &hi_};
  return n;
}

bool MixedKvCache::ReadToken(int layer, int kv_head, int position, float* k, float* v) const {
  const size_t s = Stream(layer, kv_head);
  for (const Region* r : {&hi_, &lo_})
    for (int i = 0; i < r->used[s]; ++i)
      if (r->positions[s * r->capacity + i] == position) {
        r->codec.Decode(r->K(s, i), k);
        r->codec.Decode(r->V(s, i), v);
        const_cast<MixedKvCache*>(this)->Untransform(*r, layer, kv_head, k, v);  // may fix balancer factors
        return true;
      }
  return false;
}

}  // namespace mikv
