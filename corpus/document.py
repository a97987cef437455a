"""The record that flows through every pipeline stage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(slots=True)
class Document:
    """One document: its text plus where it came from.

    `id` is stable across runs (the record's own id when it has one, else
    `file:line`), so splits, dedup decisions and rejected samples can be traced
    back to the input.
    """

    id: str
    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # set only by `with_lines`: (the text it was made from, for each line of `text` the index of
    # the line of that text it came from). The chain's trace (`corpus clean`) reads it to say
    # which input lines a stage removed; other changes are aligned by content instead.
    lines_from: tuple[str, tuple[int, ...]] | None = field(default=None, repr=False, compare=False)

    def with_text(self, text: str, **meta: Any) -> "Document":
        """Return a copy with new text (and extra metadata) — transforms never mutate."""
        md = dict(self.metadata)
        md.update(meta)
        return replace(self, text=text, metadata=md, lines_from=None)

    def with_lines(self, lines: Sequence[str | None], **meta: Any) -> "Document":
        """A copy whose text is `lines` joined by "\n", skipping None. `lines[i]` is the new
        content of line i of `self.text.split("\n")` (None: removed), so the stage says exactly
        which lines it removed: the way for a line-removing stage to report them."""
        kept = [(i, l) for i, l in enumerate(lines) if l is not None]
        doc = self.with_text("\n".join(l for _, l in kept), **meta)
        doc.lines_from = (self.text, tuple(i for i, _ in kept))
        return doc

    def without_lines(self, remove: Iterable[int], **meta: Any) -> "Document":
        """A copy without the given lines (0-based indices into `self.text.split("\n")`)."""
        gone = set(remove)
        return self.with_lines([None if i in gone else l for i, l in enumerate(self.text.split("\n"))], **meta)


@dataclass(slots=True)
class BadUnit:
    """A piece of input that could not be turned into a document, and why."""

    file: str
    reason: str
    line: int | None = None
    offset: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "offset": self.offset,
                "reason": self.reason, "detail": self.detail[:200]}
