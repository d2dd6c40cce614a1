#include "llama_graph.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu_cores.h"
#include "ggml_blocks.h"
#include "phase_clock.h"
#include "prefetch.h"

namespace mikv {

const char* ForwardPhaseName(ForwardPhase phase) {
  static const char* const kNames[kForwardPhases] = {"embed",     "attn_norm", "qkv",     "rope",       "kv_write",
                                                     "attention", "attn_out",  "ffn_norm", "gate_up",   "swiglu",
                                                     "down",      "classifier"};
  const int i = (int)phase;
  return i >= 0 && i < kForwardPhases ? kNames[i] : "?";
}

Status LlamaGraph::CreateOperators() {
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  MIKV_RETURN_IF_ERROR(quantizer_.Create());
  MIKV_RETURN_IF_ERROR(swiglu_.Create());
  layers_.resize(c.n_layers);
  auto bias = [](const TensorView* t) { return t ? reinterpret_cast<const float*>(t->data) : nullptr; };
  for (int l = 0; l < c.n_layers; ++l) {
    const LlamaLayerWeights& L = w.layers[l];
    LayerOps& ops = layers_[l];
    ops.qkv_fused = FusesProjections({L.wq, L.wk, L.wv});
    if (ops.qkv_fused) {
      MIKV_RETURN_IF_ERROR(ops.wqkv.CreateFused({L.wq, L.wk, L.wv}, {bias(L.bq), bias(L.bk), bias(L.bv)}));
    } else {
      MIKV_RETURN_IF_ERROR(ops.wq.Create(*L.wq, bias(L.bq)));
      MIKV_RETURN_IF_ERROR(ops.wk.Create(*L.wk, bias(L.bk)));
      MIKV_RETURN_IF_ERROR(ops.wv.Create(*L.wv, bias(L.bv)));
    }
    MIKV_RETURN_IF_ERROR(ops.wo.Create(*L.wo, nullptr));
    // (In the file's order when not fused: the heap the packing leaves behind, which the budget measures, stays as it
    // was.)
    ops.gate_up_fused = FusesProjections({L.w1, L.w3});
    if (ops.gate_up_fused) {
      MIKV_RETURN_IF_ERROR(ops.w13.CreateFused({L.w1, L.w3}, {nullptr, nullptr}));
      MIKV_RETURN_IF_ERROR(ops.w2.Create(*L.w2, nullptr));
    } else {
      MIKV_RETURN_IF_ERROR(ops.w1.Create(*L.w1, nullptr));
      MIKV_RETURN_IF_ERROR(ops.w2.Create(*L.w2, nullptr));
      MIKV_RETURN_IF_ERROR(ops.w3.Create(*L.w3, nullptr));
    }
  }
  MIKV_RETURN_IF_ERROR(classifier_.Create(*w.output, nullptr));
  if (lockstep_) {
    thread_swiglu_.reset(new SwiGlu[threads_]);
    for (int t = 0; t < threads_; ++t) MIKV_RETURN_IF_ERROR(thread_swiglu_[t].Create());
    barrier_ = LockstepBarrier((size_t)threads_, MoreThreadsThanCpus(threads_));
    thread_status_.assign((size_t)threads_, OkStatus());
    const LayerOps& ops = layers_[0];
    const size_t rows[LockstepShares::kMatrices] = {ops.wqkv.out_features(), ops.wo.out_features(),
                                                    (size_t)c.hidden_dim, ops.w2.out_features()};
    shares_.clear();
    for (int n = 1; n <= threads_; ++n) shares_.emplace_back((size_t)n, rows);
    busy_seconds_.assign((size_t)threads_, 0.0);
  }

  // RoPE frequencies: theta^(-2i/d), divided by the model's per-frequency factors (Llama 3 scaling).
  const int half = c.head_dim / 2;
  inv_freq_.resize(half);
  const float* factors = w.rope_freqs ? reinterpret_cast<const float*>(w.rope_freqs->data) : nullptr;
  for (int i = 0; i < half; ++i) {
    double f = std::pow((double)c.rope_theta, -2.0 * i / c.head_dim);
    if (factors) f /= factors[i];
    inv_freq_[i] = (float)f;
  }
  return OkStatus();
}

bool LlamaGraph::FusesProjections(const std::vector<const TensorView*>& parts) {
  return Linear::CanFuse(parts) && parts[0]->type != WeightType::F32 && parts[0]->type != WeightType::F16;
}

namespace {

// The fewest blocks to cut each of `kv_heads` kv heads into so that all the blocks share out evenly over the threads.
int EvenBlocks(int threads, int kv_heads) { return threads / std::gcd(threads, kv_heads); }

}  // namespace

int LlamaGraph::SplitBlocks(int threads, int n_kv_heads) {
  // Unsplit, the kv heads go round the threads ceil(kv heads / threads) times and keep kv heads / (threads · rounds)
  // of their time busy. Where that is over half, the split's three phases (each a wait for every thread, each head's
  // scores crossing cores between them) cost as much as the idle time or more: SmolLM2's 3 kv heads on 2 or 4
  // threads (3/4 busy) decoded 0.84-1.04x as fast split, on 8 threads (3/8 busy) 1.23x at 8k tokens
  // (docs/bench/split-attention-session21.txt).
  const int rounds = (n_kv_heads + threads - 1) / threads;
  if (2 * n_kv_heads > threads * rounds) return 1;
  return EvenBlocks(threads, n_kv_heads);
}

int LlamaGraph::LockstepSplitBlocks(int threads, int n_kv_heads) {
  const int rest = n_kv_heads % threads;
  return rest == 0 ? 1 : EvenBlocks(threads, rest);
}

int64_t LlamaGraph::LockstepSplitFrom(int threads, int n_kv_heads, int min_tokens) {
  const int64_t rest = n_kv_heads % threads;
  if (rest == 0) return 0;
  // N·(threads − rest)/threads >= blocks_a_thread·min_tokens, rounded up.
  const int64_t blocks_a_thread = rest * LockstepSplitBlocks(threads, n_kv_heads) / threads;
  const int64_t need = (int64_t)min_tokens * blocks_a_thread * threads, saved = threads - rest;
  return (need + saved - 1) / saved;
}

void LlamaGraph::Carve(Arena* a, const KvCache& cache) {
  const ModelConfig& c = model_.config();
  const size_t attn_scratch_floats = cache.ScratchFloats();
  const size_t T = chunk_;
  x_ = a->Take<float>(T * c.dim, "activations");
  xb_ = a->Take<float>(T * std::max(c.dim, c.q_dim()), "activations");
  xb2_ = a->Take<float>(T * c.dim, "activations");
  q_ = a->Take<float>(T * c.q_dim(), "activations");
  k_ = a->Take<float>(T * c.kv_dim(), "activations");
  v_ = a->Take<float>(T * c.kv_dim(), "activations");
  att_ = a->Take<float>(T * c.q_dim(), "activations");
  h13_ = a->Take<float>(T * std::max(2 * c.hidden_dim, c.q_dim() + 2 * c.kv_dim()), "activations");
  rope_cos_ = a->Take<float>(T * c.head_dim / 2, "activations");
  rope_sin_ = a->Take<float>(T * c.head_dim / 2, "activations");
  const size_t widest = std::max({c.dim, c.q_dim(), c.hidden_dim});
  qd8_ = a->Take<int8_t>(T * widest + XNN_EXTRA_BYTES, "activations");
  qd8_params_ = a->Take<xnn_quantization_params>(T + XNN_EXTRA_QUANTIZATION_PARAMS, "activations");
  // (Decided from the weights, not the operators: the plan is carved before the operators exist.)
  auto blocks = [](const TensorView* t) { return t->type == WeightType::Q8_0 || t->type == WeightType::Q4_0; };
  const LlamaWeights& w = model_.weights();
  bool any_q8_blocks = blocks(w.output);
  for (const LlamaLayerWeights& L : w.layers)
    for (const TensorView* t : {L.wq, L.wk, L.wv, L.wo, L.w1, L.w2, L.w3}) any_q8_blocks = any_q8_blocks || blocks(t);
  // Q8_0 activation blocks only where some weight is q8_0/q4_0 (widest is a multiple of 32 then: checked at load).
  q8_blocks_ = any_q8_blocks ? a->Take<uint8_t>(T * (widest / kQBlock) * kQ8_0BlockBytes, "activations") : nullptr;
  q8_sums_ = any_q8_blocks ? a->Take<int32_t>(T * (widest / kQBlock), "activations") : nullptr;
  attn_scratch_stride_ = (attn_scratch_floats + 15) / 16 * 16;
  attn_scratch_ = a->Take<float>(attn_scratch_stride_ * threads_, "activations");
  // One buffer for both splits: a decode step takes one or the other.
  const size_t split_floats = std::max(split_blocks_ > 1 ? cache.SplitScratchFloats(split_blocks_) : 0,
                                       rest_blocks_ > 1 ? cache.SplitScratchFloats(rest_blocks_) : 0);
  attn_split_ = split_floats > 0 ? a->Take<float>(split_floats, "activations") : nullptr;
  if (lockstep_) {  // rows 64 bytes apart: no line shared by two threads' buffers
    auto line = [](size_t n, size_t size) { return (n * size + 63) / 64 * 64 / size; };
    thread_floats_stride_ = line(c.dim, sizeof(float));
    thread_hidden_stride_ = line(c.hidden_dim, sizeof(float));
    thread_q8_stride_ = line(widest / kQBlock * kQ8_0BlockBytes, 1);
    thread_sums_stride_ = line(widest / kQBlock, sizeof(int32_t));
    thread_xb_ = a->Take<float>(thread_floats_stride_ * threads_, "activations");
    thread_product_ = a->Take<float>(thread_hidden_stride_ * threads_, "activations");
    thread_q8_ = a->Take<uint8_t>(thread_q8_stride_ * threads_, "activations");
    thread_q8_sums_ = a->Take<int32_t>(thread_sums_stride_ * threads_, "activations");
  }
}

void LlamaGraph::RmsNorm(const float* x, const float* w, float* out, int n) const {
  // Σ x² in double, in four running sums the compiler keeps in two vector registers: one chain of dependent
  // additions took 0.46 µs for SmolLM2's 576 channels, four take 0.11 (61 calls a decoded token).
  double lane[4] = {0.0, 0.0, 0.0, 0.0};
  int i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) lane[j] += (double)x[i + j] * x[i + j];
  double ss = (lane[0] + lane[1]) + (lane[2] + lane[3]);
  for (; i < n; ++i) ss += (double)x[i] * x[i];
  const float inv = 1.0f / std::sqrt((float)(ss / n) + model_.config().norm_eps);
  for (i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

// Rotates every head of v[n_tokens][n_heads * head_dim] by its token's angles (rope_cos_/rope_sin_).
void LlamaGraph::Rope(float* v, int n_tokens, int n_heads, int pos) const {
  const ModelConfig& c = model_.config();
  const int d = c.head_dim, half = d / 2;
  for (int t = 0; t < n_tokens; ++t) {
    const float* cs = rope_cos_ + (size_t)t * half;
    const float* sn = rope_sin_ + (size_t)t * half;
    for (int h = 0; h < n_heads; ++h) {
      float* x = v + ((size_t)t * n_heads + h) * d;
      for (int i = 0; i < half; ++i) {
        // Interleaved pairs (2i, 2i+1); NeoX pairs (i, i + d/2).
        float* a = c.rope_style == RopeStyle::Interleaved ? &x[2 * i] : &x[i];
        float* b = c.rope_style == RopeStyle::Interleaved ? &x[2 * i + 1] : &x[i + half];
        const float x0 = *a, x1 = *b;
        *a = x0 * cs[i] - x1 * sn[i];
        *b = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

Status LlamaGraph::Project(Linear& op, LinearInput* in, size_t in_dim, float* out, pthreadpool_t pool) {
  if (op.needs_qd8() && in->qd8 == nullptr) MIKV_RETURN_IF_ERROR(quantizer_.Quantize(in_dim, qd8_, qd8_params_, in, pool));
  if (op.needs_q8_blocks() && in->q8_blocks == nullptr) {
    const size_t blocks = in_dim / kQBlock;
    for (size_t b = 0; b < in->batch; ++b)
      op.QuantizeQ8Blocks(in->f32 + b * in_dim, q8_blocks_ + b * blocks * kQ8_0BlockBytes, q8_sums_ + b * blocks);
    in->q8_blocks = q8_blocks_;
    in->q8_sums = q8_sums_;
  }
  return op.Run(*in, out, pool);
}

namespace {

struct AttentionTask {
  KvCache* cache;
  int layer, pos, n, n_heads, n_kv_heads, head_dim;
  const float* q;
  float* out;
  float* scratch;
  size_t scratch_stride;
  // When set, each kv head's item writes its tokens' keys and values first (KvCache::WriteKvHead).
  const float* k = nullptr;
  const float* v = nullptr;
  // One query head group (the heads sharing a kv head) of one token.
  void Run(size_t thread, int token, int kv_head) const {
    const size_t off = ((size_t)token * n_heads + (size_t)kv_head * (n_heads / n_kv_heads)) * head_dim;
    cache->Attend(layer, pos + token, kv_head, q + off, out + off, scratch + thread * scratch_stride);
  }
};

// Caches that accumulate importance see each kv head's tokens in order on one thread.
void RunAttentionPerKvHead(void* ctx, size_t thread, size_t kv_head) {
  const AttentionTask& t = *static_cast<const AttentionTask*>(ctx);
  if (t.k) t.cache->WriteKvHead(t.layer, (int)kv_head, t.pos, t.n, t.k, t.v);
  for (int token = 0; token < t.n; ++token) t.Run(thread, token, (int)kv_head);
}

void RunAttentionPerTokenAndKvHead(void* ctx, size_t thread, size_t item) {
  const AttentionTask& t = *static_cast<const AttentionTask*>(ctx);
  t.Run(thread, (int)item / t.n_kv_heads, (int)item % t.n_kv_heads);
}

// One token's attention split across kv heads and blocks of cached tokens (KvCache::AttendBlockScores etc.).
struct SplitAttentionTask {
  AttentionTask a;
  int blocks;
  float* shared;
  int group() const { return a.n_heads / a.n_kv_heads; }
  const float* q(int kv_head) const { return a.q + (size_t)kv_head * group() * a.head_dim; }
};

void RunSplitScores(void* ctx, size_t thread, size_t item) {
  const SplitAttentionTask& t = *static_cast<const SplitAttentionTask*>(ctx);
  const int kv_head = (int)item / t.blocks, block = (int)item % t.blocks;
  t.a.cache->AttendBlockScores(t.a.layer, t.a.pos, kv_head, block, t.blocks, t.q(kv_head), t.shared,
                               t.a.scratch + thread * t.a.scratch_stride);
}

void RunSplitValues(void* ctx, size_t, size_t item) {
  const SplitAttentionTask& t = *static_cast<const SplitAttentionTask*>(ctx);
  t.a.cache->AttendBlockValues(t.a.layer, (int)item / t.blocks, (int)item % t.blocks, t.blocks, t.shared);
}

void RunSplitSum(void* ctx, size_t, size_t kv_head) {
  const SplitAttentionTask& t = *static_cast<const SplitAttentionTask*>(ctx);
  t.a.cache->AttendSum(t.a.layer, (int)kv_head, t.blocks, t.a.out + kv_head * t.group() * t.a.head_dim, t.shared);
}

}  // namespace

void LlamaGraph::SplitQkv(int n) {
  const ModelConfig& c = model_.config();
  const size_t qd = c.q_dim(), kvd = c.kv_dim(), width = qd + 2 * kvd;
  for (size_t t = 0; t < (size_t)n; ++t) {
    const float* row = h13_ + t * width;
    std::copy(row, row + qd, q_ + t * qd);
    std::copy(row + qd, row + qd + kvd, k_ + t * kvd);
    std::copy(row + qd + kvd, row + width, v_ + t * kvd);
  }
}

// The layers for a chunk of tokens, each parallel operation through the pool.
Status LlamaGraph::ForwardPooled(int n, int pos, bool split, KvCache* cache, pthreadpool_t pool, PhaseClock* clock) {
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  for (int l = 0; l < c.n_layers; ++l) {
    const LlamaLayerWeights& L = w.layers[l];
    LayerOps& ops = layers_[l];
    for (int t = 0; t < n; ++t)
      RmsNorm(x_ + (size_t)t * c.dim, reinterpret_cast<const float*>(L.attn_norm->data), xb_ + (size_t)t * c.dim, c.dim);
    clock->Mark(ForwardPhase::AttentionNorm);
    LinearInput in{xb_, nullptr, nullptr, (size_t)n};
    if (ops.qkv_fused) {
      MIKV_RETURN_IF_ERROR(Project(ops.wqkv, &in, c.dim, h13_, pool));
      SplitQkv(n);
    } else {
      MIKV_RETURN_IF_ERROR(Project(ops.wq, &in, c.dim, q_, pool));
      MIKV_RETURN_IF_ERROR(Project(ops.wk, &in, c.dim, k_, pool));
      MIKV_RETURN_IF_ERROR(Project(ops.wv, &in, c.dim, v_, pool));
    }
    clock->Mark(ForwardPhase::Qkv);
    Rope(q_, n, c.n_heads, pos);
    Rope(k_, n, c.n_kv_heads, pos);
    cache->Observe(l, n, q_);
    clock->Mark(ForwardPhase::Rope);
    // Where the attention goes a kv head an item, each item writes its kv head's tokens: the write is no longer
    // serial work on this thread while the workers wait (SmolLM2 shape, two threads: ~75 µs a token at 512 tokens).
    const bool write_in_items = !split && cache->ordered_per_kv_head() && cache->writes_per_kv_head();
    if (write_in_items) cache->BeginWrite(l, pos, n, k_);
    else cache->Write(l, pos, n, k_, v_);
    clock->Mark(ForwardPhase::CacheWrite);

    AttentionTask task{cache, l, pos, n, c.n_heads, c.n_kv_heads, c.head_dim, q_, att_, attn_scratch_, attn_scratch_stride_};
    if (write_in_items) task.k = k_, task.v = v_;
    if (split) {
      SplitAttentionTask split{task, split_blocks_, attn_split_};
      const size_t items = (size_t)c.n_kv_heads * split_blocks_;
      pthreadpool_parallelize_1d_with_thread(pool, RunSplitScores, &split, items, 0);
      pthreadpool_parallelize_1d_with_thread(pool, RunSplitValues, &split, items, 0);
      // The blocks' shares summed on this thread: group × head_dim floats per block and kv head, less than waking the
      // pool for it costs (each parallel operation is a hand-off to every worker and a wait for all of them).
      for (int kv_head = 0; kv_head < c.n_kv_heads; ++kv_head) RunSplitSum(&split, 0, (size_t)kv_head);
    } else if (cache->ordered_per_kv_head())
      pthreadpool_parallelize_1d_with_thread(pool, RunAttentionPerKvHead, &task, (size_t)c.n_kv_heads, 0);
    else
      pthreadpool_parallelize_1d_with_thread(pool, RunAttentionPerTokenAndKvHead, &task, (size_t)n * c.n_kv_heads, 0);

    clock->Mark(ForwardPhase::Attention);
    // A layer's norm weights (2.3 KB for SmolLM2) have left every cache by the time the next token reaches them
    // (~70 MB of weights stream between), and RmsNorm on this thread, while the workers wait, would then wait on each
    // line from memory: each norm's are asked for before the projection that precedes it.
    PrefetchLines(L.ffn_norm->data, (size_t)c.dim * sizeof(float));  // arrives during wo
    LinearInput att_in{att_, nullptr, nullptr, (size_t)n};
    MIKV_RETURN_IF_ERROR(Project(ops.wo, &att_in, c.q_dim(), xb2_, pool));
    for (size_t i = 0; i < (size_t)n * c.dim; ++i) x_[i] += xb2_[i];
    clock->Mark(ForwardPhase::Output);

    for (int t = 0; t < n; ++t)
      RmsNorm(x_ + (size_t)t * c.dim, reinterpret_cast<const float*>(L.ffn_norm->data), xb_ + (size_t)t * c.dim, c.dim);
    clock->Mark(ForwardPhase::FfnNorm);
    LinearInput ffn_in{xb_, nullptr, nullptr, (size_t)n};
    const size_t hidden = c.hidden_dim;
    // Token t's gate at h13_ + t · row, its up `up` floats further: fused, side by side per token; not fused, the
    // two operators' outputs one after the other.
    size_t row = 2 * hidden, up = hidden;
    if (ops.gate_up_fused) {
      MIKV_RETURN_IF_ERROR(Project(ops.w13, &ffn_in, c.dim, h13_, pool));
    } else {
      row = hidden;
      up = (size_t)n * hidden;
      MIKV_RETURN_IF_ERROR(Project(ops.w1, &ffn_in, c.dim, h13_, pool));
      MIKV_RETURN_IF_ERROR(Project(ops.w3, &ffn_in, c.dim, h13_ + up, pool));
    }
    clock->Mark(ForwardPhase::GateUp);
    // SwiGLU, silu(gate) · up, written over the front of h13_ as [n][hidden], in place (SwiGlu::Run says why no row
    // still to be read is overwritten).
    MIKV_RETURN_IF_ERROR(swiglu_.Run(h13_, (size_t)n, hidden, row, up));
    clock->Mark(ForwardPhase::Activation);
    const TensorView* next_norm = l + 1 < c.n_layers ? w.layers[l + 1].attn_norm : w.norm;
    PrefetchLines(next_norm->data, (size_t)c.dim * sizeof(float));  // arrives during the down projection
    LinearInput down_in{h13_, nullptr, nullptr, (size_t)n};
    MIKV_RETURN_IF_ERROR(Project(ops.w2, &down_in, c.hidden_dim, xb2_, pool));
    for (size_t i = 0; i < (size_t)n * c.dim; ++i) x_[i] += xb2_[i];
    clock->Mark(ForwardPhase::Down);
  }
  return OkStatus();
}

Status LlamaGraph::Forward(const int32_t* tokens, int n, int pos, KvCache* cache, pthreadpool_t pool,
                           float* last_logits, float* all_logits, double* phase_seconds) {
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  const int half = c.head_dim / 2;
  PhaseClock clock(phase_seconds);

  for (int t = 0; t < n; ++t) {
    DequantizeRow(*w.tok_embeddings, (uint64_t)tokens[t], x_ + (size_t)t * c.dim);
    for (int i = 0; i < half; ++i) {
      const double angle = (double)(pos + t) * inv_freq_[i];
      rope_cos_[(size_t)t * half + i] = (float)std::cos(angle);
      rope_sin_[(size_t)t * half + i] = (float)std::sin(angle);
    }
  }

  clock.Mark(ForwardPhase::Embed);

  // A decode step's attention split into blocks of cached tokens (SplitBlocks) takes phases of its own, through the
  // pool; otherwise one token's layers run in lockstep where they can.
  const bool split = n == 1 && split_blocks_ > 1 && attn_split_ && pos + 1 >= split_from();
  if (n == 1 && lockstep_ && !split) MIKV_RETURN_IF_ERROR(ForwardLockstep(pos, cache, pool, &clock));
  else MIKV_RETURN_IF_ERROR(ForwardPooled(n, pos, split, cache, pool, &clock));

  const float* norm = reinterpret_cast<const float*>(w.norm->data);
  if (all_logits) {
    for (int t = 0; t < n; ++t) RmsNorm(x_ + (size_t)t * c.dim, norm, xb_ + (size_t)t * c.dim, c.dim);
    LinearInput in{xb_, nullptr, nullptr, (size_t)n};
    MIKV_RETURN_IF_ERROR(Project(classifier_, &in, c.dim, all_logits, pool));
    std::copy(all_logits + (size_t)(n - 1) * c.vocab_size, all_logits + (size_t)n * c.vocab_size, last_logits);
  } else {
    RmsNorm(x_ + (size_t)(n - 1) * c.dim, norm, xb_, c.dim);
    LinearInput in{xb_, nullptr, nullptr, 1};
    MIKV_RETURN_IF_ERROR(Project(classifier_, &in, c.dim, last_logits, pool));
  }
  clock.Mark(ForwardPhase::Classifier);
  return OkStatus();
}

}  // namespace mikv
