"""Numba kernels for the Gopher repetition statistics.

Words arrive as 64-bit hashes plus their lengths (one cheap Python pass); n-grams are
identified by the tuple of their words' hashes. This replaces Python string joins and
Counters per n-gram — the dominant cost of the Gopher rules on long (especially per-character
CJK) documents.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_B = np.uint64(0x100000001B3)  # odd multiplier of the rolling polynomial hash


@nb.njit(cache=True)
def _window_hashes(h, n):
    """Hash of every window of n consecutive word hashes, rolling: O(len) whatever n is
    (a polynomial in _B mod 2^64, then a splitmix64 finaliser so low bits index a table)."""
    m = h.shape[0] - n + 1
    out = np.empty(max(m, 0), np.uint64)
    if m <= 0:
        return out
    bn = np.uint64(1)
    for _ in range(n):
        bn *= _B
    acc = np.uint64(0)
    for k in range(n):
        acc = acc * _B + h[k]
    for i in range(m):
        if i > 0:
            acc = acc * _B + h[i + n - 1] - h[i - 1] * bn
        z = acc + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out[i] = z ^ (z >> np.uint64(31))
    return out


@nb.njit(cache=True)
def _new_table(m):
    """An open-addressing hash table for m keys at most: (mask, keys, used), load <= 1/2."""
    bits = 4
    while (1 << bits) < 2 * m:
        bits += 1
    return np.uint64((1 << bits) - 1), np.empty(1 << bits, np.uint64), np.zeros(1 << bits, np.uint8)


@nb.njit(cache=True, inline="always")
def _slot(key, mask, keys, used):
    """The slot holding `key`, or the empty slot where it goes (linear probing)."""
    j = key & mask
    while used[j] and keys[j] != key:
        j = (j + np.uint64(1)) & mask
    return j


@nb.njit(cache=True)
def top_ngram_chars(h, lens, n, sep_len):
    """Characters covered by the most frequent n-gram: len(gram) * count, where len counts
    `sep_len` characters between words; ties go to the n-gram that occurs first (as
    collections.Counter.most_common does). One pass with an open-addressing count table."""
    g = _window_hashes(h, n)
    m = g.shape[0]
    if m <= 0:
        return 0
    mask, keys, used = _new_table(m)
    count = np.zeros(keys.shape[0], np.int64)
    first = np.zeros(keys.shape[0], np.int64)
    for i in range(m):
        j = _slot(g[i], mask, keys, used)
        if not used[j]:
            used[j], keys[j], first[j] = 1, g[i], i
        count[j] += 1
    best_count, best_first = 0, m
    for j in range(keys.shape[0]):
        if used[j] and (count[j] > best_count or (count[j] == best_count and first[j] < best_first)):
            best_count, best_first = count[j], first[j]
    glen = 0
    for k in range(best_first, best_first + n):
        glen += lens[k]
    glen += (n - 1) * sep_len
    return glen * best_count


@nb.njit(cache=True)
def dup_ngram_chars(h, lens, n):
    """Characters in n-grams that repeat an earlier n-gram, scanning left to right and skipping
    past each repeat (datatrove's find_all_duplicate); n-gram length = sum of its words' lengths."""
    g = _window_hashes(h, n)
    m = g.shape[0]
    if m <= 0:
        return 0
    mask, keys, used = _new_table(m)
    rep = 0
    i = 0
    while i < m:
        j = _slot(g[i], mask, keys, used)
        if used[j]:  # seen before: the whole n-gram is repeated text
            for k in range(i, i + n):
                rep += lens[k]
            i += n
        else:
            used[j], keys[j] = 1, g[i]
            i += 1
    return rep


def word_arrays(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, lengths) of words: one pass of Python's own string hash (equality is all we need)."""
    h = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    ln = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    return h, ln
