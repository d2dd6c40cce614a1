// The llama.cpp side of the comparison tests: runs a GGUF through node-llama-cpp's prebuilt CPU
// llama.cpp and writes what it computed as JSON.
//   node llamacpp_oracle.mjs <llamacpp-dir> <model.gguf> <request.json> <answer.json>
// request: {"tokens": [...], "generate": N, "teacher": bool, "threads": T, "kv": "F32"|"F16"}
// answer:  {"last_logprobs": [vocab floats], "generated": [N ids], "teacher_argmax": [one per token]}
import fs from "node:fs";
import path from "node:path";

const [dir, modelPath, requestPath, answerPath] = process.argv.slice(2);
const { getLlama } = await import(path.join(dir, "node_modules/node-llama-cpp/dist/index.js"));
const req = JSON.parse(fs.readFileSync(requestPath, "utf8"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const vocab = model.tokens.trimmedVocabularySize ?? model.fileInsights?.tokens ?? 0;
const kv = req.kv ?? "F16";
const ctxSize = req.tokens.length + (req.generate ?? 0) + 8;
const context = await model.createContext({
  contextSize: ctxSize, batchSize: ctxSize, threads: req.threads ?? 2, flashAttention: false,
  experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv,
});
const greedy = { temperature: 0 };
const answer = {};

if (req.teacher) {
  // Teacher forcing: the greedy (argmax) next token after every prefix, in one evaluation.
  const seq = context.getSequence();
  const input = req.tokens.map((t) => [t, { generateNext: { token: true, options: greedy } }]);
  const out = await seq.controlledEvaluate(input);
  answer.teacher_argmax = out.map((o) => (o?.next?.token ?? -1));
} else {
  const seq = context.getSequence();
  const input = req.tokens.map((t, i) =>
    i === req.tokens.length - 1 ? [t, { generateNext: { probabilities: true, token: true, options: greedy } }] : t);
  const out = await seq.controlledEvaluate(input);
  const last = out[out.length - 1].next;
  const n = model.tokens.vocabularySize ?? vocab;
  const logprobs = new Array(n).fill(-1e30);
  for (const [tok, p] of last.probabilities) logprobs[tok] = p > 0 ? Math.log(p) : -1e30;
  answer.last_logprobs = logprobs;
  const generated = [last.token];
  for (let i = 1; i < (req.generate ?? 0); i++) {
    const step = await seq.controlledEvaluate([[generated[generated.length - 1], { generateNext: { token: true, options: greedy } }]]);
    generated.push(step[0].next.token);
  }
  answer.generated = req.generate ? generated : [];
}

fs.writeFileSync(answerPath, JSON.stringify(answer));
await context.dispose();
await model.dispose();
await llama.dispose();
