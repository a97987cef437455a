"""Near-duplicate removal with MinHash LSH (global stage), and the standalone `corpus dedup`.

Per unit (in the workers): Numba signatures straight from code points → band hashes, saved
beside the unit's tokens. At the global boundary: one band column at a time is argsorted, runs
of equal hashes are unioned (union-find), and each cluster keeps one document: the earliest in
input order, or the earliest of the preferred kind of source (domain over general).
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar, Literal

import numpy as np

from kernels.minhash import band_hashes, lsh_clusters, permutations, s_curve, signatures

from .stages import Stage, StageParams, register


@register
class MinHashDedup(Stage):
    """Global: drop near-duplicates (estimated Jaccard of `ngram`-token shingles above ~0.8)."""

    name = "minhash_dedup"
    is_global: ClassVar[bool] = True

    class Params(StageParams):
        # measured on a labelled set of real near-duplicates (bench/minhash.py, docs/benchmarks.md):
        # 2-token shingles, a permissive LSH (30 bands x 4 rows proposes pairs from J ~ 0.4) and a
        # signature check at estimated J >= 0.75: F1 0.95 at precision 1.0, while revised laws
        # (公司法 2018 vs 2023: bigram J 0.69) stay apart; 5-grams at 12 x 10 missed most edited copies
        ngram: int = 2
        num_perm: int = 120
        bands: int = 30
        rows: int = 4
        seed: int = 1
        prefer: Literal["first", "domain"] = "domain"
        verify_threshold: float = 0.75  # candidates must also have estimated Jaccard >= this (0: off)

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.p.bands * self.p.rows > self.p.num_perm:
            raise ValueError(f"bands x rows = {self.p.bands * self.p.rows} > num_perm = {self.p.num_perm}")
        self.a, self.b = permutations(self.p.num_perm, self.p.seed)

    def band_hashes(self, texts: list[str], with_signatures: bool = False):
        """(n, bands) uint64 LSH band hashes of texts (and the (n, num_perm) uint32 signatures)."""
        sig = signatures(texts, self.p.ngram, self.a, self.b) if texts else np.zeros((0, self.p.num_perm), np.uint32)
        bands = band_hashes(sig, self.p.bands, self.p.rows)
        return (bands, sig) if with_signatures else bands

    def explain(self) -> list[tuple[float, float]]:
        return s_curve(self.p.bands, self.p.rows)


@register
class Decontaminate(Stage):
    """Global: drop train documents sharing an `ngram`-token window with an evaluation set —
    the build's own val split and/or `eval_files` (any format the readers take), tokenized with
    the build's tokenizer. GPT-3 used 13-grams of words; we use 13-grams of tokens."""

    name = "decontaminate"
    is_global: ClassVar[bool] = True

    class Params(StageParams):
        ngram: int = 13
        use_val_split: bool = True
        eval_files: list[str] = []


def band_edges_task(task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One band of a build's MinHash LSH, as a task: load the band column from the units' files,
    sort it, return the verified candidate edges (indices into the masked document list)."""
    from kernels.minhash import band_edges

    work, j = task["work"], task["band"]
    idx = np.load(os.path.join(work, "minhash_idx.npy"))
    col = np.concatenate([np.load(os.path.join(work, "units", k + ".bands.npy"), mmap_mode="r")[:, j]
                          for k in task["unit_keys"]])[idx]
    order = np.argsort(col, kind="stable")
    thr = task["verify"]
    sig = np.load(os.path.join(work, "signatures.npy"), mmap_mode="r") if thr > 0 else np.zeros((1, 1), np.uint32)
    return band_edges(col, order, sig, idx if thr > 0 else np.zeros(len(idx), np.int64), thr)


def cluster_bands(band_arrays: list[np.ndarray], mask: np.ndarray, priority: np.ndarray | None,
                  sig_arrays: list[np.ndarray] | None = None, verify_threshold: float = 0.0, executor: Any = None,
                  work: str | None = None, unit_keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Clusters over the documents where `mask` is True (others are left alone).
    Returns (representative global index per document or -1, near-duplicate drop mask)."""
    idx = np.flatnonzero(mask)
    n = len(idx)
    rep_all = np.full(len(mask), -1, np.int64)
    drop = np.zeros(len(mask), bool)
    if n == 0:
        return rep_all, drop
    bands = band_arrays[0].shape[1] if band_arrays else 0
    if executor is not None and work is not None and unit_keys is not None:
        # partitioned by band: each band's sort-and-group is an independent task (local processes
        # or Ray); the driver only unions the returned edges
        from kernels.minhash import representatives, union_edges

        np.save(os.path.join(work, "minhash_idx.npy"), idx)
        tasks = [{"work": work, "band": j, "verify": verify_threshold, "unit_keys": unit_keys} for j in range(bands)]
        parent = np.arange(n, dtype=np.int64)
        for ea, eb in executor.map(band_edges_task, tasks):
            union_edges(parent, ea, eb)
        rep, keep = representatives(parent, None if priority is None else priority[idx])
        rep_all[idx] = idx[rep]
        drop[idx[~keep]] = True
        return rep_all, drop

    def columns():
        for j in range(bands):
            col = np.concatenate([b[:, j] for b in band_arrays])
            yield np.ascontiguousarray(col[idx])

    sig = None
    if sig_arrays and verify_threshold > 0:
        sig = sig_arrays[0] if len(sig_arrays) == 1 else np.concatenate(sig_arrays)
        sig = sig[idx] if len(idx) < len(mask) else sig
    rep, keep = lsh_clusters(columns(), n, None if priority is None else priority[idx], sig, verify_threshold)
    rep_all[idx] = idx[rep]
    drop[idx[~keep]] = True
    return rep_all, drop


def cluster_texts(texts: list[str], stage: MinHashDedup) -> tuple[np.ndarray, np.ndarray]:
    """In-memory clustering of texts (what `corpus dedup` runs): (representative index, drop mask)."""
    parts = [stage.band_hashes(texts[i: i + 4096], with_signatures=True) for i in range(0, len(texts), 4096)]
    return cluster_bands([p[0] for p in parts], np.ones(len(texts), bool), None, [p[1] for p in parts],
                         stage.p.verify_threshold)


def explain_table(bands: int, rows: int, verify: float = 0.0) -> str:
    lines = [f"MinHash LSH: {bands} bands x {rows} rows = {bands * rows} permutations; "
             f"threshold ~ (1/b)^(1/r) = {(1 / bands) ** (1 / rows):.3f}",
             "Jaccard  P(pair becomes a candidate)"]
    lines += [f"  {j:.2f}   {p:.4f}" for j, p in s_curve(bands, rows)]
    if verify:
        lines.append(f"candidates are then verified: estimated Jaccard from the full signature >= {verify}")
    return "\n".join(lines)


def dedup_files(inputs: list[str], out: str, stage: MinHashDedup, text_key: str | None = None) -> dict[str, Any]:
    """Standalone near-dedup: kept documents to OUT/kept.jsonl.zst, every document's cluster to
    OUT/clusters.jsonl (`id` = the input's own id field when present)."""
    import zstandard

    from .document import Document
    from .readers import FileReader
    from .recipe import LimitsConfig, SourceConfig, expand_paths

    os.makedirs(out, exist_ok=True)
    src = SourceConfig(name="input", paths=inputs, text_key=text_key, id_key="id")
    docs: list[Document] = []
    bad: list[dict] = []
    files = expand_paths(inputs)
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
    for f in files:
        for d in FileReader(f, os.path.relpath(os.path.abspath(f), root), src, LimitsConfig()):
            (docs.append(d) if isinstance(d, Document) else bad.append(d.as_dict()))  # type: ignore[func-returns-value]
    parts = [stage.band_hashes([d.text for d in docs[i: i + 4096]], with_signatures=True)
             for i in range(0, len(docs), 4096)]
    rep, drop = cluster_bands([p[0] for p in parts], np.ones(len(docs), bool), None, [p[1] for p in parts],
                              stage.p.verify_threshold)
    ids = [d.id.split("/", 1)[1] for d in docs]  # FILE:RECORD (or FILE:OWN_ID with an "id" field)
    with open(os.path.join(out, "clusters.jsonl"), "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": ids[i], "cluster": ids[int(rep[i])], "kept": not bool(drop[i])},
                               ensure_ascii=False) + "\n")
    cctx = zstandard.ZstdCompressor(level=3)
    with open(os.path.join(out, "kept.jsonl.zst"), "wb") as fh, cctx.stream_writer(fh) as w:
        for i, d in enumerate(docs):
            if not drop[i]:
                w.write((json.dumps({"id": ids[i], "text": d.text}, ensure_ascii=False) + "\n").encode("utf-8"))
    sizes = np.bincount(rep[rep >= 0]) if len(docs) else np.zeros(0, np.int64)
    return {"documents": len(docs), "kept": int((~drop).sum()), "near_duplicates": int(drop.sum()),
            "clusters_with_duplicates": int((sizes > 1).sum()), "bad_units": bad}


# ---------------------------------------------------------------------------------------
# corpus-wide boilerplate lines (dolma-style)


def line_hashes(text: str, min_chars: int) -> np.ndarray:
    """Unique xxh64 hashes of a document's lines (stripped, at least `min_chars` long)."""
    import xxhash

    hs = {xxhash.xxh64_intdigest(s.encode("utf-8")) for s in (l.strip() for l in text.split("\n")) if len(s) >= min_chars}
    return np.fromiter(hs, dtype=np.uint64, count=len(hs))


@register
class LineDedup(Stage):
    """Remove lines that occur in more than `max_docs` documents of the whole corpus (menus,
    footers, cookie banners repeated across a site). A counting pass over every unit runs before
    the per-document stages (the build does it when this stage is in the recipe); this stage then
    removes the frequent lines, and drops a document whose every line was boilerplate."""

    name = "line_dedup"

    class Params(StageParams):
        max_docs: int = 20
        min_chars: int = 10
        frequent_path: str | None = None  # set by the build: the counting pass's result

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.frequent = np.load(self.p.frequent_path) if self.p.frequent_path else np.zeros(0, np.uint64)

    def apply(self, doc):  # type: ignore[no-untyped-def]
        import xxhash

        from .stages import Drop

        if not len(self.frequent):
            return doc
        lines = doc.text.split("\n")
        keep, removed = [], []
        for i, l in enumerate(lines):
            s = l.strip()
            if len(s) >= self.p.min_chars:
                h = np.uint64(xxhash.xxh64_intdigest(s.encode("utf-8")))
                j = np.searchsorted(self.frequent, h)
                if j < len(self.frequent) and self.frequent[j] == h:
                    removed.append(i)
                    continue
            keep.append(l)
        if not removed:
            return doc
        text = "\n".join(keep).strip()
        if not text:
            return Drop("all_lines_boilerplate", f"{len(removed)} lines", removed)
        return doc.with_text(text, boilerplate_lines=len(removed))


def count_lines_task(task: tuple[str, Any, str]) -> str:
    """Counting pass of `line_dedup` for one unit: (hash, documents) pairs saved beside the unit."""
    from shards.fileio import atomic_write
    from .document import Document
    from .readers import FileReader
    from .recipe import Recipe

    recipe_json, unit, work = task
    recipe = Recipe.model_validate_json(recipe_json)
    cfg = next(s for s in recipe.stages if s.name == "line_dedup")
    min_chars = int(cfg.params().get("min_chars", 10))
    parts = [line_hashes(d.text, min_chars) for d in FileReader(unit.path, unit.rel, recipe.sources[unit.source_index],
                                                                recipe.limits, unit.byte_range)
             if isinstance(d, Document)]
    allh = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    h, c = np.unique(allh, return_counts=True)
    path = os.path.join(work, "units", unit.key + ".lines.npz")
    atomic_write(path, lambda f: np.savez(f, hashes=h, counts=c))
    return path


def frequent_lines(paths: list[str], max_docs: int) -> np.ndarray:
    """Sorted hashes of lines found in more than `max_docs` documents over all units."""
    hs, cs = [], []
    for p in paths:
        z = np.load(p)
        hs.append(z["hashes"])
        cs.append(z["counts"])
    if not hs:
        return np.zeros(0, np.uint64)
    h = np.concatenate(hs)
    c = np.concatenate(cs)
    order = np.argsort(h, kind="stable")
    h, c = h[order], c[order]
    uniq, start = np.unique(h, return_index=True)
    totals = np.add.reduceat(c, start) if len(h) else np.zeros(0, np.int64)
    return uniq[totals > max_docs]
