"""Numba kernels for the Gopher repetition statistics.

Words arrive as 64-bit hashes plus their lengths (one cheap Python pass); n-grams are
identified by the tuple of their words' hashes. This replaces Python string joins and
Counters per n-gram — the dominant cost of the Gopher rules on long (especially per-character
CJK) documents.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, inline="always")
def _gram_hash(h, i, n):
    g = np.uint64(0xCBF29CE484222325)
    for k in range(i, i + n):
        g = (g ^ h[k]) * np.uint64(0x100000001B3)
        g ^= g >> np.uint64(29)
    return g


@nb.njit(cache=True)
def top_ngram_chars(h, lens, n, sep_len):
    """Characters covered by the most frequent n-gram: len(gram) * count, where len counts
    `sep_len` characters between words; ties go to the n-gram that occurs first (as
    collections.Counter.most_common does)."""
    m = h.shape[0] - n + 1
    if m <= 0:
        return 0
    g = np.empty(m, np.uint64)
    for i in range(m):
        g[i] = _gram_hash(h, i, n)
    order = np.argsort(g, kind="mergesort")  # stable: within a run, positions ascend
    best_count, best_first, best_pos = 0, m, 0
    i = 0
    while i < m:
        j = i + 1
        while j < m and g[order[j]] == g[order[i]]:
            j += 1
        c = j - i
        first = order[i]
        if c > best_count or (c == best_count and first < best_first):
            best_count, best_first, best_pos = c, first, first
        i = j
    glen = 0
    for k in range(best_pos, best_pos + n):
        glen += lens[k]
    glen += (n - 1) * sep_len
    return glen * best_count


@nb.njit(cache=True)
def dup_ngram_chars(h, lens, n):
    """Characters in n-grams that repeat an earlier n-gram, scanning left to right and skipping
    past each repeat (datatrove's find_all_duplicate); n-gram length = sum of its words' lengths."""
    m = h.shape[0] - n + 1
    seen = set()
    seen.add(np.uint64(0))
    seen.discard(np.uint64(0))
    rep = 0
    i = 0
    while i < m:
        g = _gram_hash(h, i, n)
        if g in seen:
            for k in range(i, i + n):
                rep += lens[k]
            i += n
        else:
            seen.add(g)
            i += 1
    return rep


def word_arrays(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, lengths) of words: one pass of Python's own string hash (equality is all we need)."""
    h = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    ln = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    return h, ln
