"""Zero-copy batches from the shard memmaps.

Rows stay in the page cache of the memory-mapped `.bin` files; a batch is gathered with one
`np.take(..., out=)` straight into a pinned buffer of the shards' own dtype (uint16, or int32
for large vocabularies: `shards.format.token_dtype`; no intermediate copy, no per-row Python
objects, no narrowing), sent to the device as stored, and widened to int64 there. The order is a
seeded permutation per epoch, each rank takes a disjoint slice of every global batch, and
the position in the stream is one integer (`cursor`), so a resume continues exactly where it
stopped without replaying batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shards.dataset import ShardDataset
from shards.format import Shard


@dataclass
class Batch:
    input_ids: torch.Tensor  # int64 (B, L) on device
    labels: torch.Tensor  # int64, -100 where padding
    position_ids: torch.Tensor | None
    tokens: int  # real (non-pad) tokens
    # doc masking: (B, 1, L, L) bool block-diagonal causal, or the same as a FlexAttention BlockMask
    attention_mask: Any = None
    # the largest id of the rows, taken on the host before the copy: an id the model's embedding
    # lacks is then a clear error (train/trainer.py), not a CUDA device-side assert
    max_id: int = -1


class RowSource:
    """All rows of a split (optionally some sources only) as one indexable stream."""

    def __init__(self, ds: ShardDataset, split: str, sources: list[str] | None = None):
        self.shards: list[Shard] = []
        for src in sources or ds.sources:
            self.shards += [s for s in ds.shards(split, src) if len(s)]
        self.starts = np.cumsum([0] + [len(s) for s in self.shards]).astype(np.int64)
        self.n_rows = int(self.starts[-1])
        self.seq_len, self.dtype = ds.seq_len, ds.dtype

    def gather(self, rows: np.ndarray, out: np.ndarray, valid: np.ndarray) -> None:
        """Copy global `rows` into `out` (B, L) and their valid lengths into `valid`."""
        k = np.searchsorted(self.starts, rows, side="right") - 1
        for sk in np.unique(k):
            sel = np.flatnonzero(k == sk)
            local = rows[sel] - self.starts[sk]
            sh = self.shards[sk]
            if len(sel) == len(rows):
                np.take(sh.tokens, local, axis=0, out=out)  # one copy: page cache -> (pinned) batch buffer
            else:
                out[sel] = np.take(sh.tokens, local, axis=0)
            valid[sel] = sh.bounds.row_valid[local]

    def _segments(self, row: int) -> np.ndarray:
        k = int(np.searchsorted(self.starts, row, side="right") - 1)
        return self.shards[k].bounds.segments(row - int(self.starts[k]))

    def positions(self, row: int) -> np.ndarray:
        """Position ids that restart at 0 at every document start inside the row."""
        pos = np.arange(self.seq_len, dtype=np.int64)
        for s in self._segments(row)[1:]:
            pos[s:] -= pos[s]
        return pos

    def segment_ids(self, row: int) -> np.ndarray:
        """0, 1, 2 ... per document segment of the row (padding belongs to the last segment)."""
        seg = np.zeros(self.seq_len, np.int32)
        seg[self._segments(row)[1:]] = 1
        return np.cumsum(seg, dtype=np.int32)


class Loader:
    """Deterministic, resumable, rank-disjoint batches over a `RowSource`."""

    def __init__(self, src: RowSource, micro_batch: int, seed: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu", shuffle: bool = True, reset_positions: bool = False,
                 doc_mask: bool = False, flex: bool = False):
        if src.n_rows < micro_batch * world:
            raise ValueError(f"only {src.n_rows} rows for a global micro-batch of {micro_batch * world}")
        self.src, self.mb, self.seed, self.rank, self.world = src, micro_batch, seed, rank, world
        # a document mask implies document positions: each document then sees exactly what it
        # would see alone in a row (LLaMA-3's intra-document attention)
        self.device, self.shuffle = torch.device(device), shuffle
        self.reset_positions, self.doc_mask = reset_positions or doc_mask or flex, doc_mask
        self.flex = flex  # the same document mask as a FlexAttention BlockMask (train/flex.py)
        self.per_epoch = src.n_rows // (micro_batch * world)  # micro-steps per epoch (the ragged end is skipped)
        self.cursor = 0  # global micro-steps consumed
        self._perm_epoch, self._perm = -1, np.zeros(0, np.int64)
        pin = self.device.type == "cuda"
        # the stored dtype, whatever it is: a narrower buffer would truncate ids (70000 -> 4464)
        stored = torch.from_numpy(np.zeros(0, src.dtype)).dtype
        self._buf = torch.empty((micro_batch, src.seq_len), dtype=stored, pin_memory=pin)
        self._valid = np.zeros(micro_batch, np.int32)
        self._starts = np.zeros((micro_batch, src.seq_len), np.bool_)

    def _rows_for(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._perm_epoch:
            self._perm = (np.random.default_rng([self.seed, epoch]).permutation(self.src.n_rows)
                          if self.shuffle else np.arange(self.src.n_rows))
            self._perm_epoch = epoch
        a = (i * self.world + self.rank) * self.mb
        return self._perm[a: a + self.mb]

    def next(self) -> Batch:
        rows = self._rows_for(self.cursor)
        self.cursor += 1
        return self.load(rows)

    def load(self, rows: np.ndarray) -> Batch:
        out = self._buf.numpy()
        self.src.gather(rows, out, self._valid)
        ids = self._buf.to(self.device, non_blocking=True).to(torch.int64)
        L = self.src.seq_len
        valid = torch.from_numpy(self._valid.copy()).to(self.device)
        labels = ids.masked_fill(torch.arange(L, device=self.device)[None, :] >= valid[:, None], -100)
        pos = mask = None
        if self.reset_positions:
            # one bool per token marks document starts (a slice assignment per row on the host);
            # positions and segment ids follow on the device with a cummax and a cumsum
            starts = self._starts
            starts[:] = False
            for i, r in enumerate(rows):
                starts[i, self.src._segments(int(r))[1:]] = True
            st = torch.from_numpy(starts).to(self.device)  # B*L bytes; the buffer is reused next batch
            ar = torch.arange(L, device=self.device)
            pos = ar - torch.where(st, ar, 0).cummax(dim=1).values
            if self.flex:
                from .flex import doc_block_mask

                mask = doc_block_mask(st)
            elif self.doc_mask:
                # block-diagonal causal mask: (B, 1, L, L) bools, L*L bytes per row (4 MiB at 2048);
                # SDPA then runs its masked (memory-efficient) kernel
                seg = st.cumsum(dim=1)
                causal = torch.ones(L, L, dtype=torch.bool, device=self.device).tril_()
                mask = ((seg[:, :, None] == seg[:, None, :]) & causal)[:, None]
        return Batch(ids, labels, pos, int(self._valid.sum()), mask, int(out.max()))

    def state(self) -> dict:
        return {"cursor": self.cursor, "seed": self.seed, "n_rows": self.src.n_rows, "world": self.world,
                "micro_batch": self.mb}

    def restore(self, st: dict) -> None:
        if st["n_rows"] != self.src.n_rows or st["micro_batch"] * st["world"] != self.mb * self.world:
            raise ValueError(f"cannot resume the data cursor: saved {st}, now rows={self.src.n_rows} "
                             f"global micro-batch={self.mb * self.world}")
        self.cursor = int(st["cursor"])
