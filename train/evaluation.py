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
                     device: torch.device | str = "cpu", rank: int = 0, world: int = 1,
                     **loader_kw: Any) -> dict[str, dict[str, float]]:
    """{source: {"loss", "ppl", "tokens", "rows"}} over the first `max_rows` val rows of each source.

    With `world` > 1 the batches are dealt round-robin to the ranks (no row scored twice) and
    the sums are all-reduced, so every rank returns the same numbers as one rank alone would
    (up to float summation order). Every rank runs the same number of forwards - a rank with no
    batch left scores its first one again with weight 0 - because ZeRO-3 gathers parameters
    collectively inside the forward."""
    res: dict[str, dict[str, float]] = {}
    for src in ds.sources:
        rs = RowSource(ds, "val", [src])
        n = min(max_rows, rs.n_rows)
        if n == 0:
            continue
        loaders: dict[int, Loader] = {}  # the full batch size, and the remainder's (its own buffer)
        tot, ntok = 0.0, 0
        starts = list(range(0, n, batch))
        rounds = -(-len(starts) // world)
        for i in range(rounds):
            j = i * world + rank
            real = j < len(starts)
            a = starts[j] if real else starts[0]
            b = min(batch, n - a)
            if b not in loaders:
                loaders[b] = Loader(rs, b, 0, device=device, shuffle=False, **loader_kw)
            bt = loaders[b].load(np.arange(a, a + b))
            k = int((bt.labels[:, 1:] != -100).sum())  # the positions the model's mean loss is over
            if k:
                loss = float(forward(bt))
                if real:
                    tot += loss * k
                    ntok += k
        if world > 1:
            t = torch.tensor([tot, float(ntok)], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(t)
            tot, ntok = float(t[0]), int(t[1])
        if ntok:
            res[src] = {"loss": tot / ntok, "ppl": math.exp(min(tot / ntok, 50)), "tokens": ntok, "rows": n}
    return res
