// The mixed-precision KV cache (MiKV, "No Token Left Behind", arXiv 2402.18096) and the policies it is compared
// with, all in one structure so the comparison is honest:
//
//   per layer and kv head ("stream"):  hi tier   H slots, K and V at FP16 or INT8
//                                      mid tier  M slots, K and V at INT8/INT4/INT3/INT2 (tiered mikv only; else 0)
//                                      lo tier   L slots, K and V at INT8/INT4/INT3/INT2
//                                      (in mid and lo, keys may be finer than values)
//                                      tables    slot -> position (16 or 32 bits), slot -> accumulated attention
//                                                (importance); neither in a low tier that never fills (KvPlan)
//   per stream:                        key balancer factors (key_balancer.h), when keys are balanced
//
// With `rotate`, every tier stores R·k and R·v (hadamard.h; keys balanced first where the tier balances), the
// query is rotated the same way, and the attention output is turned back with Rᵀ once per head and step.
//
// New tokens enter the hi tier (uniform: the lo tier). When the hi tier is full, the victim is the hi token that is
// neither an attention sink (position < sinks) nor in the recent window, with the least accumulated attention
// (sinks policy: the oldest); mikv demotes it to the next tier, h2o and sinks evict it. Demotion cascades: when the
// next tier is full, the less important of the newcomer and that tier's least important token goes one tier further
// down, and past the lo tier it is evicted — or the write is refused (KvOnFull).
//
// Slots of a tier are kept dense (0..used-1): removing a slot moves the last one into the hole, so attention loops
// run over contiguous memory. Layout inside a tier: [stream][slot][codec bytes] for K, the same for V. Attention
// reads the tiers in order (hi, mid, lo): a head's scores are the hi slots', then the mid slots', then the lo ones'.
#pragma once

#include <atomic>

#include "key_balancer.h"
#include "kv_cache.h"
#include "kv_codec.h"
#include "kv_config.h"
#include "kv_kernels.h"

namespace mikv {

class MixedKvCache final : public KvCache {
 public:
  // `plan` comes from PlanKvCache(g, config) (which validated the configuration).
  MixedKvCache(const KvGeometry& g, const KvCacheConfig& config, const KvPlan& plan);

  void Carve(Arena* arena) override;
  Status Reserve(int n) const override;
  void Observe(int layer, int n, const float* q) override {
    if (balances_) balancer_.ObserveQueries(layer, n, q);
  }
  void Write(int layer, int pos, int n, const float* k, const float* v) override;
  void Attend(int layer, int pos, int kv_head, const float* q, float* out, float* scratch) override;
  size_t ScratchFloats() const override;
  bool ordered_per_kv_head() const override { return true; }
  bool writes_per_kv_head() const override { return true; }
  void BeginWrite(int layer, int pos, int n, const float* k) override;
  void BeginKvHead(int layer, int kv_head, int pos, int n, const float* q, const float* k) override;
  void WriteKvHead(int layer, int kv_head, int pos, int n, const float* k, const float* v) override;
  void AskWriteKvHead(int layer, int kv_head) const override;
  size_t SplitScratchFloats(int blocks) const override;
  void AttendBlockScores(int layer, int pos, int kv_head, int block, int blocks, const float* q, float* shared,
                         float* scratch) override;
  void AttendBlockValues(int layer, int kv_head, int block, int blocks, float* shared) override;
  void AttendSum(int layer, int kv_head, int blocks, float* out, float* shared) override;
  void Reset() override;
  KvOccupancy Occupancy() const override;
  const char* name() const override { return KvPolicyName(config_.policy); }

  // For tests and tools: what a stream holds.
  struct SlotView {
    int position;  // -1: not recorded (a token demoted into a low tier that keeps no positions)
    float importance;
    int tier;  // 0 hi, 1 mid, 2 lo
    bool high() const { return tier == 0; }
  };
  int Slots(int layer, int kv_head, SlotView* out, int max) const;
  // The slot of tier `tier` (1 mid, 2 lo) a token demoted into it would compete with when it is full: the least
  // important, the oldest of equals (what Write takes, from the attention's `least` where that is known); -1 when
  // the tier is empty or does not rank its tokens.
  int DemotionCandidate(int layer, int kv_head, int tier) const;
  // Decodes the stored key/value of the token at `position` (keys un-balanced back). False if not cached.
  bool ReadToken(int layer, int kv_head, int position, float* k, float* v) const;

 private:
  static constexpr int kTiers = 3, kHi = 0, kMid = 1, kLo = 2;
  struct Region {
    KvCodec kcodec, vcodec;     // keys', values' storage
    int group = 0;              // channels per scale/zero
    int capacity = 0;           // slots per stream
    uint8_t* keys = nullptr;    // [stream][slot][kcodec.bytes()]
    uint8_t* values = nullptr;  // [stream][slot][vcodec.bytes()]
    // Tables: [stream][slot] each. A tier that does not rank its tokens (a low tier that never fills) has none.
    uint16_t* positions16 = nullptr;  // when the context fits 16 bits
    int32_t* positions32 = nullptr;   // otherwise
    float* importance = nullptr;
    int32_t* used = nullptr;          // [stream]
    // [stream]: no slot's position is above it (raised by every Store, never lowered but by Reset), so a prefill
    // chunk's query masks only the tiers whose newest may be later than itself: the tier the chunk entered.
    int32_t* newest = nullptr;
    // [stream], middle and low tiers that rank, mikv policy: the slot a demoted token competes with (LeastImportant over every
    // slot), found by the attention that last added to the importance, where the importance was just in its
    // thread's cache, rather than by a scan of the whole tier in Write; -1: not known (changed since).
    int32_t* least = nullptr;
    // Without a position table: tokens that enter in position order (uniform) sit at slot = position; tokens demoted
    // into the tier are older than every query that reads them (Write), so -1 ("before any query") will do.
    bool slot_is_position = false;
    int Position(size_t s, int slot) const {
      const size_t i = s * capacity + slot;
      if (positions16) return positions16[i];
      if (positions32) return positions32[i];
      return slot_is_position ? slot : -1;
    }
    void SetPosition(size_t s, int slot, int pos) {
      const size_t i = s * capacity + slot;
      if (positions16) positions16[i] = (uint16_t)pos;
      else if (positions32) positions32[i] = pos;
    }
    float Importance(size_t s, int slot) const { return importance ? importance[s * capacity + slot] : 0.0f; }
    uint8_t* K(size_t s, int slot) const { return keys + (s * capacity + slot) * kcodec.bytes(); }
    uint8_t* V(size_t s, int slot) const { return values + (s * capacity + slot) * vcodec.bytes(); }
    static KvRowFormat Format(const KvCodec& c, int head_dim, int group) {
      return KvRowFormat{c.precision(), head_dim, group, c.bytes(), c.fit()};
    }
    KvRowFormat KFormat(int head_dim) const { return Format(kcodec, head_dim, group); }
    KvRowFormat VFormat(int head_dim) const { return Format(vcodec, head_dim, group); }
  };
  // A token on its way between tiers: plain (untransformed) key and value, where it was, how important it is.
  struct Moving {
    float* k;
    float* v;
    int pos;
    float imp;
  };
  size_t Stream(int layer, int kv_head) const { return (size_t)layer * g_.n_kv_heads + kv_head; }
  bool Balanced(const Region& r) const { return r.kcodec.quantized() && balances_; }
  bool balances_ = false;  // some tier quantizes keys and the balancer is on
  void Store(Region& r, size_t s, int slot, int layer, int kv_head, const float* k, const float* v, int pos, float imp);
  void RemoveSlot(Region& r, size_t s, int slot);
  // The slot of stream s in r with the least importance whose position lies in [first_movable, last_movable]
  // (ties: the oldest); -1 if none. r must rank its tokens.
  static int LeastImportant(const Region& r, size_t s, int first_movable, int last_movable);
  // LeastImportant(r, s, 0, INT32_MAX) by a scan: -1 if none (an empty tier, or a least of NaN).
  static int LeastOfAll(const Region& r, size_t s) { return LeastIn(r, s, 0, r.used[s]); }
  // The same over slots [first, last) only.
  static int LeastIn(const Region& r, size_t s, int first, int last);
  // Decodes slot `slot` of tier r back to plain key and value in m (buffers of m).
  void Load(const Region& r, size_t s, int slot, int layer, int kv_head, Moving* m);
  // Puts a token into tier `tier` or, when that tier has no room for it, further down (see the header comment).
  // `demoted`: it comes from a higher tier (it competes on importance); else it is new (uniform: always enters).
  void Insert(int tier, size_t s, int layer, int kv_head, Moving m, bool demoted);
  // Write's buffers for a token leaving tier `tier` (its own per tier, so a cascade never overwrites the token it
  // is still placing).
  Moving Leaving(int kv_head, int tier) const {
    float* tmp = Tmp(kv_head);
    return Moving{tmp + (size_t)(2 + 2 * tier) * g_.head_dim, tmp + (size_t)(3 + 2 * tier) * g_.head_dim, 0, 0.0f};
  }
  void MakeRoomHigh(size_t s, int layer, int kv_head, int newest);
  // The slots each tier gives one block of a split: [r0[t], r1[t]) of tier t.
  struct Rows {
    int r0[kTiers], r1[kTiers];
  };
  struct Queries {
    const float *plain, *balanced;
    const float* qsum[kTiers];  // each tier's group sums of the query it takes ([h][head_dim / group])
  };
  Rows BlockRows(size_t s, int block, int blocks) const;
  Rows AllRows(size_t s) const;
  int Held(size_t s) const { return tiers_[kHi].used[s] + tiers_[kMid].used[s] + tiers_[kLo].used[s]; }
  // Where tier t's slots begin among a stream's scores.
  int ScoreOffset(size_t s, int tier) const;
  Queries PrepareQueries(int layer, int kv_head, const float* q, float* buf);
  // Asks for the start of a stream's rows where its work starts on the thread that attends it (WriteKvHead; the
  // definition says why): the first kKvRowsAskedAhead bytes of each tier's keys, values and importance, which no
  // kernel asks for (kv_kernels.h); where the kernels ask for nothing, the first kPrefetchStreamBytes of its rows —
  // keys, then values, then importance.
  static constexpr size_t kPrefetchStreamBytes = 32 * 1024;
  void PrefetchStream(size_t s) const;
  // The first kKvRowsAskedAhead bytes of `rows`' keys and values in each tier (and of their importance).
  void AskRunStarts(size_t s, const Rows& rows, bool importance) const;
  // WriteKvHead's work without the prefetch: Write's, on the calling thread, whose attention runs on others.
  void WriteStream(int layer, int kv_head, int pos, int n, const float* k, const float* v);
  void ScoreRows(size_t s, int pos, const Rows& rows, const Queries& q, float* scores, size_t stride) const;
  // A split block's least important slot of each tier among its rows (WeighRows), joined by AttendSum into the
  // tier's `least`: kNoRows where the block holds none of the tier's rows, kUnknown where it did not look.
  struct BlockLeast {
    static constexpr int kNoRows = -2, kUnknown = -1;
    float importance[kTiers];
    int32_t slot[kTiers];
  };
  // `newest`: the attention is the newest token's (its importance is what the next Write sees). `block_least`: the
  // rows are a split's block, whose least slots go there (else they are all of a tier's rows or none, and the tier's
  // `least` is set here).
  // `factor[h]`: head h's normalization of its exps in `scores` (1 / their sum; a split block's share of the whole
  // softmax), applied to the importance added and to out's sums.
  void WeighRows(size_t s, const Rows& rows, const float* scores, size_t stride, const float* factor, float* out,
                 bool newest, BlockLeast* block_least = nullptr);
  // In place: a block's scores of one query head, its tiers' runs of slots, to exp(score - the block's max); returns
  // {max, Σ exp} (-inf and 0 where every score is -inf: the exps are 0 then).
  void ExpBlock(size_t s, const Rows& rows, float* scores, float* max, float* sum) const;
  // Slots of a stream's scores (all tiers): the distance between one head's scores and the next's.
  size_t ScoreStride() const {
    return (size_t)tiers_[kHi].capacity + tiers_[kMid].capacity + tiers_[kLo].capacity;
  }
  // The attention outputs of a kv head's group turned back from the rotated basis (when the cache rotates).
  void UnrotateOutputs(float* out) const;
  size_t SplitStride(int blocks) const;
  // In the split's shared floats: a kv head's scores [group][ScoreStride()], block `block`'s share of its output
  // [group][head_dim] (the blocks' shares follow one another), its softmax statistics [group][max, Σ exp], and its
  // least slots.
  float* SplitScores(float* shared, int kv_head, int blocks) const;
  float* SplitShare(float* shared, int kv_head, int block, int blocks) const;
  float* SplitStats(float* shared, int kv_head, int block, int blocks) const;
  BlockLeast* SplitLeast(float* shared, int kv_head, int block, int blocks) const;

  KvGeometry g_;
  KvCacheConfig config_;
  bool short_positions_ = false;  // 16-bit positions (KvPlan::position_bytes == 2)
  bool lo_ranked_ = true;
  KeyBalancer balancer_;
  Region tiers_[kTiers];
  // Keys/values as stored: balanced (where the tier balances) and rotated (when configured). Points k and v at
  // the transformed vectors in tmp_, or leaves them alone when there is nothing to do.
  // (Not const: the first use of a stream's balancer factors fixes them.)
  void Transform(const Region& r, int layer, int kv_head, const float** k, const float** v);
  // The inverse, in place: stored (decoded) rows back to plain keys and values.
  void Untransform(const Region& r, int layer, int kv_head, float* k, float* v);

  // Write's buffers, kTmpVectors per kv head (WriteKvHead may run for kv heads at once), head_dim floats each: the
  // transformed key and value, and a key and value per tier a token can leave downwards (hi, mid).
  static constexpr int kTmpVectors = 2 + 2 * (kTiers - 1);
  float* Tmp(int kv_head) const { return tmp_ + (size_t)kv_head * kTmpVectors * g_.head_dim; }
  float* tmp_ = nullptr;
  int64_t* evicted_ = nullptr;  // [n_kv_heads]: tokens dropped since Reset, counted by the kv head's writes
  // The latest position written to any stream since Reset: a query at or after it has no later row to mask.
  // Atomic: BeginKvHead sets it from the threads of several kv heads at once (all to the same position).
  std::atomic<int> newest_written_{-1};
  void NoteNewest(int pos);  // newest_written_ = max(itself, pos)
};

}  // namespace mikv
