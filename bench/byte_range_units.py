"""One big JSON Lines file: one unit (one worker busy) vs byte-range units (all workers busy).
Same recipe, same output (checked byte for byte), in one run.

    python bench/byte_range_units.py [--mb 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
D = os.path.join(ROOT, "..", "shared", "data")


def main() -> None:
    from conftest import build_files

    from corpus.build import build, plan_units
    from corpus.recipe import Recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    rows = [json.loads(l)["text"] for l in open(f"{D}/general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    tmp = tempfile.mkdtemp()
    big = os.path.join(tmp, "big.jsonl")
    with open(big, "w", encoding="utf-8") as f:
        i = 0
        while f.tell() < a.mb << 20:  # C4 pages, each copy made unique so that dedup keeps them
            f.write(json.dumps({"text": f"[{i}] " + rows[i % len(rows)]}) + "\n")
            i += 1
    base = {"name": "big", "sources": [{"name": "c4", "paths": [big]}], "workers": a.workers,
            "tokenizer": {"path": f"{D}/tokenizers/llama/tokenizer.model"}}
    res = {}
    for name, ub in (("one unit per file", None), ("byte-range units (8 MiB)", 8 << 20)):
        r = Recipe.model_validate({**base, "limits": {"unit_bytes": ub}})
        t = time.perf_counter()
        build(r, os.path.join(tmp, name[:3]))
        res[name] = (len(plan_units(r)), time.perf_counter() - t)
    same = build_files(os.path.join(tmp, "one")) == build_files(os.path.join(tmp, "byt"))
    print(f"{a.mb} MiB JSON Lines ({i:,} documents), {a.workers} workers; outputs identical: {same}")
    print(f"{'units':28s} {'count':>6s} {'seconds':>8s} {'MB/s':>7s}")
    for name, (n, s) in res.items():
        print(f"{name:28s} {n:6d} {s:8.1f} {a.mb * 1.048576 / s:7.1f}")


if __name__ == "__main__":
    main()
