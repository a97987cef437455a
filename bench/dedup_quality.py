"""Near-dedup quality on a hard labelled set of real variants (bench/data/dedup_set.py): ours
(`corpus dedup`'s code path with its defaults) beside datasketch `MinHashLSH` at its best threshold,
in one run. Precision over every pair the method puts in one cluster (a pair across two groups is a
false positive), recall over the labelled duplicate pairs; recall per kind, per language and per
true 5-gram Jaccard bucket; false positives per hard-negative kind.

    python bench/dedup_quality.py [--seed 0] [--param key=value ...] [--no-datasketch]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench", "data"))

BUCKETS = ((0.7, 1.01, ">=0.7"), (0.5, 0.7, "0.5-0.7"), (0.3, 0.5, "0.3-0.5"), (0.0, 0.3, "<0.3"))


def true_jaccard(x: str, y: str, n: int = 5) -> float:
    """Exact Jaccard of the raw texts' n-token shingle sets (the bucket of a pair, independent of
    any normalisation a method applies)."""
    from kernels.minhash import shingle_hashes

    a = np.unique(shingle_hashes(np.frombuffer(x.encode("utf-32-le"), np.uint32), n))
    b = np.unique(shingle_hashes(np.frombuffer(y.encode("utf-32-le"), np.uint32), n))
    return len(np.intersect1d(a, b, assume_unique=True)) / max(1, len(np.union1d(a, b)))


def score(rep: np.ndarray, s) -> dict:
    """Scores of a clustering (`rep[i]`: cluster id of document i) on the labelled set `s`."""
    groups = np.asarray(s.groups)
    tp_pairs = fp_pairs = 0
    clusters: dict[int, list[int]] = {}
    for i, r in enumerate(rep.tolist()):
        clusters.setdefault(r, []).append(i)
    for m in clusters.values():
        if len(m) < 2:
            continue
        c = Counter(groups[m].tolist())
        same = sum(v * (v - 1) // 2 for v in c.values())
        tp_pairs += same
        fp_pairs += len(m) * (len(m) - 1) // 2 - same
    found = [bool(rep[a] == rep[b]) for a, b, _ in s.positives]
    p = tp_pairs / max(1, tp_pairs + fp_pairs)
    r = float(np.mean(found)) if found else 0.0
    out = {"precision": p, "recall": r, "f1": 2 * p * r / max(1e-9, p + r), "fp_pairs": fp_pairs,
           "by_kind": {}, "by_lang": {}, "by_bucket": {}, "fp_by_negative": {}}
    for key, fn in (("by_kind", lambda t: t[2]), ("by_lang", lambda t: s.langs[t[0]])):
        vals: dict[str, list[bool]] = {}
        for t, f in zip(s.positives, found):
            vals.setdefault(fn(t), []).append(f)
        out[key] = {k: (float(np.mean(v)), len(v)) for k, v in vals.items()}
    for lo, hi, name in BUCKETS:
        v = [f for (a, b, _), f, j in zip(s.positives, found, s.true_j) if lo <= j < hi]
        out["by_bucket"][name] = (float(np.mean(v)) if v else float("nan"), len(v))
    for a, b, k in s.negatives:
        out["fp_by_negative"].setdefault(k, [0, 0])
        out["fp_by_negative"][k][0] += int(rep[a] == rep[b])
        out["fp_by_negative"][k][1] += 1
    # per-language precision and F1: pairs whose first document is of that language
    for lang in ("zh", "en"):
        tp = fp = 0
        for m in clusters.values():
            m = [i for i in m if s.langs[i] == lang]
            if len(m) < 2:
                continue
            c = Counter(groups[m].tolist())
            same = sum(v * (v - 1) // 2 for v in c.values())
            tp += same
            fp += len(m) * (len(m) - 1) // 2 - same
        pl = tp / max(1, tp + fp)
        rl = out["by_lang"][lang][0]
        out.setdefault("f1_by_lang", {})[lang] = (pl, rl, 2 * pl * rl / max(1e-9, pl + rl))
    return out


def ours(texts: list[str], **params) -> np.ndarray:
    """`corpus dedup`'s clustering with its defaults (or `params`)."""
    from corpus.dedup import MinHashDedup, cluster_texts

    rep, _ = cluster_texts(texts, MinHashDedup(**params))
    return rep


def datasketch_lsh(sigs: np.ndarray, threshold: float, num_perm: int) -> np.ndarray:
    """datasketch MinHashLSH: every query hit of a document joins its cluster (union-find)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    mh = [MinHash(num_perm=num_perm, hashvalues=sig.astype(np.uint64), scheme="legacy") for sig in sigs]
    parent = list(range(len(sigs)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(mh):
        for k in lsh.query(m):
            ra, rb = find(i), find(int(k))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        lsh.insert(i, m)
    return np.array([find(i) for i in range(len(sigs))])


def print_table(rows: list[tuple[str, dict]]) -> None:
    w = 34
    print(f"\n{'':{w}s}" + "".join(f"{n:>22s}" for n, _ in rows))

    def line(label, fn):
        print(f"{label:{w}s}" + "".join(f"{fn(r):>22s}" for _, r in rows))

    line("precision", lambda r: f"{r['precision']:.4f}")
    line("recall", lambda r: f"{r['recall']:.4f}")
    line("F1", lambda r: f"{r['f1']:.4f}")
    line("false-positive pairs", lambda r: f"{r['fp_pairs']}")
    for lang in ("zh", "en"):
        line(f"{lang}: P / R / F1", lambda r, l=lang: "{:.3f} {:.3f} {:.3f}".format(*r["f1_by_lang"][l]))
    print("recall by kind")
    for k in rows[0][1]["by_kind"]:
        line(f"  {k} (n={rows[0][1]['by_kind'][k][1]})", lambda r, k=k: f"{r['by_kind'][k][0]:.3f}")
    print("recall by true 5-gram Jaccard")
    for _, _, name in BUCKETS:
        line(f"  {name} (n={rows[0][1]['by_bucket'][name][1]})", lambda r, k=name: f"{r['by_bucket'][k][0]:.3f}")
    print("hard negatives clustered")
    for k in rows[0][1]["fp_by_negative"]:
        n = rows[0][1]["fp_by_negative"][k][1]
        line(f"  {k} (n={n})", lambda r, k=k: f"{r['fp_by_negative'][k][0]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--param", action="append", default=[], help="MinHashDedup parameter key=value for ours")
    ap.add_argument("--no-datasketch", action="store_true")
    a = ap.parse_args()
    from dedup_set import make_set

    s = make_set(a.seed)
    s.true_j = [true_jaccard(s.docs[x], s.docs[y]) for x, y, _ in s.positives]
    print(f"set (seed {a.seed}): {len(s.docs)} documents, {len(s.positives)} labelled duplicate pairs "
          f"({dict(Counter(k for *_, k in s.positives))}), {len(s.negatives)} hard negatives "
          f"({dict(Counter(k for *_, k in s.negatives))}); zh {s.langs.count('zh')}, en {s.langs.count('en')} documents")
    params = {}
    for kv in a.param:
        k, v = kv.split("=", 1)
        params[k] = type(getattr(__import__("corpus.dedup", fromlist=["MinHashDedup"]).MinHashDedup.Params(), k))(v) \
            if not isinstance(getattr(__import__("corpus.dedup", fromlist=["MinHashDedup"]).MinHashDedup.Params(), k), bool) \
            else v.lower() in ("1", "true", "yes")
    t = time.perf_counter()
    rows = [("ours" + (" " + ",".join(a.param) if a.param else " (defaults)"), score(ours(s.docs, **params), s))]
    print(f"ours: {time.perf_counter() - t:.1f} s")
    if not a.no_datasketch:
        from kernels.minhash import permutations, signatures

        best = None
        sweep = []
        for ngram in (3, 5):
            pa, pb = permutations(128, 1)
            sig = signatures(s.docs, ngram, pa, pb)
            for thr in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
                r = score(datasketch_lsh(sig, thr, 128), s)
                sweep.append((ngram, thr, r["precision"], r["recall"], r["f1"]))
                if best is None or r["f1"] > best[1]["f1"]:
                    best = (f"datasketch {ngram}-gram t={thr}", r)
        print("datasketch MinHashLSH sweep (128 perms): " + "; ".join(
            f"{n}-gram t={t}: P {p:.3f} R {r:.3f} F1 {f:.3f}" for n, t, p, r, f in sweep))
        rows.append(best)
    print_table(rows)


if __name__ == "__main__":
    main()
