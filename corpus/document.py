"""The record that flows through every pipeline stage."""

from __future__ import annotations

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

    def with_text(self, text: str, **meta: Any) -> "Document":
        """Return a copy with new text (and extra metadata) — transforms never mutate."""
        md = dict(self.metadata)
        md.update(meta)
        return replace(self, text=text, metadata=md)


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
