"""MinHash signatures and LSH clustering (Numba).

Shingles come straight from the text's code points: for CJK text every character is a token,
elsewhere a token is a run of non-space characters (ASCII lower-cased); a shingle is `n`
consecutive tokens, hashed with 64-bit FNV-1a and truncated to 32 bits. The permutations are
datasketch's: `a, b` drawn from `np.random.RandomState(seed)` in (1, 2^61-1) and (0, 2^61-1),
`h = ((a * x + b) mod (2^61-1)) & 0xFFFFFFFF` with the same wrapping uint64 arithmetic, so a
signature equals `datasketch.MinHash(num_perm, seed, hashfunc=identity)` fed the same shingle
hashes (tests/test_dedup.py checks this bit for bit).
"""

from __future__ import annotations

import numba as nb
import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's (a, b) parameters for `num_perm` permutations."""
    gen = np.random.RandomState(seed)
    ab = np.array([(gen.randint(1, int(MERSENNE), dtype=np.uint64), gen.randint(0, int(MERSENNE), dtype=np.uint64))
                   for _ in range(num_perm)], dtype=np.uint64).T  # drawn in pairs, as datasketch does
    return np.ascontiguousarray(ab[0]), np.ascontiguousarray(ab[1])


@nb.njit(cache=True, inline="always")
def _is_cjk(c):
    return (0x4E00 <= c <= 0x9FFF) or (0x3400 <= c <= 0x4DBF) or (0x3040 <= c <= 0x30FF) or \
        (0xAC00 <= c <= 0xD7AF) or (0xF900 <= c <= 0xFAFF)


@nb.njit(cache=True, inline="always")
def _is_space(c):
    return c == 32 or c == 9 or c == 10 or c == 13 or c == 0x3000 or c == 0xA0 or c == 12 or c == 11


@nb.njit(cache=True, nogil=True)
def tokenize_cp(cps, starts, ends):
    """Token boundaries from code points; returns the number of tokens written."""
    n = 0
    i = 0
    L = cps.shape[0]
    while i < L:
        c = cps[i]
        if _is_space(c):
            i += 1
            continue
        if _is_cjk(c):
            starts[n] = i
            ends[n] = i + 1
            n += 1
            i += 1
            continue
        j = i
        while j < L and not _is_space(cps[j]) and not _is_cjk(cps[j]):
            j += 1
        starts[n] = i
        ends[n] = j
        n += 1
        i = j
    return n


@nb.njit(cache=True, nogil=True)
def shingle_hashes(cps, ngram):
    """32-bit hashes of every `ngram`-token shingle (one shingle for texts with fewer tokens)."""
    L = cps.shape[0]
    starts = np.empty(L, np.int64)
    ends = np.empty(L, np.int64)
    nt = tokenize_cp(cps, starts, ends)
    ns = max(1, nt - ngram + 1) if nt > 0 else 0
    out = np.empty(ns, np.uint64)
    for s in range(ns):
        h = FNV_OFFSET
        last = min(nt, s + ngram)
        for t in range(s, last):
            for k in range(starts[t], ends[t]):
                c = np.uint64(cps[k])
                if 65 <= c <= 90:
                    c += np.uint64(32)  # ASCII lower case
                h = (h ^ c) * FNV_PRIME
            h = (h ^ np.uint64(0x20)) * FNV_PRIME  # token separator
        out[s] = h & MAX_HASH
    return out


@nb.njit(cache=True, nogil=True)
def signature_from_hashes(hv, a, b, out):
    """MinHash signature (datasketch's arithmetic) of shingle hashes `hv` into `out` (uint32)."""
    P = a.shape[0]
    for p in range(P):
        out[p] = MAX_HASH
    for i in range(hv.shape[0]):
        x = hv[i]
        for p in range(P):
            v = a[p] * x + b[p]  # wraps mod 2^64, exactly like datasketch's numpy uint64
            # v mod (2^61 - 1) without a division: fold the high bits, subtract once
            v = (v & MERSENNE) + (v >> np.uint64(61))
            if v >= MERSENNE:
                v -= MERSENNE
            v &= MAX_HASH
            if v < out[p]:
                out[p] = v


@nb.njit(cache=True, nogil=True)
def _batch_signatures(cps, offsets, ngram, a, b, out):
    tmp = np.empty(a.shape[0], np.uint64)
    for d in range(offsets.shape[0] - 1):
        hv = shingle_hashes(cps[offsets[d]: offsets[d + 1]], ngram)
        signature_from_hashes(hv, a, b, tmp)
        for p in range(a.shape[0]):
            out[d, p] = np.uint32(tmp[p])


def signatures(texts: list[str], ngram: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint32 signatures (n_docs, num_perm) of a batch of texts, in one Numba pass."""
    enc = [np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t in texts]
    offsets = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(e) for e in enc], out=offsets[1:])
    cps = np.concatenate(enc) if enc else np.zeros(0, np.uint32)
    out = np.empty((len(texts), len(a)), np.uint32)
    _batch_signatures(cps, offsets, ngram, a, b, out)
    return out


@nb.njit(cache=True, nogil=True)
def band_hashes(sig, bands, rows):
    """(n_docs, bands) uint64: FNV-1a over each band's `rows` signature values."""
    n = sig.shape[0]
    out = np.empty((n, bands), np.uint64)
    for d in range(n):
        for bnd in range(bands):
            h = FNV_OFFSET ^ np.uint64(bnd)
            for r in range(rows):
                h = (h ^ np.uint64(sig[d, bnd * rows + r])) * FNV_PRIME
            out[d, bnd] = h
    return out


@nb.njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@nb.njit(cache=True, inline="always")
def _similar(sig, x, y, thr):
    same = 0
    P = sig.shape[1]
    for p in range(P):
        if sig[x, p] == sig[y, p]:
            same += 1
    return same >= thr * P


@nb.njit(cache=True)
def union_sorted_groups(parent, keys, order, sig, thr):
    """Union every run of equal `keys` (visited in `order`) into one set. With signatures
    (`sig` non-empty), a candidate joins only when its estimated Jaccard with the run's first
    member is >= thr: LSH proposes, the signatures verify."""
    n = order.shape[0]
    verify = sig.shape[0] > 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and keys[order[j]] == keys[order[i]]:
            j += 1
        if j - i > 1:
            r0 = _find(parent, order[i])
            for k in range(i + 1, j):
                if verify and not _similar(sig, order[i], order[k], thr):
                    continue
                rk = _find(parent, order[k])
                if rk != r0:
                    if rk < r0:
                        parent[r0] = rk
                        r0 = rk
                    else:
                        parent[rk] = r0
        i = j


@nb.njit(cache=True)
def roots(parent):
    out = np.empty(parent.shape[0], np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


def lsh_clusters(band_columns, n: int, priority: np.ndarray | None = None, sig: np.ndarray | None = None,
                 verify_threshold: float = 0.0, on_column=None) -> tuple[np.ndarray, np.ndarray]:
    """Cluster documents sharing any band hash. `band_columns` yields one (n,) uint64 column at a
    time, so memory beyond the columns is ~24 bytes per document (parent, order, roots).
    Returns (cluster id = representative's index, keep mask). The representative of a cluster is
    its member with the lowest (priority, index) — earliest in input order, or a preferred source."""
    parent = np.arange(n, dtype=np.int64)
    sg = sig if sig is not None and verify_threshold > 0 else np.zeros((0, 1), np.uint32)
    for col in band_columns:
        order = np.argsort(col, kind="stable")
        union_sorted_groups(parent, col, order, sg, verify_threshold)
        if on_column:
            on_column()
        del order
    root = roots(parent)
    if priority is None:
        rep = root  # unions keep the lowest index as root
    else:
        key = priority.astype(np.int64) * n + np.arange(n)
        best = np.full(n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(best, root, key)
        rep = best[root] % n
    keep = rep == np.arange(n)
    return rep, keep


def s_curve(bands: int, rows: int, js=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> list[tuple[float, float]]:
    """Probability that a pair with Jaccard J shares at least one band: 1 - (1 - J^r)^b."""
    return [(j, 1 - (1 - j ** rows) ** bands) for j in js]


# ---------------------------------------------------------------------------------------
# n-gram overlap (decontamination)


@nb.njit(cache=True, nogil=True)
def ngram_hashes(tokens, offsets, n):
    """Polynomial hashes of every n-token window inside each document (windows never cross
    documents). Returns (hashes, document index of each hash)."""
    total = 0
    for d in range(offsets.shape[0] - 1):
        total += max(0, offsets[d + 1] - offsets[d] - n + 1)
    out = np.empty(total, np.uint64)
    doc = np.empty(total, np.int64)
    k = 0
    B = np.uint64(0x100000001B3)
    for d in range(offsets.shape[0] - 1):
        a = offsets[d]
        b = offsets[d + 1]
        for s in range(a, b - n + 1):
            h = np.uint64(0xCBF29CE484222325)
            for i in range(s, s + n):
                h = (h ^ np.uint64(tokens[i])) * B
            out[k] = h
            doc[k] = d
            k += 1
    return out, doc


@nb.njit(cache=True, nogil=True)
def docs_hitting(tokens, offsets, n, sorted_ref):
    """Per document: does any of its n-token windows appear in `sorted_ref` (sorted uint64)?"""
    nd = offsets.shape[0] - 1
    hit = np.zeros(nd, np.bool_)
    if sorted_ref.shape[0] == 0:
        return hit
    B = np.uint64(0x100000001B3)
    for d in range(nd):
        for s in range(offsets[d], offsets[d + 1] - n + 1):
            h = np.uint64(0xCBF29CE484222325)
            for i in range(s, s + n):
                h = (h ^ np.uint64(tokens[i])) * B
            j = np.searchsorted(sorted_ref, h)
            if j < sorted_ref.shape[0] and sorted_ref[j] == h:
                hit[d] = True
                break
    return hit


@nb.njit(cache=True)
def band_edges(col, order, sig, sig_rows, thr):
    """Candidate edges of one band column: (first member of each run of equal hashes, member),
    kept only when their signatures agree on >= thr of the permutations (thr 0: all).
    `sig_rows[i]` is document i's row in `sig`."""
    n = order.shape[0]
    ea = np.empty(n, np.int64)
    eb = np.empty(n, np.int64)
    k = 0
    verify = thr > 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and col[order[j]] == col[order[i]]:
            j += 1
        for m in range(i + 1, j):
            x, y = order[i], order[m]
            if verify:
                same = 0
                for p in range(sig.shape[1]):
                    if sig[sig_rows[x], p] == sig[sig_rows[y], p]:
                        same += 1
                if same < thr * sig.shape[1]:
                    continue
            ea[k] = x
            eb[k] = y
            k += 1
        i = j
    return ea[:k], eb[:k]


@nb.njit(cache=True)
def union_edges(parent, ea, eb):
    for t in range(ea.shape[0]):
        ra = _find(parent, ea[t])
        rb = _find(parent, eb[t])
        if ra != rb:
            if rb < ra:
                parent[ra] = rb
            else:
                parent[rb] = ra


def representatives(parent: np.ndarray, priority: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(representative per document, keep mask) from a union-find forest (roots are minimal indices)."""
    n = len(parent)
    root = roots(parent)
    if priority is None:
        rep = root
    else:
        key = priority.astype(np.int64) * n + np.arange(n)
        best = np.full(n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(best, root, key)
        rep = best[root] % n
    return rep, rep == np.arange(n)
