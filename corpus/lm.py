"""Character n-gram language model and the `perplexity` stage (CCNet / Data-Juicer style).

Contract:
- `fit(texts, order)` counts hashed character n-grams (orders 1..`order`) of normalised text
  (lower-cased, digit runs folded to `0`, whitespace runs to one space) and returns an
  `NgramLM` with interpolated absolute-discounting smoothing (discount 0.75; the lowest order
  is add-one over the characters seen plus one unknown);
- `NgramLM.perplexity(text)` is exp of the mean negative log-probability per character of the
  text's first `max_chars` characters; deterministic (no randomness, sorted hash tables);
- `save`/`load` use a numpy `.npz` (`allow_pickle=False`: arrays and one JSON string, never a
  pickle), so a model file from anyone is safe to load;
- `train(recipe, out)` (`corpus lm train`) fits on the recipe's reference sources (the
  `kind: domain` ones or those named in `positives`), holds out a seeded share of them and
  stores the held-out perplexity quantiles: the stage's `perplexity_quantile` (the document's
  position among held-out reference documents, 0 = most reference-like) and CCNet's buckets
  `head` (≤ 30th percentile), `middle` (≤ 60th), `tail` (above).

KenLM is the usual tool (CCNet); `pip install --only-binary=:all: kenlm` finds no wheel on
PyPI here (its source release needs a C++ toolchain and Boost), so this is a small numpy model: n-gram keys are 64-bit
polynomial hashes (a collision merges two n-grams' counts; with 2^64 values that is negligible
for the few million n-grams a reference set has).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field

from .document import Document
from .stages import Drop, Stage, StageParams, register

_WS = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")
_MUL = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime as the polynomial base
_DISCOUNT = 0.75  # absolute discount (Kneser & Ney's usual D for small counts)
BUCKETS = ("head", "middle", "tail")
BUCKET_QUANTILES = (0.3, 0.6)  # CCNet's head / middle / tail cut points on the reference


def normalize(text: str, max_chars: int = 4000) -> str:
    return _WS.sub(" ", _DIGITS.sub("0", text[:max_chars].lower())).strip()


class NgramLM:
    """Hashed character n-gram counts with interpolated absolute discounting."""

    def __init__(self, order: int, tables: dict[str, np.ndarray], meta: dict[str, Any]):
        self.order, self.t, self.meta = order, tables, meta

    # The k-gram ending at i has the (k-1)-gram ending at i-1 as its context. We hash n-grams
    # "backwards" (newest char at the lowest power), so instead key each k-gram by
    # (context hash, char): ctx = hash of the k-1 chars before position i, key = ctx * M + char.
    @staticmethod
    def _keys(text: str, order: int) -> tuple[np.ndarray, list[np.ndarray]]:
        cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + np.uint64(1)
        n = len(cps)
        pad = np.concatenate([np.zeros(order - 1, dtype=np.uint64), cps])
        ctxs = [np.zeros(n, dtype=np.uint64)]  # order-1 context: empty
        h = np.zeros(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(1, order):  # context of k chars before each position
                h = h * _MUL + pad[order - 1 - k: order - 1 - k + n] + np.uint64(7)
                ctxs.append(h.copy())
        return cps, ctxs

    @staticmethod
    def _key(ctx: np.ndarray, cps: np.ndarray, k: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (ctx * _MUL + cps) ^ np.uint64(k * 0x9E3779B97F4A7C15 % 2**64)

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray, values: np.ndarray) -> np.ndarray:
        if len(table) == 0:
            return np.zeros(len(keys), dtype=values.dtype)
        i = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return np.where(table[i] == keys, values[i], 0)

    def logprobs(self, text: str) -> np.ndarray:
        """Natural-log probability of each character of (already normalised) text."""
        cps, ctxs = self._keys(text, self.order)
        if len(cps) == 0:
            return np.zeros(0)
        uni = self.t["k1_counts"]
        v = float(self.meta["vocab"]) + 1.0
        p = (self._lookup(self._key(ctxs[0], cps, 1), self.t["k1_keys"], uni).astype(np.float64) + 1.0) / (
            float(self.meta["chars"]) + v)
        for k in range(2, self.order + 1):
            c = self._lookup(self._key(ctxs[k - 1], cps, k), self.t[f"k{k}_keys"], self.t[f"k{k}_counts"]).astype(np.float64)
            tot = self._lookup(ctxs[k - 1], self.t[f"c{k}_keys"], self.t[f"c{k}_total"]).astype(np.float64)
            typ = self._lookup(ctxs[k - 1], self.t[f"c{k}_keys"], self.t[f"c{k}_types"]).astype(np.float64)
            seen = tot > 0
            safe = np.where(seen, tot, 1.0)
            p = np.where(seen, np.maximum(c - _DISCOUNT, 0.0) / safe + _DISCOUNT * typ / safe * p, p)
        return np.log(p)

    def perplexity(self, text: str, max_chars: int = 4000) -> float:
        lp = self.logprobs(normalize(text, max_chars))
        return float(np.exp(-lp.mean())) if len(lp) else float("inf")

    def quantile(self, ppl: float) -> float:
        """The share of held-out reference documents with a perplexity ≤ `ppl`."""
        ref = np.asarray(self.meta["reference_perplexities"])
        return float(np.searchsorted(ref, ppl, side="right") / len(ref)) if len(ref) else 0.0

    def bucket(self, ppl: float) -> str:
        q = self.meta["bucket_cuts"]
        return BUCKETS[0] if ppl <= q[0] else BUCKETS[1] if ppl <= q[1] else BUCKETS[2]

    def save(self, path: str) -> None:
        from shards.fileio import atomic_write
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, meta=np.array(json.dumps(self.meta, sort_keys=True)), **self.t)
        atomic_write(path, buf.getvalue())


def fit(texts: list[str], order: int = 5) -> NgramLM:
    """Count the character n-grams of already normalised texts (in the order given)."""
    if order < 1:
        raise ValueError("order must be >= 1")
    grams: list[list[np.ndarray]] = [[] for _ in range(order + 1)]
    ctx: list[list[np.ndarray]] = [[] for _ in range(order + 1)]
    chars = 0
    for t in texts:
        cps, ctxs = NgramLM._keys(t, order)
        chars += len(cps)
        for k in range(1, order + 1):
            grams[k].append(NgramLM._key(ctxs[k - 1], cps, k))
            if k >= 2:
                ctx[k].append(ctxs[k - 1])
    tables: dict[str, np.ndarray] = {}
    for k in range(1, order + 1):
        g = np.concatenate(grams[k]) if grams[k] else np.zeros(0, np.uint64)
        keys, counts = np.unique(g, return_counts=True)
        tables[f"k{k}_keys"], tables[f"k{k}_counts"] = keys, counts.astype(np.uint32)
        if k >= 2:
            c = np.concatenate(ctx[k]) if ctx[k] else np.zeros(0, np.uint64)
            # the context of each distinct k-gram (first occurrence) gives the distinct-follower count
            _, first = np.unique(g, return_index=True)
            ckeys, total = np.unique(c, return_counts=True)
            tk, types = np.unique(c[first], return_counts=True)
            t_full = np.zeros(len(ckeys), np.uint32)
            t_full[np.searchsorted(ckeys, tk)] = types
            tables[f"c{k}_keys"], tables[f"c{k}_total"], tables[f"c{k}_types"] = ckeys, total.astype(np.uint32), t_full
    meta = {"format": "refinery-char-ngram-1", "order": order, "chars": chars, "docs": len(texts),
            "vocab": int(len(tables["k1_keys"])), "discount": _DISCOUNT,
            "reference_perplexities": [], "bucket_cuts": [float("inf"), float("inf")]}
    return NgramLM(order, tables, meta)


def load(path: str) -> NgramLM:
    """Load a model written by `NgramLM.save` (no pickle: `allow_pickle=False`)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"language model not found: {path} (fit it with `corpus lm train RECIPE -o MODEL.npz`)")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != "refinery-char-ngram-1":
            raise ValueError(f"{path}: not a refinery n-gram model")
        tables = {k: z[k] for k in z.files if k != "meta"}
    return NgramLM(int(meta["order"]), tables, meta)


_CACHE: dict[tuple[str, float], NgramLM] = {}


def cached(path: str) -> NgramLM:
    key = (os.path.abspath(path), os.path.getmtime(path) if os.path.exists(path) else 0.0)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load(path)
    return _CACHE[key]


def train(recipe: Any, out: str, order: int = 5, max_docs: int = 20_000, val_ratio: float = 0.1,
          max_chars: int = 4000, positives: list[str] | None = None, seed: int = 1234,
          on_file: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit the LM on the recipe's reference sources; write `out` (.npz) and `out`.json (card)."""
    import hashlib

    import xxhash

    from .classifier import ClassifierConfig, collect, source_labels

    t0 = time.time()
    labels = source_labels(recipe, "quality", positives)
    if "quality" not in labels:
        raise ValueError("the recipe has no reference source to fit a language model on "
                         "(mark them kind: domain or name them with --positive)")
    cfg = ClassifierConfig(max_docs_per_label=max_docs, max_chars=max_chars, seed=seed)
    skipped: dict[str, Any] = {}
    samples = collect(recipe, cfg, on_file, skipped, labels, featurize=normalize)
    rows = samples["quality"].items()
    fit_texts, held = [], []
    for _, doc_id, text in rows:
        v = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=seed + 1) / 2.0**64 < val_ratio
        (held if v else fit_texts).append(text)
    if len(fit_texts) < 5 or len(held) < 3:
        raise ValueError(f"too few reference documents ({len(fit_texts)} to fit, {len(held)} held out)")
    lm = fit(fit_texts, order)
    ref = sorted(float(np.exp(-lp.mean())) for t in held if len(lp := lm.logprobs(t)))
    lm.meta["reference_perplexities"] = [round(x, 4) for x in ref]
    lm.meta["bucket_cuts"] = [float(np.quantile(ref, q)) for q in BUCKET_QUANTILES]
    lm.save(out)
    data = open(out, "rb").read()
    card = {"model": os.path.basename(out), "kind": "perplexity", "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "recipe": recipe.name,
            "reference_sources": [s.name for s, l in zip(recipe.sources, labels) if l == "quality"],
            "order": order, "fit_docs": len(fit_texts), "fit_chars": lm.meta["chars"], "held_out_docs": len(held),
            "held_out_perplexity": {f"p{int(q * 100)}": float(np.quantile(ref, q)) for q in (0.1, 0.3, 0.5, 0.6, 0.9)},
            "bucket_cuts": lm.meta["bucket_cuts"], "skipped": {"cleaned_out": dict(skipped["cleaned_out"]),
                                                                "unreadable": dict(skipped["unreadable"])},
            "seconds": round(time.time() - t0, 2)}
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(card, f, ensure_ascii=False, indent=1)
    return card


@register
class Perplexity(Stage):
    """Score each document under a `corpus lm train` model: `metadata.perplexity` (per character),
    `perplexity_quantile` (its position among held-out reference documents; the funnel's
    histogram) and `perplexity_bucket` (CCNet's head / middle / tail). Drops documents above
    `max_perplexity`, or in `drop_buckets`; neither is set by default (score only)."""

    name = "perplexity"
    score_key = "perplexity_quantile"

    class Params(StageParams):
        model_path: str
        max_perplexity: float | None = Field(default=None, gt=0)
        drop_buckets: list[Literal["head", "middle", "tail"]] = Field(default_factory=list)
        apply_to: Literal["general", "all"] = "all"
        max_chars: int = Field(default=4000, gt=0)

    def __init__(self, **params: Any):
        super().__init__(**params)
        cached(self.p.model_path)  # fail at set-up with a clear message, not per document

    def apply(self, doc: Document) -> Document | Drop:
        lm = cached(self.p.model_path)
        ppl = lm.perplexity(doc.text, self.p.max_chars)
        b = lm.bucket(ppl)
        doc.metadata["perplexity"] = round(ppl, 2) if np.isfinite(ppl) else None
        doc.metadata["perplexity_bucket"] = b
        doc.metadata[self.score_key] = round(lm.quantile(ppl), 4)
        if self.p.apply_to == "general" and doc.metadata.get("source_kind") == "domain":
            return doc
        if self.p.max_perplexity is not None and not ppl <= self.p.max_perplexity:
            return Drop("above_threshold", f"perplexity={ppl:.1f} > {self.p.max_perplexity}")
        if b in self.p.drop_buckets:
            return Drop(f"bucket_{b}", f"perplexity={ppl:.1f} in the {b} bucket")
        return doc
