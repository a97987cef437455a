"""`corpus verify`: every checksum and invariant of a built directory; names the first bad
file and byte offset."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .dataset import ShardDataset
from .format import (BLOCK_BYTES, FLAG_CONTINUES, ShardFormatError, _sha256, block_digests, read_bnd,
                     read_idx)


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
    try:
        ds = ShardDataset(root)
    except ShardFormatError as e:
        return [Problem(os.path.join(root, "manifest.json"), None, str(e))]
    vocab = ds.tokenizer["vocab_size"]
    L, itemsize = ds.seq_len, ds.dtype.itemsize
    for split in ("train", "val"):
        for e in ds.entries(split):
            base = os.path.join(root, e["name"])
            for ext in ("bin", "idx", "bnd"):
                if not os.path.exists(f"{base}.{ext}"):
                    return [Problem(f"{base}.{ext}", None, "missing")]
            binp = base + ".bin"
            size = os.path.getsize(binp)
            if size != e["rows"] * L * itemsize:
                return [Problem(binp, min(size, e["rows"] * L * itemsize),
                                f"size {size} != {e['rows']} rows x {L} x {itemsize} bytes")]
            if _sha256(binp) != e["sha256"]["bin"]:
                got = block_digests(binp)
                for k, (a, b) in enumerate(zip(got, e["bin_block_xxh64"])):
                    if a != b:
                        off = _first_bad_offset(binp, k)
                        return [Problem(binp, off, f"checksum mismatch in block {k} (bytes {k * BLOCK_BYTES}.."
                                                   f"{(k + 1) * BLOCK_BYTES - 1})")]
                return [Problem(binp, None, "sha256 mismatch")]
            for ext in ("idx", "bnd"):
                if _sha256(f"{base}.{ext}") != e["sha256"][ext]:
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
            if int(bnd.row_valid.sum()) != e["tokens"]:
                return [Problem(base + ".bnd", None, f"valid tokens {int(bnd.row_valid.sum())} != manifest {e['tokens']}")]
            if check_tokens and rows:
                tok = np.memmap(binp, dtype=ds.dtype, mode="r").reshape(rows, L)
                for a in range(0, rows, 4096):
                    blk = tok[a: a + 4096]
                    bad = np.argwhere(blk >= vocab)
                    if len(bad):
                        r, c = bad[0]
                        return [Problem(binp, ((a + r) * L + c) * itemsize, f"token id {blk[r, c]} >= vocab {vocab}")]
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
