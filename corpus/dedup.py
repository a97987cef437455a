"""Near-duplicate removal with MinHash LSH (global stage), and the standalone `corpus dedup`.

Contract: one code path for the build's `minhash_dedup` and `corpus dedup`.
Per unit (in the workers, `write_unit_sketch`): each text is normalised (`kernels.minhash.normalize`:
HTML entities, NFKC, lower case; punctuation only separates tokens), shingled, and saved beside the
unit as LSH band hashes (`.bands.npy`) and its exact sorted shingle set plus length, date and own id
(`.mh.npz`). At the global boundary (`cluster_bands`): documents with fewer than `min_shingles`
shingles are never clustered; each band is an independent task (local processes or Ray) that
argsorts its column and turns runs of equal hashes into edges, each verified on the exact shingle
sets (Jaccard >= `jaccard`, or containment of the smaller in the larger >= `containment`); the
driver unions the edges (union-find) and each cluster keeps one document chosen by `prefer`:
`first` (input order), `domain` (a domain source over a general one, then input order), `newest`
(the latest date: a metadata date, else a YYYY-MM-DD in the document's id or file name, else the
latest date in the text's first lines; then input order) or `longest` (most characters). The result
is the same for any worker count and task order (the partition and the choice do not depend on
the order edges arrive in).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, ClassVar, Literal

import numpy as np

from kernels.minhash import band_hashes, permutations, s_curve, sketch

from .stages import Stage, StageParams, register


@register
class MinHashDedup(Stage):
    """Global: drop near-duplicates (LSH candidates verified on exact shingle Jaccard / containment)."""

    name = "minhash_dedup"
    is_global: ClassVar[bool] = True

    class Params(StageParams):
        # tuned on bench/data/dedup_set.py, seeds 0 and 1 (real zh/en text, 12 kinds of variants,
        # hard negatives; bench/dedup_quality.py, docs/dedup.md). The LSH only proposes: 40 x 3
        # makes a pair at J 0.45 (a copy truncated to 60%) a candidate with probability 0.98.
        # The exact sets decide: 3-grams at J >= 0.6 keep copies with 10% character edits (J 0.61)
        # and two variants of one base, and part the substantially amended laws (公司法 2018/2023
        # J 0.58, 野生动物保护法 0.59, 畜牧法 0.53); J 0.5 merged 3 of them, 0.55 two. Containment
        # >= 0.9 takes truncated and boilerplate-wrapped copies (>= 0.97) but no amended law (<= 0.86).
        ngram: int = 3
        num_perm: int = 120
        bands: int = 40
        rows: int = 3
        seed: int = 1
        normalize: bool = True  # NFKC, HTML entities, lower case before shingling
        jaccard: float = 0.6  # a verified pair: exact shingle Jaccard >= this ...
        containment: float = 0.9  # ... or the smaller set's containment in the larger >= this (0: off)
        min_shingles: int = 10  # shorter documents (empty ones too) are never clustered
        prefer: Literal["first", "domain", "newest", "longest"] = "domain"
        date_key: str = "date"  # metadata key read by prefer: newest (then the id, then the text)

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.p.bands * self.p.rows > self.p.num_perm:
            raise ValueError(f"bands x rows = {self.p.bands * self.p.rows} > num_perm = {self.p.num_perm}")
        self.a, self.b = permutations(self.p.num_perm, self.p.seed)

    def sketch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """((n, bands) uint64 band hashes, flat sorted shingle sets uint32, (n+1,) set offsets)."""
        out_b, out_f, out_o = [], [], [np.zeros(1, np.int64)]
        base = 0
        for i in range(0, len(texts), 4096):
            sig, flat, soff = sketch(texts[i: i + 4096], self.p.ngram, self.a, self.b, self.p.normalize)
            out_b.append(band_hashes(sig, self.p.bands, self.p.rows))
            out_f.append(flat)
            out_o.append(soff[1:] + base)
            base += len(flat)
        bands = np.concatenate(out_b) if out_b else np.zeros((0, self.p.bands), np.uint64)
        flat = np.concatenate(out_f) if out_f else np.zeros(0, np.uint32)
        return bands, flat, np.concatenate(out_o)

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


# ---------------------------------------------------------------------------------------
# which copy survives

_ISO = re.compile(r"(1[89]\d\d|20\d\d)[-./_](0?[1-9]|1[0-2])[-./_](0?[1-9]|[12]\d|3[01])(?!\d)")
_ZH = re.compile(r"(1[89]\d\d|20\d\d)\s*年\s*(0?[1-9]|1[0-2])\s*月\s*(0?[1-9]|[12]\d|3[01])\s*日")


def _dates_in(s: str) -> list[int]:
    return [int(y) * 10000 + int(m) * 100 + int(d) for rx in (_ISO, _ZH) for y, m, d in rx.findall(s)]


def document_date(doc_id: str, text: str, metadata: dict[str, Any] | None = None, key: str = "date") -> int:
    """A document's date as YYYYMMDD (0: none found), for `prefer: newest`: the metadata field `key`
    (or `created`), else the latest date in its id (a law file named 慈善法(2023-12-29).md), else the
    latest date in the text's first 500 characters (a law's list of revisions)."""
    for k in (key, "created", "version_date"):
        v = (metadata or {}).get(k)
        if isinstance(v, str):
            ds = _dates_in(v)
            if ds:
                return max(ds)
    for s in (doc_id, text[:500]):
        ds = _dates_in(s)
        if ds:
            return max(ds)
    return 0


def write_unit_sketch(stage: MinHashDedup, base: str, texts: list[str], ids: list[str],
                      metas: list[dict[str, Any]] | None = None) -> None:
    """The per-document half of the stage for one unit: `base`.bands.npy and `base`.mh.npz (shingle
    sets, offsets, characters, dates, own ids), each written atomically."""
    bands, flat, soff = stage.sketch(texts)
    metas = metas if metas is not None else [{} for _ in texts]
    dates = np.array([document_date(i, t, m, stage.p.date_key) for i, t, m in zip(ids, texts, metas)], np.int64)
    own = np.array([str(m.get("record_id", "")) for m in metas], dtype=np.str_)
    from shards.fileio import atomic_write

    atomic_write(base + ".bands.npy", lambda f: np.save(f, bands))
    atomic_write(base + ".mh.npz", lambda f: np.savez(f, flat=flat, offsets=soff, dates=dates, own=own,
                                                      chars=np.array([len(t) for t in texts], np.int64)))


def _priority(prefer: str, kinds: np.ndarray | None, chars: np.ndarray, dates: np.ndarray) -> np.ndarray | None:
    """Lower wins; ties go to the earlier document."""
    if prefer == "domain":
        return None if kinds is None else kinds.astype(np.int64)
    if prefer == "longest":
        return -chars.astype(np.int64)
    if prefer == "newest":
        return -dates.astype(np.int64)
    return None


# ---------------------------------------------------------------------------------------
# the band-partitioned clustering (build and `corpus dedup`)


def band_edges_task(task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One band of the LSH, as a task: load the band column from the units' files, sort it, return
    the exactly verified candidate edges (indices into the masked document list)."""
    from kernels.minhash import band_edges

    work, j = task["work"], task["band"]
    idx = np.load(os.path.join(work, "minhash_idx.npy"))
    col = np.concatenate([np.load(os.path.join(work, "units", k + ".bands.npy"), mmap_mode="r")[:, j]
                          for k in task["unit_keys"]])[idx]
    order = np.argsort(col, kind="stable")
    flat = np.load(os.path.join(work, "shingles.npy"), mmap_mode="r")
    soff = np.load(os.path.join(work, "shingle_offsets.npy"))
    return band_edges(col, order, flat, soff, idx, task["jaccard"], task["containment"], 4)


def cluster_bands(work: str, unit_keys: list[str], mask: np.ndarray, stage: MinHashDedup, executor: Any = None,
                  kinds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Clusters over the documents where `mask` is True (others are left alone), from the units'
    sketches in `work`/units. Returns (representative global index per document or -1, near-duplicate
    drop mask, the units' concatenated `chars`, `dates`, `own` ids)."""
    from kernels.minhash import representatives, union_edges

    from .executor import LocalExecutor

    sk = [np.load(os.path.join(work, "units", k + ".mh.npz")) for k in unit_keys]
    sizes = np.concatenate([np.diff(z["offsets"]) for z in sk]) if sk else np.zeros(0, np.int64)
    info = {k: (np.concatenate([z[k] for z in sk]) if sk else np.zeros(0)) for k in ("chars", "dates", "own")}
    rep_all = np.full(len(mask), -1, np.int64)
    drop = np.zeros(len(mask), bool)
    idx = np.flatnonzero(mask & (sizes >= stage.p.min_shingles))  # the length floor
    n = len(idx)
    if n == 0:
        return rep_all, drop, info
    # one memory-mapped file of every shingle set (page cache, not heap), read by every band task
    total = int(sizes.sum())
    flat = np.lib.format.open_memmap(os.path.join(work, "shingles.npy.tmp"), mode="w+", dtype=np.uint32, shape=(max(1, total),))
    a = 0
    for z in sk:
        part = z["flat"]
        flat[a: a + len(part)] = part
        a += len(part)
    flat.flush()
    del flat
    os.replace(os.path.join(work, "shingles.npy.tmp"), os.path.join(work, "shingles.npy"))
    soff = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=soff[1:])
    np.save(os.path.join(work, "shingle_offsets.npy"), soff)
    np.save(os.path.join(work, "minhash_idx.npy"), idx)
    cth = stage.p.containment if stage.p.containment > 0 else 2.0  # 2: never
    tasks = [{"work": work, "band": j, "unit_keys": unit_keys, "jaccard": stage.p.jaccard, "containment": cth}
             for j in range(stage.p.bands)]
    parent = np.arange(n, dtype=np.int64)
    for ea, eb in (executor or LocalExecutor(1)).map(band_edges_task, tasks):
        union_edges(parent, ea, eb)
    pr = _priority(stage.p.prefer, kinds, info["chars"], info["dates"])
    rep, keep = representatives(parent, None if pr is None else pr[idx])
    rep_all[idx] = idx[rep]
    drop[idx[~keep]] = True
    return rep_all, drop, info


def cluster_ids(ids: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Ids for the cluster files: the input's own `id` field where the record has one and no other
    document has the same (two files may both number from 1), else the reader's id (FILE:RECORD)."""
    out = np.asarray(ids).astype(object)
    own = np.asarray(own).astype(str)
    has = own != ""
    if has.any():
        vals, counts = np.unique(own[has], return_counts=True)
        unique = np.isin(own, vals[counts == 1]) & has
        out[unique] = own[unique]
    return out


def cluster_texts(texts: list[str], stage: MinHashDedup, ids: list[str] | None = None,
                  metas: list[dict[str, Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """In-memory texts through the same path (one unit in a temporary work directory):
    (representative index or -1, drop mask)."""
    work = tempfile.mkdtemp(prefix="refinery-dedup-")
    try:
        os.makedirs(os.path.join(work, "units"))
        write_unit_sketch(stage, os.path.join(work, "units", "all"), texts,
                          ids if ids is not None else [str(i) for i in range(len(texts))], metas)
        rep, drop, _ = cluster_bands(work, ["all"], np.ones(len(texts), bool), stage)
        return rep, drop
    finally:
        shutil.rmtree(work, ignore_errors=True)


def explain_table(bands: int, rows: int, jaccard: float = 0.0, containment: float = 0.0) -> str:
    lines = [f"MinHash LSH: {bands} bands x {rows} rows = {bands * rows} permutations; "
             f"threshold ~ (1/b)^(1/r) = {(1 / bands) ** (1 / rows):.3f}",
             "Jaccard  P(pair becomes a candidate)"]
    lines += [f"  {j:.2f}   {p:.4f}" for j, p in s_curve(bands, rows)]
    if jaccard or containment:
        lines.append(f"candidates are then verified on their exact shingle sets: Jaccard >= {jaccard}"
                     + (f" or containment >= {containment}" if containment else ""))
    return "\n".join(lines)


def dedup_files(inputs: list[str], out: str, stage: MinHashDedup, text_key: str | None = None) -> dict[str, Any]:
    """Standalone near-dedup: kept documents to OUT/kept.jsonl.zst, every document's cluster to
    OUT/clusters.jsonl (`id` = the input's own id field when present, else FILE:RECORD)."""
    import zstandard

    from .readers import ReadLog, read_documents
    from .recipe import SourceConfig, expand_paths

    os.makedirs(out, exist_ok=True)
    src = SourceConfig(name="input", paths=inputs, text_key=text_key)
    files = expand_paths(inputs)
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
    log = ReadLog(keep=None)
    docs = list(read_documents(inputs, src, log=log, rel=lambda f: os.path.relpath(os.path.abspath(f), root)))
    bad = [b.as_dict() for b in log.examples]
    rep, drop = cluster_texts([d.text for d in docs], stage, [d.id for d in docs], [d.metadata for d in docs])
    ids = cluster_ids(np.array([d.id.split("/", 1)[1] for d in docs], dtype=object),
                      np.array([str(d.metadata.get("record_id", "")) for d in docs]))
    with open(os.path.join(out, "clusters.jsonl"), "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            r = int(rep[i]) if rep[i] >= 0 else i
            f.write(json.dumps({"id": ids[i], "cluster": ids[r], "kept": not bool(drop[i])}, ensure_ascii=False) + "\n")
    cctx = zstandard.ZstdCompressor(level=3)
    with open(os.path.join(out, "kept.jsonl.zst"), "wb") as fh, cctx.stream_writer(fh) as w:
        for i, d in enumerate(docs):
            if not drop[i]:
                w.write((json.dumps({"id": ids[i], "text": d.text}, ensure_ascii=False) + "\n").encode("utf-8"))
    sizes = np.bincount(rep[rep >= 0], minlength=len(docs)) if len(docs) else np.zeros(0, np.int64)
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
    from .readers import read_documents
    from .recipe import Recipe

    recipe_json, unit, work = task
    recipe = Recipe.model_validate_json(recipe_json)
    cfg = next(s for s in recipe.stages if s.name == "line_dedup")
    min_chars = int(cfg.params().get("min_chars", 10))
    parts = [line_hashes(d.text, min_chars) for d in read_documents(unit.path, recipe.sources[unit.source_index],
                                                                    recipe.limits, rel=unit.rel, byte_range=unit.byte_range)]
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
