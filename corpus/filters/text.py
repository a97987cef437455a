"""Word splitting and script detection shared by the filters.

Gopher, C4 and FineWeb rules count "words". For space-delimited text the split approximates spaCy's
English tokenizer (what datatrove counts), at a fraction of the cost: see `_WORD`. For CJK text every Han/Kana/Hangul
character is a word (per-character rule): Chinese has no spaces, and whitespace splitting
would make a whole paragraph one "word".
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# Titles and months that spaCy's English tokenizer keeps with their period.
_ABBR = (r"(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|etc|Inc|Ltd|Co|Corp|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
         r"|Mt|Gen|Gov|Sen|Rep|Prof|Rev|Capt|Col|Lt|Sgt|No)\.")
_UNITS = r"(?:am|pm|a\.m|p\.m|km|m|dm|cm|mm|nm|yd|in|ft|kg|g|mg|lb|lbs|oz|mph|kmh|MB|mb|KB|kb|GB|gb|TB|tb|K|M|G|T)"
# a URL ends at its last character that is not trailing punctuation: greedy, then one step of
# backtracking per character (a lazy match with a lookahead was quadratic on "http://....x")
_URL_TAIL = r"\S(?:\S*[^\s.,;:!?)\]\"'”’])?"
# One regex that approximates spaCy's English tokenizer (what datatrove counts as words), in order:
# CJK characters; URLs, e-mails, handles and dotted names whole; initials, initialisms and
# abbreviations with their periods; clitics split off
# ("don" + "'t": spaCy's "do" + "n't" has the same count and lengths; "Aristotle" + "'s");
# numbers with inner separators whole; words; an ellipsis or a dash run; otherwise every
# punctuation mark on its own (spaCy splits ")," into two tokens). Measured against spaCy in
# bench/filters.py (decision agreement per filter).
_WORD = re.compile(
    rf"[{_CJK_CHARS}]"
    rf"|[Cc]an(?=not\b)"  # spaCy: "cannot" -> "can" "not"
    rf"|\d+(?={_UNITS}\b)"  # "9pm" -> "9" "pm", "30mph" -> "30" "mph"
    rf"|[^\W\d_{_CJK_CHARS}][^\W_{_CJK_CHARS}]*+(?![.'’:/@$-])"  # fast path: a plain word
    rf"|[A-Z]{{1,3}}\$"  # US$, HK$
    rf"|https?://{_URL_TAIL}|www\.{_URL_TAIL}"
    rf"|[\w.+-]{{1,64}}@[\w-]+(?:\.[\w-]+)+|@\w+"  # e-mail addresses (local part <= 64, RFC 5321), @handles
    rf"|\b(?:[A-Za-z]\.)+|\b{_ABBR}"  # initials and initialisms (W., U.S.A.), abbreviations
    rf"|[^\W_{_CJK_CHARS}]+(?:\.[a-z0-9][^\W_{_CJK_CHARS}]*)+(?:/[^\s]*[^\s.,;:!?)\]\"'”’])?"  # amazon.co.uk/x
    rf"|['’](?i:s|re|ll|ve|m|d|t)\b"
    rf"|\d+(?:[.,:/]\d+)+"
    rf"|[^\W\d_{_CJK_CHARS}][^\W_{_CJK_CHARS}]*-\d+\b"
    rf"|[^\W_{_CJK_CHARS}]+"
    rf"|\.{{2,}}|-{{2,}}|_+|[^\w\s]")
_CJK = re.compile(f"[{_CJK_CHARS}]")
_CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")
PUNCTUATION = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】…—·「」『』〈〉﹏～")

_NON_CJK_WORD = re.compile(rf"[^\W{_CJK_CHARS}]")  # a letter/digit/underscore that is not CJK
_SPLIT_SPECIAL = frozenset(["cannot", "Cannot", "CANNOT"])  # spaCy: "can" "not"

EN_STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])  # Gopher / datatrove
# Chinese function words standing in for Gopher's stop words (any real sentence has several)
ZH_STOP_WORDS = frozenset("的了是在和有我这不也就都而及与着或一个们之为以于")


@lru_cache(maxsize=8)
def split_words(text: str) -> list[str]:
    """Words: CJK characters one by one, other scripts as spaCy's English tokenizer splits them.

    Cached for the last few texts: the stages of one chain split the same document several
    times. The list is shared: callers must not modify it."""
    out: list[str] = []
    add, extend, find = out.append, out.extend, _WORD.findall
    for chunk in text.split():  # no token spans whitespace, so chunks can be split on their own
        if chunk.isalpha() and chunk.isascii() and chunk not in _SPLIT_SPECIAL:
            add(chunk)  # a plain ASCII word: one token, no regex (most English chunks)
        elif not chunk.isascii() and _NON_CJK_WORD.search(chunk) is None and ".." not in chunk \
                and "--" not in chunk:
            extend(chunk)  # only CJK characters and punctuation marks: every character is a token
        else:
            extend(find(chunk))
    return out


def cjk_ratio(text: str) -> float:
    """Share of non-space characters that are CJK."""
    n = len(text) - text.count(" ") - text.count("\n")
    return sum(map(len, _CJK_RUN.findall(text))) / n if n > 0 else 0.0  # runs: 4x fewer objects


_HAN_RUN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_KANA_HANGUL = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")


def chinese_ratio(text: str) -> float:
    """Share of non-space characters that are Han, or 0 when the text writes kana or hangul:
    Japanese and Korean also use Han characters, but only they use kana and hangul, and a few
    per hundred Han characters settle it (a Chinese page quoting one Japanese word stays Chinese)."""
    n = len(text) - text.count(" ") - text.count("\n")
    if n <= 0:
        return 0.0
    han = sum(map(len, _HAN_RUN.findall(text)))
    if len(_KANA_HANGUL.findall(text)) > max(2, 0.05 * han):
        return 0.0
    return han / n


def writes_kana_or_hangul(text: str, share: float = 0.05) -> bool:
    """More than `share` of the non-space characters are kana or hangul (Japanese, Korean)."""
    n = len(text) - text.count(" ") - text.count("\n")
    return n > 0 and len(_KANA_HANGUL.findall(text)) > share * n


def is_cjk(text: str, threshold: float = 0.3) -> bool:
    # sample long documents: the ratio of the first 20k characters decides
    return cjk_ratio(text[:20000]) >= threshold


def is_symbol_word(w: str) -> bool:
    # most words start with a letter: the first character settles it without a generator
    return w[0] in PUNCTUATION and all(c in PUNCTUATION for c in w)


def has_alpha(w: str) -> bool:
    return w[0].isalpha() or any(c.isalpha() for c in w)


class _Memo(dict):
    """word -> f(word), filled on first sight; words repeat (Zipf), so `map(memo.__getitem__, words)`
    runs at dict speed. Cleared when it grows past `cap` entries to bound memory."""

    def __init__(self, f, cap: int = 1_000_000):
        super().__init__()
        self.f, self.cap = f, cap

    def __missing__(self, w: str) -> bool:
        if len(self) >= self.cap:
            self.clear()
        v = self[w] = self.f(w)
        return v


SYMBOL = _Memo(is_symbol_word)
ALPHA = _Memo(has_alpha)


def tokens(text: str) -> list[str]:
    """`split_words` without the cache (for the many short lines of line-level rules)."""
    return split_words.__wrapped__(text)
