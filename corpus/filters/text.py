"""Word splitting and script detection shared by the filters.

Gopher, C4 and FineWeb rules count "words". For space-delimited text a word is a run of word
characters (with inner apostrophes) or a run of punctuation, which is close to what spaCy's
tokenizer gives datatrove at a fraction of the cost. For CJK text every Han/Kana/Hangul
character is a word (per-character rule): Chinese has no spaces, and whitespace splitting
would make a whole paragraph one "word".
"""

from __future__ import annotations

import re
import string

_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+(?:['’][^\W_]+)*|[^\w\s]+|_+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
PUNCTUATION = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】…—·「」『』〈〉﹏～")

EN_STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])  # Gopher / datatrove
# Chinese function words standing in for Gopher's stop words (any real sentence has several)
ZH_STOP_WORDS = frozenset("的了是在和有我这不也就都而及与着或一个们之为以于")


def split_words(text: str) -> list[str]:
    """Words: CJK characters one by one, other scripts by word-character runs; punctuation runs too."""
    return _WORD.findall(text)


def cjk_ratio(text: str) -> float:
    """Share of non-space characters that are CJK."""
    n = len(text) - text.count(" ") - text.count("\n")
    return len(_CJK.findall(text)) / n if n > 0 else 0.0


def is_cjk(text: str, threshold: float = 0.3) -> bool:
    # sample long documents: the ratio of the first 20k characters decides
    return cjk_ratio(text[:20000]) >= threshold


def is_symbol_word(w: str) -> bool:
    return all(c in PUNCTUATION for c in w)
