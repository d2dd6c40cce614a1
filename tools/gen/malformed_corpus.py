#!/usr/bin/env python3
"""Writes tests/malformed/: small source-format files that lie (counts and lengths that overflow, offsets past the
end, shapes that disagree, non-finite weights, absurd sizes). tests/test_malformed_corpus.cc reads each through its
reader and checks the status code and message listed in tests/malformed/expected.json. Run from the repo root."""
import json, os, struct

OUT = "tests/malformed"
os.makedirs(OUT, exist_ok=True)
cases = {}


def put(name, data, reader, code, message):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    cases[name] = {"reader": reader, "code": code, "message": message}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(tensors=b"", kvs=b"", n_tensors=0, n_kv=0, data=b"", version=3):
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + kvs + tensors
    pad = (-len(head)) % 32
    return head + b"\0" * pad + data


def tinfo(name, dims, typ=0, offset=0):
    return gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", typ, offset)


arch = gstr("general.architecture") + struct.pack("<I", 8) + gstr("llama")
put("gguf-truncated-header.gguf", b"GGUF\x03\x00", "gguf", "MIKV_ERR_CORRUPT", "truncated header")
put("gguf-tensor-count-1e12.gguf", gguf(n_tensors=10**12, n_kv=1, kvs=arch), "gguf", "MIKV_ERR_CORRUPT", "more than the file holds")
put("gguf-kv-count-2e63.gguf", gguf(n_kv=2**63), "gguf", "MIKV_ERR_CORRUPT", "more than the file holds")
put("gguf-key-length-2e63.gguf", gguf(n_kv=1, kvs=struct.pack("<Q", 2**63) + b"x"), "gguf", "MIKV_ERR_CORRUPT", "truncated metadata key 0")
put("gguf-tensor-2e60-bytes.gguf", gguf(n_kv=1, kvs=arch, n_tensors=1, tensors=tinfo("token_embd.weight", [2**30, 2**28])),
    "gguf", "MIKV_ERR_CORRUPT", "claims more elements than the file holds")
put("gguf-dims-overflow-64bit.gguf", gguf(n_kv=1, kvs=arch, n_tensors=1, tensors=tinfo("token_embd.weight", [2**40, 2**40])),
    "gguf", "MIKV_ERR_CORRUPT", "claims more elements than the file holds")
put("gguf-offset-past-end.gguf", gguf(n_kv=1, kvs=arch, n_tensors=1, tensors=tinfo("token_embd.weight", [4, 4], 0, 1 << 20),
                                      data=bytes(64)), "gguf", "MIKV_ERR_CORRUPT", "lies past the end of the file")
put("gguf-five-dims.gguf", gguf(n_kv=1, kvs=arch, n_tensors=1, tensors=tinfo("token_embd.weight", [1, 1, 1, 1, 1])),
    "gguf", "MIKV_ERR_CORRUPT", "bad tensor info 0")
put("gguf-version-99.gguf", gguf(version=99), "gguf", "MIKV_ERR_UNSUPPORTED", "is version 99")


def llama2c(dim, hidden, layers, heads, kv, vocab, seq, weights=b""):
    return struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq) + weights


put("llama2c-negative-dim.bin", llama2c(-8, 16, 1, 2, 1, 4, 8), "llama2c", "MIKV_ERR_CORRUPT", "implausible header")
put("llama2c-vocab-int32-min.bin", llama2c(8, 16, 1, 2, 1, -2**31, 8), "llama2c", "MIKV_ERR_CORRUPT", "implausible header")
put("llama2c-huge-vocab.bin", llama2c(8, 16, 1, 2, 1, 2**30, 8), "llama2c", "MIKV_ERR_CORRUPT", "implausible header")
put("llama2c-truncated-weights.bin", llama2c(8, 16, 1, 2, 1, 4, 8, bytes(100)), "llama2c", "MIKV_ERR_CORRUPT", "truncated in 'tok_embeddings'")
nan_weights = struct.pack("<f", 0.5) * 300 + struct.pack("<f", float("nan")) + struct.pack("<f", 0.5) * 363  # 664 values
put("llama2c-nan-weights.bin", llama2c(8, 16, 1, 2, 1, 4, 8, nan_weights), "llama2c", "MIKV_ERR_CORRUPT", "not finite")


def safetensors(header, data=b""):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


put("st-header-length-2e63.safetensors", struct.pack("<Q", 2**63) + b"{}", "safetensors", "MIKV_ERR_CORRUPT", "bad header length")
put("st-offsets-past-end.safetensors",
    safetensors({"model.embed_tokens.weight": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 1 << 30]}}, bytes(128)),
    "safetensors", "MIKV_ERR_CORRUPT", "lies outside the file")
put("st-shape-disagrees.safetensors",
    safetensors({"model.embed_tokens.weight": {"dtype": "F32", "shape": [4, 9], "data_offsets": [0, 128]}}, bytes(128)),
    "safetensors", "MIKV_ERR_CORRUPT", "disagrees with its shape")
put("st-shape-overflows.safetensors",
    safetensors({"model.embed_tokens.weight": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 128]}}, bytes(128)),
    "safetensors", "MIKV_ERR_CORRUPT", "bad shape")
put("st-header-not-json.safetensors", struct.pack("<Q", 5) + b"{{{{{", "safetensors", "MIKV_ERR_CORRUPT", "header is not JSON")
put("st-wrong-types.safetensors",
    safetensors({"model.embed_tokens.weight": {"dtype": 7, "shape": "x", "data_offsets": [0, 128]}}, bytes(128)),
    "safetensors", "MIKV_ERR_CORRUPT", "bad entry")

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(cases, f, indent=1, sort_keys=True)
print(f"{len(cases)} files in {OUT}")
