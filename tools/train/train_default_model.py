#!/usr/bin/env python3
"""Train mikv's bundled default model: a small Llama that really uses its context.

Run on a machine with one NVIDIA GPU, PyTorch, transformers and tokenizers (nothing is downloaded):

    python3 tools/train/train_default_model.py --corpus ../shared/corpus --out out/mikv-default-14m

What it does, in order:
  1. trains a byte-level BPE tokenizer (Qwen2-style pre-tokenizer: digits split one by one) on the corpus;
  2. trains a Llama (LlamaForCausalLM: hidden 384, 8 layers, 6 query / 2 kv heads, head_dim 64, SwiGLU 1024,
     context 2048, tied embeddings) on a mixture that teaches it to look far back (see
     ../shared/notes/training-a-small-fixture-model.md): 40% prose, 30% "passage, unrelated prose, same passage"
     documents, 30% line-retrieval records (`line <name>: REGISTER_CONTENT is <dddd>`, then questions);
  3. writes a Hugging Face folder (config.json, safetensors in float16, tokenizer.json) and results.json with the
     validation perplexity, the retrieval and recall scores at full context, and transformers' greedy output for
     three prompts (the reference mikv's tests compare against).
Seeds are fixed; the data stream is a pure function of the seed.
"""
import argparse, json, lzma, math, os, random, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM

# Qwen2's split pattern: our runtime implements it as a scanner, and single digits make 4-digit values learnable.
SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
EOT = "<|endoftext|>"  # id 0: begins every sequence (BOS) and separates documents (EOS)
CTX = 2048


def log(*a):
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def load_corpus(path):
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def train_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{EOT} $A", special_tokens=[(EOT, 0)])
    return tok


class RetrievalRecords:
    """LongEval-style line-retrieval records, composed from cached token pieces (exactness checked at start)."""

    def __init__(self, tok, words_path, rng):
        sections, current = {}, None
        for line in open(words_path):
            if line.startswith("# adjectives") or line.startswith("# nouns"):
                current = sections.setdefault(line[2:].strip(), [])
            elif not line.startswith("#") and current is not None:
                current += line.split()
        self.adjs, self.nouns = sections["adjectives"], sections["nouns"]
        self.tok, self.rng, self.cache = tok, rng, {}
        self.digits = [self.enc(str(d)) for d in range(10)]

    def enc(self, s):
        if s not in self.cache:
            self.cache[s] = self.tok.encode(s, add_special_tokens=False).ids
        return self.cache[s]

    def text_and_ids(self, n_lines, n_questions):
        r = self.rng
        names = set()
        while len(names) < n_lines:
            names.add(f"{r.choice(self.adjs)}-{r.choice(self.nouns)}")
        names = list(names)
        values = [f"{r.randrange(10000):04d}" for _ in names]
        ids, text = [], ""

        def put(s, *, value=None):
            nonlocal text
            ids.extend(self.enc(s))
            text += s
            if value is not None:
                for d in value:
                    ids.extend(self.digits[int(d)])
                text += value

        put("Below is a record of lines. Remember the REGISTER_CONTENT of each line.\n")
        for name, value in zip(names, values):
            put(f"line {name}: REGISTER_CONTENT is <", value=value)
            put(">\n")
        put("The record is over.\n")
        answer_spans = []
        for _ in range(n_questions):
            k = r.randrange(n_lines)
            put(f"Question: what is the REGISTER_CONTENT in line {names[k]}?\nAnswer: <")
            start = len(ids)
            put("", value=values[k])
            answer_spans.append((start, len(ids)))
            put(">\n")
        return text, ids, answer_spans

    def sample(self):
        u = self.rng.random()
        n_lines = 4 + int(96 * u * u)  # skewed small: most records short, some long
        return self.text_and_ids(n_lines, self.rng.randint(1, 6))[1]


class Mixture:
    """Every training sequence: [EOT] + 2047 tokens of one kind of document stream."""

    def __init__(self, prose_ids, records, seed):
        self.prose, self.records = prose_ids, records
        self.rng = np.random.default_rng(seed)

    def prose_span(self, n):
        s = int(self.rng.integers(0, len(self.prose) - n))
        return self.prose[s:s + n].tolist()

    def fill(self, make_doc):
        seq = [0]
        while len(seq) < CTX:
            seq += make_doc() + [0]
        return seq[:CTX]

    def repeat_doc(self):
        p = self.prose_span(int(self.rng.integers(64, 400)))
        return p + self.prose_span(int(self.rng.integers(100, 1200))) + p

    def sequence(self):
        u = self.rng.random()
        if u < 0.4:
            return [0] + self.prose_span(CTX - 1)
        if u < 0.7:
            return self.fill(self.repeat_doc)
        return self.fill(self.records.sample)

    def batch(self, b):
        return torch.tensor([self.sequence() for _ in range(b)], dtype=torch.long)


@torch.no_grad()
def perplexity(model, ids, windows, device):
    """Windows of [EOT] + 2047 consecutive tokens of the whole valid text; loss on the 2047."""
    n = min(windows, len(ids) // (CTX - 1))
    nll, count = 0.0, 0
    for w in range(n):
        x = torch.tensor([[0] + ids[w * (CTX - 1):(w + 1) * (CTX - 1)]], device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(x).logits.float()
        nll += F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
        count += CTX - 1
    return math.exp(nll / count), n


@torch.no_grad()
def retrieval_and_recall(model, records, prose_valid, device, rng):
    """Line retrieval (greedy 4 digits after the last 'Answer: <') and repeat recall (top-1 on the second copy)."""
    hits, total = 0, 0
    for i in range(48):
        _, ids, spans = records.text_and_ids(10 + (i % 4) * 10, 1)
        a, b = spans[-1]
        x = torch.tensor([[0] + ids[:a]], device=device)
        out = model.generate(x, max_new_tokens=b - a, do_sample=False, pad_token_id=0)
        hits += out[0, -(b - a):].tolist() == ids[a:b]
        total += 1
    top1, nll, n = 0, 0.0, 0
    for i in range(16):
        s = rng.randrange(len(prose_valid) - 2000)
        p, filler = prose_valid[s:s + 200], prose_valid[s + 300:s + 1500]
        x = torch.tensor([[0] + p + filler + p], device=device)
        logits = model(x).logits.float()[0]
        first = 1 + len(p) + len(filler)  # position of the repeat's first token
        pred = logits[first:-1].argmax(-1)
        tgt = x[0, first + 1:]
        top1 += (pred == tgt).sum().item()
        nll += F.cross_entropy(logits[first:-1], tgt, reduction="sum").item()
        n += len(tgt)
    return {"line_retrieval_exact": hits / total, "line_retrieval_prompts": total,
            "recall_top1": top1 / n, "recall_loss_nats": nll / n, "recall_passages": 16}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--corpus-fraction", type=float, default=1.0, help="use a prefix of train.txt (smoke runs)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    random.seed(args.seed); np.random.seed(args.seed); torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log("command:", " ".join(sys.argv), "| device:", torch.cuda.get_device_name() if device == "cuda" else "cpu")

    train_text = load_corpus(os.path.join(args.corpus, "train.txt.xz"))
    train_text = train_text[:int(len(train_text) * args.corpus_fraction)]
    valid_text = load_corpus(os.path.join(args.corpus, "valid.txt.xz"))
    docs = [d for d in train_text.split("\n\n\n") if d.strip()]
    log(f"train: {len(train_text)/1e6:.1f} MB in {len(docs)} documents; valid: {len(valid_text)/1e6:.1f} MB")

    words = os.path.join(os.path.dirname(os.path.abspath(__file__)), "line_words.txt")
    sample_rng = random.Random(args.seed)
    paragraphs = [p for d in docs for p in d.split("\n\n")]
    tok_sample = sample_rng.sample(paragraphs, min(len(paragraphs), 60000))
    # A few record-shaped texts so that the record's fixed words get their own tokens.
    tok_sample += ["Below is a record of lines. Remember the REGISTER_CONTENT of each line.\n"
                   "line quiet-river: REGISTER_CONTENT is <1093>\nThe record is over.\n"
                   "Question: what is the REGISTER_CONTENT in line quiet-river?\nAnswer: <1093>\n"] * 200
    tok = train_tokenizer(tok_sample, args.vocab)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    log(f"tokenizer: {tok.get_vocab_size()} tokens")

    encoded = tok.encode_batch(docs, add_special_tokens=False)
    stream = []
    for e in encoded:
        stream += e.ids + [0]
    prose = np.array(stream, dtype=np.int32)
    valid_ids = tok.encode(valid_text, add_special_tokens=False).ids
    log(f"train tokens: {len(prose)/1e6:.1f} M ({len(train_text)/len(prose):.2f} bytes/token); valid tokens: {len(valid_ids)}")

    records = RetrievalRecords(tok, words, random.Random(args.seed + 1))
    for _ in range(20):  # composing cached pieces must equal tokenizing the whole text
        text, ids, _ = records.text_and_ids(5, 2)
        assert tok.encode(text, add_special_tokens=False).ids == ids, "piecewise retrieval tokens differ"
    mix = Mixture(prose, records, args.seed)

    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=384, intermediate_size=1024, num_hidden_layers=8,
                      num_attention_heads=6, num_key_value_heads=2, head_dim=64, max_position_embeddings=CTX,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=0,
                      eos_token_id=0, attention_bias=False, mlp_bias=False, hidden_act="silu",
                      initializer_range=0.02)
    model = LlamaForCausalLM(cfg).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params/1e6:.2f} M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=device == "cuda")
    step_fn = torch.compile(model) if args.compile else model

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    t0 = time.time()
    model.train()
    for step in range(args.steps):
        x = mix.batch(args.batch).to(device, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = step_fn(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            el = time.time() - t0
            log(f"step {step:5d}  loss {loss.item():.4f}  lr {lr_at(step):.2e}  "
                f"{(step + 1) * args.batch * CTX / el / 1e3:.0f} k tok/s  {el:.0f} s")
    train_seconds = time.time() - t0

    model.eval()
    results = {"parameters": n_params, "train_seconds": round(train_seconds, 1), "steps": args.steps,
               "tokens_seen": args.steps * args.batch * CTX, "command": " ".join(sys.argv),
               "train_bytes_per_token": len(train_text) / len(prose), "valid_tokens": len(valid_ids)}

    # Save in float16 (what is committed), then measure everything on the saved weights loaded back in float32.
    model.to(torch.float16).save_pretrained(args.out, max_shard_size="15MB")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
                   "model_max_length": CTX}, f, indent=1)
    ref = LlamaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32).to(device).eval()
    ppl32, n32 = perplexity(ref, valid_ids, 32, device)
    ppl_all, n_all = perplexity(ref, valid_ids, 10 ** 9, device)
    results.update({"valid_ppl_first32_windows": ppl32, "valid_ppl_all": ppl_all, "valid_windows_all": n_all})
    log(f"valid perplexity: {ppl32:.3f} (first {n32} windows of {CTX}), {ppl_all:.3f} (all {n_all} windows)")
    results.update(retrieval_and_recall(ref, records, valid_ids, device, random.Random(args.seed + 2)))
    log("retrieval/recall:", {k: results[k] for k in ("line_retrieval_exact", "recall_top1", "recall_loss_nats")})

    # transformers' greedy continuation, float32 on the CPU: the reference for mikv's test.
    cpu = LlamaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32).eval()
    greedy = []
    for prompt in ["Once upon a time", "The old house at the end of the road was",
                   "line quiet-river: REGISTER_CONTENT is <1093>\nline brave-lamp: REGISTER_CONTENT is <"]:
        ids = tok.encode(prompt).ids  # with the leading <|endoftext|>
        with torch.no_grad():
            out = cpu.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, pad_token_id=0)
        new = out[0, len(ids):].tolist()
        greedy.append({"prompt": prompt, "prompt_ids": ids, "greedy_ids": new, "text": tok.decode(new)})
        log("greedy:", repr(prompt), "->", repr(tok.decode(new)))
    results["transformers_greedy_f32_cpu"] = greedy
    import transformers, tokenizers
    results["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                           "tokenizers": tokenizers.__version__}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    log("done")


if __name__ == "__main__":
    main()
