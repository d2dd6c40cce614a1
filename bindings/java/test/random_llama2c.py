#!/usr/bin/env python3
"""A random-weight llama2.c checkpoint (dim 64, 2 layers, vocab 512 for stories260K's tok512 tokenizer, context 128).

Its greedy output is mostly byte tokens (<0x80>..<0xFF> among them), so the Java test sees pieces that are not
whole UTF-8 characters. Usage: random_llama2c.py out.bin
"""
import array
import random
import struct
import sys

dim, hidden, layers, heads, kv_heads, vocab, seq = 64, 128, 2, 4, 4, 512, 128
head = dim // heads
rng = random.Random(47)
w = array.array("f")


def add(n, sigma):  # sigma 0: ones (norm weights, llama2.c's unused RoPE tables)
    w.extend([1.0] * n if sigma == 0 else [rng.gauss(0.0, sigma) for _ in range(n)])


add(vocab * dim, 0.5)
add(layers * dim, 0)
add(layers * dim * dim, 0.1)
add(layers * dim * kv_heads * head, 0.1)
add(layers * dim * kv_heads * head, 0.1)
add(layers * dim * dim, 0.1)
add(layers * dim, 0)
add(layers * hidden * dim, 0.1)
add(layers * dim * hidden, 0.1)
add(layers * hidden * dim, 0.1)
add(dim, 0)
add(seq * head // 2, 0)
add(seq * head // 2, 0)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("7i", dim, hidden, layers, heads, kv_heads, vocab, seq))
    w.tofile(f)
