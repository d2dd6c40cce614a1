// The llama.cpp side of scripts/bench_vs_llamacpp.py: prefill and decode speed of a GGUF through
// node-llama-cpp's prebuilt CPU llama.cpp, flash attention on, the KV cache in the type asked.
//   node llamacpp_speed.mjs <llamacpp-dir> <model.gguf> <request.json>
// request: {"prompt": [ids], "decode": N, "threads": T, "kv": "q8_0"|"q4_0"|"f16", "seed": S (optional)}
// prints:  {"prefill_tokens_per_second": x, "decode_tokens_per_second": y, "kv_cells": n}
//
// With "seed", only the first S prompt tokens are evaluated; the sequence's KV cache is then saved, grown to the
// whole prompt's length by repeating the S cells' rows (positions 0..n-1, llama.cpp's own state-file layout: see
// synthesizeState), and loaded back before decoding. A decode step reads every cached cell whatever it holds, so
// its speed is that of a real n-token context, without the O(n²) prefill (13.5 minutes for 16k tokens of the
// SmolLM2 shape on two cores here). The prefill rate printed is then the seed's.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

// A sequence state file of llama.cpp (llama_state_seq_save_file, this build's format: llama-context.cpp and
// llama-kv-cache.cpp state_write) holding `seed` cells, rewritten to hold n cells: row i of every layer's K and V is
// the seed's row i mod seed, at position i.
function synthesizeState(seedFile, n) {
  const b = fs.readFileSync(seedFile);
  let o = 0;
  const u32 = () => { const v = b.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = Number(b.readBigUInt64LE(o)); o += 8; return v; };
  const magic = u32(), version = u32(), nTokens = u32();
  const tokens = [];
  for (let i = 0; i < nTokens; i++) tokens.push(b.readInt32LE(o + 4 * i));
  o += 4 * nTokens;
  if (u32() !== 1) throw new Error("expected one KV stream");
  const cells = u32();
  for (let i = 0; i < cells; i++) {
    const pos = b.readInt32LE(o), nSeq = b.readUInt32LE(o + 4);
    if (pos !== i || nSeq !== 1) throw new Error(`unexpected cell ${i}: position ${pos}, ${nSeq} sequences`);
    o += 12;
  }
  const vTrans = u32(), nLayer = u32();
  if (vTrans !== 0) throw new Error("V is transposed (flash attention off?)");
  const tensors = [];  // K of every layer, then V of every layer
  while (o < b.length) {
    const type = b.readInt32LE(o);
    o += 4;
    const row = u64();
    tensors.push({ type, row, data: b.subarray(o, o + row * cells) });
    o += row * cells;
  }
  if (tensors.length !== 2 * nLayer) throw new Error(`expected ${2 * nLayer} tensors, found ${tensors.length}`);
  const rowBytes = tensors.reduce((s, t) => s + t.row, 0);
  const out = Buffer.alloc(12 + 4 * n + 8 + 12 * n + 8 + tensors.length * 12 + rowBytes * n);
  let w = 0;
  const put32 = (v) => { out.writeUInt32LE(v, w); w += 4; };
  put32(magic); put32(version); put32(n);
  for (let i = 0; i < n; i++) { out.writeInt32LE(tokens[i % nTokens], w); w += 4; }
  put32(1); put32(n);
  for (let i = 0; i < n; i++) { out.writeInt32LE(i, w); out.writeUInt32LE(1, w + 4); out.writeInt32LE(0, w + 8); w += 12; }
  put32(0); put32(nLayer);
  for (const t of tensors) {
    out.writeInt32LE(t.type, w); out.writeBigUInt64LE(BigInt(t.row), w + 4); w += 12;
    for (let i = 0; i < n; i++) { t.data.copy(out, w, (i % cells) * t.row, (i % cells + 1) * t.row); w += t.row; }
  }
  if (w !== out.length) throw new Error("size mismatch");
  return out;
}

const [dir, modelPath, requestPath] = process.argv.slice(2);
const { getLlama } = await import(path.join(dir, "node_modules/node-llama-cpp/dist/index.js"));
const req = JSON.parse(fs.readFileSync(requestPath, "utf8"));
const kv = req.kv.toUpperCase();

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({
  contextSize: req.prompt.length + req.decode + 8, batchSize: 512, threads: req.threads, flashAttention: true,
  experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv,
});
const seq = context.getSequence();
const greedy = { temperature: 0 };

const evaluated = req.seed ? req.prompt.slice(0, req.seed) : req.prompt;
let t0 = process.hrtime.bigint();
const first = await seq.controlledEvaluate(evaluated.map((t, i) =>
  i === evaluated.length - 1 ? [t, { generateNext: { token: true, options: greedy } }] : t));
const prefillSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
let token = first[first.length - 1].next.token;
if (req.seed) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamacpp-state-"));
  const seedFile = path.join(dir, "seed.bin"), grownFile = path.join(dir, "grown.bin");
  await seq.saveStateToFile(seedFile);
  fs.writeFileSync(grownFile, synthesizeState(seedFile, req.prompt.length));
  await seq.loadStateFromFile(grownFile, { acceptRisk: true });
  fs.rmSync(dir, { recursive: true });
}

t0 = process.hrtime.bigint();
for (let i = 0; i < req.decode; i++) {
  const step = await seq.controlledEvaluate([[token, { generateNext: { token: true, options: greedy } }]]);
  token = step[0].next.token;
}
const decodeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

console.log(JSON.stringify({
  prefill_tokens_per_second: evaluated.length / prefillSeconds,
  decode_tokens_per_second: req.decode / decodeSeconds,
  kv_cells: seq.nextTokenIndex,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
