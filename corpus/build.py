"""The build pipeline: read → per-document stages → tokenize (per unit, in workers) →
global stages (exact dedup) → mixing → pack → shards + manifest + build report.

    units ──executor──▶ .work/units/uNNNNN.{tok.npy,docs.npz,json}   (per input file, resumable)
                              │
                     global boundary: exact dedup over all units, in input order
                              │
                     mixing: per-source token targets (weights / epochs), seeded
                              │
            ConcatPacker (Numba) ─▶ ShardWriter ─▶ OUT/{train,val}/SOURCE-NNNNN.{bin,idx,bnd}
                              │
                     manifest.json (checksums, last) + build_report.json (all counts)

Output depends only on the inputs, the recipe and its seed — never on the worker count or
on the order in which workers finish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xxhash

from . import __version__
from .document import Document
from .executor import Executor, LocalExecutor, run_all
from .readers import FileReader, ReadLog, read_documents
from .recipe import Recipe, SourceConfig, expand_paths, stage_files
from .stages import Chain, StageStats, build_stage, exact_hash
from shards.fileio import DiskFullError, atomic_write  # noqa: F401  (DiskFullError is re-exported)
from shards.format import token_dtype
from shards.manifest import write_manifest
from shards.tokenizer import TOKENIZER_DIR, install_tokenizer, load_tokenizer

SPLITS = ("train", "val")


class BuildError(Exception):
    """A build cannot proceed (bad recipe for this output, lock held, invariant broken)."""


@dataclass(frozen=True)
class Unit:
    """One unit of work: an input file of a source, or a byte range of a big JSON Lines file."""

    index: int
    source: str
    source_index: int
    path: str
    rel: str
    start: int = 0  # byte range [start, end) cut at line ends, and the number of its first line
    end: int = -1  # -1: the whole file
    first_line: int = 1

    @property
    def byte_range(self) -> tuple[int, int, int] | None:
        return None if self.end < 0 else (self.start, self.end, self.first_line)

    @property
    def key(self) -> str:
        return f"u{self.index:05d}"


def plan_units(recipe: Recipe) -> list[Unit]:
    """Every input file of every source, in the deterministic order sources → sorted paths;
    uncompressed JSON Lines files over `limits.unit_bytes` become consecutive byte ranges, so
    the output is the same as with one unit per file (same documents, ids and order)."""
    from .readers import FileReader, line_ranges

    cap = recipe.limits.unit_bytes
    units: list[Unit] = []
    for si, src in enumerate(recipe.sources):
        files = expand_paths(src.paths)
        if not files:
            raise BuildError(f"source {src.name!r}: no input files in {src.paths}")
        roots = [p for p in src.paths if os.path.isdir(p)]
        for f in files:
            root = next((r for r in roots if os.path.abspath(f).startswith(os.path.abspath(r) + os.sep)), None)
            rel = os.path.relpath(f, root) if root else os.path.basename(f)
            if cap and os.path.isfile(f) and os.path.getsize(f) > cap and \
                    FileReader(f, rel, src, recipe.limits).splittable():
                for a, b, line in line_ranges(f, cap):
                    units.append(Unit(len(units), src.name, si, f, rel, a, b, line))
            else:
                units.append(Unit(len(units), src.name, si, f, rel))
    return units


# ---------------------------------------------------------------------------------------
# per-unit work (runs in worker processes)

_CACHE: dict[str, Any] = {}


def _setup(recipe_json: str, work: str | None = None) -> tuple[Recipe, list[list], Any]:
    """The recipe, its stages per source (after `stage_overrides`) and the tokenizer, cached per process."""
    if _CACHE.get("key") != (recipe_json, work):
        recipe = Recipe.model_validate_json(recipe_json)
        per_source = source_stages(recipe, work)
        tok = load_tokenizer(recipe.tokenizer.path)
        _CACHE.update(key=(recipe_json, work), value=(recipe, per_source, tok))
    return _CACHE["value"]


def source_stages(recipe: Recipe, work: str | None = None) -> list[list]:
    """Instantiated stages for each source; sources with the same overrides share the objects."""
    check_overrides(recipe)
    built: dict[str, list] = {}
    out = []
    for i, src in enumerate(recipe.sources):
        key = json.dumps([src.stage_overrides, src.languages], sort_keys=True)
        if key not in built:
            built[key] = [build_stage(s.name, _with_frequent(s.name, s.params(), work)) for s in recipe.stages_for(i)]
        out.append(built[key])
    return out


def check_overrides(recipe: Recipe) -> None:
    """Per-source overrides may only touch per-document stages (global ones see all sources at once)."""
    from .stages import stage_class

    for src in recipe.sources:
        glob = sorted(n for n in src.stage_overrides if stage_class(n).is_global)
        if glob:
            raise BuildError(f"source {src.name!r}: stage_overrides apply to per-document stages; "
                             f"{glob} run once over all sources")


def _with_frequent(name: str, params: dict, work: str | None) -> dict:
    if name == "line_dedup" and work:
        params = {**params, "frequent_path": os.path.join(work, "frequent_lines.npy")}
    return params


def split_of(doc_id: str, seed: int, val_ratio: float) -> int:
    """0 = train, 1 = val; a seeded hash of the document id, so it does not depend on order."""
    if val_ratio <= 0:
        return 0
    h = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=seed & 0xFFFFFFFFFFFFFFFF)
    return int(h / 2.0**64 < val_ratio)


def process_unit(task: tuple[str, Unit, str]) -> dict[str, Any]:
    """Read, clean, hash, split and tokenize one unit; write its results atomically to `work`."""
    recipe_json, unit, work = task
    recipe, per_source, tok = _setup(recipe_json, work)
    t0 = time.perf_counter()
    src = recipe.sources[unit.source_index]
    stages = per_source[unit.source_index]
    chain = Chain(stages, recipe.output.rejected_samples)
    log = ReadLog(keep=recipe.limits.max_bad_examples)
    ids: list[str] = []
    texts: list[str] = []
    metas: list[dict] = []  # for minhash_dedup: own ids, dates
    docs_in = chars_in = 0
    len_in: list[int] = []
    langs: Counter = Counter()
    for item in read_documents(unit.path, src, recipe.limits, log=log, rel=unit.rel, byte_range=unit.byte_range):
        docs_in += 1
        chars_in += len(item.text)
        len_in.append(len(item.text))
        doc = chain(item)
        if doc is not None:
            ids.append(doc.id)
            texts.append(doc.text)
            metas.append(doc.metadata)
            if "language" in doc.metadata:
                langs[doc.metadata["language"]] += 1
    # tokenize in batches
    arrays: list[np.ndarray] = []
    bs = recipe.tokenizer.batch_size
    for i in range(0, len(texts), bs):
        arrays.extend(tok.encode_batch(texts[i: i + bs]))
    dtype = token_dtype(tok.vocab_size)  # the unit's ids as the shards will hold them (auto)
    lens = np.array([len(a) for a in arrays], dtype=np.int64)
    offsets = np.zeros(len(arrays) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    flat = np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)
    hashes = np.array([exact_hash(t) for t in texts], dtype=np.uint64).reshape(-1, 2)
    from shards.stats import byte_piece_mask

    byte_tokens = int(byte_piece_mask(tok)[flat].sum()) if len(flat) else 0  # <0xNN> byte-fallback pieces
    split = np.array([split_of(d, recipe.seed, recipe.split.val_ratio) for d in ids], dtype=np.uint8)
    chars = np.array([len(t) for t in texts], dtype=np.int64)
    base = os.path.join(work, "units", unit.key)
    mh = next((st for st in stages if st.name == "minhash_dedup"), None)
    if mh is not None:  # the per-document half of the global near-dedup stage
        from .dedup import write_unit_sketch

        write_unit_sketch(mh, base, texts, ids, metas)
    atomic_write(base + ".tok.npy", lambda f: np.save(f, flat))
    atomic_write(base + ".docs.npz", lambda f: np.savez(f, offsets=offsets, hashes=hashes, split=split,
                                                        chars=chars, ids=np.array(ids, dtype=np.str_)))
    summary = {"unit": asdict(unit), "records": log.records, "replaced_chars": log.replaced,
               "docs_in": docs_in, "chars_in": chars_in,
               "docs_kept": len(ids), "tokens": int(lens.sum()), "bad_counts": dict(log.counts),
               "bad": [b.as_dict() for b in log.examples],
               "stages": {k: v.as_dict() for k, v in chain.stats.items()}, "samples": chain.samples,
               "removed_samples": chain.removed_samples, "chars_kept": int(chars.sum()), "byte_tokens": byte_tokens,
               "seconds": round(time.perf_counter() - t0, 3),
               "hist_chars_in": length_histogram(np.array(len_in)), "hist_chars_out": length_histogram(chars),
               "hist_tokens": length_histogram(lens), "languages": dict(langs)}
    atomic_write(base + ".json", json.dumps(summary, ensure_ascii=False))
    return summary


LENGTH_BINS = [0] + [2**k for k in range(3, 25)]  # log2 bins: <8, 8-16, ..., 8M-16M


def length_histogram(x: np.ndarray) -> list[int]:
    """Counts per LENGTH_BINS bin (the last bin is open-ended)."""
    edges = np.array(LENGTH_BINS[1:])
    return np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(LENGTH_BINS)).tolist()


# ---------------------------------------------------------------------------------------
# the driver


class _Lock:
    """An exclusive lock on the output directory (a pid file created with O_EXCL)."""

    def __init__(self, out: str):
        self.path = os.path.join(out, ".lock")

    def __enter__(self) -> "_Lock":
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = _read_pid(self.path)
            if pid and _alive(pid):
                raise BuildError(f"{self.path}: another build (pid {pid}) is writing this output directory")
            os.remove(self.path)  # stale: its build died
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def _read_pid(path: str) -> int | None:
    try:
        return int(open(path).read().strip() or 0)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


MARKER = ".refinery-build"
# names refinery itself writes at the top of --out
_OWN_TOP = ("manifest.json", "build_report.json", "dedup_clusters.jsonl", ".lock", ".work", MARKER)
_SHARD_RE = re.compile(r"^(?P<prefix>.+)-\d{5}\.(bin|idx|bnd)(\.tmp)?$")


def _glob_root(p: str) -> str:
    """The part of an input path before any glob character."""
    parts = []
    for part in p.split(os.sep):
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return os.sep.join(parts) or "."


def _inside(a: str, b: str) -> bool:
    """a is b or lies inside b (both realpaths)."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep)


def _read_marker(out: str) -> dict | None:
    try:
        m = json.load(open(os.path.join(out, MARKER), encoding="utf-8"))
        return m if isinstance(m, dict) and m.get("refinery_build") else None
    except (OSError, ValueError):
        return None


def _write_marker(out: str, files: list[str]) -> None:
    atomic_write(os.path.join(out, MARKER), json.dumps(
        {"refinery_build": 1, "refinery_version": __version__, "files": sorted(set(files))}, indent=1))


def _check_out(recipe: Recipe, out: str, force: bool) -> None:
    """Refuse an --out that overlaps an input, or that holds files refinery did not write (issue 17)."""
    ro = os.path.realpath(out)
    for src in recipe.sources:
        for p in src.paths:
            rp = os.path.realpath(_glob_root(p))
            if _inside(ro, rp):
                raise BuildError(f"--out {out} is {'the' if ro == rp else 'inside the'} input path {p} "
                                 f"of source {src.name}; choose an --out outside every input")
            if _inside(rp, ro):
                raise BuildError(f"input path {p} of source {src.name} is inside --out {out}; "
                                 "choose an --out outside every input")
    if not os.path.exists(out):
        return
    if not os.path.isdir(out):
        raise BuildError(f"--out {out} exists and is not a directory")
    entries = os.listdir(out)
    if set(entries) <= {".lock", ".work"} or _read_marker(out) is not None:
        return  # empty, a marked build, or a build that stopped before writing its marker
    if not force:
        raise BuildError(f"--out {out} is not empty and is not a refinery build ({MARKER} missing); "
                         "use an empty or new directory, or --force to add a build next to its files")
    clash = [e for e in entries if e in _OWN_TOP]
    for sp in SPLITS + ("rejected", TOKENIZER_DIR):
        d = os.path.join(out, sp)
        if os.path.isdir(d):
            clash += [f"{sp}/{f}" for f in os.listdir(d) if sp == TOKENIZER_DIR
                      or (sp == "rejected" and f.endswith(".jsonl")) or (sp in SPLITS and _SHARD_RE.match(f))]
    if clash:
        raise BuildError(f"--out {out}: refinery would overwrite {clash[0]}, a file it did not write"
                         + (f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""))


def _remove_own(out: str, sources: list[str]) -> None:
    """Delete the shard and sample files a previous build into this marked --out wrote: the files its
    marker lists, and leftovers of an interrupted pack (refinery's own shard names); nothing else."""
    m = _read_marker(out) or {}
    for rel in m.get("files", []):
        if rel.split("/")[0] not in SPLITS + ("rejected", TOKENIZER_DIR) or ".." in rel.split("/"):
            continue
        try:
            os.remove(os.path.join(out, rel))
        except FileNotFoundError:
            pass
    if m:
        for sp in SPLITS:
            d = os.path.join(out, sp)
            if os.path.isdir(d):
                for f in os.listdir(d):
                    g = _SHARD_RE.match(f)
                    if g and g.group("prefix") in sources:
                        os.remove(os.path.join(d, f))
    for sp in SPLITS + ("rejected", TOKENIZER_DIR):
        try:
            os.rmdir(os.path.join(out, sp))  # only when empty
        except OSError:
            pass


def _written_files(out: str, manifest: dict) -> list[str]:
    """The shard and sample files this build wrote (a foreign rejected/*.jsonl was refused up front)."""
    files = []
    for sp in SPLITS:
        for e in manifest.get("splits", {}).get(sp, {}).get("shards", []):
            base = e["name"]
            files += [base + ext for ext in (".bin", ".idx", ".bnd") if os.path.exists(os.path.join(out, base + ext))]
    rej = os.path.join(out, "rejected")
    if os.path.isdir(rej):
        files += ["rejected/" + f for f in os.listdir(rej) if f.endswith(".jsonl")]
    return files + list(manifest.get("tokenizer", {}).get("files", {}))


@dataclass
class BuildResult:
    out: str
    manifest: dict[str, Any]
    report: dict[str, Any]


def build(recipe: Recipe, out: str, executor: Executor | None = None, restart: bool = False,
          on_unit: Callable[[dict[str, Any]], None] | None = None,
          on_plan: Callable[[int, int], None] | None = None, force: bool = False) -> BuildResult:
    """Run a whole build into `out`; resumes completed units of an interrupted build of the same recipe.
    `out` must be absent, empty or a refinery build (its marker file); `force` also accepts a non-empty
    directory of other files, which are never deleted or overwritten."""
    t0 = time.time()
    _check_out(recipe, out, force)
    os.makedirs(out, exist_ok=True)
    executor = executor or LocalExecutor(recipe.workers)
    check_overrides(recipe)
    with _Lock(out):
        if _read_marker(out) is None:
            _write_marker(out, [])
        work = os.path.join(out, ".work")
        state_path = os.path.join(work, "state.json")
        units = plan_units(recipe)
        state = {"recipe_sha256": recipe.fingerprint(), "inputs": [_file_sig(u) for u in units]
                 + [_stage_file_sig(p) for p in stage_files(recipe)],
                 # unit files are keyed by index: another cut of big files must not reuse them
                 "plan": hashlib.sha256(json.dumps([[u.rel, u.start, u.end] for u in units]).encode()).hexdigest()}
        if os.path.exists(state_path) and not restart:
            old = json.load(open(state_path))
            diff = _describe_state_diff(old, state)
            if diff:
                raise BuildError(f"{out} holds a build of a different recipe or inputs ({diff}); "
                                 "use --restart to start over or another --out")
        elif restart and os.path.exists(work):
            shutil.rmtree(work)
        os.makedirs(os.path.join(work, "units"), exist_ok=True)
        atomic_write(state_path, json.dumps(state))
        # a new manifest is written last; until then the directory holds no valid dataset
        if os.path.exists(os.path.join(out, "manifest.json")):
            os.remove(os.path.join(out, "manifest.json"))
        rj = recipe.model_dump_json()
        ld = next((s for s in recipe.stages if s.name == "line_dedup"), None)
        if ld is not None:  # the counting pass of corpus-wide line dedup, before the per-document stages
            from .dedup import count_lines_task, frequent_lines

            fl_path = os.path.join(work, "frequent_lines.npy")
            if not os.path.exists(fl_path):
                todo_c = [u for u in units if not os.path.exists(os.path.join(work, "units", u.key + ".lines.npz"))]
                run_all(executor, count_lines_task, [(rj, u, work) for u in todo_c])
                fl = frequent_lines([os.path.join(work, "units", u.key + ".lines.npz") for u in units],
                                    int(ld.params().get("max_docs", 20)))
                atomic_write(fl_path, lambda f: np.save(f, fl))
        todo = [u for u in units if not os.path.exists(os.path.join(work, "units", u.key + ".json"))]
        if on_plan:
            on_plan(len(units), len(units) - len(todo))
        run_all(executor, process_unit, [(rj, u, work) for u in todo], on_unit)
        summaries = [json.load(open(os.path.join(work, "units", u.key + ".json"), encoding="utf-8"))
                     for u in units]
        manifest, report = _assemble(recipe, out, work, units, summaries, executor)
        report["seconds"] = round(time.time() - t0, 2)
        report["resumed_units"] = len(units) - len(todo)
        atomic_write(os.path.join(out, "build_report.json"), json.dumps(report, ensure_ascii=False, indent=1))
        # the tokenizer travels with the shards: stats, report, verify and export read the copy
        manifest["tokenizer"] = install_tokenizer(load_tokenizer(recipe.tokenizer.path), out)
        manifest = write_manifest(out, manifest)  # last: the commit point (with its manifest_sha256)
        _write_marker(out, _written_files(out, manifest))
    return BuildResult(out, manifest, report)


def _file_sig(u: Unit) -> list:
    try:
        st = os.stat(u.path)
    except OSError:  # a broken or looping symlink: the reader reports it as a skipped unit
        st = os.lstat(u.path)
    return [u.source, u.rel, st.st_size, int(st.st_mtime)]


def _stage_file_sig(path: str) -> list:
    """A stage's model/list file: a retrained classifier must not resume on the old one's units."""
    st = os.stat(path) if os.path.exists(path) else None
    return ["stage-file", path, st.st_size if st else -1, int(st.st_mtime) if st else -1]


def _describe_state_diff(old: dict, new: dict) -> str:
    if old.get("recipe_sha256") != new["recipe_sha256"]:
        return "the recipe changed"
    if "plan" in old and old["plan"] != new["plan"]:
        return "the units changed (limits.unit_bytes cuts big files differently)"
    o = {tuple(x[:2]): x for x in old.get("inputs", [])}
    n = {tuple(x[:2]): x for x in new["inputs"]}
    added, removed = sorted(set(n) - set(o)), sorted(set(o) - set(n))
    changed = sorted(k for k in set(n) & set(o) if n[k] != o[k])
    parts = []
    for label, keys in (("added", added), ("removed", removed), ("changed", changed)):
        if keys:
            parts.append(f"{label}: " + ", ".join("/".join(k) for k in keys[:5]))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------
# global stages, mixing, packing, manifest


def _assemble(recipe: Recipe, out: str, work: str, units: list[Unit], summaries: list[dict],
              executor: Executor | None = None) -> tuple[dict, dict]:
    tok = load_tokenizer(recipe.tokenizer.path)
    dtype = token_dtype(tok.vocab_size, recipe.output.dtype)
    docs = [np.load(os.path.join(work, "units", u.key + ".docs.npz")) for u in units]
    n_per = [len(d["split"]) for d in docs]
    unit_of = np.repeat(np.arange(len(units)), n_per)
    local = np.concatenate([np.arange(n) for n in n_per]) if n_per else np.zeros(0, np.int64)
    src_of = np.repeat(np.array([u.source_index for u in units], dtype=np.int64), n_per)
    ntok = np.concatenate([np.diff(d["offsets"]) for d in docs]) if docs else np.zeros(0, np.int64)
    split = np.concatenate([d["split"] for d in docs]).astype(np.uint8) if docs else np.zeros(0, np.uint8)
    hashes = np.concatenate([d["hashes"].reshape(-1, 2) for d in docs]) if docs else np.zeros((0, 2), np.uint64)
    n = len(split)
    keep = np.ones(n, dtype=bool)
    S = len(recipe.sources)

    # global boundary: exact dedup, first occurrence in input order wins
    dedup_drops = np.zeros(S, np.int64)
    if any(s.name == "exact_dedup" for s in recipe.stages) and n:
        order = np.lexsort((np.arange(n), hashes[:, 1], hashes[:, 0]))
        h = hashes[order]
        dup_sorted = np.zeros(n, bool)
        dup_sorted[1:] = (h[1:, 0] == h[:-1, 0]) & (h[1:, 1] == h[:-1, 1])
        dup = np.zeros(n, bool)
        dup[order] = dup_sorted
        keep &= ~dup
        dedup_drops = np.bincount(src_of[dup], minlength=S)

    # global boundary: MinHash LSH near-dedup over what exact dedup kept
    near_drops = np.zeros(S, np.int64)
    mh_cfg = next((st for st in recipe.stages if st.name == "minhash_dedup"), None)
    clusters_path = os.path.join(out, "dedup_clusters.jsonl")
    if os.path.exists(clusters_path):
        os.remove(clusters_path)
    if mh_cfg is not None and n:
        from .dedup import cluster_bands, cluster_ids
        from .stages import build_stage

        mh = build_stage("minhash_dedup", mh_cfg.params())
        kinds = np.array([0 if s.kind == "domain" else 1 for s in recipe.sources])
        rep, near, mh_info = cluster_bands(work, [u.key for u in units], keep.copy(), mh,
                                           executor or LocalExecutor(1), kinds[src_of])
        keep &= ~near
        near_drops = np.bincount(src_of[near], minlength=S)
        members = np.flatnonzero(rep >= 0)
        sizes = np.bincount(rep[members], minlength=n)
        multi = members[sizes[rep[members]] > 1]
        ids_all = cluster_ids(np.concatenate([d["ids"] for d in docs]) if docs else np.zeros(0, str), mh_info["own"])
        atomic_write(clusters_path, "".join(
            json.dumps({"id": str(ids_all[g]), "cluster": str(ids_all[rep[g]]), "kept": bool(keep[g])},
                       ensure_ascii=False) + "\n" for g in multi))

    # val cap: overflow val documents go back to train (by order), nothing is lost
    if recipe.split.val_max_docs is not None:
        for s in range(S):
            vi = np.flatnonzero((src_of == s) & (split == 1) & keep)
            split[vi[recipe.split.val_max_docs:]] = 0

    # global boundary: decontamination of train against val and declared eval sets
    contam_drops = np.zeros(S, np.int64)
    dc_cfg = next((st for st in recipe.stages if st.name == "decontaminate"), None)
    if dc_cfg is not None and n:
        contam = _decontaminate(dc_cfg.params(), recipe, tok, docs, units, work, split, keep, unit_of, local)
        keep &= ~contam
        contam_drops = np.bincount(src_of[contam], minlength=S)

    extra = int(recipe.tokenizer.add_bos) + int(recipe.tokenizer.add_eos)
    # mixing on the train split
    weights = [s.weight for s in recipe.sources]
    use_weights = any(w is not None for w in weights)
    if use_weights and not all(w is not None for w in weights):
        raise BuildError("when one source has a weight, every source needs one (or use epochs)")
    avail = np.array([int((ntok[(src_of == s) & (split == 0) & keep] + extra).sum()) for s in range(S)], np.float64)
    if use_weights:
        w = np.array(weights, np.float64) / sum(weights)  # type: ignore[arg-type]
        live = avail > 0
        total = float(np.min(avail[live] / w[live])) if live.any() else 0.0
        targets = w * total
    else:
        targets = np.array([(s.epochs or 1.0) for s in recipe.sources]) * avail
    selection: dict[int, np.ndarray] = {}
    downsampled = np.zeros(S, np.int64)
    repeats = np.zeros(S, np.int64)
    for s in range(S):
        idx = np.flatnonzero((src_of == s) & (split == 0) & keep)
        selection[s] = _select(idx, ntok[idx] + extra, targets[s], recipe.seed, s)
        uniq = np.unique(selection[s])
        downsampled[s] = len(idx) - len(uniq)
        repeats[s] = len(selection[s]) - len(uniq)

    # pack and write
    _remove_own(out, [src.name for src in recipe.sources])
    shard_entries: dict[str, list[dict]] = {sp: [] for sp in SPLITS}
    per_source: dict[str, dict[str, Any]] = {}
    bos = tok.bos_id if recipe.tokenizer.add_bos else -1
    eos = tok.eos_id if recipe.tokenizer.add_eos else -1
    pad = tok.pad_id if tok.pad_id >= 0 else tok.eos_id
    L = recipe.packing.seq_len
    # one task per (source, split) stream: independent, so an executor may run them anywhere
    streams = []
    for s, src in enumerate(recipe.sources):
        for sp in SPLITS:
            order = selection[s] if sp == "train" else np.flatnonzero((src_of == s) & (split == 1) & keep)
            streams.append({"source": src.name, "source_index": s, "split": sp, "out": out, "work": work,
                            "unit_keys": [u.key for u in units], "unit_of": unit_of[order], "local": local[order],
                            "mode": recipe.packing.mode, "tail": recipe.packing.tail, "seq_len": L, "bos": bos,
                            "eos": eos, "pad": pad, "dtype": np.dtype(dtype).name,
                            "rows_per_shard": recipe.output.rows_per_shard})
    packed = {(r["source"], r["split"]): r for r in (executor or LocalExecutor(1)).map(pack_stream, streams)}
    for s, src in enumerate(recipe.sources):
        per_source[src.name] = {"kind": src.kind, "index": s}
        for sp in SPLITS:
            r = packed[(src.name, sp)]
            order = selection[s] if sp == "train" else np.flatnonzero((src_of == s) & (split == 1) & keep)
            entries = r["entries"]
            shard_entries[sp].extend(entries)
            dl = ntok[order] if len(order) else np.zeros(0, np.int64)
            per_source[src.name][sp] = {
                "docs": int(len(order)), "unique_docs": int(len(np.unique(order))),
                "doc_tokens": int(dl.sum()), "tokens": int(sum(e["tokens"] for e in entries)),
                "rows": int(sum(e["rows"] for e in entries)),
                "pad_tokens": int(sum(e["pad_tokens"] for e in entries)),
                "tail_dropped_tokens": r["tail_dropped_tokens"],
                "row_continuations": int(sum(e["segments"] - e["doc_starts"] for e in entries)),
                "docs_split_across_rows": r["docs_split"], "truncated_tokens": 0,
                "doc_token_percentiles": _pct(dl),
            }
        per_source[src.name]["target_share"] = None
        per_source[src.name]["repeats"] = int(repeats[s])
        per_source[src.name]["downsampled_docs"] = int(downsampled[s])
        if use_weights:
            per_source[src.name]["target_share"] = float(weights[s] / sum(weights))  # type: ignore[operator]
    total_train = sum(p["train"]["tokens"] for p in per_source.values()) or 1
    for p in per_source.values():
        p["realised_share"] = p["train"]["tokens"] / total_train

    # the funnel and the accounting check
    funnel, checks = _funnel(recipe, summaries, dedup_drops, downsampled, per_source, near_drops, contam_drops)
    samples = _merge_samples(summaries, recipe.output.rejected_samples)
    rej = os.path.join(out, "rejected")
    if samples:
        os.makedirs(rej, exist_ok=True)
        for reason, rows_ in sorted(samples.items()):
            atomic_write(os.path.join(rej, reason.replace(":", "__") + ".jsonl"),
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_))
    # lines the per-document stages removed from documents they kept, per stage (and source)
    removed = _merge_samples([{"samples": sm.get("removed_samples", {})} for sm in summaries],
                             recipe.output.rejected_samples)
    if removed:
        os.makedirs(rej, exist_ok=True)
        for stage, rows_ in sorted(removed.items()):
            atomic_write(os.path.join(rej, f"removed_lines__{stage}.jsonl"),
                         "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_))

    splits_summary = {sp: {"shards": shard_entries[sp], "rows": sum(e["rows"] for e in shard_entries[sp]),
                           "tokens": sum(e["tokens"] for e in shard_entries[sp])} for sp in SPLITS}
    manifest = {
        "refinery_version": __version__,  # format and format_version: stamped by write_manifest
        "tokenizer": tok.identity(), "seq_len": L, "dtype": np.dtype(dtype).name,
        "bos_id": bos, "eos_id": eos, "pad_id": pad, "packing": recipe.packing.model_dump(),
        "sources": [{"name": s.name, "kind": s.kind, "index": i} for i, s in enumerate(recipe.sources)],
        "splits": splits_summary, "per_source": per_source,
        # the worker count never changes the output, so it stays out of the checksummed manifest
        "recipe": _recorded_recipe(recipe),
        "recipe_sha256": recipe.fingerprint(),
    }
    bad_units = [b for sm in summaries for b in sm["bad"]]
    bad_counts: Counter = Counter()
    for sm in summaries:
        bad_counts.update(sm["bad_counts"])
    per_src_hist: dict[str, dict[str, Any]] = {}
    for sm in summaries:
        h = per_src_hist.setdefault(sm["unit"]["source"], {"chars_in": np.zeros(len(LENGTH_BINS), np.int64),
                                                             "chars_out": np.zeros(len(LENGTH_BINS), np.int64),
                                                             "tokens": np.zeros(len(LENGTH_BINS), np.int64),
                                                             "languages": Counter()})
        for k in ("chars_in", "chars_out", "tokens"):
            h[k] += np.array(sm.get(f"hist_{k}", [0] * len(LENGTH_BINS)))
        h["languages"].update(sm.get("languages", {}))
    # characters per token and byte fallback, over the documents the per-document stages kept
    tokenization: dict[str, dict[str, int]] = {}
    for sm in summaries:
        t = tokenization.setdefault(sm["unit"]["source"], {"chars": 0, "tokens": 0, "byte_tokens": 0})
        t["chars"] += sm.get("chars_kept", 0)
        t["tokens"] += sm["tokens"]
        t["byte_tokens"] += sm.get("byte_tokens", 0)
    histograms = {s: {k: (v.tolist() if isinstance(v, np.ndarray) else dict(v)) for k, v in h.items()}
                  for s, h in per_src_hist.items()}
    report = {"recipe_sha256": recipe.fingerprint(), "units": len(units), "length_bins": LENGTH_BINS,
              "histograms": histograms, "tokenization": tokenization,
              "records_read": sum(sm["records"] for sm in summaries),
              # characters the readers replaced by U+FFFD (bad bytes; the text around them kept)
              "replaced_chars": sum(sm.get("replaced_chars", 0) for sm in summaries),
              "documents_in": sum(sm["docs_in"] for sm in summaries),
              "documents_written": int(sum(p["train"]["unique_docs"] + p["val"]["unique_docs"]
                                           for p in per_source.values())),
              "bad_unit_counts": dict(bad_counts), "bad_units": bad_units,
              "funnel": funnel, "accounting": checks,
              "per_unit": [{"file": sm["unit"]["path"], "source": sm["unit"]["source"],
                            "bytes": [sm["unit"].get("start", 0), sm["unit"].get("end", -1)], "records": sm["records"],
                            "docs_in": sm["docs_in"], "docs_kept": sm["docs_kept"], "tokens": sm["tokens"],
                            "bad": sm["bad_counts"], "seconds": sm["seconds"]} for sm in summaries]}
    if not all(c["ok"] for c in checks.values()):
        raise BuildError(f"accounting check failed: {checks}")
    return manifest, report


def _recorded_recipe(recipe: Recipe) -> dict[str, Any]:
    """The recipe as the manifest records it: every path absolute (where the build read it),
    never relative to the directory the build ran in. The worker count and unit size never
    change the output, so they stay out of the checksummed manifest."""
    from .recipe import _PATH_PARAMS

    def ab(v: Any) -> Any:
        return [ab(x) for x in v] if isinstance(v, list) else os.path.abspath(v) if isinstance(v, str) and v else v

    d = recipe.model_dump(mode="json", exclude={"workers": True, "limits": {"unit_bytes"}})
    for st in d["stages"] + [o for s in d["sources"] for o in s.get("stage_overrides", {}).values()
                             if isinstance(o, dict)]:
        for k in _PATH_PARAMS & set(st):
            st[k] = ab(st[k])
    for s in d["sources"]:
        s["paths"] = ab(s["paths"])
    d["tokenizer"]["path"] = ab(d["tokenizer"]["path"])
    return d


def pack_stream(task: dict[str, Any]) -> dict[str, Any]:
    """Pack one (source, split) stream of documents into shards (a task: runs in any process)."""
    from kernels.pack import make_packer
    from shards.format import ShardWriter

    work, keys = task["work"], task["unit_keys"]
    offsets = {u: np.load(os.path.join(work, "units", keys[u] + ".docs.npz"))["offsets"] for u in np.unique(task["unit_of"])}
    tokens = {u: np.load(os.path.join(work, "units", keys[u] + ".tok.npy"), mmap_mode="r") for u in offsets}
    dtype = np.dtype(task["dtype"])
    L, sp = task["seq_len"], task["split"]
    packer = make_packer(task["mode"], L, task["bos"], task["eos"], task["pad"], dtype, task["tail"])
    writer = ShardWriter(os.path.join(task["out"], sp), task["source"], L, dtype, task["rows_per_shard"],
                         task["source_index"])
    uo, lo = task["unit_of"], task["local"]
    for a in range(0, len(uo), 4096):
        pieces = [tokens[u][offsets[u][i]: offsets[u][i + 1]] for u, i in zip(uo[a: a + 4096], lo[a: a + 4096])]
        lens = np.array([len(p) for p in pieces], np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        rows = packer.add(np.concatenate(pieces) if pieces else np.zeros(0, dtype), offs)
        writer.write(rows.rows, rows.row_valid, rows.row_flags, rows.seg_ptr, rows.seg_start)
    rows = packer.finish()
    writer.write(rows.rows, rows.row_valid, rows.row_flags, rows.seg_ptr, rows.seg_start)
    entries = writer.close()
    for e in entries:
        e["name"] = f"{sp}/{e['name']}"
        e["source"] = task["source"]
    return {"source": task["source"], "split": sp, "entries": entries, "tail_dropped_tokens": packer.dropped_tail_tokens,
            "docs_split": packer.docs_split}


def _decontaminate(params: dict, recipe: Recipe, tok: Any, docs: list, units: list[Unit], work: str,
                   split: np.ndarray, keep: np.ndarray, unit_of: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Mask of train documents sharing an n-token window with val documents or eval files."""
    from kernels.minhash import docs_hitting, ngram_hashes

    n = int(params.get("ngram", 13))
    refs = []
    tokens = [np.load(os.path.join(work, "units", u.key + ".tok.npy"), mmap_mode="r") for u in units]
    if params.get("use_val_split", True):
        for u, d in enumerate(docs):
            sel = np.flatnonzero((split[unit_of == u] == 1) & keep[unit_of == u])
            if len(sel):
                offs = d["offsets"]
                pieces = [np.asarray(tokens[u][offs[i]: offs[i + 1]]) for i in sel]
                o = np.concatenate([[0], np.cumsum([len(p) for p in pieces])]).astype(np.int64)
                refs.append(ngram_hashes(np.concatenate(pieces).astype(np.int64), o, n)[0])
    files = params.get("eval_files") or []
    if files:
        src = SourceConfig(name="eval", paths=files)
        texts = [x.text for x in read_documents(files, src)]
        arrs = tok.encode_batch(texts)
        if arrs:
            o = np.concatenate([[0], np.cumsum([len(a) for a in arrs])]).astype(np.int64)
            refs.append(ngram_hashes(np.concatenate(arrs).astype(np.int64), o, n)[0])
    ref = np.unique(np.concatenate(refs)) if refs else np.zeros(0, np.uint64)
    out = np.zeros(len(split), bool)
    starts = np.concatenate([[0], np.cumsum([len(d["split"]) for d in docs])])
    for u, d in enumerate(docs):
        m = (split[starts[u]: starts[u + 1]] == 0) & keep[starts[u]: starts[u + 1]]
        if m.any():
            hit = docs_hitting(np.asarray(tokens[u]).astype(np.int64), d["offsets"].astype(np.int64), n, ref)
            out[starts[u]: starts[u + 1]] = hit & m
    return out


def _select(idx: np.ndarray, cost: np.ndarray, target: float, seed: int, s: int) -> np.ndarray:
    """Documents for a token target: whole seeded permutations, then a prefix of one more."""
    if len(idx) == 0 or target <= 0:
        return np.zeros(0, np.int64)
    total = float(cost.sum())
    rng = np.random.default_rng([seed, s])
    parts, acc = [], 0.0
    while acc < target * (1 - 1e-9):
        perm = rng.permutation(len(idx))
        need = target - acc
        if total <= need * (1 + 1e-9):
            parts.append(idx[perm])
            acc += total
            continue
        cum = np.cumsum(cost[perm])
        k = int(np.searchsorted(cum, need, side="left")) + 1
        parts.append(idx[perm[:k]])
        acc += float(cum[k - 1])
    return np.concatenate(parts)


def _pct(x: np.ndarray) -> dict[str, int]:
    if len(x) == 0:
        return {}
    q = np.percentile(x, [10, 50, 90, 99])
    return {"p10": int(q[0]), "p50": int(q[1]), "p90": int(q[2]), "p99": int(q[3]), "max": int(x.max())}


def _funnel(recipe: Recipe, summaries: list[dict], dedup: np.ndarray, downsampled: np.ndarray,
            per_source: dict, near: np.ndarray, contam: np.ndarray) -> tuple[dict, dict]:
    funnel: dict[str, list[dict]] = {}
    checks: dict[str, dict] = {}
    for s, src in enumerate(recipe.sources):
        mine = [sm for sm in summaries if sm["unit"]["source_index"] == s]
        rows: list[dict] = []
        agg: dict[str, StageStats] = {}
        for sm in mine:
            for name, st in sm["stages"].items():
                agg.setdefault(name, StageStats()).add(StageStats.from_dict(st))
        docs_in = sum(sm["docs_in"] for sm in mine)
        rows.append({"stage": "read", "docs_in": docs_in, "docs_out": docs_in,
                     "chars_in": sum(sm["chars_in"] for sm in mine), "drops": {},
                     "bad_units": dict(sum((Counter(sm["bad_counts"]) for sm in mine), Counter()))})
        for name, st in agg.items():
            rows.append({"stage": name, **st.as_dict()})
        kept = sum(sm["docs_kept"] for sm in mine)
        after_dedup = kept - int(dedup[s])
        if any(x.name == "exact_dedup" for x in recipe.stages):
            rows.append({"stage": "exact_dedup", "docs_in": kept, "docs_out": after_dedup,
                         "drops": {"exact_dedup:duplicate": int(dedup[s])} if dedup[s] else {}})
        if any(x.name == "minhash_dedup" for x in recipe.stages):
            rows.append({"stage": "minhash_dedup", "docs_in": after_dedup, "docs_out": after_dedup - int(near[s]),
                         "drops": {"minhash_dedup:near_duplicate": int(near[s])} if near[s] else {}})
            after_dedup -= int(near[s])
        if any(x.name == "decontaminate" for x in recipe.stages):
            rows.append({"stage": "decontaminate", "docs_in": after_dedup, "docs_out": after_dedup - int(contam[s]),
                         "drops": {"decontaminate:eval_overlap": int(contam[s])} if contam[s] else {}})
            after_dedup -= int(contam[s])
        written = per_source[src.name]["train"]["unique_docs"] + per_source[src.name]["val"]["unique_docs"]
        rows.append({"stage": "mix", "docs_in": after_dedup, "docs_out": written,
                     "drops": {"mix:downsampled": int(downsampled[s])} if downsampled[s] else {},
                     "repeats": per_source[src.name]["repeats"]})
        funnel[src.name] = rows
        stage_drops = sum(sum(r["drops"].values()) for r in rows)
        checks[src.name] = {"documents_read": docs_in, "documents_written": written, "drops": stage_drops,
                            "ok": docs_in == written + stage_drops}
    return funnel, checks


def _merge_samples(summaries: list[dict], k: int) -> dict[str, list[dict]]:
    """Up to k samples per reason *and source*, in unit order (one big source cannot crowd out the rest)."""
    out: dict[str, list[dict]] = {}
    for sm in summaries:
        for reason, rows in sm["samples"].items():
            bucket = out.setdefault(reason, [])
            n = Counter(r["source"] for r in bucket)
            for r in rows:
                if n[r["source"]] < k:
                    bucket.append(r)
                    n[r["source"]] += 1
    return out


def quick_recipe(inputs: list[str], **overrides: Any) -> Recipe:
    """A recipe from bare paths: one source per input path (named after it)."""
    sources = []
    for p in inputs:
        name = os.path.basename(os.path.normpath(p)).split(".")[0] or "input"
        name = "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
        while any(s.name == name for s in sources):
            name += "_"
        sources.append(SourceConfig(name=name, paths=[p]))
    return Recipe(sources=sources, **overrides)


__all__ = ["build", "BuildError", "BuildResult", "plan_units", "process_unit", "quick_recipe", "Document"]
