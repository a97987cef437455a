"""Property tests of the Numba concat packer: every token exactly once, in order, with
consistent boundaries and masks, identical output for identical input."""

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernels.pack import ConcatPacker
from shards.format import FLAG_CONTINUES

BOS, EOS, PAD = 1, 2, 0


def _feed(p, docs, batches):
    """Feed documents to a packer in batches cut at `batches`, then finish; return (packer, outputs)."""
    outs = []
    cuts = sorted(set([0, len(docs)] + [c for c in batches if 0 < c < len(docs)]))
    for a, b in zip(cuts, cuts[1:]):
        part = docs[a:b]
        offs = np.concatenate([[0], np.cumsum([len(d) for d in part])]).astype(np.int64)
        flat = np.concatenate(part).astype(np.int32) if part else np.zeros(0, np.int32)
        outs.append(p.add(flat, offs))
    outs.append(p.finish())
    return p, outs


def _pack(docs, seq_len, batches, bos=BOS, eos=EOS, tail="pad"):
    return _feed(ConcatPacker(seq_len, bos, eos, PAD, np.uint16, tail), docs, batches)


docs_strategy = st.lists(st.lists(st.integers(3, 60000), min_size=0, max_size=40).map(np.array), min_size=0,
                         max_size=30)


@settings(max_examples=150, deadline=None)
@given(docs=docs_strategy, seq_len=st.integers(2, 64), batches=st.lists(st.integers(0, 30), max_size=4),
       bos=st.booleans(), eos=st.booleans())
def test_concat_every_token_once_in_order(docs, seq_len, batches, bos, eos):
    b, e = (BOS if bos else -1), (EOS if eos else -1)
    p, outs = _pack(docs, seq_len, batches, b, e)
    expected = []
    for d in docs:
        expected += ([BOS] if bos else []) + list(d) + ([EOS] if eos else [])
    got, seg_docs = [], []
    for o in outs:
        assert o.rows.shape[1] == seq_len
        for r in range(len(o)):
            valid = int(o.row_valid[r])
            row = list(o.rows[r, :valid])
            assert all(t == PAD for t in o.rows[r, valid:])
            segs = list(o.seg_start[o.seg_ptr[r]: o.seg_ptr[r + 1]])
            assert segs[0] == 0 and segs == sorted(segs) and len(set(segs)) == len(segs)
            for i, s in enumerate(segs):
                piece = row[s: (segs[i + 1] if i + 1 < len(segs) else valid)]
                if i == 0 and o.row_flags[r] & FLAG_CONTINUES:
                    seg_docs[-1] += piece
                else:
                    seg_docs.append(piece)
            got += row
    assert got == expected
    # boundaries reproduce the documents exactly
    want_docs = [([BOS] if bos else []) + list(d) + ([EOS] if eos else []) for d in docs]
    assert [d for d in seg_docs if d] == [d for d in want_docs if d]
    # every row but the last is full
    valids = np.concatenate([o.row_valid for o in outs]) if outs else np.zeros(0)
    assert (valids[:-1] == seq_len).all()
    assert p.pad_tokens == (seq_len - valids[-1] if len(valids) and valids[-1] < seq_len else 0)


@settings(max_examples=50, deadline=None)
@given(docs=docs_strategy, seq_len=st.integers(2, 64))
def test_concat_drop_tail_counts_lost_tokens(docs, seq_len):
    p, outs = _pack(docs, seq_len, [], tail="drop")
    total = sum(len(d) + 2 for d in docs)
    written = sum(int(o.row_valid.sum()) for o in outs)
    assert written + p.dropped_tail_tokens == total
    assert written % seq_len == 0


@settings(max_examples=30, deadline=None)
@given(docs=docs_strategy, seq_len=st.integers(2, 64), batches=st.lists(st.integers(0, 30), max_size=4))
def test_concat_is_deterministic_and_batching_invariant(docs, seq_len, batches):
    _, a = _pack(docs, seq_len, batches)
    _, b = _pack(docs, seq_len, [])
    ra = np.concatenate([o.rows for o in a])
    rb = np.concatenate([o.rows for o in b])
    assert np.array_equal(ra, rb)
    assert np.array_equal(np.concatenate([o.row_flags for o in a]), np.concatenate([o.row_flags for o in b]))


# ---------------------------------------------------------------------------------------
# pad and best-fit

from kernels.pack import BestFitPacker, PadPacker, best_fit_decreasing  # noqa: E402


def _run(cls, docs, seq_len, batches, window=1 << 22):
    return _feed(cls(seq_len, BOS, EOS, PAD, np.uint16, window_tokens=window), docs, batches)


def _segments(outs, seq_len):
    segs = []
    for o in outs:
        for r in range(len(o)):
            valid = int(o.row_valid[r])
            assert (o.rows[r, valid:] == PAD).all()
            starts = list(o.seg_start[o.seg_ptr[r]: o.seg_ptr[r + 1]])
            assert starts[0] == 0 and starts == sorted(starts)
            bounds = starts + [valid]
            for i in range(len(starts)):
                segs.append((list(o.rows[r, bounds[i]: bounds[i + 1]]), i == 0 and bool(o.row_flags[r] & 1)))
    return segs


@settings(max_examples=120, deadline=None)
@given(docs=docs_strategy, seq_len=st.integers(2, 64), batches=st.lists(st.integers(0, 30), max_size=3),
       mode=st.sampled_from(["pad", "best_fit"]), window=st.sampled_from([1, 50, 1 << 22]))
def test_whole_doc_modes_every_token_once_in_order(docs, seq_len, batches, mode, window):
    cls = PadPacker if mode == "pad" else BestFitPacker
    p, outs = _run(cls, docs, seq_len, batches, window)
    segs = _segments(outs, seq_len)
    # every segment is a chunk of one document: the chunks of each document, in order, rebuild it
    want = [[BOS] + list(d) + [EOS] for d in docs]
    chunks = sorted((tuple(s) for s, _ in segs))
    expect = sorted(tuple(w[i: i + seq_len]) for w in want for i in range(0, len(w), seq_len))
    assert chunks == expect
    total = sum(len(w) for w in want)
    rows = sum(len(o) for o in outs)
    assert rows * seq_len == total + p.pad_tokens
    if mode == "pad":
        assert rows == sum(-(-len(w) // seq_len) for w in want)
    assert p.docs_split == sum(len(w) > seq_len for w in want)


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(1, 100), max_size=200), cap=st.integers(100, 300))
def test_best_fit_decreasing_is_valid_and_near_optimal(lengths, cap):
    lens = np.array(lengths, np.int64)
    row_of, off, n = best_fit_decreasing(lens, cap)
    used = np.zeros(max(n, 1), np.int64)
    for i, (r, o) in enumerate(zip(row_of, off)):
        assert 0 <= o and o + lens[i] <= cap
        used[r] += lens[i]
    assert (used <= cap).all()
    # Any-Fit property: no two rows could have been one (the later row's first document would
    # have fitted into the earlier row), so the two emptiest rows hold more than one row's worth
    if n >= 2:
        a, b = np.sort(used[:n])[:2]
        assert a + b > cap


def _opt_rows(lens: list[int], cap: int) -> int:
    """Exact bin-packing optimum by backtracking (small instances only)."""
    lens = sorted(lens, reverse=True)
    k = max(1, -(-sum(lens) // cap))
    while True:
        bins = [0] * k

        def place(i: int) -> bool:
            if i == len(lens):
                return True
            tried = set()
            for j in range(k):
                if bins[j] + lens[i] <= cap and bins[j] not in tried:
                    tried.add(bins[j])
                    bins[j] += lens[i]
                    if place(i + 1):
                        return True
                    bins[j] -= lens[i]
            return False

        if place(0):
            return k
        k += 1


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 100), min_size=1, max_size=9), cap=st.integers(100, 160))
@example(lengths=[45, 56, 56, 56, 56], cap=100)  # OPT is 5, not ceil(269/100) = 3
def test_best_fit_decreasing_within_the_ffd_bound_of_the_optimum(lengths, cap):
    """BFD uses at most 11/9 OPT + 6/9 rows (Johnson 1973; Dósa 2007), OPT computed exactly."""
    _, _, n = best_fit_decreasing(np.array(lengths, np.int64), cap)
    assert n <= 11 / 9 * _opt_rows(lengths, cap) + 6 / 9


def test_best_fit_pads_less_than_pad_mode_on_real_lengths(shared):
    import json

    import sentencepiece as spm

    from conftest import LLAMA_TOKENIZER

    sp = spm.SentencePieceProcessor(model_file=str(LLAMA_TOKENIZER))
    texts = [json.loads(l)["text"] for l in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    docs = [np.array(x) for x in sp.encode(texts)]
    pad, _ = _run(PadPacker, docs, 2048, [])
    bf, outs = _run(BestFitPacker, docs, 2048, [])
    tot = sum(len(d) + 2 for d in docs)
    assert bf.pad_tokens / (tot + bf.pad_tokens) < 0.05 < pad.pad_tokens / (tot + pad.pad_tokens)
