"""MinHash signatures, exact shingle sets and band-partitioned LSH clustering (Numba).

`normalize` (NFKC, HTML entities, lower case) runs before shingling when the caller wants copies
that differ only in width, case or entities to shingle the same. Shingles come straight from the
text's code points: for CJK text every character is a token, elsewhere a token is a run of
characters that are neither space nor punctuation (ASCII lower-cased); punctuation and symbols
only separate tokens, so full/half-width punctuation, quotes and dashes never change a shingle.
A shingle is `n` consecutive tokens, hashed with 64-bit FNV-1a and truncated to 32 bits. The permutations are
datasketch's: `a, b` drawn from `np.random.RandomState(seed)` in (1, 2^61-1) and (0, 2^61-1),
`h = ((a * x + b) mod (2^61-1)) & 0xFFFFFFFF` with the same wrapping uint64 arithmetic, so a
signature equals `datasketch.MinHash(num_perm, seed, hashfunc=identity)` fed the same shingle
hashes (tests/test_dedup.py checks this bit for bit).
"""

from __future__ import annotations

import html
import unicodedata

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
    """Whitespace, ASCII punctuation and symbols, Latin-1 punctuation, general punctuation, CJK
    symbols and punctuation, full-width and small-form punctuation: token separators."""
    if c < 128:
        return not ((48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122))
    return (0x80 <= c <= 0xBF) or c == 0xD7 or c == 0xF7 or (0x2000 <= c <= 0x206F) or \
        (0x3000 <= c <= 0x303F) or (0xFF01 <= c <= 0xFF0F) or (0xFF1A <= c <= 0xFF20) or \
        (0xFF3B <= c <= 0xFF40) or (0xFF5B <= c <= 0xFF65) or (0xFE10 <= c <= 0xFE6F) or \
        (0x2190 <= c <= 0x2BFF) or c == 0x30FB


@nb.njit(cache=True, inline="always")
def _compat(c):
    """Code points NFKC changes beyond what shingling folds itself (width of ASCII letters and digits,
    punctuation): super/subscripts, letterlike and number forms (℃ Ⅳ), enclosed alphanumerics (①),
    enclosed CJK and CJK compatibility (㈱ ㎡), compatibility ideographs, ligatures, half-width
    katakana and hangul, mathematical alphanumerics, vulgar fractions and ordinals, spacing accents
    (NFKC makes them a space and a combining mark, which is a token character)."""
    return (0x2070 <= c <= 0x218F) or (0x2460 <= c <= 0x24FF) or (0x3200 <= c <= 0x33FF) or \
        (0xF900 <= c <= 0xFAFF) or (0xFB00 <= c <= 0xFB4F) or (0xFF61 <= c <= 0xFFEF) or \
        (0x1D400 <= c <= 0x1D7FF) or (0x2F800 <= c <= 0x2FA1F) or (0x1F100 <= c <= 0x1F1FF) or \
        c == 0xAA or c == 0xB2 or c == 0xB3 or c == 0xB9 or c == 0xBA or (0xBC <= c <= 0xBE) or \
        c == 0xA8 or c == 0xAF or c == 0xB4 or c == 0xB8 or (0x2D8 <= c <= 0x2DD) or c == 0x309B or c == 0x309C


@nb.njit(cache=True, nogil=True)
def _needs_nfkc(cps, offsets):
    out = np.zeros(offsets.shape[0] - 1, np.bool_)
    for d in range(offsets.shape[0] - 1):
        for i in range(offsets[d], offsets[d + 1]):
            if _compat(cps[i]):
                out[d] = True
                break
    return out


def normalize(text: str) -> str:
    """The text as MinHash shingles it (the reference; `sketch(..., normalize=True)` gives the same
    shingles faster): HTML entities decoded, NFKC, lower case."""
    if "&" in text:
        text = html.unescape(text)
    return unicodedata.normalize("NFKC", text).lower()


def _normalized_code_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Code points of `normalize(t)` per text. Measured: NFKC in Python costs as much as the whole
    sketch (Chinese text always has full-width punctuation, so the quick check never passes); the
    shingle kernel folds ASCII width and punctuation itself, so only the documents with other
    compatibility characters go through NFKC."""
    texts = [(html.unescape(t) if "&" in t else t).lower() for t in texts]
    cps, offsets = _code_points(texts)
    flags = _needs_nfkc(cps, offsets)
    if flags.any():
        texts = [unicodedata.normalize("NFKC", t).lower() if f else t for t, f in zip(texts, flags.tolist())]
        cps, offsets = _code_points(texts)
    return cps, offsets


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
                if 0xFF10 <= c <= 0xFF5A:
                    c -= np.uint64(0xFEE0)  # full-width digits and letters: their ASCII forms
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
def _batch_sketch(cps, offsets, ngram, a, b, sig_out, want_sets):
    """Signatures of every document into `sig_out`; with `want_sets`, also each document's sorted
    unique shingle hashes (flat uint32, and their offsets)."""
    nd = offsets.shape[0] - 1
    tmp = np.empty(a.shape[0], np.uint64)
    flat = np.empty(cps.shape[0] + nd if want_sets else 0, np.uint32)  # shingles <= tokens <= code points (+1 per doc)
    soff = np.zeros(nd + 1, np.int64)
    k = 0
    for d in range(nd):
        hv = np.unique(shingle_hashes(cps[offsets[d]: offsets[d + 1]], ngram))  # min over a set: same signature
        signature_from_hashes(hv, a, b, tmp)
        for p in range(a.shape[0]):
            sig_out[d, p] = np.uint32(tmp[p])
        if want_sets:
            for i in range(hv.shape[0]):
                flat[k + i] = np.uint32(hv[i])
            k += hv.shape[0]
            soff[d + 1] = k
    return flat[:k], soff


def _code_points(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    enc = [np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t in texts]
    offsets = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(e) for e in enc], out=offsets[1:])
    return (np.concatenate(enc) if enc else np.zeros(0, np.uint32)), offsets


def signatures(texts: list[str], ngram: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint32 signatures (n_docs, num_perm) of a batch of texts, in one Numba pass."""
    cps, offsets = _code_points(texts)
    out = np.empty((len(texts), len(a)), np.uint32)
    _batch_sketch(cps, offsets, ngram, a, b, out, False)
    return out


def sketch(texts: list[str], ngram: int, a: np.ndarray, b: np.ndarray,
           normalize: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, flat sorted unique shingle hashes uint32, their (n+1,)
    offsets) of a batch of texts (`normalize`d first), in one Numba pass: what the LSH and the exact
    verification need."""
    cps, offsets = _normalized_code_points(texts) if normalize else _code_points(texts)
    out = np.empty((len(texts), len(a)), np.uint32)
    flat, soff = _batch_sketch(cps, offsets, ngram, a, b, out, True)
    return out, flat, soff


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


def s_curve(bands: int, rows: int, js=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> list[tuple[float, float]]:
    """Probability that a pair with Jaccard J shares at least one band: 1 - (1 - J^r)^b."""
    return [(j, 1 - (1 - j ** rows) ** bands) for j in js]


# ---------------------------------------------------------------------------------------
# band-partitioned clustering: each band column yields verified edges, the driver unions them


@nb.njit(cache=True, inline="always")
def _overlap(flat, soff, x, y):
    """|A ∩ B| of two sorted unique shingle-hash runs of `flat`."""
    i, ie = soff[x], soff[x + 1]
    j, je = soff[y], soff[y + 1]
    k = 0
    while i < ie and j < je:
        u, v = flat[i], flat[j]
        if u == v:
            k += 1
            i += 1
            j += 1
        elif u < v:
            i += 1
        else:
            j += 1
    return k


@nb.njit(cache=True, inline="always")
def _duplicates(flat, soff, x, y, jthr, cthr):
    """Exact verification of a candidate pair: shingle-set Jaccard >= jthr, or the smaller set's
    containment in the larger >= cthr (a truncated or boilerplate-wrapped copy)."""
    na = soff[x + 1] - soff[x]
    nb_ = soff[y + 1] - soff[y]
    small = min(na, nb_)
    if small == 0:
        return False
    # the overlap is at most the smaller set: skip the merge when even that cannot pass
    if small < jthr * max(na, nb_) and small < cthr * small:
        return False
    k = _overlap(flat, soff, x, y)
    return k >= jthr * (na + nb_ - k) or k >= cthr * small


@nb.njit(cache=True)
def band_edges(col, order, flat, soff, rows_of, jthr, cthr, lookback):
    """Verified edges of one band column. Each run of equal band hashes (documents in `order`)
    proposes pairs: a member is compared with the run's first member, then with up to `lookback`
    members just before it, and joins by the first pair that verifies (`_duplicates` on the exact
    shingle sets; `rows_of[i]` is document i's index into `soff`). Returns (a, b) edge arrays."""
    n = order.shape[0]
    cap = 1024  # grown by doubling: edges are few, so the heap stays ~O(edges), not 16 bytes/document
    ea = np.empty(cap, np.int64)
    eb = np.empty(cap, np.int64)
    k = 0
    i = 0
    while i < n:
        j = i + 1
        while j < n and col[order[j]] == col[order[i]]:
            j += 1
        for m in range(i + 1, j):
            y = order[m]
            start = max(i + 1, m - lookback)
            for t in range(-1, m - start):
                x = order[i] if t < 0 else order[m - 1 - t]
                if _duplicates(flat, soff, rows_of[x], rows_of[y], jthr, cthr):
                    if k == cap:
                        cap *= 2
                        na = np.empty(cap, np.int64)
                        nb2 = np.empty(cap, np.int64)
                        na[:k] = ea[:k]
                        nb2[:k] = eb[:k]
                        ea, eb = na, nb2
                    ea[k] = x
                    eb[k] = y
                    k += 1
                    break
        i = j
    return ea[:k], eb[:k]


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


@nb.njit(cache=True)
def union_edges(parent, ea, eb):
    """Union-find over edges; a root is always its set's lowest index."""
    for t in range(ea.shape[0]):
        ra = _find(parent, ea[t])
        rb = _find(parent, eb[t])
        if ra != rb:
            if rb < ra:
                parent[ra] = rb
            else:
                parent[rb] = ra


@nb.njit(cache=True)
def roots(parent):
    out = np.empty(parent.shape[0], np.int64)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


def representatives(parent: np.ndarray, priority: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(representative per document, keep mask) from a union-find forest: the member with the lowest
    (priority, index) of each set (priority None: the lowest index, the root)."""
    n = len(parent)
    root = roots(parent)
    if priority is None:
        rep = root
    else:
        order = np.lexsort((np.arange(n), priority, root))  # by set, then priority, then index
        first = np.ones(n, bool)
        first[1:] = root[order[1:]] != root[order[:-1]]
        best = np.empty(n, np.int64)
        best[root[order[first]]] = order[first]
        rep = best[root]
    keep = np.empty(n, np.bool_)
    _is_self(rep, keep)
    return rep, keep


@nb.njit(cache=True)
def _is_self(rep, out):
    for i in range(rep.shape[0]):
        out[i] = rep[i] == i


# ---------------------------------------------------------------------------------------
# n-gram overlap (decontamination)


@nb.njit(cache=True, nogil=True, inline="always")
def _window_hash(tokens, s, n):
    h = FNV_OFFSET
    for i in range(s, s + n):
        h = (h ^ np.uint64(tokens[i])) * FNV_PRIME
    return h


@nb.njit(cache=True, nogil=True)
def ngram_hashes(tokens, offsets, n):
    """FNV-1a hashes of every n-token window inside each document (windows never cross
    documents). Returns (hashes, document index of each hash)."""
    total = 0
    for d in range(offsets.shape[0] - 1):
        total += max(0, offsets[d + 1] - offsets[d] - n + 1)
    out = np.empty(total, np.uint64)
    doc = np.empty(total, np.int64)
    k = 0
    for d in range(offsets.shape[0] - 1):
        for s in range(offsets[d], offsets[d + 1] - n + 1):
            out[k] = _window_hash(tokens, s, n)
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
    for d in range(nd):
        for s in range(offsets[d], offsets[d + 1] - n + 1):
            h = _window_hash(tokens, s, n)
            j = np.searchsorted(sorted_ref, h)
            if j < sorted_ref.shape[0] and sorted_ref[j] == h:
                hit[d] = True
                break
    return hit
