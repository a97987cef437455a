"""`corpus clean INPUT... --recipe R --out DIR`: what a recipe's cleaning chain does to every
document, one row per document, so that a user (or `bench/clean_quality.py`) can audit it.

Contract:
- Only the recipe's **per-document** stages run, through the build's own code (`source_stages`
  and `Chain`, stages looked up in the stage registry), with each source's `stage_overrides`.
  Global stages (exact_dedup, minhash_dedup, decontamination) decide over the whole corpus and
  are skipped, and so is `line_dedup`'s removal (it needs the build's corpus-wide counting
  pass): the rows say what a build would do to a document before deduplication.
- Documents come from the project's one reader (`corpus/readers.py`, the build's units), in the
  build's order: sources -> files -> records.
- `DIR/kept.jsonl`: {"id", "source", "text" (cleaned), "removed": {stage: [line, ...]}};
  `DIR/dropped.jsonl`: {"id", "source", "stage", "reason", "detail", "lines", "removed"}.
  `id` is the record's own id (its `id` field, or the source's `id_key`) when it has one, else
  `file:line` (JSON Lines, 1-based line) / `file:k` (the k-th paragraph) / `file` (a whole file),
  with `#k` for a piece of an oversize document. Line indices are 0-based indices into the
  *input* text's `text.split("\\n")` (after the reader's CRLF -> LF); blank lines are never
  listed. `removed` holds the lines each stage removed (for a drop: before the dropping stage);
  `lines` the dropping stage's offending lines. A stage reports its removals exactly with
  `Document.with_lines`; for the others lines are aligned by content (`stages.line_origins`).
- `DIR/clean_summary.json` (counts per source and stage, unreadable units) marks the folder as
  written by `corpus clean`; files there that it did not write are never overwritten.
- Output is byte-identical for the same inputs and recipe (one process, input order).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .document import BadUnit, Document
from .recipe import Recipe, SourceConfig
from .stages import Chain

OUT_FILES = ("kept.jsonl", "dropped.jsonl")
MARKER = "clean_summary.json"


@dataclass
class Decision:
    """What the chain did to one document (line indices into the input text's `\\n` lines)."""

    id: str
    source: str
    kept: bool
    text: str = ""  # the cleaned text, when kept
    removed: dict[str, list[int]] = field(default_factory=dict)  # stage -> lines it removed
    stage: str | None = None  # the stage that dropped it
    reason: str = ""
    detail: str = ""
    lines: list[int] = field(default_factory=list)  # the dropping stage's offending lines

    def removed_lines(self) -> set[int]:
        return {i for v in self.removed.values() for i in v}

    def row(self) -> dict[str, Any]:
        if self.kept:
            return {"id": self.id, "source": self.source, "text": self.text, "removed": self.removed}
        return {"id": self.id, "source": self.source, "stage": self.stage, "reason": self.reason,
                "detail": self.detail, "lines": self.lines, "removed": self.removed}


def own_id(doc: Document) -> str:
    """The record's own id when it has one, else the reader's `file:record` key."""
    rid = doc.metadata.get("record_id")
    if rid is not None:
        return f"{rid}{doc.id[doc.id.rfind('#'):]}" if doc.metadata.get("oversize_piece") is not None else rid
    return doc.id.removeprefix(f"{doc.source}/")


class Cleaner:
    """The recipe's per-document chain for each source, traced; `decide` runs one document."""

    def __init__(self, recipe: Recipe):
        from .build import source_stages
        from .stages import build_stage

        self.recipe = recipe
        self.chains = [Chain(stages, 0, trace=True) for stages in source_stages(recipe)]
        # for documents of no recipe source (a dev-set page from elsewhere): the stages as written
        self.default = Chain([build_stage(s.name, s.params()) for s in recipe.stages], 0, trace=True)
        self.stage_names = [st.name for st in self.default.stages]

    def decide(self, doc: Document, source_index: int | None = None) -> Decision:
        chain = self.default if source_index is None else self.chains[source_index]
        out = chain(doc)
        tr = chain.last
        assert tr is not None
        removed = {k: v for k, v in tr.removed.items()}
        if out is not None:
            return Decision(own_id(doc), doc.source, True, out.text, removed)
        drop = tr.drop
        assert drop is not None and tr.stage is not None
        return Decision(own_id(doc), doc.source, False, "", removed, tr.stage, drop.reason, drop.detail[:500],
                        drop.lines)

    def source_of(self, path: str) -> int | None:
        """The index of the recipe source whose paths hold `path`, or None."""
        from .recipe import expand_paths

        real = os.path.realpath(path)
        for i, src in enumerate(self.recipe.sources):
            for p in src.paths:
                rp = os.path.realpath(p)
                if real == rp or real.startswith(rp.rstrip(os.sep) + os.sep):
                    return i
                if any(c in p for c in "*?[") and real in map(os.path.realpath, expand_paths([p])):
                    return i
        return None


def inputs_recipe(recipe: Recipe, inputs: list[str], as_source: str | None = None) -> Recipe:
    """The recipe with its sources replaced by `inputs`: one source per input path (named after
    it, read with the defaults), or all of them read as the recipe's source `as_source` (its
    format, keys and stage_overrides)."""
    from .build import quick_recipe

    if as_source is not None:
        src = next((s for s in recipe.sources if s.name == as_source), None)
        if src is None:
            raise ValueError(f"no source {as_source!r} in the recipe (it has {[s.name for s in recipe.sources]})")
        sources = [src.model_copy(update={"paths": list(inputs)})]
    else:
        sources = [SourceConfig(name=s.name, paths=s.paths) for s in quick_recipe(inputs).sources]
    return recipe.model_copy(update={"sources": sources})


def clean_iter(recipe: Recipe, bad: list[BadUnit] | None = None) -> Iterator[Decision]:
    """A Decision for every document of the recipe's sources, in build order; unreadable units
    are appended to `bad`."""
    from .build import plan_units
    from .readers import ReadLog, read_documents

    cleaner = Cleaner(recipe)
    log = ReadLog(keep=None, examples=bad if bad is not None else [])
    for unit in plan_units(recipe):
        src = recipe.sources[unit.source_index]
        for item in read_documents(unit.path, src, recipe.limits, log=log, rel=unit.rel, byte_range=unit.byte_range):
            yield cleaner.decide(item, unit.source_index)


def check_out(out: str) -> None:
    """Refuse an --out holding kept.jsonl / dropped.jsonl that `corpus clean` did not write."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{out}: not a directory")
    mine = _is_ours(os.path.join(out, MARKER))
    for name in OUT_FILES + (MARKER,):
        if os.path.lexists(os.path.join(out, name)) and not mine:
            raise ValueError(f"{out}: holds {name}, which `corpus clean` did not write (no {MARKER} of "
                             "its own); use an empty or new directory")


def _is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("format") == "refinery-clean"
    except (OSError, ValueError, AttributeError):
        return False


def clean(recipe: Recipe, out: str, on_doc: Callable[[Decision], None] | None = None) -> dict[str, Any]:
    """Write DIR/kept.jsonl, DIR/dropped.jsonl and DIR/clean_summary.json; return the summary."""
    from shards.fileio import atomic_write as _atomic_write
    from shards.fileio import fsync_rename as _fsync_rename
    from shards.fileio import writing

    check_out(out)
    os.makedirs(out, exist_ok=True)
    bad: list[BadUnit] = []
    per_source: dict[str, dict[str, Any]] = {}
    paths = {n: os.path.join(out, n) for n in OUT_FILES}
    with writing(out), open(paths["kept.jsonl"] + ".tmp", "w", encoding="utf-8") as kf, \
            open(paths["dropped.jsonl"] + ".tmp", "w", encoding="utf-8") as df:
        for d in clean_iter(recipe, bad):
            s = per_source.setdefault(d.source, {"docs": 0, "kept": 0, "dropped": 0, "drops": Counter(),
                                                 "lines_removed": Counter(), "docs_with_lines_removed": 0})
            s["docs"] += 1
            s["kept" if d.kept else "dropped"] += 1
            if not d.kept:
                s["drops"][f"{d.stage}:{d.reason}"] += 1
            if d.kept and d.removed:
                s["docs_with_lines_removed"] += 1
                for st, v in d.removed.items():
                    s["lines_removed"][st] += len(v)
            (kf if d.kept else df).write(json.dumps(d.row(), ensure_ascii=False) + "\n")
            if on_doc is not None:
                on_doc(d)
    for n, p in paths.items():
        _fsync_rename(p + ".tmp", p)
    summary = {"format": "refinery-clean", "recipe": recipe.name, "recipe_sha256": recipe.fingerprint(),
               "stages": [st.name for st in recipe.stages],
               "skipped_stages": [st.name for st in recipe.stages if _is_global(st.name) or st.name == "line_dedup"],
               "per_source": {k: {**v, "drops": dict(sorted(v["drops"].items())),
                                  "lines_removed": dict(v["lines_removed"])} for k, v in per_source.items()},
               "bad_unit_counts": dict(Counter(b.reason for b in bad)),
               "bad_units": [b.as_dict() for b in bad[: recipe.limits.max_bad_examples]]}
    _atomic_write(os.path.join(out, MARKER), json.dumps(summary, ensure_ascii=False, indent=1))
    return summary


def _is_global(name: str) -> bool:
    from .stages import stage_class

    return stage_class(name).is_global
