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
  return (size_t)g_.group() * ((size_t)hi_.capacity + lo_.capacity + 4 * (size_t)g_.head_dim);
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

// Scores q·k/sqrt(d) of one region's slots for the group's nq queries (q[h·d], qsum[h·ng], scores[h·stride]);
// -inf for tokens after `pos` (a prefill chunk's later tokens).
void MixedKvCache::AttendRegion(const Region& r, size_t s, int pos, int nq, const float* q, const float* qsum,
                                float scale, float* scores, size_t stride) const {
  const int n = r.used[s];
  if (n == 0) return;
  const KvRowFormat f{r.codec.precision(), g_.head_dim, group_, r.codec.bytes()};
  ActiveKvKernels().scores_group[(int)f.precision](f, nq, q, r.codec.quantized() ? qsum : nullptr, r.K(s, 0), (size_t)n,
                                                    scale, scores, stride);
  const int32_t* p = r.positions + s * r.capacity;
  for (int i = 0; i < n; ++i)
    if (p[i] > pos)
      for (int h = 0; h < nq; ++h) scores[h * stride + i] = -INFINITY;
}

void MixedKvCache::Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) {
  const int d = g_.head_dim, group = g_.group();
  const size_t s = Stream(layer, kv_head);
  const int nh = hi_.used[s], nl = lo_.used[s];
  const size_t stride = (size_t)hi_.capacity + lo_.capacity;
  // Per head h of the group: scores[h·stride], and its query as the regions take it (h·d apart in each array).
  float* scores = scratch;
  float* qb = scratch + group * stride;  // balanced
  float* qsum = qb + group * d;
  float* qr = qsum + group * d;   // plain, rotated
  float* qbr = qr + group * d;    // balanced, rotated
  const bool rotate = config_.rotate;
  const float scale = 1.0f / std::sqrt((float)d);
  const float* b = nullptr;
  if ((Balanced(hi_) && nh > 0) || (Balanced(lo_) && nl > 0)) b = balancer_.Factors(layer, kv_head);
  const bool any_quantized = (hi_.codec.quantized() && nh > 0) || (lo_.codec.quantized() && nl > 0);
  float* imp_hi = hi_.importance + s * hi_.capacity;
  float* imp_lo = lo_.importance + s * lo_.capacity;
  const KvKernels& kk = ActiveKvKernels();

  // Integer regions store balanced keys (when the balancer is on) and take the balanced query; with the rotation
  // every region's keys are rotated, and so is the query each region takes.
  const float* q_plain = rotate ? qr : q;
  const float* q_bal = b ? (rotate ? qbr : qb) : q_plain;
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
    if (any_quantized) KvQuerySums(q_bal + h * d, d, group_, qsum + h * (d / group_));
  }
  // All heads of the group read each row once; then per head: softmax over both regions, hi rows first (for `full`
  // the slots are in position order and these are the plain cache's kernels, so the logits are identical).
  AttendRegion(hi_, s, pos, group, Balanced(hi_) ? q_bal : q_plain, qsum, scale, scores, stride);
  AttendRegion(lo_, s, pos, group, Balanced(lo_) ? q_bal : q_plain, qsum, scale, scores + nh, stride);
  for (int h = 0; h < group; ++h) kk.softmax(scores + h * stride, (size_t)(nh + nl));
  for (int i = 0; i < group * d; ++i) out[i] = 0.0f;
  if (nh > 0) {
    const KvRowFormat f{hi_.codec.precision(), d, group_, hi_.codec.bytes()};
    kk.values_group[(int)f.precision](f, group, scores, stride, hi_.V(s, 0), (size_t)nh, out);
  }
  if (nl > 0) {
    const KvRowFormat f{lo_.codec.precision(), d, group_, lo_.codec.bytes()};
    kk.values_group[(int)f.precision](f, group, scores + nh, stride, lo_.V(s, 0), (size_t)nl, out);
  }
  for (int h = 0; h < group; ++h) {
    if (rotate) HadamardUnrotate(out + (size_t)h * d, d);  // Σ p·(R v) = R·Σ p·v
    for (int i = 0; i < nh; ++i) imp_hi[i] += scores[h * stride + i];
    for (int i = 0; i < nl; ++i) imp_lo[i] += scores[h * stride + nh + i];
  }
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
