"""Encoding repair: Latin-1/cp1252 mojibake (ftfy), the GBK line-wrap artefact `崐`, runs of
U+FFFD; optional traditional → simplified Chinese with OpenCC (`t2s: true`)."""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register

# GBK conversion leaves 崐 where a line was hard-wrapped (the lines were joined later, so it now
# sits mid-sentence); the character itself is a rare variant of 昆, kept in 崐山/崐仑
_KUN = re.compile(r"崐(?![山仑崘])")
_FFFD = re.compile("\ufffd+")


@register
class FixEncoding(Stage):
    name = "fix_encoding"

    class Params(StageParams):
        ftfy: bool = True
        gbk_wrap_artefact: bool = True
        max_replacement_ratio: float = 0.01  # U+FFFD share above which the document is dropped
        t2s: bool = False

    def __init__(self, **params):
        super().__init__(**params)
        self._cc = None
        if self.p.t2s:
            import opencc

            self._cc = opencc.OpenCC("t2s")

    def apply(self, doc: Document) -> Document | Drop:
        t = doc.text
        bad = t.count("\ufffd")
        if bad and bad / max(1, len(t)) > self.p.max_replacement_ratio:
            return Drop("replacement_chars", f"{bad} U+FFFD")
        if self.p.gbk_wrap_artefact and "崐" in t:
            t = _KUN.sub("", t)
        if bad:
            t = _FFFD.sub("", t)
        if self.p.ftfy and _maybe_mojibake(t):
            import ftfy

            t = ftfy.fix_text(t, normalization="NFC")
        if self._cc is not None:
            t = self._cc.convert(t)
        return doc if t == doc.text else doc.with_text(t)


_MOJI = re.compile("[ÃÂâ][\u0080-\u00bf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]")


def _maybe_mojibake(t: str) -> bool:
    # ftfy is thorough but slow; only documents with the tell-tale UTF-8-read-as-cp1252 pairs go through it
    return _MOJI.search(t) is not None
