"""Issue 23 (CPU part): each rank of a data-parallel run reads a disjoint, deterministic slice
of every global batch; the ranks together read exactly what one rank with the whole global
micro-batch reads, in the same order, no row twice and none missing within an epoch."""

import numpy as np

from shards.dataset import ShardDataset
from train.data import Loader, RowSource


def test_ranks_partition_the_single_rank_order(small_build):
    src = RowSource(ShardDataset(str(small_build[0])), "train")
    mb, world, seed = 2, 2, 11
    single = Loader(src, mb * world, seed)
    ranks = [Loader(src, mb, seed, rank=r, world=world) for r in range(world)]
    assert single.per_epoch == ranks[0].per_epoch
    seen = []
    for step in range(single.per_epoch + 2):  # into the second epoch
        whole = single.next().input_ids
        parts = [ld.next().input_ids for ld in ranks]
        assert np.array_equal(np.concatenate([p.numpy() for p in parts]), whole.numpy()), step
        if step < single.per_epoch:
            seen += single._rows_for(step).tolist()
    # within the first epoch no row is read twice and every row but the ragged tail is read
    assert len(seen) == len(set(seen)) == single.per_epoch * mb * world
    assert len(seen) > src.n_rows - mb * world
    # the second epoch is a different, seeded permutation
    assert not np.array_equal(single._rows_for(0), single._rows_for(single.per_epoch))


def test_rank_cursor_resumes_exactly(small_build):
    src = RowSource(ShardDataset(str(small_build[0])), "train")
    a = Loader(src, 2, 5, rank=1, world=2)
    for _ in range(3):
        a.next()
    b = Loader(src, 2, 5, rank=1, world=2)
    b.restore(a.state())
    assert np.array_equal(a.next().input_ids.numpy(), b.next().input_ids.numpy())
