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
            for k in range(n):
                out[r, p + k] = tokens[i + k]
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
        self.tokens_in = 0  # document tokens fed (without BOS/EOS)
        self.pad_tokens = 0
        self.dropped_tail_tokens = 0

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
