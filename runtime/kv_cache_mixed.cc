#include "kv_cache_mixed.h"

#include "generic_vectors.h"
#include "hadamard.h"
#include "kv_kernels.h"
#include "prefetch.h"

#include <algorithm>
#include <cmath>
#include <cassert>
#include <cstdint>
#include <cstring>

namespace mikv {

MixedKvCache::MixedKvCache(const KvGeometry& g, const KvCacheConfig& config, const KvPlan& plan)
    : g_(g), config_(config), balancer_(g, config.balance_keys) {
  // The plan may have shrunk the sinks and the window to hold every token (KvPlan): those are the ones protected.
  config_.sinks = plan.sinks;
  config_.window = plan.window;
  const int d = g.head_dim;
  Region& hi = tiers_[kHi];
  Region& mid = tiers_[kMid];
  Region& lo = tiers_[kLo];
  hi.group = KvTierGroup(config, -1, d);
  mid.group = KvTierGroup(config, config.mid_group, d);
  lo.group = KvTierGroup(config, config.lo_group, d);
  const KvPrecision mid_values = config.mid_tier ? config.mid : config.lo;
  // Ranges are fitted only for rotated vectors (kv_codec.h): there it pays, on unrotated keys it costs.
  const bool fit = config.rotate;
  hi.kcodec = hi.vcodec = KvCodec(config.hi, d, hi.group, fit);
  mid.kcodec = KvCodec(KvKeyPrecision(mid_values, config.mid_keys), d, mid.group, fit);
  mid.vcodec = KvCodec(mid_values, d, mid.group, fit);
  lo.kcodec = KvCodec(KvKeyPrecision(config.lo, config.lo_keys), d, lo.group, fit);
  lo.vcodec = KvCodec(config.lo, d, lo.group, fit);
  hi.capacity = plan.hi_tokens;
  mid.capacity = plan.mid_tokens;
  lo.capacity = plan.lo_tokens;
  short_positions_ = plan.position_bytes == sizeof(uint16_t);
  lo_ranked_ = plan.lo_ranked;
  lo.slot_is_position = config.policy == KvPolicy::Uniform;  // (only read when the tier keeps no positions)
  bool quantizes = false;
  for (const Region& r : tiers_) quantizes |= r.kcodec.quantized() && r.capacity > 0;
  balances_ = quantizes && config.balance_keys;
}

void MixedKvCache::Carve(Arena* arena) {
  const size_t streams = (size_t)g_.n_layers * g_.n_kv_heads;
  static const char* const kLabels[kTiers] = {"kv-hi", "kv-mid", "kv-lo"};
  for (int t = 0; t < kTiers; ++t) {
    Region* r = &tiers_[t];
    r->keys = arena->Take<uint8_t>(streams * r->capacity * r->kcodec.bytes(), kLabels[t]);
    r->values = arena->Take<uint8_t>(streams * r->capacity * r->vcodec.bytes(), kLabels[t]);
    const bool ranks = t != kLo || lo_ranked_;
    r->positions16 = ranks && short_positions_ ? arena->Take<uint16_t>(streams * r->capacity, "kv-tables") : nullptr;
    r->positions32 = ranks && !short_positions_ ? arena->Take<int32_t>(streams * r->capacity, "kv-tables") : nullptr;
    r->importance = ranks ? arena->Take<float>(streams * r->capacity, "kv-tables") : nullptr;
    r->used = arena->Take<int32_t>(streams, "kv-tables");
    r->newest = arena->Take<int32_t>(streams, "kv-tables");
    // Only the mikv policy demotes (uniform's new tokens compete with the unprotected slots alone, LeastImportant's
    // range): elsewhere the attention would find a slot no write takes.
    const bool demotes_into = t != kHi && config_.policy == KvPolicy::MiKV;
    r->least = ranks && demotes_into ? arena->Take<int32_t>(streams, "kv-tables") : nullptr;
  }
  if (balances_) balancer_.Carve(arena);
  tmp_ = arena->Take<float>((size_t)g_.n_kv_heads * kTmpVectors * g_.head_dim, "kv-tables");
  evicted_ = arena->Take<int64_t>(g_.n_kv_heads, "kv-tables");
  if (!arena->measuring()) Reset();
}

void MixedKvCache::Reset() {
  const size_t streams = (size_t)g_.n_layers * g_.n_kv_heads;
  for (Region& r : tiers_) {
    std::fill(r.used, r.used + streams, 0);
    std::fill(r.newest, r.newest + streams, -1);
    if (r.least) std::fill(r.least, r.least + streams, -1);
  }
  if (balances_) balancer_.Reset();
  std::fill(evicted_, evicted_ + g_.n_kv_heads, 0);
  newest_written_.store(-1, std::memory_order_relaxed);
}

KvOccupancy MixedKvCache::Occupancy() const {
  int64_t evicted = 0;
  for (int h = 0; h < g_.n_kv_heads; ++h) evicted += evicted_[h];
  KvOccupancy o{tiers_[kHi].used[0], tiers_[kLo].used[0], evicted / ((int64_t)g_.n_layers * g_.n_kv_heads)};
  o.mid_tokens = tiers_[kMid].used[0];
  return o;
}

Status MixedKvCache::Reserve(int n) const {
  const bool keeps_all = config_.policy == KvPolicy::MiKV || config_.policy == KvPolicy::Uniform;
  if (!keeps_all || config_.on_full != KvOnFull::Refuse) return OkStatus();
  const int free = (int)ScoreStride() - Held(0);
  if (n <= free) return OkStatus();
  return Status(MIKV_ERR_CACHE_FULL, "the " + std::string(name()) + " KV cache holds " + std::to_string(ScoreStride()) +
                                         " tokens and has room for " + std::to_string(free) + ", not " +
                                         std::to_string(n) + " (it is set to refuse rather than evict)");
}

size_t MixedKvCache::ScratchFloats() const {
  // For each head of a GQA group (attended together): scores of every slot; the balanced query, the tiers' group
  // sums, the plain and balanced queries rotated.
  return (size_t)g_.group() * (ScoreStride() + 4 * (size_t)g_.head_dim);
}

void MixedKvCache::Transform(const Region& r, int layer, int kv_head, const float** k, const float** v) {
  const int d = g_.head_dim;
  float* tk = Tmp(kv_head);
  float* tv = tk + d;
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
  const KvEncodeFn encode = ActiveKvKernels().encode;
  encode(r.KFormat(g_.head_dim), k, r.K(s, slot));
  encode(r.VFormat(g_.head_dim), v, r.V(s, slot));
  r.SetPosition(s, slot, pos);
  r.newest[s] = std::max(r.newest[s], pos);
  if (r.importance) r.importance[s * r.capacity + slot] = imp;
  if (r.least) r.least[s] = -1;
}

void MixedKvCache::Load(const Region& r, size_t s, int slot, int layer, int kv_head, Moving* m) {
  r.kcodec.Decode(r.K(s, slot), m->k);
  r.vcodec.Decode(r.V(s, slot), m->v);
  Untransform(r, layer, kv_head, m->k, m->v);  // back to plain keys and values; the next tier transforms for itself
  m->pos = r.Position(s, slot);
  m->imp = r.Importance(s, slot);
}

void MixedKvCache::RemoveSlot(Region& r, size_t s, int slot) {
  if (r.least) r.least[s] = -1;
  const int last = --r.used[s];
  if (slot == last) return;
  std::memcpy(r.K(s, slot), r.K(s, last), r.kcodec.bytes());
  std::memcpy(r.V(s, slot), r.V(s, last), r.vcodec.bytes());
  r.SetPosition(s, slot, r.Position(s, last));
  if (r.importance) r.importance[s * r.capacity + slot] = r.importance[s * r.capacity + last];
}

namespace {

// Whether any of x[0..64) equals v.
bool AnyEqual64(const float* x, float v) {
  const F32x4 vv = {v, v, v, v};
  I32x4 hit = {0, 0, 0, 0};
  for (int i = 0; i < 64; i += 4) hit |= Load4(x + i) == vv;
  return (hit[0] | hit[1] | hit[2] | hit[3]) != 0;
}

}  // namespace

int MixedKvCache::LeastIn(const Region& r, size_t s, int first, int last) {
  // The least importance in vector lanes, then the oldest slot holding it, looking only into blocks of 64 slots that
  // hold it — the slot LeastImportant's loop picks. (A ranked tier records every position; a least of NaN matches
  // nothing, and the loop decides then.)
  const float* imp = r.importance + s * r.capacity;
  if (last <= first) return -1;
  const float least = ActiveKvKernels().least(imp + first, (size_t)(last - first));
  int victim = -1, victim_pos = 0;
  for (int b = first; b < last; b += 64) {
    const int end = std::min(last, b + 64);
    if (end - b == 64 && !AnyEqual64(imp + b, least)) continue;
    for (int i = b; i < end; ++i) {
      if (imp[i] != least) continue;
      const int pos = r.Position(s, i);
      if (victim < 0 || pos < victim_pos) victim = i, victim_pos = pos;
    }
  }
  return victim;
}

int MixedKvCache::LeastImportant(const Region& r, size_t s, int first_movable, int last_movable) {
  assert(r.importance);
  const float* imp = r.importance + s * r.capacity;
  const int n = r.used[s];
  int victim = -1, victim_pos = 0;
  if (first_movable <= 0 && last_movable == INT32_MAX && n > 0) {
    // Every slot may go: a demoted token competing for a full tier, once per layer, kv head and decoded token. The
    // attention found the slot already, unless the tier changed since (WeighRows).
    victim = r.least && r.least[s] >= 0 ? r.least[s] : LeastOfAll(r, s);
    if (victim >= 0) return victim;
  }
  for (int i = 0; i < n; ++i) {
    const int pos = r.Position(s, i);
    if (pos < first_movable || pos > last_movable) continue;
    if (victim < 0 || imp[i] < imp[victim] || (imp[i] == imp[victim] && pos < victim_pos)) victim = i, victim_pos = pos;
  }
  return victim;
}

void MixedKvCache::Insert(int tier, size_t s, int layer, int kv_head, Moving m, bool demoted) {
  if (tier >= kTiers) {  // past the lo tier
    ++evicted_[kv_head];
    return;
  }
  Region& r = tiers_[tier];
  if (r.capacity == 0) return Insert(tier + 1, s, layer, kv_head, m, demoted);
  if (r.used[s] < r.capacity) {
    Store(r, s, r.used[s]++, layer, kv_head, m.k, m.v, m.pos, m.imp);
    return;
  }
  // Full (Reserve refused earlier if the caller asked for that). A demoted token competes with the tier's tokens on
  // importance; a new token (uniform) always enters, replacing the least important one that is neither a sink nor
  // recent. (A tier that does not rank is planned never to fill: more tokens than the context would be needed.)
  if (!r.importance) {
    assert(!"a tier without importance filled up");
    ++evicted_[kv_head];
    return;
  }
  int slot;
  if (demoted) {
    slot = LeastImportant(r, s, 0, INT32_MAX);
    if (r.importance[s * r.capacity + slot] > m.imp) return Insert(tier + 1, s, layer, kv_head, m, true);
  } else {
    slot = LeastImportant(r, s, config_.sinks, m.pos - config_.window);
    if (slot < 0) slot = LeastImportant(r, s, 0, INT32_MAX);
  }
  // The tier's least important token goes one tier down; the newcomer takes its slot.
  Moving down = Leaving(kv_head, tier);
  if (tier + 1 < kTiers) Load(r, s, slot, layer, kv_head, &down);
  Store(r, s, slot, layer, kv_head, m.k, m.v, m.pos, m.imp);
  if (tier + 1 < kTiers) Insert(tier + 1, s, layer, kv_head, down, true);
  else ++evicted_[kv_head];
}

void MixedKvCache::MakeRoomHigh(size_t s, int layer, int kv_head, int newest) {
  Region& hi = tiers_[kHi];
  const int first = config_.sinks, last = newest - config_.window;  // movable: not a sink, not recent
  int victim = -1;
  if (config_.policy == KvPolicy::Sinks) {
    for (int i = 0; i < hi.used[s]; ++i) {
      const int pos = hi.Position(s, i);
      if (pos >= first && pos <= last && (victim < 0 || pos < hi.Position(s, victim))) victim = i;
    }
  } else {
    victim = LeastImportant(hi, s, first, last);
  }
  if (victim < 0) victim = 0;  // unreachable when hi holds >= sinks + window (PlanKvCache checks it)
  if (config_.policy == KvPolicy::MiKV) {
    Moving m = Leaving(kv_head, kHi);
    Load(hi, s, victim, layer, kv_head, &m);
    Insert(kMid, s, layer, kv_head, m, /*demoted=*/true);
  } else {
    ++evicted_[kv_head];
  }
  RemoveSlot(hi, s, victim);
}

void MixedKvCache::Write(int layer, int pos, int n, const float* k, const float* v) {
  BeginWrite(layer, pos, n, k);
  for (int kvh = 0; kvh < g_.n_kv_heads; ++kvh) WriteStream(layer, kvh, pos, n, k, v);
}

void MixedKvCache::BeginWrite(int layer, int pos, int n, const float* k) {
  // A chunk no longer than the window (Session makes it so for the demoting policies) is never demoted while it is
  // written, so every token below the high tier is older than the chunk's queries: a mikv low tier without
  // positions relies on it.
  assert(n <= config_.window || config_.policy != KvPolicy::MiKV || lo_ranked_);
  if (balances_) balancer_.ObserveKeys(layer, n, k);
  NoteNewest(pos + n - 1);
}

void MixedKvCache::BeginKvHead(int layer, int kv_head, int pos, int n, const float* q, const float* k) {
  assert(n <= config_.window || config_.policy != KvPolicy::MiKV || lo_ranked_);  // (BeginWrite says why)
  if (balances_) {
    balancer_.ObserveQueries(layer, kv_head, n, q);
    balancer_.ObserveKeys(layer, kv_head, n, k);
  }
  NoteNewest(pos + n - 1);
}

void MixedKvCache::NoteNewest(int pos) {
  int seen = newest_written_.load(std::memory_order_relaxed);
  while (pos > seen && !newest_written_.compare_exchange_weak(seen, pos, std::memory_order_relaxed)) {
  }
}

// On the thread that attends the kv head next: the stream's rows are asked for here, once, for the write's slots
// and the attention's reads (PrefetchStream says why).
void MixedKvCache::WriteKvHead(int layer, int kvh, int pos, int n, const float* k, const float* v) {
  PrefetchStream(Stream(layer, kvh));
  WriteStream(layer, kvh, pos, n, k, v);
}

// A token's write lands at scattered places, each a cache miss it waits on in turn: the slot a new token takes in
// each tier (the first free, or the least important where the attention found it), that slot's importance and
// position, and the high tier's importance and positions, which MakeRoomHigh scans for its victim (a few dozen
// slots: the FP16 share). Asked for where the layer starts (LlamaGraph::LockstepThread), ~10 µs before the write,
// decode steps of the SmolLM2 shape took 0.98-0.99x the time at 512 and at 4k tokens (steps with and without
// interleaved in one process); asking there for the starts of the streams' rows instead (PrefetchStream, which
// WriteKvHead does) was level (docs/bench/write-asks-session39.txt).
void MixedKvCache::AskWriteKvHead(int layer, int kv_head) const {
  const size_t s = Stream(layer, kv_head);
  auto ask_tables = [&](const Region& r, int first, int n) {  // importance and positions of slots [first, first + n)
    const size_t i = s * r.capacity + first;
    if (r.importance) PrefetchLines(r.importance + i, n * sizeof(float));
    if (r.positions16) PrefetchLines(r.positions16 + i, n * sizeof(uint16_t));
    if (r.positions32) PrefetchLines(r.positions32 + i, n * sizeof(int32_t));
  };
  auto ask_slot = [&](const Region& r, int slot) {
    PrefetchLines(r.K(s, slot), r.kcodec.bytes());
    PrefetchLines(r.V(s, slot), r.vcodec.bytes());
    ask_tables(r, slot, 1);
  };
  for (int t = 0; t < kTiers; ++t) {
    const Region& r = tiers_[t];
    if (r.capacity == 0) continue;
    ask_slot(r, std::min(r.used[s], r.capacity - 1));
    if (r.least) {
      PrefetchLines(r.least + s, sizeof(int32_t));
      if (r.least[s] >= 0) ask_slot(r, r.least[s]);
    }
    if (t == kHi) ask_tables(r, 0, r.used[s]);
  }
}

// Touches only the kv head's own streams, buffers (Tmp) and count (evicted_), and reads its own balancer factors.
void MixedKvCache::WriteStream(int layer, int kvh, int pos, int n, const float* k, const float* v) {
  const int d = g_.head_dim;
  Region& hi = tiers_[kHi];
  const size_t s = Stream(layer, kvh);
  for (int t = 0; t < n; ++t) {
    const float* kr = k + ((size_t)t * g_.n_kv_heads + kvh) * d;
    const float* vr = v + ((size_t)t * g_.n_kv_heads + kvh) * d;
    if (hi.capacity == 0) {
      // (Insert reads the token and never writes it: the caller's rows go in as they are.)
      Insert(kMid, s, layer, kvh, Moving{const_cast<float*>(kr), const_cast<float*>(vr), pos + t, 0.0f},
             /*demoted=*/false);
      continue;
    }
    if (hi.used[s] == hi.capacity) MakeRoomHigh(s, layer, kvh, pos + n - 1);
    const int slot = hi.used[s]++;
    Store(hi, s, slot, layer, kvh, kr, vr, pos + t, 0.0f);
  }
}

// A block's share of a stream: slots [r0[t], r1[t]) of each tier t. Cuts fall on multiples of kKvValueBlockMax, so
// the integer values kernels quantize the same blocks of weights however the rows are split.
MixedKvCache::Rows MixedKvCache::BlockRows(size_t s, int block, int blocks) const {
  auto cut = [&](int n, int b) {
    if (b >= blocks) return n;
    return std::min(n, (int)((int64_t)n * b / blocks) / kKvValueBlockMax * kKvValueBlockMax);
  };
  Rows rows;
  for (int t = 0; t < kTiers; ++t) {
    rows.r0[t] = cut(tiers_[t].used[s], block);
    rows.r1[t] = cut(tiers_[t].used[s], block + 1);
  }
  return rows;
}

MixedKvCache::Rows MixedKvCache::AllRows(size_t s) const {
  Rows rows;
  for (int t = 0; t < kTiers; ++t) rows.r0[t] = 0, rows.r1[t] = tiers_[t].used[s];
  return rows;
}

int MixedKvCache::ScoreOffset(size_t s, int tier) const {
  int offset = 0;
  for (int t = 0; t < tier; ++t) offset += tiers_[t].used[s];
  return offset;
}

// The group's queries as the tiers take them, in `buf` (4 × group × head_dim floats): integer tiers store balanced
// keys (when the balancer is on) and take the balanced query; with the rotation every tier's keys are rotated, and
// so is the query each tier takes. Each integer tier gets the query's group sums for its own group size.
MixedKvCache::Queries MixedKvCache::PrepareQueries(int layer, int kv_head, const float* q, float* buf) {
  const int d = g_.head_dim, group = g_.group();
  const size_t s = Stream(layer, kv_head);
  float* qb = buf;  // balanced
  float* qsum = qb + group * d;  // tier t's sums at qsum + t·group·d/8 (group sizes are multiples of 8)
  float* qr = qsum + group * d;  // plain, rotated
  float* qbr = qr + group * d;   // balanced, rotated
  const bool rotate = config_.rotate;
  bool balanced_read = false;
  for (const Region& r : tiers_) balanced_read |= Balanced(r) && r.used[s] > 0;
  // (The factors were fixed when the first of these tokens was stored: this only reads them.)
  const float* b = balanced_read ? balancer_.Factors(layer, kv_head) : nullptr;
  Queries out;
  out.plain = rotate ? qr : q;
  out.balanced = b ? (rotate ? qbr : qb) : out.plain;
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
  }
  for (int t = 0; t < kTiers; ++t) {
    const Region& r = tiers_[t];
    out.qsum[t] = nullptr;
    if (!r.kcodec.quantized() || r.used[s] == 0) continue;
    float* sums = qsum + (size_t)t * group * (d / 8);
    const int ng = d / r.group;
    const float* qt = Balanced(r) ? out.balanced : out.plain;
    for (int h = 0; h < group; ++h) KvQuerySums(qt + (size_t)h * d, d, r.group, sums + h * ng);
    out.qsum[t] = sums;
  }
  return out;
}

namespace {

// sc[h·stride + i] = -inf where position[i] > pos, for slots [first, last) of each of the group's heads: a select
// the compiler vectorizes (the branch on every slot was ~40% of the scores kernels' time in a 4k prefill).
template <typename P>
void MaskLater(const P* position, int first, int last, int pos, int group, float* sc, size_t stride) {
  for (int h = 0; h < group; ++h) {
    float* row = sc + h * stride;
    for (int i = first; i < last; ++i) row[i] = (int)position[i] > pos ? -INFINITY : row[i];
  }
}

}  // namespace

// All heads of the group read each row once; tiers in order, hi first (for `full` the slots are in position order
// and these are the plain cache's kernels, so the logits are identical). -inf for tokens after `pos` (a prefill
// chunk's later tokens).
void MixedKvCache::ScoreRows(size_t s, int pos, const Rows& rows, const Queries& q, float* scores, size_t stride) const {
  const int group = g_.group();
  const float scale = 1.0f / std::sqrt((float)g_.head_dim);
  for (int t = 0; t < kTiers; ++t) {
    const Region& r = tiers_[t];
    const int first = rows.r0[t], n = rows.r1[t] - rows.r0[t];
    if (n <= 0) continue;
    float* sc = scores + ScoreOffset(s, t);
    ActiveKvKernels().scores_group[(int)r.kcodec.precision()](r.KFormat(g_.head_dim), group,
                                                             Balanced(r) ? q.balanced : q.plain, q.qsum[t],
                                                             r.K(s, first), (size_t)n, scale, sc + first, stride);
    // No row of the tier is later than the query (every decode step, and in prefill every tier but the one the chunk
    // entered): nothing to mask.
    if (pos >= r.newest[s]) continue;
    if (r.positions16) MaskLater(r.positions16 + s * r.capacity, first, first + n, pos, group, sc, stride);
    else if (r.positions32) MaskLater(r.positions32 + s * r.capacity, first, first + n, pos, group, sc, stride);
    else
      for (int i = first; i < first + n; ++i)
        if (r.Position(s, i) > pos)
          for (int h = 0; h < group; ++h) sc[h * stride + i] = -INFINITY;
  }
}

// out[h·d] += Σ p·v over the rows (probabilities in scores[h·stride + slot], tiers one after the other), and each
// row's importance += its probabilities over the group's heads. Where the rows are all of a full tier that keeps
// `least` and the token is the newest, the slot the next Write's demotion competes with is found here, while the
// importance is in this thread's cache: Write runs on one thread for every stream, and its scan of each full tier
// was over half of the write's time (the write: 7% of a decode step at 16k tokens), reading on that thread's core
// every stream's importance, which the attention's threads then write again.
void MixedKvCache::WeighRows(size_t s, const Rows& rows, const float* scores, size_t stride, const float* factor,
                             float* out, bool newest, BlockLeast* block_least) {
  const int group = g_.group();
  const KvKernels& kk = ActiveKvKernels();
  for (int t = 0; t < kTiers; ++t) {
    Region& r = tiers_[t];
    const int first = rows.r0[t], last = rows.r1[t];
    if (last <= first) continue;
    const float* sc = scores + ScoreOffset(s, t);
    kk.values_group[(int)r.vcodec.precision()](r.VFormat(g_.head_dim), group, sc + first, stride, r.V(s, first),
                                              (size_t)(last - first), out);
    if (r.importance)  // (factor: each head's 1 / Σ exp, folded in here rather than into every probability)
      kk.add_importance(r.importance + s * r.capacity + first, sc + first, stride, factor, group, (size_t)(last - first));
    if (!r.least) continue;
    const bool wanted = newest && r.used[s] == r.capacity;  // the next Write's demotion competes with it
    if (block_least) {
      block_least->slot[t] = wanted ? LeastIn(r, s, first, last) : BlockLeast::kUnknown;
      if (block_least->slot[t] >= 0) block_least->importance[t] = r.importance[s * r.capacity + block_least->slot[t]];
    } else if (first == 0 && last == r.used[s]) {
      r.least[s] = wanted ? LeastOfAll(r, s) : -1;
    }
  }
  if (block_least)
    for (int t = 0; t < kTiers; ++t)
      if (rows.r1[t] <= rows.r0[t]) block_least->slot[t] = BlockLeast::kNoRows;
  for (int h = 0; h < group; ++h)  // Σ (f·p)·v = f·Σ p·v
    for (int i = 0; i < g_.head_dim; ++i) out[h * g_.head_dim + i] *= factor[h];
}

void MixedKvCache::ExpBlock(size_t s, const Rows& rows, float* scores, float* max, float* sum) const {
  // The block's slots of each tier, as runs of the scores (adjacent runs as one: one block's are all of them).
  int run0[kTiers], run1[kTiers], runs = 0;
  for (int t = 0; t < kTiers; ++t) {
    if (rows.r1[t] <= rows.r0[t]) continue;
    const int a = ScoreOffset(s, t) + rows.r0[t], b = ScoreOffset(s, t) + rows.r1[t];
    if (runs > 0 && run1[runs - 1] == a) run1[runs - 1] = b;
    else run0[runs] = a, run1[runs] = b, ++runs;
  }
  const KvKernels& kk = ActiveKvKernels();
  float m = -INFINITY;
  for (int i = 0; i < runs; ++i) m = std::max(m, kk.greatest(scores + run0[i], (size_t)(run1[i] - run0[i])));
  float total = 0.0f;
  for (int i = 0; i < runs; ++i) {
    if (m == -INFINITY) std::fill(scores + run0[i], scores + run1[i], 0.0f);
    else total += kk.exp_sum(scores + run0[i], (size_t)(run1[i] - run0[i]), m);
  }
  *max = m;
  *sum = total;
}

// A decode step reads each stream's rows once, after every other layer's rows and ~70 MB of weights: they come
// from memory. At short contexts a stream is a few short runs of rows (SmolLM2 at 512 tokens: 36 FP16 rows and 327
// INT2 rows a kv head, ~25 KB of keys and values), too short for the hardware prefetcher to get ahead of the kernels,
// which then wait on each miss; asked for all at once up front, they arrive in parallel (one thread: the attention
// phase 525-528 -> 417-438 µs a token; two: 393-411 -> 335-347). Long streams are left to the hardware prefetcher: asking
// for 128 KB or all of a 4k-token stream made its attention slower (1,383-1,471 -> 1,525-1,629 µs), 32 KB was level.
// Asked for once, by the thread that writes the stream and then attends it (WriteKvHead): every engine path writes
// a stream before attending it, and a serial Write would fetch rows into a core that does not read them.
// Where the kernels ask for rows ahead of those they read (the x86 ones, kKvRowsAskedAhead), what is left to ask
// for is the start of each run they read: each tier's keys and values, and the importance the attention adds to.
// That in place of 32 KB of the stream's keys first: a decode step 0.98x the time at 4k tokens (FP16 + INT2 and the
// tiered default), 0.987x at 16k, 0.995x at 512 (steps interleaved in one process with the split's blocks asking for
// their starts too, AttendBlockScores; docs/bench/kv-prefetch-session37.txt).
void MixedKvCache::PrefetchStream(size_t s) const {
  if constexpr (kKvRowsAskedAhead > 0) return AskRunStarts(s, AllRows(s), /*importance=*/true);
  size_t left = kPrefetchStreamBytes;
  auto ask = [&left](const void* first, size_t bytes) {  // (left stays a multiple of the 64-byte line)
    const size_t n = std::min(bytes, left);
    PrefetchLines(first, n);
    left -= (n + 63) / 64 * 64;
  };
  for (const Region& r : tiers_)
    if (r.used[s] > 0) ask(r.K(s, 0), (size_t)r.used[s] * r.kcodec.bytes());
  for (const Region& r : tiers_)
    if (r.used[s] > 0) ask(r.V(s, 0), (size_t)r.used[s] * r.vcodec.bytes());
  for (const Region& r : tiers_)
    if (r.used[s] > 0 && r.importance) ask(r.importance + s * r.capacity, (size_t)r.used[s] * sizeof(float));
}

void MixedKvCache::AskRunStarts(size_t s, const Rows& rows, bool importance) const {
  for (int t = 0; t < kTiers; ++t) {
    const Region& r = tiers_[t];
    const int n = rows.r1[t] - rows.r0[t];
    if (n <= 0) continue;
    PrefetchLines(r.K(s, rows.r0[t]), std::min(kKvRowsAskedAhead, (size_t)n * r.kcodec.bytes()));
    PrefetchLines(r.V(s, rows.r0[t]), std::min(kKvRowsAskedAhead, (size_t)n * r.vcodec.bytes()));
    if (importance && r.importance)
      PrefetchLines(r.importance + s * r.capacity + rows.r0[t], std::min(kKvRowsAskedAhead, (size_t)n * sizeof(float)));
  }
}

void MixedKvCache::Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) {
  const int d = g_.head_dim, group = g_.group();
  const size_t s = Stream(layer, kv_head);
  const size_t stride = ScoreStride();
  float* scores = scratch;  // per head h of the group: scores[h·stride]
  const Queries queries = PrepareQueries(layer, kv_head, q, scratch + group * stride);
  const Rows all = AllRows(s);
  ScoreRows(s, pos, all, queries, scores, stride);
  // Softmax over every tier's rows at once: exps against the greatest score, normalized by WeighRows (1 / their sum
  // folded into the importance and the output, not a pass over the probabilities).
  float factor[kKvMaxGroup];
  for (int h = 0; h < group; ++h) {
    float max, sum;
    ExpBlock(s, all, scores + h * stride, &max, &sum);
    factor[h] = max == -INFINITY ? 0.0f : 1.0f / sum;
  }
  for (int i = 0; i < group * d; ++i) out[i] = 0.0f;
  WeighRows(s, all, scores, stride, factor, out, pos >= newest_written_.load(std::memory_order_relaxed));
  UnrotateOutputs(out);
}

void MixedKvCache::UnrotateOutputs(float* out) const {
  if (!config_.rotate) return;
  for (int h = 0; h < g_.group(); ++h) HadamardUnrotate(out + (size_t)h * g_.head_dim, g_.head_dim);  // Σ p·(R v) = R·Σ p·v
}

// The split's shared floats, per kv head: the group's scores [group][stride], then each block's share of the
// output [blocks][group][head_dim], its softmax statistics [blocks][group][2] and its least slots [blocks].
size_t MixedKvCache::SplitStride(int blocks) const {
  const size_t per_block = (size_t)g_.group() * (g_.head_dim + 2) + sizeof(BlockLeast) / sizeof(float);
  return ((size_t)g_.group() * ScoreStride() + (size_t)blocks * per_block + 15) / 16 * 16;
}

float* MixedKvCache::SplitScores(float* shared, int kv_head, int blocks) const {
  return shared + kv_head * SplitStride(blocks);
}

float* MixedKvCache::SplitShare(float* shared, int kv_head, int block, int blocks) const {
  return SplitScores(shared, kv_head, blocks) + g_.group() * (ScoreStride() + (size_t)block * g_.head_dim);
}

float* MixedKvCache::SplitStats(float* shared, int kv_head, int block, int blocks) const {
  return SplitShare(shared, kv_head, blocks, blocks) + (size_t)block * g_.group() * 2;
}

MixedKvCache::BlockLeast* MixedKvCache::SplitLeast(float* shared, int kv_head, int block, int blocks) const {
  static_assert(sizeof(BlockLeast) % sizeof(float) == 0 && alignof(BlockLeast) <= alignof(float), "");
  float* first = SplitStats(shared, kv_head, blocks, blocks) + (size_t)block * (sizeof(BlockLeast) / sizeof(float));
  return reinterpret_cast<BlockLeast*>(first);  // (floats and int32s in float storage from the arena)
}

size_t MixedKvCache::SplitScratchFloats(int blocks) const { return (size_t)g_.n_kv_heads * SplitStride(blocks); }

void MixedKvCache::AttendBlockScores(int layer, int pos, int kv_head, int block, int blocks, const float* q,
                                     float* shared, float* scratch) {
  const size_t s = Stream(layer, kv_head);
  const Queries queries = PrepareQueries(layer, kv_head, q, scratch);  // each block its own copy: a few µs at most
  // The blocks add to the importance apart (AttendBlockValues): what was least is known again only when AttendSum
  // joins the blocks' least slots. Block 0 forgets it, before any block adds.
  if (block == 0)
    for (Region& r : tiers_)
      if (r.least) r.least[s] = -1;
  const Rows rows = BlockRows(s, block, blocks);
  // The block's runs start where no kernel asked for them (the stream's writer asked for its start only).
  if constexpr (kKvRowsAskedAhead > 0) AskRunStarts(s, rows, /*importance=*/false);
  float* scores = SplitScores(shared, kv_head, blocks);
  const size_t stride = ScoreStride();
  ScoreRows(s, pos, rows, queries, scores, stride);
  // Each query head's exps against the block's own max, while the scores are in this thread's cache: the blocks
  // join the softmax by their maxima and sums alone, and no block's scores cross to another core.
  float* stats = SplitStats(shared, kv_head, block, blocks);
  for (int h = 0; h < g_.group(); ++h) ExpBlock(s, rows, scores + h * stride, &stats[2 * h], &stats[2 * h + 1]);
}

void MixedKvCache::AttendBlockValues(int layer, int kv_head, int block, int blocks, float* shared) {
  const size_t s = Stream(layer, kv_head);
  const Rows rows = BlockRows(s, block, blocks);
  float* scores = SplitScores(shared, kv_head, blocks);
  const size_t stride = ScoreStride();
  // softmax = exp(x - block max) · exp(block max - max) / Σ over the blocks of their sums · exp(block max - max),
  // the factor folded into the importance and the block's share by WeighRows. With one block it is 1 / Σ, as Attend's.
  float factor[kKvMaxGroup];
  for (int h = 0; h < g_.group(); ++h) {
    float max = -INFINITY;
    for (int b = 0; b < blocks; ++b) max = std::max(max, SplitStats(shared, kv_head, b, blocks)[2 * h]);
    float sum = 0.0f;
    for (int b = 0; b < blocks; ++b) {
      const float* st = SplitStats(shared, kv_head, b, blocks) + 2 * h;
      if (st[0] != -INFINITY) sum += st[1] * std::exp(st[0] - max);
    }
    const float own = SplitStats(shared, kv_head, block, blocks)[2 * h];
    factor[h] = own == -INFINITY ? 0.0f : std::exp(own - max) / sum;
  }
  float* share = SplitShare(shared, kv_head, block, blocks);
  std::fill(share, share + (size_t)g_.group() * g_.head_dim, 0.0f);
  WeighRows(s, rows, scores, stride, factor, share, /*newest=*/true,  // (split steps are decode steps)
            SplitLeast(shared, kv_head, block, blocks));
}

void MixedKvCache::AttendSum(int layer, int kv_head, int blocks, float* out, float* shared) {
  const size_t n = (size_t)g_.group() * g_.head_dim;
  const float* shares = SplitShare(shared, kv_head, 0, blocks);
  for (size_t i = 0; i < n; ++i) {
    float sum = 0.0f;
    for (int b = 0; b < blocks; ++b) sum += shares[(size_t)b * n + i];
    out[i] = sum;
  }
  UnrotateOutputs(out);
  // Each ranked tier's least slot: the least of the blocks' (ties: the oldest position, as LeastOfAll), known only
  // if every block that holds the tier's rows found its own.
  const size_t s = Stream(layer, kv_head);
  for (int t = 0; t < kTiers; ++t) {
    Region& r = tiers_[t];
    if (!r.least) continue;
    int victim = -1;
    for (int b = 0; b < blocks; ++b) {
      const BlockLeast& bl = *SplitLeast(shared, kv_head, b, blocks);
      const int slot = bl.slot[t];
      if (slot == BlockLeast::kNoRows) continue;
      if (slot < 0) {  // this block did not look: unknown
        victim = -1;
        break;
      }
      const float v = bl.importance[t], least = victim < 0 ? 0.0f : r.importance[s * r.capacity + victim];
      if (victim < 0 || v < least || (v == least && r.Position(s, slot) < r.Position(s, victim))) victim = slot;
    }
    r.least[s] = victim;
  }
}

int MixedKvCache::DemotionCandidate(int layer, int kv_head, int tier) const {
  const Region& r = tiers_[tier];
  const size_t s = Stream(layer, kv_head);
  return r.importance && r.used[s] > 0 ? LeastImportant(r, s, 0, INT32_MAX) : -1;
}

int MixedKvCache::Slots(int layer, int kv_head, SlotView* out, int max) const {
  const size_t s = Stream(layer, kv_head);
  int n = 0;
  for (int t = 0; t < kTiers; ++t) {
    const Region& r = tiers_[t];
    for (int i = 0; i < r.used[s] && n < max; ++i)
      out[n++] = SlotView{r.Position(s, i), r.Importance(s, i), t};
  }
  return n;
}

bool MixedKvCache::ReadToken(int layer, int kv_head, int position, float* k, float* v) const {
  const size_t s = Stream(layer, kv_head);
  for (const Region& r : tiers_)
    for (int i = 0; i < r.used[s]; ++i)
      if (r.Position(s, i) == position) {
        r.kcodec.Decode(r.K(s, i), k);
        r.vcodec.Decode(r.V(s, i), v);
        const_cast<MixedKvCache*>(this)->Untransform(r, layer, kv_head, k, v);  // may fix balancer factors
        return true;
      }
  return false;
}

}  // namespace mikv
