"""Shard format v1: one file per concern, byte layout documented in docs/shard-format.md.

A shard `NAME` is three files:

* `NAME.bin` — token rows, raw little-endian uint16, or int32 for vocabularies of 65,500 tokens
  or more (`token_dtype`: Megatron's rule, the one place the project decides it), each row
  exactly `seq_len` tokens. `np.memmap(path, dtype=<manifest dtype>, mode="r")` reads it as it
  is (nanoGPT), and `.reshape(-1, seq_len)` gives the rows.
* `NAME.idx` — Megatron-LM's `MMIDIDX` index (version 1), so `megatron.core.datasets.
  indexed_dataset.IndexedDataset(NAME)` reads the shard unchanged: one sequence per row.
* `NAME.bnd` — our own arrays: per-row document boundaries (CSR of segment starts), valid
  (non-pad) length, flags and source index.

Every file is written under a `.tmp` name, fsynced, then renamed; a shard becomes part of
a dataset only when `manifest.json` (written last, atomically) lists it with its checksums.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from .fileio import DiskFullError, fsync_rename, sha256_file, writing  # noqa: F401 (DiskFullError re-exported)

FORMAT_VERSION = 1
IDX_MAGIC = b"MMIDIDX\x00\x00"  # Megatron's _INDEX_HEADER
IDX_VERSION = 1
BND_MAGIC = b"RFBND\x00\x00\x00"
BND_VERSION = 1
# Megatron's DType codes
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7,
               np.dtype(np.uint16): 8}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}
FLAG_CONTINUES = 1  # row_flags bit 0: the row's first segment continues the previous row's document


class ShardFormatError(Exception):
    """A shard file does not match the format; the message names the file and byte offset."""


# The only row dtypes: both have a Megatron DType code (uint32 has none, so Megatron's
# IndexedDataset could not open such a shard), and int32 holds every id below 2**31.
TOKEN_DTYPES = (np.dtype(np.uint16), np.dtype(np.int32))
# megatron.core.datasets.indexed_dataset.DType.optimal_dtype: uint16 below 65,500, else int32
# (followed exactly, so our shards and Megatron's preprocess_data.py agree on every tokenizer)
MEGATRON_UINT16_LIMIT = 65500


def token_dtype(vocab_size: int, requested: str = "auto") -> np.dtype:
    """The dtype of the token rows for a vocabulary: Megatron's choice (uint16 for fewer than
    65,500 tokens, else int32) for "auto", else the `requested` one. Refuses (ShardFormatError,
    one line) a dtype outside TOKEN_DTYPES or one that cannot hold every id of the vocabulary."""
    if requested == "auto":
        return TOKEN_DTYPES[0] if vocab_size < MEGATRON_UINT16_LIMIT else TOKEN_DTYPES[1]
    try:
        dt = np.dtype(requested)
    except TypeError:
        dt = None
    if dt not in TOKEN_DTYPES:
        raise ShardFormatError(f"output.dtype {requested!r}: token rows are uint16 or int32 "
                               "(the dtypes Megatron's IndexedDataset reads)")
    if vocab_size > int(np.iinfo(dt).max) + 1:
        raise ShardFormatError(f"output.dtype {requested!r}: a vocabulary of {vocab_size:,} tokens does not fit "
                               f"{dt.name} (use auto or int32)")
    return dt


# ---------------------------------------------------------------------------------------
# .idx (Megatron MMIDIDX v1)


def write_idx(path: str, n_rows: int, seq_len: int, dtype: np.dtype) -> None:
    """Megatron index: every row is one sequence of `seq_len` tokens and one document."""
    lengths = np.full(n_rows, seq_len, dtype=np.int32)
    pointers = np.arange(n_rows, dtype=np.int64) * (seq_len * dtype.itemsize)
    doc_idx = np.arange(n_rows + 1, dtype=np.int64)
    with open(path, "wb") as f:
        f.write(IDX_MAGIC)
        f.write(struct.pack("<Q", IDX_VERSION))
        f.write(struct.pack("<B", DTYPE_CODES[dtype]))
        f.write(struct.pack("<Q", n_rows))
        f.write(struct.pack("<Q", n_rows + 1))
        f.write(lengths.tobytes(order="C"))
        f.write(pointers.tobytes(order="C"))
        f.write(doc_idx.tobytes(order="C"))


def read_idx(path: str) -> dict[str, Any]:
    """Parse a Megatron index; raises ShardFormatError naming the offset of the first bad field."""
    data = Path(path).read_bytes()
    if data[:9] != IDX_MAGIC:
        raise ShardFormatError(f"{path}: offset 0: bad magic {data[:9]!r}")
    if len(data) < 34:
        raise ShardFormatError(f"{path}: offset {len(data)}: header truncated")
    (version,) = struct.unpack_from("<Q", data, 9)
    if version != IDX_VERSION:
        raise ShardFormatError(f"{path}: offset 9: version {version} != {IDX_VERSION}")
    code = data[17]
    if code not in CODE_DTYPES:
        raise ShardFormatError(f"{path}: offset 17: unknown dtype code {code}")
    n_seq, n_doc = struct.unpack_from("<QQ", data, 18)
    off = 34
    need = off + 4 * n_seq + 8 * n_seq + 8 * n_doc
    if len(data) != need:
        raise ShardFormatError(f"{path}: offset {min(len(data), need)}: size {len(data)} != expected {need}")
    lengths = np.frombuffer(data, np.int32, n_seq, off)
    pointers = np.frombuffer(data, np.int64, n_seq, off + 4 * n_seq)
    doc_idx = np.frombuffer(data, np.int64, n_doc, off + 12 * n_seq)
    return {"dtype": CODE_DTYPES[code], "lengths": lengths, "pointers": pointers, "doc_idx": doc_idx}


# ---------------------------------------------------------------------------------------
# .bnd (document boundaries)

_BND_HEADER = struct.Struct("<8sIIQQI4x")  # magic, version, seq_len, n_rows, n_segments, n/a
BND_HEADER_SIZE = _BND_HEADER.size  # 40 bytes


def write_bnd(path: str, seq_len: int, row_valid: np.ndarray, row_flags: np.ndarray, row_source: np.ndarray,
              seg_ptr: np.ndarray, seg_start: np.ndarray) -> None:
    n_rows, n_seg = len(row_valid), len(seg_start)
    with open(path, "wb") as f:
        f.write(_BND_HEADER.pack(BND_MAGIC, BND_VERSION, seq_len, n_rows, n_seg, 0))
        f.write(np.ascontiguousarray(seg_ptr, dtype="<i8").tobytes())
        f.write(np.ascontiguousarray(seg_start, dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(row_valid, dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(row_source, dtype="<u2").tobytes())
        f.write(np.ascontiguousarray(row_flags, dtype="u1").tobytes())


@dataclass
class Boundaries:
    """Per-row document boundaries of a shard (views into the memory-mapped .bnd file)."""

    seq_len: int
    seg_ptr: np.ndarray
    seg_start: np.ndarray
    row_valid: np.ndarray
    row_source: np.ndarray
    row_flags: np.ndarray

    def segments(self, row: int) -> np.ndarray:
        """Start offsets of the document segments in `row` (always begins with 0)."""
        return self.seg_start[self.seg_ptr[row]: self.seg_ptr[row + 1]]

    def cu_seqlens(self, row: int) -> np.ndarray:
        """Cumulative segment lengths of `row` (flash-attention's varlen form), ending at row_valid."""
        s = self.segments(row)
        return np.append(s, self.row_valid[row]).astype(np.int32)


def read_bnd(path: str) -> Boundaries:
    size = os.path.getsize(path)
    if size < BND_HEADER_SIZE:
        raise ShardFormatError(f"{path}: offset {size}: header truncated")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    magic, version, seq_len, n_rows, n_seg, _ = _BND_HEADER.unpack(bytes(mm[:BND_HEADER_SIZE]))
    if magic != BND_MAGIC:
        raise ShardFormatError(f"{path}: offset 0: bad magic {magic!r}")
    if version != BND_VERSION:
        raise ShardFormatError(f"{path}: offset 8: version {version} != {BND_VERSION}")
    sizes = [8 * (n_rows + 1), 4 * n_seg, 4 * n_rows, 2 * n_rows, n_rows]
    need = BND_HEADER_SIZE + sum(sizes)
    if len(mm) != need:
        raise ShardFormatError(f"{path}: offset {min(len(mm), need)}: size {len(mm)} != expected {need}")
    off, arrs = BND_HEADER_SIZE, []
    for size, dt in zip(sizes, ("<i8", "<i4", "<i4", "<u2", "u1")):
        arrs.append(np.frombuffer(mm, dtype=dt, count=size // np.dtype(dt).itemsize, offset=off))
        off += size
    _check_bnd(path, seq_len, *arrs)
    return Boundaries(seq_len, *arrs[:2], arrs[2], arrs[3], arrs[4])


def _check_bnd(path: str, seq_len: int, seg_ptr: np.ndarray, seg_start: np.ndarray, row_valid: np.ndarray,
               *_: np.ndarray) -> None:
    """Values a damaged .bnd could hold that would index outside a row (the loader uses them as
    indices): a ShardFormatError naming the array's first bad offset, never an IndexError later."""
    o_seg = BND_HEADER_SIZE + seg_ptr.nbytes
    o_valid = o_seg + seg_start.nbytes
    for bad, where in ((np.flatnonzero(np.diff(seg_ptr) < 0), BND_HEADER_SIZE + 8),
                       (np.flatnonzero((seg_start < 0) | (seg_start >= max(seq_len, 1))), o_seg),
                       (np.flatnonzero((row_valid < 0) | (row_valid > seq_len)), o_valid)):
        if len(bad):
            raise ShardFormatError(f"{path}: offset {where + int(bad[0]) * (8 if where == BND_HEADER_SIZE + 8 else 4)}: "
                                   "value out of range for the row layout")
    if len(seg_ptr) and (seg_ptr[0] != 0 or seg_ptr[-1] != len(seg_start)):
        raise ShardFormatError(f"{path}: offset {BND_HEADER_SIZE}: segment pointers do not span the segments")


# ---------------------------------------------------------------------------------------
# writer

BLOCK_BYTES = 1 << 20  # .bin files also get an xxh64 per MiB, so verify can name the bad offset


class _BlockHasher:
    def __init__(self) -> None:
        self._h = xxhash.xxh64()
        self._fill = 0
        self._out: list[str] = []

    def update(self, b: bytes) -> None:
        mv = memoryview(b)
        while len(mv):
            take = min(len(mv), BLOCK_BYTES - self._fill)
            self._h.update(mv[:take])
            self._fill += take
            mv = mv[take:]
            if self._fill == BLOCK_BYTES:
                self._out.append(self._h.hexdigest())
                self._h, self._fill = xxhash.xxh64(), 0

    def digests(self) -> list[str]:
        return self._out + ([self._h.hexdigest()] if self._fill else [])


def block_digests(path: str) -> list[str]:
    """xxh64 of each BLOCK_BYTES block of a file (the manifest's `bin_block_xxh64`)."""
    out = []
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(BLOCK_BYTES), b""):
            out.append(xxhash.xxh64_hexdigest(chunk))
    return out


class ShardWriter:
    """Writes rows into consecutive shards `DIR/PREFIX-00000.{bin,idx,bnd}`, rolling over at
    `rows_per_shard`. Returns, per finished shard, its manifest entry (counts and checksums)."""

    def __init__(self, directory: str, prefix: str, seq_len: int, dtype: np.dtype, rows_per_shard: int,
                 source_index: int):
        self.dir, self.prefix, self.seq_len = directory, prefix, seq_len
        self.dtype, self.rows_per_shard, self.source_index = np.dtype(dtype), rows_per_shard, source_index
        os.makedirs(directory, exist_ok=True)
        self.finished: list[dict[str, Any]] = []
        self._k = 0
        self._open()

    def _open(self) -> None:
        self._name = f"{self.prefix}-{self._k:05d}"
        self._bin_tmp = os.path.join(self.dir, self._name + ".bin.tmp")
        self._f = open(self._bin_tmp, "wb")
        self._sha = hashlib.sha256()
        self._blocks = _BlockHasher()
        self._n = 0
        self._valid: list[np.ndarray] = []
        self._flags: list[np.ndarray] = []
        self._seg_len: list[np.ndarray] = []
        self._seg: list[np.ndarray] = []
        self._tokens = 0
        self._docs_started = 0

    def write(self, rows: np.ndarray, row_valid: np.ndarray, row_flags: np.ndarray, seg_ptr: np.ndarray,
              seg_start: np.ndarray) -> None:
        """Append packed rows (see kernels.pack.PackedRows); splits across shard boundaries."""
        i = 0
        n = rows.shape[0]
        while i < n:
            take = min(n - i, self.rows_per_shard - self._n)
            blk = np.ascontiguousarray(rows[i: i + take], dtype=self.dtype.newbyteorder("<"))
            b = blk.tobytes()
            with writing(self._bin_tmp):
                self._f.write(b)
            self._sha.update(b)
            self._blocks.update(b)
            self._valid.append(row_valid[i: i + take])
            self._flags.append(row_flags[i: i + take])
            a, z = seg_ptr[i], seg_ptr[i + take]
            self._seg_len.append(np.diff(seg_ptr[i: i + take + 1]))
            self._seg.append(seg_start[a:z])
            self._tokens += int(row_valid[i: i + take].sum())
            self._n += take
            i += take
            if self._n == self.rows_per_shard:
                self._close()
                self._k += 1
                self._open()

    def _close(self) -> dict[str, Any] | None:
        with writing(self._bin_tmp):
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        if self._n == 0:
            os.remove(self._bin_tmp)
            return None
        base = os.path.join(self.dir, self._name)
        valid = np.concatenate(self._valid)
        flags = np.concatenate(self._flags)
        seg_ptr = np.concatenate([[0], np.cumsum(np.concatenate(self._seg_len))]).astype(np.int64)
        seg = np.concatenate(self._seg) if self._seg else np.zeros(0, np.int32)
        with writing(base + ".idx.tmp"):
            write_idx(base + ".idx.tmp", self._n, self.seq_len, self.dtype)
        with writing(base + ".bnd.tmp"):
            write_bnd(base + ".bnd.tmp", self.seq_len, valid, flags,
                      np.full(self._n, self.source_index, np.uint16), seg_ptr, seg)
        for ext in (".idx", ".bnd", ".bin"):  # .bin last: its presence implies the others
            fsync_rename(base + ext + ".tmp", base + ext)
        entry = {"name": self._name, "rows": self._n, "tokens": self._tokens,
                 "pad_tokens": self._n * self.seq_len - self._tokens,
                 "segments": int(len(seg)), "doc_starts": int(self._n - (flags & FLAG_CONTINUES).astype(bool).sum()),
                 "sha256": {"bin": self._sha.hexdigest(), "idx": sha256_file(base + ".idx"),
                            "bnd": sha256_file(base + ".bnd")},
                 "bin_block_xxh64": self._blocks.digests()}
        self.finished.append(entry)
        return entry

    def close(self) -> list[dict[str, Any]]:
        """Finish the open shard; return the manifest entries of all shards written."""
        self._close()
        return self.finished


# ---------------------------------------------------------------------------------------
# reader


class Shard:
    """One shard, memory-mapped: `tokens` is an (n_rows, seq_len) read-only view of the .bin."""

    def __init__(self, base: str, seq_len: int, dtype: np.dtype | str = np.uint16):
        self.base, self.seq_len, self.dtype = base, seq_len, np.dtype(dtype)
        if self.dtype not in TOKEN_DTYPES:
            raise ShardFormatError(f"{base}.bin: dtype {self.dtype} is not a token dtype (uint16 or int32)")
        size = os.path.getsize(base + ".bin")
        row_bytes = seq_len * self.dtype.itemsize
        if size % row_bytes:
            raise ShardFormatError(f"{base}.bin: offset {size - size % row_bytes}: size {size} is not a whole "
                                   f"number of rows of {row_bytes} bytes")
        self.n_rows = size // row_bytes

    @cached_property
    def tokens(self) -> np.ndarray:
        if self.n_rows == 0:
            return np.zeros((0, self.seq_len), self.dtype)
        return np.memmap(self.base + ".bin", dtype=self.dtype, mode="r", shape=(self.n_rows, self.seq_len))

    @cached_property
    def bounds(self) -> Boundaries:
        return read_bnd(self.base + ".bnd")

    def __len__(self) -> int:
        return self.n_rows
