// The llama.cpp side of scripts/bench_vs_llamacpp.py: prefill and decode speed of a GGUF through
// node-llama-cpp's prebuilt CPU llama.cpp, flash attention on, the KV cache in the type asked.
//   node llamacpp_speed.mjs <llamacpp-dir> <model.gguf> <request.json>
// request: {"prompt": [ids], "decode": N, "threads": T, "kv": "q8_0"|"q4_0"|"f16"}
// prints:  {"prefill_tokens_per_second": x, "decode_tokens_per_second": y}
import fs from "node:fs";
import path from "node:path";

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

let t0 = process.hrtime.bigint();
const first = await seq.controlledEvaluate(req.prompt.map((t, i) =>
  i === req.prompt.length - 1 ? [t, { generateNext: { token: true, options: greedy } }] : t));
const prefillSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
let token = first[first.length - 1].next.token;

t0 = process.hrtime.bigint();
for (let i = 0; i < req.decode; i++) {
  const step = await seq.controlledEvaluate([[token, { generateNext: { token: true, options: greedy } }]]);
  token = step[0].next.token;
}
const decodeSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

console.log(JSON.stringify({
  prefill_tokens_per_second: req.prompt.length / prefillSeconds,
  decode_tokens_per_second: req.decode / decodeSeconds,
}));
await context.dispose();
await model.dispose();
await llama.dispose();
