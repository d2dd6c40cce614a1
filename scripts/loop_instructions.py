#!/usr/bin/env python3
"""Instructions in each loop of the compiled functions whose names contain PATTERN, from an object file's disassembly.

A loop is a backward branch's range; the innermost one of a kernel is its per-block body. Counts are static: what one
pass through the loop issues, not a timing. Used for the NEON kernels, which no core here can time (qemu-aarch64 runs
them, far from a real core's speed).

  scripts/loop_instructions.py OBJECT PATTERN [--objdump aarch64-linux-gnu-objdump] [--count smmla,sdot]

e.g. ar x build-aarch64/runtime/libmikv.a qb32-gemm-neondot.cc.o
     scripts/loop_instructions.py qb32-gemm-neondot.cc.o 'Group<18ul, 4,'
(docs/bench/neon-prefill-tokens-session41.txt: the commands behind its counts)
"""
import argparse
import re
import subprocess


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("object")
    ap.add_argument("pattern", help="part of the demangled function name")
    ap.add_argument("--objdump", default="aarch64-linux-gnu-objdump")
    ap.add_argument("--count", default="smmla,sdot", help="mnemonics counted apart, comma-separated")
    a = ap.parse_args()
    counted = [m for m in a.count.split(",") if m]
    out = subprocess.run([a.objdump, "-d", "--no-show-raw-insn", "-C", a.object], capture_output=True, text=True,
                         check=True).stdout
    for func in re.split(r"\n(?=[0-9a-f]+ <)", out):
        head = func.split("\n", 1)[0]
        if a.pattern not in head:
            continue
        print(head[:160])
        ins = []
        for line in func.split("\n")[1:]:
            m = re.match(r"\s+([0-9a-f]+):\s+(\S+)\s*(.*)", line)
            if m:
                ins.append((int(m.group(1), 16), m.group(2), m.group(3)))
        index = {addr: i for i, (addr, _, _) in enumerate(ins)}
        for i, (addr, op, args) in enumerate(ins):
            if not (op == "b" or op.startswith("b.") or op in ("cbz", "cbnz", "tbz", "tbnz")):
                continue
            m = re.search(r"\b([0-9a-f]+) <", args)
            if not m or int(m.group(1), 16) > addr or int(m.group(1), 16) not in index:
                continue
            body = ins[index[int(m.group(1), 16)]:i + 1]
            extra = ", ".join(f"{c} {sum(1 for x in body if x[1] == c)}" for c in counted)
            print(f"  loop {body[0][0]:x}-{addr:x}: {len(body)} instructions" + (f" ({extra})" if extra else ""))


if __name__ == "__main__":
    main()
