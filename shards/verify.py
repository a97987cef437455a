"""`corpus verify`: every checksum and invariant of a built directory; names the first bad
file and byte offset."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .dataset import ShardDataset
from .fileio import sha256_file
from .format import (BLOCK_BYTES, FLAG_CONTINUES, ShardFormatError, block_digests, read_bnd,
                     read_idx, token_dtype)
from .manifest import EDITED, KNOWN_FORMAT_VERSIONS, check_shard_name


@dataclass
class Problem:
    file: str
    offset: int | None
    message: str

    def __str__(self) -> str:
        at = f" at byte {self.offset}" if self.offset is not None else ""
        return f"{self.file}{at}: {self.message}"


def verify(root: str, check_tokens: bool = True) -> list[Problem]:
    """All problems found (empty list: the build is valid). Stops at the first bad shard file."""
    mpath = os.path.join(root, "manifest.json")
    try:
        ds = ShardDataset(root, strict=False)
    except ShardFormatError as e:
        return [Problem(mpath, None, str(e))]
    warnings = [Problem(mpath, None, ("warning: " if w != EDITED else "") + w) for w in ds.warnings]
    edited = [p for p in warnings if p.message == EDITED]
    try:
        fields = _check_fields(root, ds)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:  # a field of the wrong shape
        fields = [Problem(mpath, None, f"malformed manifest field ({e!r})")]
    if edited or fields:
        return edited + fields
    copy = _check_tokenizer_copy(root, ds.manifest)
    if copy and not is_warning(copy[0]):
        return copy
    warnings += copy
    probs = _verify_shards(root, ds, check_tokens)
    return probs + warnings if probs else warnings


def is_warning(p: Problem) -> bool:
    """Warning-level problems (an old manifest without a checksum) do not fail verify."""
    return p.message.startswith("warning: ")


def _check_tokenizer_copy(root: str, m: dict) -> list[Problem]:
    """The tokenizer files the build copied into its directory, against their sha256."""
    tok = m["tokenizer"]
    if "files" not in tok:
        return [Problem(os.path.join(root, "manifest.json"), None, "warning: no copy of the tokenizer in the build "
                        "directory (built before builds carried one): stats, report and export find it only where "
                        "the recipe's tokenizer path resolves")]
    for rel, sha in tok["files"].items():
        path = os.path.join(root, check_shard_name(rel, "tokenizer file"))
        if not os.path.isfile(path):
            return [Problem(path, None, "missing (the build's copy of its tokenizer)")]
        if sha256_file(path) != sha or (rel == tok["file"] and sha != tok["sha256"]):
            return [Problem(path, None, "sha256 mismatch (the build's copy of its tokenizer)")]
    return []


def _check_fields(root: str, ds) -> list[Problem]:
    """Every manifest field describing shards, against each other and (cheaply) the files."""
    m, L, mp = ds.manifest, ds.seq_len, os.path.join(root, "manifest.json")
    out: list[Problem] = []

    def bad(field: str, msg: str) -> None:
        out.append(Problem(mp, None, f"field {field}: {msg}"))

    if m.get("format_version") not in KNOWN_FORMAT_VERSIONS:
        bad("format_version", f"{m.get('format_version')!r} is not a known version {KNOWN_FORMAT_VERSIONS}")
    tok = m["tokenizer"]
    vocab = tok["vocab_size"]
    rec = m.get("recipe")
    asked = rec.get("output", {}).get("dtype", "auto") if isinstance(rec, dict) else "auto"
    try:
        want = token_dtype(vocab, asked)
        if ds.dtype != want:
            bad("dtype", f"{ds.dtype} != {want} for vocab {vocab}" + ("" if asked == "auto" else f" (output.dtype {asked})"))
    except ShardFormatError as e:
        bad("dtype", str(e))
    for k in ("pad_id", "bos_id", "eos_id"):
        v = m.get(k)
        if v is not None and not (isinstance(v, int) and 0 <= v < vocab):
            bad(k, f"{v!r} outside vocab 0..{vocab - 1}")
        elif isinstance(tok.get(k), int) and tok[k] >= 0 and tok[k] != v:  # -1: the tokenizer has none
            bad(k, f"{v!r} != tokenizer {k} {tok[k]!r}")
    if "sources" not in m or not isinstance(m["sources"], list):
        bad("sources", "missing")
        return out
    names = [s["name"] for s in m["sources"]]
    if [s.get("index") for s in m["sources"]] != list(range(len(names))):
        bad("sources", "indices are not 0..n-1")
    if set(names) != set(m.get("per_source", {})):
        bad("sources", f"{names} != per_source {sorted(m.get('per_source', {}))}")
    if m.get("packing", {}).get("seq_len", L) != L:
        bad("packing.seq_len", f"{m['packing']['seq_len']} != seq_len {L}")
    tail = m.get("packing", {}).get("tail")
    if tail not in ("pad", "drop"):
        bad("packing.tail", f"{tail!r} is not pad or drop")
    for split, sm in m["splits"].items():
        ents = sm["shards"]
        for key in ("rows", "tokens"):
            if sum(e[key] for e in ents) != sm[key]:
                bad(f"splits.{split}.{key}", f"{sm[key]} != sum over its shards {sum(e[key] for e in ents)}")
        for e in ents:
            if e.get("source") not in names:
                bad(f"splits.{split}.shards[{e['name']}].source", f"{e.get('source')!r} not in sources")
            if e["pad_tokens"] != e["rows"] * L - e["tokens"]:
                bad(f"splits.{split}.shards[{e['name']}].pad_tokens", "!= rows x seq_len - tokens")
        for src in names:
            ps = m["per_source"][src][split]
            se = [e for e in ents if e.get("source") == src]
            for key in ("rows", "tokens", "pad_tokens"):
                got = sum(e[key] for e in se)
                if ps.get(key, got) != got:
                    bad(f"per_source.{src}.{split}.{key}", f"{ps[key]} != sum over its shards {got}")
            if tail == "pad" and ps.get("tail_dropped_tokens", 0):
                bad("packing.tail", f"pad, but per_source.{src}.{split} dropped {ps['tail_dropped_tokens']} tail tokens")
            if tail == "drop" and m["packing"].get("mode") == "concat" and se:
                base = os.path.join(root, check_shard_name(se[-1]["name"]))
                try:
                    last = read_bnd(base + ".bnd").row_valid
                except (OSError, ShardFormatError):
                    continue  # the per-shard checks name the file
                if len(last) and int(last[-1]) < L:
                    bad("packing.tail", f"drop, but the last row of {src}/{split} is partial ({int(last[-1])} < {L})")
        tot = sum(m["per_source"][s][split].get("tokens", 0) for s in names)
        if "tokens" in next(iter(m["per_source"].values()), {}).get(split, {}) and tot != sm["tokens"]:
            bad(f"splits.{split}.tokens", f"{sm['tokens']} != per-source total {tot}")
    return out


def _verify_shards(root: str, ds, check_tokens: bool) -> list[Problem]:
    vocab = ds.tokenizer["vocab_size"]
    L, itemsize = ds.seq_len, ds.dtype.itemsize
    for split in ("train", "val"):
        for e in ds.entries(split):
            base = os.path.join(root, check_shard_name(e["name"]))
            for ext in ("bin", "idx", "bnd"):
                if not os.path.exists(f"{base}.{ext}"):
                    return [Problem(f"{base}.{ext}", None, "missing")]
            binp = base + ".bin"
            size = os.path.getsize(binp)
            if size != e["rows"] * L * itemsize:
                return [Problem(binp, min(size, e["rows"] * L * itemsize),
                                f"size {size} != {e['rows']} rows x {L} x {itemsize} bytes")]
            if sha256_file(binp) != e["sha256"]["bin"]:
                got = block_digests(binp)
                for k, (a, b) in enumerate(zip(got, e["bin_block_xxh64"])):
                    if a != b:
                        off = _first_bad_offset(binp, k)
                        return [Problem(binp, off, f"checksum mismatch in block {k} (bytes {k * BLOCK_BYTES}.."
                                                   f"{(k + 1) * BLOCK_BYTES - 1})")]
                return [Problem(binp, None, "sha256 mismatch")]
            for ext in ("idx", "bnd"):
                if sha256_file(f"{base}.{ext}") != e["sha256"][ext]:
                    return [Problem(f"{base}.{ext}", None, "sha256 mismatch")]
            try:
                idx = read_idx(base + ".idx")
                bnd = read_bnd(base + ".bnd")
            except ShardFormatError as ex:
                return [Problem(str(ex).split(":")[0], None, str(ex))]
            rows = e["rows"]
            if len(idx["lengths"]) != rows or (idx["lengths"] != L).any():
                return [Problem(base + ".idx", 34, "sequence lengths do not match rows x seq_len")]
            if idx["dtype"] != ds.dtype:
                return [Problem(base + ".idx", 17, f"dtype {idx['dtype']} != manifest {ds.dtype}")]
            probs = _check_bounds(base + ".bnd", bnd, rows, L)
            if probs:
                return probs
            if bnd.seq_len != L:
                return [Problem(base + ".bnd", 12, f"seq_len {bnd.seq_len} != manifest {L}")]
            if int(bnd.row_valid.sum()) != e["tokens"]:
                return [Problem(base + ".bnd", None, f"valid tokens {int(bnd.row_valid.sum())} != manifest {e['tokens']}")]
            if check_tokens and rows:
                tok = np.memmap(binp, dtype=ds.dtype, mode="r").reshape(rows, L)
                for a in range(0, rows, 4096):
                    blk = tok[a: a + 4096]
                    bad = np.argwhere((blk >= vocab) | (blk < 0))  # int32 rows can hold negative ids
                    if len(bad):
                        r, c = bad[0]
                        return [Problem(binp, ((a + r) * L + c) * itemsize,
                                        f"token id {blk[r, c]} outside vocab 0..{vocab - 1}")]
    return []


def _check_bounds(path: str, b, rows: int, L: int) -> list[Problem]:
    if len(b.row_valid) != rows:
        return [Problem(path, 24, f"n_rows {len(b.row_valid)} != manifest {rows}")]
    ptr = b.seg_ptr
    if ptr[0] != 0 or (np.diff(ptr) < 1).any() or ptr[-1] != len(b.seg_start):
        return [Problem(path, 40, "segment pointers not increasing (every row needs >= 1 segment)")]
    if ((b.row_valid < 1) | (b.row_valid > L)).any():
        return [Problem(path, None, "row_valid outside 1..seq_len")]
    if (b.seg_start[ptr[:-1]] != 0).any():
        return [Problem(path, None, "a row's first segment does not start at 0")]
    if len(b.seg_start) and ((b.seg_start < 0) | (b.seg_start >= L)).any():
        return [Problem(path, None, "segment start outside the row")]
    if (b.row_flags & ~np.uint8(FLAG_CONTINUES)).any():
        return [Problem(path, None, "unknown row flag bits")]
    return []


def _first_bad_offset(path: str, block: int) -> int:
    """Offset of the block that no longer matches (the byte itself is unknowable from a hash)."""
    return block * BLOCK_BYTES
