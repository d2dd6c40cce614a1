// A decoded token's layers in lockstep: every thread of the pool runs the whole layer loop at once, each taking its
// share of every projection's rows and of the kv heads (which it also starts: RoPE, the cache's statistics and write),
// with a LockstepBarrier wherever a result must be whole before the next step reads it.
//
// Why: through the pool (ForwardPooled) a decode step of SmolLM2's shape is ~150 parallel operations of a few
// microseconds each. Each is a job the calling thread publishes and the workers see one cache-line transfer later,
// and a wait for their done reports; between operations the workers idle while the calling thread does the serial
// work (norms, quantizing activations, SwiGLU). Here a barrier is one transfer, every thread leaves it together, the
// norms and quantizations run on every thread at once into the thread's own buffers, so no one waits for them, and
// each thread makes SwiGLU for the gate and up rows it projected. The
// projections' rows are shared as the pool shares them (ThreadPool::ShareOf over 16-row tiles), without taking over
// another thread's rows: each thread's rows are one stream of weights. A model of SmolLM2's shape's q4_0
// projections alone, on this project's two-vCPU AMD host: ~940 µs a token with a barrier per matrix, ~1,140
// through the pool (the same kernels and weights, alternating processes; docs/kernels-sessions.md, session 27).
//
// The results are the pooled pass's bit for bit: each output row comes from the same kernel on the same inputs, each
// thread's norm, quantization and SwiGLU are the same functions on the same values (LlamaGraphLockstep tests).
#include <algorithm>
#include <chrono>
#include <utility>

#include "llama_graph.h"
#include "phase_clock.h"
#include "prefetch.h"
#include "thread_pool.h"

namespace mikv {

bool LlamaGraph::LockstepFits(const Model& model) {
  auto blocks = [](const TensorView* t) {
    return t && (t->type == WeightType::Q8_0 || t->type == WeightType::Q4_0);
  };
  for (const LlamaLayerWeights& L : model.weights().layers) {
    for (const TensorView* t : {L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3})
      if (!blocks(t)) return false;
    if (!FusesProjections({L.wq, L.wk, L.wv}) || !FusesProjections({L.w1, L.w3})) return false;
  }
  return true;
}

namespace {

struct LockstepJob {
  LlamaGraph* graph;
  size_t roster;
  int pos;
  KvCache* cache;
  PhaseClock* clock;
};

}  // namespace

Status LlamaGraph::ForwardLockstep(int pos, KvCache* cache, pthreadpool_t pool, PhaseClock* clock) {
  ThreadPool* threads = ThreadPoolOf(pool);
  if (threads == nullptr || threads->threads() != (size_t)threads_)
    return ForwardPooled(1, pos, /*split=*/false, cache, pool, clock);
  // The pool's active threads run the step (ThreadPool::SetActiveThreads): the barrier counts them, and they take
  // the shares of that many threads, which start from the whole pool's weights.
  const size_t roster = threads->active_threads();
  if (roster != barrier_.active()) {  // (the last step's roster)
    barrier_.SetActive(roster);
    if (roster < (size_t)threads_) shares_[roster - 1].SetWeights(lockstep_shares().weights());
  }
  const LockstepJob job{this, roster, pos, cache, clock};
  threads->RunOnEachThread(
      [](const void* context, size_t t, size_t) {
        const LockstepJob& j = *static_cast<const LockstepJob*>(context);
        j.graph->LockstepThread(t, j.roster, j.pos, j.cache, j.clock);
      },
      // The pooled pass's floating-point mode: its attention, norms and SwiGLU run without flushing denormals. (Its
      // q8_0/q4_0 items run flushed, but those kernels can neither meet nor make a denormal float: their floats are
      // products of f16 scales and integer sums.)
      &job, /*flush_denormals=*/false);
  if (balance_) shares_[roster - 1].Rebalance(busy_seconds_.data());  // (every thread is done with this step's shares)
  for (Status& s : thread_status_) {
    if (!s.ok()) {
      Status failed = s;
      for (Status& r : thread_status_) r = OkStatus();
      return failed;
    }
  }
  return OkStatus();
}

void LlamaGraph::LockstepThread(size_t t, size_t roster, int pos, KvCache* cache, PhaseClock* shared_clock) {
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  // The attention's work is cut for the whole pool (which kv heads are split into blocks, and how many), whatever
  // the roster: each piece is computed the same way on any thread, so the logits do not depend on how many threads
  // ran the step. The roster's A threads share the pieces out.
  const size_t T = (size_t)threads_, A = roster;
  const LockstepShares& shares = shares_[A - 1];
  PhaseClock idle(nullptr);
  PhaseClock& clock = t == 0 ? *shared_clock : idle;  // thread 0 times the phases, waits included
  float* xb = thread_xb_ + t * thread_floats_stride_;
  float* product = thread_product_ + t * thread_hidden_stride_;
  uint8_t* q8 = thread_q8_ + t * thread_q8_stride_;
  int32_t* sums = thread_q8_sums_ + t * thread_sums_stride_;
  // This thread's rows of op · x, into y (whole rows; other threads write the others); `then`: the weights it reads
  // next (Linear::RunRows).
  // With balance_, the time in its rows (what LockstepShares::Rebalance goes by).
  using Clock = std::chrono::steady_clock;
  double busy = 0;
  auto run_rows = [&](const Linear& op, const LinearInput& in, float* y, std::pair<size_t, size_t> rows,
                      const uint8_t* then) {
    const Clock::time_point start = balance_ ? Clock::now() : Clock::time_point();
    op.RunRows(in, y, rows.first, rows.second, then);
    if (balance_) busy += std::chrono::duration<double>(Clock::now() - start).count();
  };
  auto project = [&](const Linear& op, LockstepShares::Matrix m, const float* x, float* y, const uint8_t* then) {
    op.QuantizeQ8Blocks(x, q8, sums);
    run_rows(op, LinearInput{x, nullptr, nullptr, 1, q8, sums}, y, shares.Rows(m, t), then);
  };
  // This thread's rows of x_ += y, for the rows it just projected.
  auto add_residual = [&](LockstepShares::Matrix m, const float* y) {
    const auto [begin, end] = shares.Rows(m, t);
    for (size_t i = begin; i < end; ++i) x_[i] += y[i];
  };
  const int group = c.n_heads / c.n_kv_heads;
  const size_t qd = c.q_dim(), kvd = c.kv_dim(), hidden = c.hidden_dim;
  const bool write_in_items = cache->ordered_per_kv_head() && cache->writes_per_kv_head();
  // Long contexts: the kv heads that do not share out evenly (SmolLM2's third on two threads, which left one thread
  // idle for a third of the attention) are split into B blocks of cached tokens each (KvCache::AttendBlockScores
  // etc.), the others attended whole. `whole` kv heads go round the threads; the rest [whole, n_kv_heads) split, and
  // their blocks j = B·(kv head − whole) + block go round the threads too (rest·B is a multiple of T, the pool's threads).
  const bool split_rest = rest_blocks_ > 1 && attn_split_ && pos + 1 >= rest_from_;
  const size_t n_kv = (size_t)c.n_kv_heads, whole = split_rest ? n_kv - n_kv % T : n_kv, rest = n_kv - whole;
  const int B = rest_blocks_;
  // (Plain variables, not a structured binding: the lambda below captures them, which clang 14 refuses for bindings.)
  const std::pair<size_t, size_t> own = ThreadPool::ShareOf(whole, A, t);
  const size_t kv_begin = own.first, kv_end = own.second;
  // The kv heads this thread starts (and writes): its whole ones, and every A-th of the rest.
  auto starts = [&](size_t kvh) { return (kvh >= kv_begin && kvh < kv_end) || (kvh >= whole && (kvh - whole) % A == t); };
  auto query = [&](size_t kvh) { return q_ + kvh * group * c.head_dim; };  // its group's query heads
  auto output = [&](size_t kvh) { return att_ + kvh * group * c.head_dim; };  // and their attention outputs
  const size_t rest_writes = rest > t ? (rest - t + A - 1) / A : 0, most_rest_writes = (rest + A - 1) / A;
  const size_t early_writes = split_rest && write_in_items ? std::min(most_rest_writes - rest_writes, kv_end - kv_begin) : 0;
  float* scratch = attn_scratch_ + t * attn_scratch_stride_;
  // Where rows [begin, end) of op's weights start: what this thread reads after the projection before, whose asks
  // ahead run on into it (Linear::RunRows).
  auto start_of = [](const Linear& op, std::pair<size_t, size_t> rows) {
    return op.WeightRows(rows.first, rows.second).first;
  };
  // A barrier after which this thread reads the weights of rows [begin, end) of op: it asks for them while it waits
  // (LockstepBarrier::Wait says why).
  auto wait_then_read = [&](const Linear& op, std::pair<size_t, size_t> rows) {
    const auto [first, bytes] = op.WeightRows(rows.first, rows.second);
    barrier_.Wait(t, first, bytes);
  };

  for (int l = 0; l < c.n_layers; ++l) {
    const LlamaLayerWeights& L = w.layers[l];
    const LayerOps& ops = layers_[l];
    if (write_in_items)  // the kv heads this thread writes, before its norm and q/k/v (AskWriteKvHead says why)
      for (size_t kvh = 0; kvh < n_kv; ++kvh)
        if (starts(kvh)) cache->AskWriteKvHead(l, (int)kvh);
    RmsNorm(x_, reinterpret_cast<const float*>(L.attn_norm->data), xb, c.dim);
    clock.Mark(ForwardPhase::AttentionNorm);
    // (no weights asked for next: the attention comes next, and its own rows are what it should read)
    project(ops.wqkv, LockstepShares::kQkv, xb, h13_, nullptr);
    barrier_.Wait(t);
    clock.Mark(ForwardPhase::Qkv);

    if (write_in_items) {
      // Each thread starts its own kv heads: their query heads, key and value out of the fused output, RoPE, and the
      // cache's start for them (KvCache::BeginKvHead) — nothing serial, no barrier.
      for (size_t kvh = 0; kvh < n_kv; ++kvh) {
        if (!starts(kvh)) continue;
        const size_t qo = kvh * group * c.head_dim, ko = kvh * c.head_dim;
        std::copy(h13_ + qo, h13_ + qo + group * c.head_dim, q_ + qo);
        std::copy(h13_ + qd + ko, h13_ + qd + ko + c.head_dim, k_ + ko);
        std::copy(h13_ + qd + kvd + ko, h13_ + qd + kvd + ko + c.head_dim, v_ + ko);
        Rope(q_ + qo, 1, group, pos);
        Rope(k_ + ko, 1, 1, pos);
        cache->BeginKvHead(l, (int)kvh, pos, 1, q_, k_);
      }
      if (split_rest) {
        // The split kv heads are written before any thread reads them: their writers first, then a barrier. A thread
        // with fewer of them writes as many of its whole kv heads meanwhile (early_writes), so no one waits idle.
        for (size_t kvh = whole; kvh < n_kv; ++kvh)
          if (starts(kvh)) cache->WriteKvHead(l, (int)kvh, pos, 1, k_, v_);
        for (size_t kvh = kv_begin; kvh < kv_begin + early_writes; ++kvh) cache->WriteKvHead(l, (int)kvh, pos, 1, k_, v_);
        barrier_.Wait(t);
      }
    } else {
      // A cache written whole (KvCache::Write) on one thread, as the pooled pass writes it, before any kv head is read.
      if (t == 0) {
        SplitQkv(1);
        Rope(q_, 1, c.n_heads, pos);
        Rope(k_, 1, c.n_kv_heads, pos);
        cache->Observe(l, 1, q_);
        cache->Write(l, pos, 1, k_, v_);
      }
      barrier_.Wait(t);
    }
    clock.Mark(ForwardPhase::Rope);

    if (split_rest) {
      // Thread t's blocks of the split kv heads: their scores and exps, then (every block's maximum and sum known)
      // their weighted values and importance; the scores stay in this thread's cache. The whole kv heads come after,
      // where they also take up what the phases left uneven.
      for (size_t j = t; j < rest * B; j += A)
        cache->AttendBlockScores(l, pos, (int)(whole + j / B), (int)(j % B), B, query(whole + j / B), attn_split_, scratch);
      barrier_.Wait(t);
      for (size_t j = t; j < rest * B; j += A) cache->AttendBlockValues(l, (int)(whole + j / B), (int)(j % B), B, attn_split_);
    }
    for (size_t kvh = kv_begin; kvh < kv_end; ++kvh) {
      if (write_in_items && kvh >= kv_begin + early_writes) cache->WriteKvHead(l, (int)kvh, pos, 1, k_, v_);
      cache->Attend(l, pos, (int)kvh, query(kvh), output(kvh), scratch);
    }
    if (split_rest) {
      barrier_.Wait(t);  // every block's share made
      const auto [r0, r1] = ThreadPool::ShareOf(rest, A, t);
      for (size_t kvh = whole + r0; kvh < whole + r1; ++kvh) cache->AttendSum(l, (int)kvh, B, output(kvh), attn_split_);
    }
    wait_then_read(ops.wo, shares.Rows(LockstepShares::kWo, t));
    clock.Mark(ForwardPhase::Attention);

    PrefetchLines(L.ffn_norm->data, (size_t)c.dim * sizeof(float));  // arrives during wo (ForwardPooled says why)
    // The fused gate/up rows split as pairs: this thread's gate rows [g0, g1) and the up rows that meet them (hidden
    // further), so that it makes its own slice of SwiGLU from what it just wrote, over its gates (h13_'s front, where
    // the pooled pass leaves SwiGLU's output too), and nobody makes it twice.
    const std::pair<size_t, size_t> gate_rows = shares.Rows(LockstepShares::kGate, t),
                                    w2_rows = shares.Rows(LockstepShares::kW2, t);
    const size_t g0 = gate_rows.first, g1 = gate_rows.second;
    project(ops.wo, LockstepShares::kWo, att_, xb2_, start_of(ops.w13, gate_rows));  // then its gate rows
    add_residual(LockstepShares::kWo, xb2_);
    wait_then_read(ops.w13, gate_rows);  // its gate rows (the up rows come after them)
    clock.Mark(ForwardPhase::Output);

    RmsNorm(x_, reinterpret_cast<const float*>(L.ffn_norm->data), xb, c.dim);
    clock.Mark(ForwardPhase::FfnNorm);
    ops.w13.QuantizeQ8Blocks(xb, q8, sums);
    const LinearInput ffn_in{xb, nullptr, nullptr, 1, q8, sums};
    run_rows(ops.w13, ffn_in, h13_, gate_rows, start_of(ops.w13, {hidden + g0, hidden + g1}));
    run_rows(ops.w13, ffn_in, h13_, {hidden + g0, hidden + g1}, start_of(ops.w2, w2_rows));
    clock.Mark(ForwardPhase::GateUp);
    if (g1 > g0) {
      const Status s = thread_swiglu_[t].RunInto(h13_ + g0, h13_ + hidden + g0, g1 - g0, product, h13_ + g0);
      if (!s.ok() && thread_status_[t].ok()) thread_status_[t] = s;  // (the barriers still pass: no one is left waiting)
    }
    wait_then_read(ops.w2, w2_rows);
    clock.Mark(ForwardPhase::Activation);
    const TensorView* next_norm = l + 1 < c.n_layers ? w.layers[l + 1].attn_norm : w.norm;
    PrefetchLines(next_norm->data, (size_t)c.dim * sizeof(float));  // arrives during the down projection
    const Linear* next_qkv = l + 1 < c.n_layers ? &layers_[l + 1].wqkv : nullptr;
    const std::pair<size_t, size_t> next_qkv_rows = shares.Rows(LockstepShares::kQkv, t);
    project(ops.w2, LockstepShares::kW2, h13_, xb2_, next_qkv ? start_of(*next_qkv, next_qkv_rows) : nullptr);
    add_residual(LockstepShares::kW2, xb2_);
    if (next_qkv) wait_then_read(*next_qkv, next_qkv_rows);
    else barrier_.Wait(t);
    clock.Mark(ForwardPhase::Down);
  }
  busy_seconds_[t] = busy;
}

}  // namespace mikv
