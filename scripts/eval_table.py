#!/usr/bin/env python3
"""Markdown table of a `mikv eval --json` report (the README's tables): config, cache size, the scores it has,
and each score as a share of the full cache's where the report has a `full` row."""
import json
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: eval_table.py report.json")
    rows = json.load(open(sys.argv[1]))["rows"]
    keys = [k for k in ("kl", "top1_agreement", "perplexity", "retrieval", "recall_top1", "recall_loss")
            if any(k in r for r in rows)]
    full = next((r for r in rows if r["config"] == "full"), None)
    shares = [k for k in ("retrieval", "recall_top1") if k in keys and full and full.get(k)]
    # Retrieval by prompt length (10/20/30/40 lines), where the report has it: short prompts are where a budget that
    # is a fraction of the prompt's FP16 cache is tightest.
    lines = sorted({n for r in rows for n in r.get("retrieval_by_lines", {})}, key=int)
    by_lines = [" / ".join(lines) + " lines"] if lines else []
    print("| config | budget % of FP16 | cache % of FP16 | " + " | ".join(keys + by_lines) +
          "".join(f" | {k} / full" for k in shares) + " |")
    print("|---" * (3 + len(keys) + len(by_lines) + len(shares)) + "|")
    for r in rows:
        # The budget is a fraction of the FP16 cache of each input; the cache takes less where it holds every token.
        budget = "-" if r["config"] in ("full", "plain") else f"{100 * r['target_ratio']:.0f}"
        cells = [f"`{r['config']}`", budget, f"{100 * r['cache_fraction_of_fp16']:.1f}"]
        cells += [f"{100 * r[k]:.0f}%" if k == "retrieval" else f"{r[k]:.3f}" if k in r else "-" for k in keys]
        if lines:
            got = r.get("retrieval_by_lines", {})
            cells.append(" / ".join(f"{100 * got[n]:.0f}" if n in got else "-" for n in lines))
        cells += [f"{100 * r[k] / full[k]:.0f}%" for k in shares]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
