"""Packing token streams into fixed-length rows (Numba).

`ConcatPacker` is the streaming form of concat-and-chunk: documents are joined as
`[BOS] doc [EOS]`, cut into rows of `seq_len`, and the remainder carries into the next call.
For each row it also records where document segments start (the row's cu_seqlens), whether
the first segment continues a document of the previous row, and how many tokens are real
(the rest is padding) — so the trainer can reset position ids and mask the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _concat_kernel(tokens, offsets, bos, eos, seq_len, out, fill, seg_row, seg_pos, seg_cont, nseg):
    """Append documents tokens[offsets[d]:offsets[d+1]] to `out`, whose row 0 holds `fill` tokens.

    Writes straight into `out` (cast to its dtype). Returns (row, fill, nseg) of the write head.
    """
    r = 0
    p = fill
    for d in range(offsets.shape[0] - 1):
        a = offsets[d]
        b = offsets[d + 1]
        if b == a and bos < 0 and eos < 0:
            continue  # an empty document with no special tokens occupies nothing
        if p == seq_len:
            r += 1
            p = 0
        seg_row[nseg] = r
        seg_pos[nseg] = p
        seg_cont[nseg] = 0
        nseg += 1
        if bos >= 0:
            out[r, p] = bos
            p += 1
        i = a
        while i < b:
            if p == seq_len:
                r += 1
                p = 0
                seg_row[nseg] = r
                seg_pos[nseg] = 0
                seg_cont[nseg] = 1
                nseg += 1
            n = min(b - i, seq_len - p)
            out[r, p: p + n] = tokens[i: i + n]  # one vectorised cast-and-copy per piece
            p += n
            i += n
        if eos >= 0:
            if p == seq_len:
                r += 1
                p = 0
                seg_row[nseg] = r
                seg_pos[nseg] = 0
                seg_cont[nseg] = 1
                nseg += 1
            out[r, p] = eos
            p += 1
    return r, p, nseg


@dataclass
class PackedRows:
    """Complete rows and their per-row metadata, ready for the shard writer."""

    rows: np.ndarray  # (n, seq_len) of the shard dtype
    row_valid: np.ndarray  # int32 (n,): tokens before padding
    row_flags: np.ndarray  # uint8 (n,): bit0 = first segment continues the previous row's document
    seg_ptr: np.ndarray  # int64 (n+1,): CSR pointer into seg_start
    seg_start: np.ndarray  # int32: start offset of each document segment within its row

    def __len__(self) -> int:
        return int(self.rows.shape[0])


class ConcatPacker:
    """Streaming concat-and-chunk packer. Feed batches with `add`, then call `finish` once."""

    def __init__(self, seq_len: int, bos: int, eos: int, pad: int, dtype: np.dtype, tail: str = "pad"):
        self.seq_len, self.bos, self.eos, self.pad = seq_len, bos, eos, pad
        self.dtype, self.tail = np.dtype(dtype), tail
        self._carry = np.zeros(seq_len, dtype=self.dtype)
        self._fill = 0
        self._carry_seg_pos = np.zeros(0, dtype=np.int32)
        self._carry_seg_cont = np.zeros(0, dtype=np.uint8)
        self._last_cont = False
        self.tokens_in = 0  # document tokens fed (without BOS/EOS)
        self.pad_tokens = 0
        self.dropped_tail_tokens = 0
        self.docs_split = 0  # documents whose tokens span more than one row

    def add(self, tokens: np.ndarray, offsets: np.ndarray) -> PackedRows:
        """Pack a batch (flat int32 tokens + int64 offsets of len n_docs+1); return the complete rows."""
        n_docs = offsets.shape[0] - 1
        extra = (self.bos >= 0) + (self.eos >= 0)
        total = int(offsets[-1] - offsets[0]) + extra * n_docs
        self.tokens_in += int(offsets[-1] - offsets[0])
        cap_rows = (self._fill + total) // self.seq_len + 1
        out = np.empty((cap_rows, self.seq_len), dtype=self.dtype)
        out[0, : self._fill] = self._carry[: self._fill]
        nmax = len(self._carry_seg_pos) + n_docs + cap_rows + 1
        seg_row = np.zeros(nmax, np.int64)
        seg_pos = np.zeros(nmax, np.int32)
        seg_cont = np.zeros(nmax, np.uint8)
        k0 = len(self._carry_seg_pos)
        seg_pos[:k0] = self._carry_seg_pos
        seg_cont[:k0] = self._carry_seg_cont
        r, p, ns = _concat_kernel(tokens, offsets.astype(np.int64), self.bos, self.eos, self.seq_len,
                                  out, self._fill, seg_row, seg_pos, seg_cont, k0)
        n_full = r + 1 if p == self.seq_len else r
        seg_row, seg_pos, seg_cont = seg_row[:ns], seg_pos[:ns], seg_cont[:ns]
        # a document is split when a continuation segment follows its start (counted once)
        c = seg_cont[k0:].astype(bool)
        self.docs_split += int((c[1:] & ~c[:-1]).sum()) + int(len(c) > 0 and c[0] and not self._last_cont)
        if len(c):
            self._last_cont = bool(c[-1])
        # carry the partial row (if any) and its segments
        in_full = seg_row < n_full
        if p < self.seq_len:
            self._carry[:p] = out[r, :p]
            self._fill = p
            self._carry_seg_pos = seg_pos[~in_full].copy()
            self._carry_seg_cont = seg_cont[~in_full].copy()
        else:
            self._fill = 0
            self._carry_seg_pos = np.zeros(0, np.int32)
            self._carry_seg_cont = np.zeros(0, np.uint8)
        return _rows(out[:n_full], np.full(n_full, self.seq_len, np.int32), seg_row[in_full],
                     seg_pos[in_full], seg_cont[in_full])

    def finish(self) -> PackedRows:
        """Flush the last partial row: padded (loss-masked by row_valid) or dropped and counted."""
        p = self._fill
        if p == 0 or self.tail == "drop":
            self.dropped_tail_tokens += p
            self._fill = 0
            return _rows(np.empty((0, self.seq_len), self.dtype), np.zeros(0, np.int32),
                         np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint8))
        row = np.full((1, self.seq_len), self.pad, dtype=self.dtype)
        row[0, :p] = self._carry[:p]
        self.pad_tokens += self.seq_len - p
        k = len(self._carry_seg_pos)
        out = _rows(row, np.array([p], np.int32), np.zeros(k, np.int64), self._carry_seg_pos,
                    self._carry_seg_cont)
        self._fill = 0
        return out


def _rows(rows: np.ndarray, valid: np.ndarray, seg_row: np.ndarray, seg_pos: np.ndarray,
          seg_cont: np.ndarray) -> PackedRows:
    n = rows.shape[0]
    ptr = np.searchsorted(seg_row, np.arange(n + 1), side="left").astype(np.int64)
    flags = np.zeros(n, np.uint8)
    first = ptr[:-1]
    has = ptr[1:] > first
    flags[has] = seg_cont[first[has]] & 1
    return PackedRows(rows, valid, flags, ptr, seg_pos.astype(np.int32))


# ---------------------------------------------------------------------------------------
# pad and best-fit: whole documents (split into seq_len chunks when longer) placed into rows


@nb.njit(cache=True, nogil=True)
def _with_specials(tokens, offsets, bos, eos, out, out_offsets):
    """Copy documents into `out` as [BOS] doc [EOS]; fill `out_offsets` (len n_docs+1)."""
    p = 0
    for d in range(offsets.shape[0] - 1):
        out_offsets[d] = p
        if bos >= 0:
            out[p] = bos
            p += 1
        for i in range(offsets[d], offsets[d + 1]):
            out[p] = tokens[i]
            p += 1
        if eos >= 0:
            out[p] = eos
            p += 1
    out_offsets[offsets.shape[0] - 1] = p


@nb.njit(cache=True, nogil=True)
def best_fit_decreasing(lengths, capacity):
    """Best-Fit-Decreasing bin packing (Ding et al. 2024): items longest first, each into the
    open row with the least remaining space that still fits it, else a new row.

    Rows are kept in buckets by remaining capacity (linked lists), so each item costs at most
    `capacity` bucket probes. Ties are broken by input order (stable sort) — deterministic.
    Returns (row of each item, offset of each item in its row, number of rows).
    """
    n = lengths.shape[0]
    order = np.argsort(-lengths, kind="mergesort")
    head = np.full(capacity + 1, -1, np.int64)
    nxt = np.full(max(n, 1), -1, np.int64)
    row_of = np.empty(n, np.int64)
    off = np.empty(n, np.int64)
    n_rows = 0
    for j in range(n):
        idx = order[j]
        ln = lengths[idx]
        c = ln
        while c <= capacity and head[c] == -1:
            c += 1
        if c > capacity:
            r = n_rows
            n_rows += 1
            rem = capacity
        else:
            r = head[c]
            head[c] = nxt[r]
            rem = c
        row_of[idx] = r
        off[idx] = capacity - rem
        rem -= ln
        nxt[r] = head[rem]
        head[rem] = r
    return row_of, off, n_rows


@nb.njit(cache=True, nogil=True)
def _fill_rows(flat, chunk_start, chunk_len, row_of, off, out):
    for k in range(chunk_start.shape[0]):
        r = row_of[k]
        o = off[k]
        s = chunk_start[k]
        for i in range(chunk_len[k]):
            out[r, o + i] = flat[s + i]


class _WholeDocPacker:
    """Shared machinery of the pad and best-fit modes: documents become `[BOS] doc [EOS]`,
    documents longer than `seq_len` are cut into `seq_len` chunks (never truncated), and
    `_assign` places chunks into rows."""

    def __init__(self, seq_len: int, bos: int, eos: int, pad: int, dtype: np.dtype, window_tokens: int = 1 << 22):
        self.seq_len, self.bos, self.eos, self.pad, self.dtype = seq_len, bos, eos, pad, np.dtype(dtype)
        self.window = window_tokens
        self._tok: list[np.ndarray] = []
        self._offs: list[np.ndarray] = []
        self._pending = 0
        self.tokens_in = self.pad_tokens = self.dropped_tail_tokens = self.docs_split = 0

    def add(self, tokens: np.ndarray, offsets: np.ndarray) -> PackedRows:
        self.tokens_in += int(offsets[-1] - offsets[0])
        self._tok.append(np.asarray(tokens))
        self._offs.append(np.asarray(offsets, np.int64) - offsets[0])
        self._pending += int(offsets[-1] - offsets[0])
        if self._pending < self.window:
            return _empty(self.seq_len, self.dtype)
        return self._flush()

    def finish(self) -> PackedRows:
        return self._flush()

    def _flush(self) -> PackedRows:
        if not self._tok:
            return _empty(self.seq_len, self.dtype)
        lens = np.concatenate([np.diff(o) for o in self._offs])
        tokens = np.concatenate(self._tok) if self._tok else np.zeros(0, np.int32)
        offsets = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        self._tok, self._offs, self._pending = [], [], 0
        extra = int(self.bos >= 0) + int(self.eos >= 0)
        flat = np.empty(len(tokens) + extra * len(lens), self.dtype)
        offs2 = np.empty(len(lens) + 1, np.int64)
        _with_specials(tokens, offsets, self.bos, self.eos, flat, offs2)
        L = self.seq_len
        dl = np.diff(offs2)
        nchunk = np.maximum(1, -(-dl // L))
        self.docs_split += int((nchunk > 1).sum())
        doc_of = np.repeat(np.arange(len(dl)), nchunk)
        k_in_doc = np.arange(len(doc_of)) - np.repeat(np.cumsum(nchunk) - nchunk, nchunk)
        chunk_start = offs2[doc_of] + k_in_doc * L
        chunk_len = np.minimum(L, offs2[doc_of + 1] - chunk_start)
        keep = chunk_len > 0
        chunk_start, chunk_len, k_in_doc = chunk_start[keep], chunk_len[keep], k_in_doc[keep]
        row_of, off, n_rows = self._assign(chunk_len)
        out = np.full((n_rows, L), self.pad, self.dtype)
        _fill_rows(flat, chunk_start, chunk_len, row_of, off, out)
        valid = np.zeros(n_rows, np.int64)
        np.maximum.at(valid, row_of, off + chunk_len)
        order = np.lexsort((off, row_of))
        seg_row, seg_pos = row_of[order], off[order]
        cont = ((k_in_doc[order] > 0) & (seg_pos == 0)).astype(np.uint8)
        self.pad_tokens += int(n_rows * L - valid.sum())
        return _rows(out, valid.astype(np.int32), seg_row, seg_pos.astype(np.int32), cont)


class PadPacker(_WholeDocPacker):
    """One document (chunk) per row, padded with the pad id; the loss mask is `row_valid`."""

    def _assign(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        n = len(lengths)
        return np.arange(n, dtype=np.int64), np.zeros(n, np.int64), n


class BestFitPacker(_WholeDocPacker):
    """Best-Fit-Decreasing packing of whole-document chunks (no document is cut except those
    longer than a row), over windows of ~`window_tokens` tokens."""

    def _assign(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        row_of, off, n = best_fit_decreasing(lengths.astype(np.int64), self.seq_len)
        return row_of, off, int(n)


def _empty(seq_len: int, dtype: np.dtype) -> PackedRows:
    return _rows(np.empty((0, seq_len), dtype), np.zeros(0, np.int32), np.zeros(0, np.int64),
                 np.zeros(0, np.int32), np.zeros(0, np.uint8))


def make_packer(mode: str, seq_len: int, bos: int, eos: int, pad: int, dtype: np.dtype, tail: str = "pad"):
    """The packer for a recipe's `packing.mode`."""
    if mode == "concat":
        return ConcatPacker(seq_len, bos, eos, pad, dtype, tail)
    if mode == "pad":
        return PadPacker(seq_len, bos, eos, pad, dtype)
    if mode == "best_fit":
        return BestFitPacker(seq_len, bos, eos, pad, dtype)
    raise ValueError(f"unknown packing mode {mode!r}")
