"""C4 (Raffel et al. 2020) and FineWeb (Penedo et al. 2024) quality rules, with datatrove's
defaults. Terminal punctuation includes the Chinese full-width marks, so Chinese prose is
judged by the same rule rather than failing it wholesale."""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register
from .gopher import count_duplicates
from .text import split_words

TERMINAL = (".", "!", "?", '"', "'", "”", "。", "！", "？", "…", "；", "」", "』", "）")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


@register
class C4Quality(Stage):
    """Line rules (terminal punctuation, >= 3 words, no javascript/policy lines, no words over
    1000 chars) that rewrite the document, and document rules (lorem ipsum, curly braces,
    >= 5 sentences) that drop it."""

    name = "c4_quality"

    class Params(StageParams):
        min_words_per_line: int = 3
        min_sentences: int = 5
        max_word_length: int = 1000
        filter_lorem_ipsum: bool = True
        filter_curly_bracket: bool = True
        remove_javascript_lines: bool = True
        remove_policy_lines: bool = True

    def apply(self, doc: Document) -> Document | Drop:
        p = self.p
        low = doc.text.lower()
        if p.filter_lorem_ipsum and "lorem ipsum" in low:
            return Drop("lorem_ipsum")
        if p.filter_curly_bracket and "{" in doc.text:
            return Drop("curly_bracket")
        kept, sentences = [], 0
        for line in doc.text.split("\n"):
            s = line.strip()
            if not s.endswith(TERMINAL):
                continue
            words = split_words(s)
            if len([w for w in words if w.isalnum()]) < p.min_words_per_line:
                continue
            if any(len(w) > p.max_word_length for w in words):
                continue
            ls = s.lower()
            if p.remove_javascript_lines and "javascript" in ls:
                continue
            if p.remove_policy_lines and any(x in ls for x in POLICY):
                continue
            sentences += len(re.findall(r"[.!?。！？]+", s)) or 1
            kept.append(line)
        if sentences < p.min_sentences:
            return Drop("too_few_sentences", f"{sentences}")
        text = "\n".join(kept)
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
