"""C4 (Raffel et al. 2020) and FineWeb (Penedo et al. 2024) quality rules, with datatrove's
defaults. Terminal punctuation includes the Chinese full-width marks, so Chinese prose is
judged by the same rule rather than failing it wholesale."""

from __future__ import annotations

import re
import unicodedata

from ..document import Document
from ..stages import Drop, Stage, StageParams, register
from .gopher import count_duplicates
from .text import _Memo, is_cjk, split_words, tokens

# datatrove/C4: a kept line ends in one of these and not in "..."; Chinese text also accepts the
# full-width marks (otherwise every Chinese line fails the rule)
END_PUNCT = (".", "?", "!", '"', "'")
END_PUNCT_ZH = END_PUNCT + ("”", "’", "。", "！", "？", "…", "；", "」", "』", "）")
TERMINAL = END_PUNCT_ZH  # FineWeb's terminal-punctuation line ratio
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
# spaCy's sentencizer splits after one of these tokens when a non-punctuation token follows
SENT_END = frozenset(".!?。！？．｡‼⁇⁈⁉")
_SENT_MARK = re.compile(r"[.!?。！？．｡‼⁇⁈⁉]")
_WORD_CHAR = re.compile(r"\w")
_TOKEN_KIND = _Memo(lambda t: (t in SENT_END, all(unicodedata.category(c).startswith("P") for c in t)))


def count_sentences(line: str) -> int:
    """Sentences in a line the way spaCy's sentencizer counts them (datatrove's C4 rule uses it):
    a new sentence starts at the first non-punctuation token after a sentence-final mark."""
    m = _SENT_MARK.search(line)
    if m is None or _WORD_CHAR.search(line, m.end()) is None:  # no word after the first mark: one sentence
        return 1
    n, seen_end = 1, False
    for is_end, is_punct in map(_TOKEN_KIND.__getitem__, tokens(line)):
        if is_end:
            seen_end = True
        elif seen_end and not is_punct:
            n += 1
            seen_end = False
    return n


@register
class C4Quality(Stage):
    """C4's line rules, applied in datatrove's order: drop lines with a word over 1000 chars,
    strip citation marks, drop lines without terminal punctuation (or ending in "..."), with
    fewer than 3 words, with "javascript" or a cookie/policy phrase; drop the document for
    "lorem ipsum" or "{" on a surviving line or fewer than 5 sentences in the kept lines."""

    name = "c4_quality"

    class Params(StageParams):
        min_words_per_line: int = 3
        min_sentences: int = 5
        max_word_length: int = 1000
        remove_citations: bool = True
        filter_lorem_ipsum: bool = True
        filter_curly_bracket: bool = True
        remove_javascript_lines: bool = True
        remove_policy_lines: bool = True

    def apply(self, doc: Document) -> Document | Drop:
        p = self.p
        cjk = is_cjk(doc.text)
        ends = END_PUNCT_ZH if cjk else END_PUNCT
        kept, sentences = [], 0
        for line in doc.text.splitlines():
            line = line.strip()
            # Chinese has no spaces: a whitespace "word" would be a whole line, so words are tokens
            words = tokens(line) if cjk else line.split()
            if len(line) > p.max_word_length and max(map(len, words)) > p.max_word_length:
                continue
            if p.remove_citations:
                line = CITATION.sub("", line)
            if not line.endswith(ends) or line.endswith("..."):
                continue
            if (sum(1 for w in words if w.isalnum()) if cjk else len(words)) < p.min_words_per_line:
                continue
            low = line.lower()
            if p.filter_lorem_ipsum and "lorem ipsum" in low:
                return Drop("lorem_ipsum")
            if p.remove_javascript_lines and "javascript" in low:
                continue
            if p.filter_curly_bracket and "{" in line:
                return Drop("curly_bracket")
            if p.remove_policy_lines and any(x in low for x in POLICY):
                continue
            sentences += count_sentences(line)
            kept.append(line)
        if sentences < p.min_sentences:
            return Drop("too_few_sentences", f"{sentences}")
        text = "\n".join(kept).strip()
        return doc if text == doc.text else doc.with_text(text)


@register
class FineWebQuality(Stage):
    name = "fineweb_quality"

    class Params(StageParams):
        line_punct_thr: float = 0.12
        short_line_thr: float = 0.67
        short_line_length: int = 30
        char_duplicates_ratio: float = 0.01
        new_line_ratio: float = 0.3

    def apply(self, doc: Document) -> Document | Drop:
        p = self.p
        lines = [l for l in doc.text.split("\n") if l.strip()]
        if not lines:
            return Drop("empty")
        punct = sum(1 for l in lines if l.rstrip().endswith(TERMINAL)) / len(lines)
        if punct < p.line_punct_thr:
            return Drop("line_punct_ratio", f"{punct:.2f}")
        short = sum(1 for l in lines if len(l) <= p.short_line_length) / len(lines)
        if short > p.short_line_thr:
            return Drop("short_line_ratio", f"{short:.2f}")
        _, dup = count_duplicates(lines)
        non_nl = len(doc.text.replace("\n", ""))
        if non_nl and dup / non_nl > p.char_duplicates_ratio:
            return Drop("char_dup_ratio", f"{dup / non_nl:.3f}")
        words = split_words(doc.text)
        if words and doc.text.count("\n") / len(words) > p.new_line_ratio:
            return Drop("list_ratio")
        return doc
