"""MinHash near-dedup: quality (precision/recall/F1 on a labelled set built from real text),
speed (ours vs datasketch, per core, same documents, one run) and clustering memory.

    taskset -c 0 python bench/minhash.py [--docs 2000] [--scale 1000000,5000000]

Harder labelled set, per kind / language / Jaccard bucket, beside datasketch MinHashLSH:
bench/dedup_quality.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
D = os.path.join(ROOT, "..", "shared", "data")


def base_docs() -> list[tuple[str, str]]:
    """(topic, text) of real documents: laws by folder, C4 web pages, Chinese Q&A."""
    from corpus.recipe import expand_paths

    out = []
    for f in expand_paths([os.path.join(D, "domain/lawrefbook_zh")]):
        t = open(f, encoding="utf-8").read()
        if len(t) > 1500:
            out.append(("law/" + os.path.basename(os.path.dirname(f)), t))
    for l in open(os.path.join(D, "general/c4_en/c4_demo.jsonl"), encoding="utf-8"):
        t = json.loads(l)["text"]
        if len(t) > 1000:
            out.append(("c4", t))
    for l in open(os.path.join(D, "general/flagdata_web_zh/qa_demo_input.jsonl"), encoding="utf-8"):
        t = json.loads(l)["content"]
        if len(t) > 600:
            out.append(("qa", t))
    return out


BOILER = ["版权所有 © 2023 本网站保留所有权利", "扫码关注我们的微信公众号", "Share this article on Facebook",
          "Subscribe to our newsletter for more", "免责声明：本文仅供参考"]


def variant(text: str, rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["boilerplate", "edits", "truncate", "reorder"])
    if kind == "boilerplate":
        return kind, rng.choice(BOILER) + "\n" + text + "\n" + rng.choice(BOILER)
    if kind == "edits":
        from corpus.filters.text import is_cjk

        if not is_cjk(text):  # space-delimited text: edit 1-10% of the words
            words = text.split(" ")
            for _ in range(max(1, int(len(words) * rng.uniform(0.01, 0.10)))):
                i = rng.randrange(len(words))
                op = rng.random()
                words[i] = rng.choice(["the", "a", "new", "data", "very"]) if op < 0.5 else ("" if op < 0.8 else words[i] + " also")
            return kind, " ".join(words)
        chars = list(text)  # CJK: edit 1-10% of the characters
        for _ in range(int(len(chars) * rng.uniform(0.01, 0.10))):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[i] = rng.choice("abcdefghij的了是在和有")
            elif op < 0.7:
                chars[i] = ""
            else:
                chars[i] = chars[i] + rng.choice("xyz，。")
        return kind, "".join(chars)
    if kind == "truncate":
        return kind, text[: int(len(text) * rng.uniform(0.85, 0.95))]
    paras = text.split("\n")
    if len(paras) > 3:
        i = rng.randrange(len(paras) - 1)
        paras[i], paras[i + 1] = paras[i + 1], paras[i]
    return kind, "\n".join(paras)


def quality(**params) -> dict:
    from corpus.dedup import MinHashDedup, cluster_texts

    rng = random.Random(0)
    docs = base_docs()
    texts = [t for _, t in docs]
    topics = [k for k, _ in docs]
    pos = []
    for i in rng.sample(range(len(docs)), min(400, len(docs))):
        kind, v = variant(texts[i], rng)
        texts.append(v)
        topics.append(topics[i])
        pos.append((i, len(texts) - 1, kind))
    by_topic: dict[str, list[int]] = {}
    for i, (k, _) in enumerate(docs):
        by_topic.setdefault(k, []).append(i)
    neg = []
    for k, ids in by_topic.items():
        for _ in range(min(200, len(ids) * 2)):
            a, b = rng.sample(ids, 2)
            neg.append((a, b))
    st = MinHashDedup(**params)
    rep, _ = cluster_texts(texts, st)
    tp = sum(rep[a] == rep[b] for a, b, _ in pos)
    fn = len(pos) - tp
    fp = sum(rep[a] == rep[b] for a, b in neg)
    # same-cluster pairs among the base documents: duplicates already in the source data when
    # their true Jaccard (exact shingle sets) is >= 0.7 (counted as found), else false positives
    from kernels.minhash import shingle_hashes

    def true_j(x: str, y: str) -> float:
        sx = set(shingle_hashes(np.frombuffer(x.encode("utf-32-le"), np.uint32), st.p.ngram).tolist())
        sy = set(shingle_hashes(np.frombuffer(y.encode("utf-32-le"), np.uint32), st.p.ngram).tolist())
        return len(sx & sy) / max(1, len(sx | sy))

    groups: dict[int, list[int]] = {}
    for i in range(len(docs)):
        groups.setdefault(int(rep[i]), []).append(i)
    fp_all = src_dups = 0
    for g in groups.values():
        for x in range(len(g)):
            for y in range(x + 1, len(g)):
                if true_j(texts[g[x]], texts[g[y]]) >= 0.7:
                    src_dups += 1
                else:
                    fp_all += 1
    p = tp / max(1, tp + fp_all)
    r = tp / max(1, len(pos))
    per_kind = {k: float(np.mean([rep[a] == rep[b] for a, b, kk in pos if kk == k])) for k in
                ("boilerplate", "edits", "truncate", "reorder")}
    return {"base_docs": len(docs), "positives": len(pos), "hard_negatives": len(neg), "tp": int(tp), "fn": int(fn),
            "fp_hard_negatives": int(fp), "fp_all_base_pairs": fp_all, "source_duplicates_found": src_dups, "precision": p, "recall": r,
            "f1": 2 * p * r / max(1e-9, p + r), "recall_by_variant": per_kind}


def speed(n_docs: int) -> list[tuple[str, float, float]]:
    """Throughput per core: CPU seconds of this process (every method runs single-threaded here), so
    that other load on the machine does not enter the ratio."""
    from datasketch import MinHash

    from kernels.minhash import permutations, signatures

    docs = [t for _, t in base_docs()]
    docs = (docs * (n_docs // len(docs) + 1))[:n_docs]
    mb = sum(len(t.encode("utf-8")) for t in docs) / 1e6
    a, b = permutations(128, 1)
    signatures(docs[:10], 5, a, b)
    t = time.process_time()
    signatures(docs, 5, a, b)
    dt_ours = time.process_time() - t
    from corpus.filters.text import split_words

    sub = docs[:: max(1, len(docs) // max(50, n_docs // 10))]  # every k-th: the same mix of documents as `docs`
    mb_sub = sum(len(t.encode("utf-8")) for t in sub) / 1e6
    t = time.process_time()
    for text in sub:  # datasketch: shingles from a Python tokenizer, sha1 per shingle, numpy permutations
        w = split_words(text)
        m = MinHash(num_perm=128, seed=1, scheme="legacy")
        m.update_batch([" ".join(w[i: i + 5]).encode("utf-8") for i in range(max(1, len(w) - 4))])
    dt_ds = time.process_time() - t
    from corpus.dedup import MinHashDedup

    st = MinHashDedup()  # the stage's whole per-document half: normalise, shingle sets, signatures, bands
    st.sketch(docs[:10])
    t = time.process_time()
    st.sketch(docs)
    dt_stage = time.process_time() - t
    rows = [("ours (Numba, code points)", len(docs) / dt_ours, mb / dt_ours),
            (f"ours, minhash_dedup stage ({st.p.num_perm} perms)", len(docs) / dt_stage, mb / dt_stage),
            ("datasketch MinHash.update_batch (sha1)", len(sub) / dt_ds, mb_sub / dt_ds)]
    try:  # datatrove's signature stage (optional: pip install datatrove spacy)
        import tempfile

        from datatrove.data import Document as DTDoc
        from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupSignature
        from datatrove.utils.hashing import HashConfig

        for lang, name in (("eng", "datatrove MinhashDedupSignature (eng, 14x8)"),):
            with tempfile.TemporaryDirectory() as d:
                # sha1: datatrove's xxhash path passes str to xxhash 4.x, which wants bytes
                cfg = MinhashConfig(num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(hash_fc="sha1"))
                stage = MinhashDedupSignature(d, config=cfg, language=lang)
                t = time.process_time()
                stage.run((DTDoc(text=x, id=str(i)) for i, x in enumerate(sub)), rank=0, world_size=1)
                dt = time.process_time() - t
            rows.append((name, len(sub) / dt, mb_sub / dt))
    except ImportError:
        pass
    return rows


MEM_CODE = """
import numpy as np, sys, tempfile, os
sys.path.insert(0, {root!r})
from kernels.minhash import band_edges, union_edges, representatives
n, bands, per_doc = {n}, 12, 8
d = tempfile.mkdtemp()
rng = np.random.default_rng(0)
dup = rng.integers(0, n, n // 10)  # 5% of documents copy another one
src, dst = dup[: len(dup) // 2], dup[len(dup) // 2:]
for j in range(bands):  # on disk, as the build keeps them
    c = np.lib.format.open_memmap(os.path.join(d, f"b{{j}}.npy"), mode="w+", dtype=np.uint64, shape=(n,))
    c[:] = rng.integers(0, 2**63, n, dtype=np.uint64)
    c[src] = c[dst]
    c.flush(); del c
sets = np.lib.format.open_memmap(os.path.join(d, "sets.npy"), mode="w+", dtype=np.uint32, shape=(n * per_doc,))
sets[:] = np.sort(rng.integers(0, 2**32, (n, per_doc), dtype=np.uint64).astype(np.uint32), axis=1).ravel()
s2 = sets.reshape(n, per_doc); s2[src] = s2[dst]; sets.flush(); del sets, s2
np.save(os.path.join(d, "soff.npy"), np.arange(0, n * per_doc + 1, per_doc, dtype=np.int64))
del src, dst, dup
def anon():  # heap only: the memory-mapped columns and sets are page cache, not counted here
    return int([l for l in open('/proc/self/status') if l.startswith('RssAnon')][0].split()[1]) * 1024
z = np.zeros(2, np.uint64); o = np.arange(2, dtype=np.int64)  # compile/load the kernels before measuring
union_edges(o.copy(), *band_edges(z, o, np.zeros(2, np.uint32), np.array([0, 1, 2]), o, 0.6, 0.9, 4))
representatives(o.copy(), None)
base = anon()
peak = 0
flat = np.load(os.path.join(d, "sets.npy"), mmap_mode="r")
soff = np.load(os.path.join(d, "soff.npy"), mmap_mode="r")
idx = np.arange(n, dtype=np.int64)
parent = np.arange(n, dtype=np.int64)
for j in range(bands):  # what the driver and one band task hold at once
    col = np.load(os.path.join(d, f"b{{j}}.npy"), mmap_mode="r")
    order = np.argsort(col, kind="stable")
    ea, eb = band_edges(col, order, flat, soff, idx, 0.6, 0.9, 4)
    union_edges(parent, ea, eb)
    peak = max(peak, anon() - base)
    del order, ea, eb
rep, keep = representatives(parent, None)
peak = max(peak, anon() - base)
print(n, peak, int((~keep).sum()))
"""


def memory(sizes: list[int]) -> list[tuple[int, float, int]]:
    out = []
    for n in sizes:
        r = subprocess.run([sys.executable, "-c", MEM_CODE.format(root=ROOT, n=n)], capture_output=True, text=True)
        parts = r.stdout.split()
        if len(parts) == 3:
            out.append((n, int(parts[1]) / n, int(parts[2])))
        else:
            print(r.stderr[-500:])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--scale", default="1000000,5000000")
    a = ap.parse_args()
    q = quality()
    print(f"\nquality: {q['base_docs']} real documents + {q['positives']} variants, {q['hard_negatives']} same-topic negatives")
    print(f"  precision {q['precision']:.4f}  recall {q['recall']:.4f}  F1 {q['f1']:.4f}  "
          f"(tp {q['tp']}, fn {q['fn']}, fp among all base pairs {q['fp_all_base_pairs']}, on hard negatives "
          f"{q['fp_hard_negatives']}; duplicates already in the source data found: {q['source_duplicates_found']})")
    print("  recall by variant: " + ", ".join(f"{k} {v:.3f}" for k, v in q["recall_by_variant"].items()))
    print(f"\n{'signatures (128 permutations, 1 core)':45s} {'docs/s':>10s} {'MB/s':>8s}")
    rows = speed(a.docs)
    for name, dps, mbs in rows:
        print(f"{name:45s} {dps:10,.0f} {mbs:8.2f}")
    for r in rows[2:]:
        print(f"ours / {r[0].split()[0]}: {rows[0][2] / r[2]:.1f}x (MB/s); the stage: {rows[1][2] / r[2]:.1f}x")
    print(f"\n{'clustering documents':>22s} {'heap beyond the band columns, bytes/doc':>42s} {'dropped':>9s}")
    for n, bpd, dropped in memory([int(x) for x in a.scale.split(",") if x]):
        print(f"{n:22,d} {bpd:42.1f} {dropped:9,d}")


if __name__ == "__main__":
    main()
