"""One held-out evaluation loop, shared by `train run` (the evaluations during training) and
`train eval` / `train.export.perplexity` (an exported model).

Contract: for every val source of a shard directory, the first `min(max_rows, rows)` rows are
scored, every one of them (the last, shorter batch included), in order; the loss of a source
is the mean next-token cross-entropy over the real (non-padding) label positions of those
rows. Each batch's mean loss is weighted by its number of label positions, so the result does
not depend on the batch size. Nothing here knows DeepSpeed or transformers: the caller passes
`forward(batch) -> mean loss` (a DeepSpeed engine, or a plain Hugging Face model).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from shards.cliutil import UserError
from shards.dataset import ShardDataset

from .data import Batch, Loader, RowSource


def check_vocab(b: Batch, vocab: int | None, where: str) -> None:
    """Refuse a batch with an id the embedding lacks before the lookup: on a GPU that lookup is a
    device-side assert (the process is lost), on the CPU an IndexError deep inside torch."""
    if vocab is not None and b.max_id >= vocab:
        raise UserError(where, f"token id {b.max_id} in the shard rows is outside the model's vocabulary of "
                               f"{vocab:,} ids: the shards were built with another tokenizer or are damaged "
                               "(`corpus verify` checks every id)")


@torch.no_grad()
def evaluate_sources(forward: Callable[[Batch], torch.Tensor], ds: ShardDataset, max_rows: int, batch: int,
                     device: torch.device | str = "cpu", **loader_kw: Any) -> dict[str, dict[str, float]]:
    """{source: {"loss", "ppl", "tokens", "rows"}} over the first `max_rows` val rows of each source."""
    res: dict[str, dict[str, float]] = {}
    for src in ds.sources:
        rs = RowSource(ds, "val", [src])
        n = min(max_rows, rs.n_rows)
        if n == 0:
            continue
        loaders: dict[int, Loader] = {}  # the full batch size, and the remainder's (its own buffer)
        tot, ntok = 0.0, 0
        for a in range(0, n, batch):
            b = min(batch, n - a)
            if b not in loaders:
                loaders[b] = Loader(rs, b, 0, device=device, shuffle=False, **loader_kw)
            bt = loaders[b].load(np.arange(a, a + b))
            k = int((bt.labels[:, 1:] != -100).sum())  # the positions the model's mean loss is over
            if k:
                tot += float(forward(bt)) * k
                ntok += k
        if ntok:
            res[src] = {"loss": tot / ntok, "ppl": math.exp(min(tot / ntok, 50)), "tokens": ntok, "rows": n}
    return res
