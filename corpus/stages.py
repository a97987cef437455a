"""Pipeline stages: small objects with one job, applied to the document stream.

A *filter* returns the document (keep) or a `Drop` with a reason; a *transform* returns a
new document. A *global* stage (exact dedup, MinHash) cannot decide per document: its
per-document part runs in the workers (`prepare`, e.g. hashing) and its decision runs once
over all documents at the stage boundary of the build (see `corpus/build.py`).

Every stage is counted by `StageStats`: documents and characters in and out, and drops by
reason, per source — the funnel of `corpus stats`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import xxhash
from pydantic import BaseModel, ConfigDict

from .document import Document


@dataclass(slots=True)
class Drop:
    """A stage's decision to remove a document. `lines` marks the offending lines for samples:
    0-based indices into `doc.text.split("\n")` of the text the stage was given."""

    reason: str
    detail: str = ""
    lines: list[int] = field(default_factory=list)


class StageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stage:
    """Base of all per-document stages. Subclasses set `name`, `Params` and implement `apply`."""

    name: ClassVar[str] = "stage"
    Params: ClassVar[type[StageParams]] = StageParams
    is_global: ClassVar[bool] = False
    # a metadata key in [0, 1] that the stage sets (e.g. a classifier's score): the funnel keeps
    # its histogram over every document the stage saw, kept or dropped, per source
    score_key: ClassVar[str | None] = None

    def __init__(self, **params: Any):
        self.p = self.Params(**params)

    def apply(self, doc: Document) -> Document | Drop:  # pragma: no cover - abstract
        raise NotImplementedError


STAGES: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: make a stage available to recipes by its `name`."""
    STAGES[cls.name] = cls
    return cls


def stage_class(name: str) -> type[Stage]:
    """The registered stage class of a name (importing the libraries registers their stages)."""
    from . import classifier, dedup, filters, lm  # noqa: F401

    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGES)}")
    return STAGES[name]


def build_stage(name: str, params: dict[str, Any]) -> Stage:
    """Instantiate a registered stage, validating its parameters."""
    return stage_class(name)(**params)


# ---------------------------------------------------------------------------------------
# accounting


SCORE_BINS = 20


@dataclass
class StageStats:
    """Counts for one stage (and one source): the funnel's row."""

    docs_in: int = 0
    docs_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    drops: Counter = field(default_factory=Counter)  # reason -> documents
    drop_chars: Counter = field(default_factory=Counter)  # reason -> characters
    changed: int = 0  # documents a transform modified
    score_hist: list[int] = field(default_factory=list)  # SCORE_BINS bins over [0, 1] of the stage's score_key

    def as_dict(self) -> dict[str, Any]:
        d = {"docs_in": self.docs_in, "docs_out": self.docs_out, "chars_in": self.chars_in,
             "chars_out": self.chars_out, "changed": self.changed,
             "drops": dict(sorted(self.drops.items())), "drop_chars": dict(sorted(self.drop_chars.items()))}
        if self.score_hist:
            d["score_hist"] = list(self.score_hist)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageStats":
        return cls(d["docs_in"], d["docs_out"], d["chars_in"], d["chars_out"], Counter(d["drops"]),
                   Counter(d["drop_chars"]), d.get("changed", 0), list(d.get("score_hist", [])))

    def add_score(self, x: float) -> None:
        if not self.score_hist:
            self.score_hist = [0] * SCORE_BINS
        self.score_hist[min(SCORE_BINS - 1, max(0, int(x * SCORE_BINS)))] += 1

    def add(self, other: "StageStats") -> None:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.chars_in += other.chars_in
        self.chars_out += other.chars_out
        self.changed += other.changed
        self.drops.update(other.drops)
        self.drop_chars.update(other.drop_chars)
        if other.score_hist:
            self.score_hist = [a + b for a, b in zip(self.score_hist or [0] * SCORE_BINS, other.score_hist)]


class Chain:
    """Runs a list of stages over documents, counting each stage, collecting rejected samples."""

    def __init__(self, stages: list[Stage], samples_per_reason: int = 20, trace: bool = False):
        self.stages = [s for s in stages if not s.is_global]
        self.stats: dict[str, StageStats] = {s.name: StageStats() for s in self.stages}
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.k = samples_per_reason
        # trace=True: after each call, `last` says what happened to that document in line indices
        # of the text it came in with (corpus clean, bench/clean_quality.py); off in builds (cost)
        self.trace = trace
        self.last: Trace | None = None
        # stage -> up to k kept documents it removed lines from (the report's "lines removed")
        self.removed_samples: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, doc: Document) -> Document | None:
        tr = self.last = Trace.start(doc.text) if self.trace else None
        pending: list[dict[str, Any]] = []
        for st in self.stages:
            s = self.stats[st.name]
            s.docs_in += 1
            s.chars_in += len(doc.text)
            out = st.apply(doc)
            if st.score_key is not None and st.score_key in doc.metadata:
                s.add_score(float(doc.metadata[st.score_key]))
            if isinstance(out, Drop):
                reason = f"{st.name}:{out.reason}"
                s.drops[reason] += 1
                s.drop_chars[reason] += len(doc.text)
                self._sample(reason, doc, out)
                if tr is not None:
                    tr.dropped(st.name, out)
                return None
            if out.text is not doc.text and out.text != doc.text:
                s.changed += 1
                if tr is not None:
                    tr.step(st.name, doc, out)
                if self.k and len(self.removed_samples.get(st.name, ())) < self.k:  # no cost once full
                    m = {j for j in kept_origins(doc, out) if j is not None}
                    text = doc.text[:5000]  # the sample's text; its marked lines are lines of it
                    gone = [i for i, l in enumerate(text.split("\n")) if i not in m and l.strip()]
                    if gone:
                        pending.append({"id": doc.id, "source": doc.source, "stage": st.name,
                                        "lines": gone[:50], "text": text})
            doc = out
            s.docs_out += 1
            s.chars_out += len(doc.text)
        for r in pending:  # only documents the chain kept
            bucket = self.removed_samples.setdefault(r["stage"], [])
            if len(bucket) < self.k:
                bucket.append(r)
        return doc

    def _sample(self, reason: str, doc: Document, drop: Drop) -> None:
        bucket = self.samples.setdefault(reason, [])
        if len(bucket) < self.k:
            bucket.append({"id": doc.id, "source": doc.source, "reason": reason, "detail": drop.detail,
                           "lines": drop.lines[:50], "text": doc.text[:5000]})


@dataclass(slots=True)
class Trace:
    """What a chain did to one document, in 0-based indices of the `\n` lines of the text it
    came in with: the non-blank lines each stage removed (`removed`, stage -> indices; a stage
    that only rewrote lines in place removed none) and, for a dropped document, the stage and
    its `Drop` with `lines` mapped to those indices. Blank lines are never reported."""

    origin: list[int | None]  # for each line of the current text, its input line (None: new)
    blank: frozenset[int]  # input lines that are blank
    removed: dict[str, list[int]] = field(default_factory=dict)
    stage: str | None = None
    drop: Drop | None = None

    @classmethod
    def start(cls, text: str) -> "Trace":
        lines = text.split("\n")
        return cls(list(range(len(lines))), frozenset(i for i, l in enumerate(lines) if not l.strip()))

    def step(self, stage: str, before: Document, after: Document) -> None:
        m = kept_origins(before, after)
        kept = {j for j in m if j is not None}
        gone = [o for i, o in enumerate(self.origin) if i not in kept and o is not None and o not in self.blank]
        if gone:
            self.removed.setdefault(stage, []).extend(sorted(gone))
        self.origin = [None if j is None else self.origin[j] for j in m]

    def dropped(self, stage: str, drop: Drop) -> None:
        n = len(self.origin)
        lines = sorted({o for i in drop.lines if 0 <= i < n and (o := self.origin[i]) is not None})
        self.stage, self.drop = stage, Drop(drop.reason, drop.detail, lines)


def kept_origins(before: Document, after: Document) -> list[int | None]:
    """For each line of `after.text`, the line of `before.text` it came from (None: new)."""
    lf = after.lines_from
    if lf is not None and lf[0] is before.text:  # the stage said which lines it kept (Document.with_lines)
        return list(lf[1])
    return line_origins(before.text.split("\n"), after.text.split("\n") if after.text else [])


def line_origins(before: list[str], after: list[str]) -> list[int | None]:
    """For each line of `after`, the index of the line of `before` it came from, or None: an
    alignment by content (lines compared without surrounding whitespace) for stages that do not
    report their removals with `Document.with_lines`. Removal only is a subsequence walk; lines
    rewritten in place (normalisation, a stripped citation mark) are paired by similarity."""
    a = [x.strip() for x in before]
    b = [x.strip() for x in after]
    out: list[int | None] = []
    i = 0
    for y in b:  # the common case: lines removed, the rest unchanged
        while i < len(a) and a[i] != y:
            i += 1
        if i == len(a):
            break
        out.append(i)
        i += 1
    if len(out) == len(b):
        return out
    import difflib

    out = [None] * len(b)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for k in range(j2 - j1):
                out[j1 + k] = i1 + k
        elif tag == "replace":
            for j, i in _pair_similar(a[i1:i2], b[j1:j2]):
                out[j1 + j] = i1 + i
    return out


def _pair_similar(a: list[str], b: list[str], min_ratio: float = 0.5) -> list[tuple[int, int]]:
    """An order-keeping pairing of lines of `b` with lines of `a` that maximises the summed
    difflib similarity (pairs below `min_ratio` are not made); a large block pairs nothing."""
    import difflib

    if len(a) * len(b) > 2500:
        return []
    best = [[0.0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            r = difflib.SequenceMatcher(None, a[i - 1], b[j - 1]).ratio()
            best[i][j] = max(best[i - 1][j], best[i][j - 1], best[i - 1][j - 1] + r if r >= min_ratio else -1.0)
    pairs, i, j = [], len(a), len(b)
    while i and j:
        if best[i][j] == best[i - 1][j]:
            i -= 1
        elif best[i][j] == best[i][j - 1]:
            j -= 1
        else:
            pairs.append((j - 1, i - 1))
            i, j = i - 1, j - 1
    return pairs[::-1]


# ---------------------------------------------------------------------------------------
# the basic stages


# full-width forms U+FF01..U+FF5E are ASCII 0x21..0x7E shifted by 0xFEE0
_FULLWIDTH_ALL = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULLWIDTH_ALNUM = {c: v for c, v in _FULLWIDTH_ALL.items() if chr(v).isalnum()} | {0x3000: 0x20}
_WS_RUN = re.compile(r"[ \t\u00a0\u3000]+\n")
_MANY_NL = re.compile(r"\n{3,}")


@register
class Normalize(Stage):
    """Unicode NFC (or NFKC), trailing spaces per line and runs of blank lines collapsed.

    NFKC also folds full-width ASCII (ＡＢＣ１２３) to ASCII; it is off by default because it
    also rewrites CJK compatibility characters that legal texts use on purpose.
    `fold_fullwidth_ascii` folds only U+FF01–U+FF5E (and the ideographic space) to ASCII, which
    is what most Chinese pipelines want from NFKC; Chinese punctuation (，。：) is left alone
    unless `fold_fullwidth_punct` is also set.
    """

    name = "normalize"

    class Params(StageParams):
        form: str = "NFC"
        collapse_blank_lines: bool = True
        fold_fullwidth_ascii: bool = False
        fold_fullwidth_punct: bool = False

    def apply(self, doc: Document) -> Document | Drop:
        t = unicodedata.normalize(self.p.form, doc.text)
        if self.p.fold_fullwidth_ascii:
            t = t.translate(_FULLWIDTH_ALL if self.p.fold_fullwidth_punct else _FULLWIDTH_ALNUM)
        t = _WS_RUN.sub("\n", t)
        if self.p.collapse_blank_lines:
            t = _MANY_NL.sub("\n\n", t)
        t = t.strip()
        return doc if t == doc.text else doc.with_text(t)


@register
class MinLength(Stage):
    """Drop documents with fewer than `min_chars` non-whitespace characters (empty after cleaning)."""

    name = "min_length"

    class Params(StageParams):
        min_chars: int = 20

    def apply(self, doc: Document) -> Document | Drop:
        n = len(doc.text) - sum(doc.text.count(c) for c in " \n\t")
        if n < self.p.min_chars:
            return Drop("too_short", f"{n} < {self.p.min_chars} chars")
        return doc


_NORM_WS = re.compile(r"\s+")


def exact_hash(text: str) -> tuple[int, int]:
    """128-bit xxh3 of the text normalised for exact dedup (NFC, case-folded, whitespace collapsed)."""
    norm = _NORM_WS.sub(" ", unicodedata.normalize("NFC", text).casefold()).strip()
    h = xxhash.xxh3_128_intdigest(norm.encode("utf-8"))
    return h >> 64, h & 0xFFFFFFFFFFFFFFFF


@register
class ExactDedup(Stage):
    """Global stage: drop every document whose normalised text was seen earlier in input order.

    Workers hash (xxh3-128 of NFC + casefold + collapsed whitespace); the build keeps the first
    occurrence in the deterministic order sources → files → records, across all sources.
    """

    name = "exact_dedup"
    is_global = True
