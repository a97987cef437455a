"""Gopher rules (Rae et al. 2021, "Scaling Language Models", appendix A, table A1), with the
defaults of datatrove's GopherRepetitionFilter and GopherQualityFilter, and documented Chinese
equivalents for the rules that assume space-separated words (docs/filters.md)."""

from __future__ import annotations

import itertools
import operator
import re

from kernels.textstats import dup_ngram_chars, top_ngram_chars, word_arrays

from ..document import Document
from ..stages import Drop, Stage, StageParams, register
from .lines import is_content_line
from .text import ALPHA, EN_STOP_WORDS, SYMBOL, ZH_STOP_WORDS, is_cjk, split_words

_PARA = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_HAS_WORD = re.compile(r"[^\W_]")


def count_duplicates(items: list[str]) -> tuple[int, int]:
    """(duplicate elements, characters in duplicate elements) beyond first occurrences.

    A repeated element without a letter or digit (a `————` or `* * *` separator, a blank
    paragraph) is layout, not repeated content: it is not counted."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            if _HAS_WORD.search(x) is None:
                continue
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


@register
class GopherRepetition(Stage):
    """Drop documents dominated by repeated lines, paragraphs or n-grams.

    Space-separated text follows datatrove's GopherRepetitionFilter. CJK text (>= 30% CJK
    characters) has no spaces: its "words" are characters, a word n-gram becomes a character
    n-gram of `n * cjk_chars_per_word` characters, punctuation and separator runs (`————`,
    `++++`) are not words, and the thresholds are FineWeb-2's for Mandarin (`cmn_Hani`), the
    published per-language tuning of the same rules. A CJK text shorter than
    `cjk_min_ngram_chars` is not judged by n-grams at all: in a one-sentence answer a single
    phrase is a large share of the text without being repeated."""

    name = "gopher_repetition"

    class Params(StageParams):
        dup_line_frac: float = 0.3
        dup_para_frac: float = 0.3
        dup_line_char_frac: float = 0.2
        dup_para_char_frac: float = 0.2
        top_n_grams: list[tuple[int, float]] = [(2, 0.2), (3, 0.18), (4, 0.16)]
        dup_n_grams: list[tuple[int, float]] = [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
        # FineWeb-2 configs/cmn_Hani.yml (huggingface/fineweb-2): thresholds tuned for Mandarin
        cjk_dup_line_frac: float = 0.287
        cjk_top_n_grams: list[tuple[int, float]] = [(2, 0.256), (3, 0.201), (4, 0.171)]
        cjk_dup_n_grams: list[tuple[int, float]] = [(5, 0.198), (6, 0.182), (7, 0.167), (8, 0.154), (9, 0.14),
                                                    (10, 0.127)]
        # FineWeb-2 counts segmented Chinese words (~1.5-1.7 characters); we count characters, so a
        # word n-gram is n * this many characters (docs/filters.md: law and Q&A keep rates per value)
        cjk_chars_per_word: int = 4
        # below this many non-punctuation CJK-text tokens the n-gram rules do not apply (a 40-character
        # Zhihu answer's one 8-character 4-gram is 20% of it); measured on the dev set, docs/filters.md
        cjk_min_ngram_chars: int = 150
        # the same for space-separated text, in words: Gopher's own 50-word document floor, so this
        # only matters where a source lowers gopher_quality's floor (C4's 15 words: a 6-word
        # company name was one top 2-gram over 20% of itself)
        min_ngram_words: int = 50
        ngrams_over_content_lines: bool = False

    def apply(self, doc: Document) -> Document | Drop:
        p, text = self.p, doc.text
        if not text:
            return doc
        cjk = is_cjk(text)
        paras = _PARA.split(text.strip())
        nd, cd = count_duplicates(paras)
        if nd / len(paras) > p.dup_para_frac:
            return Drop("dup_para_frac", f"{nd}/{len(paras)}")
        if cd / len(text) > p.dup_para_char_frac:
            return Drop("dup_para_char_frac", f"{cd}/{len(text)}")
        lines = _LINES.split(text)
        nd, cd = count_duplicates(lines)
        if nd / len(lines) > (p.cjk_dup_line_frac if cjk else p.dup_line_frac):
            return Drop("dup_line_frac", f"{nd}/{len(lines)}", _dup_line_numbers(text))
        if cd / len(text) > p.dup_line_char_frac:
            return Drop("dup_line_char_frac", f"{cd}/{len(text)}", _dup_line_numbers(text))
        if p.ngrams_over_content_lines:
            # repeated menus, sidebars and link lists are not the page's prose: the n-gram rules
            # judge the content-like lines (corpus/filters/lines.py), the line rules above all lines
            text = "\n".join(l for l in lines if is_content_line(l))
            if not text:
                return doc
        words = split_words(text)
        if cjk:
            words = list(itertools.compress(words, map(operator.not_, map(SYMBOL.__getitem__, words))))
            if len(words) < p.cjk_min_ngram_chars:
                return doc
            k, sep, top, dup = p.cjk_chars_per_word, 0, p.cjk_top_n_grams, p.cjk_dup_n_grams
        else:
            if len(words) < p.min_ngram_words:
                return doc
            k, sep, top, dup = 1, 1, p.top_n_grams, p.dup_n_grams
        h, lens = word_arrays(words)
        for n, frac in top:
            c = top_ngram_chars(h, lens, n * k, sep)
            if c / len(text) > frac:
                return Drop(f"top_{n}_gram", f"{c}/{len(text)}")
        for n, frac in dup:
            c = dup_ngram_chars(h, lens, n * k)
            if c / len(text) > frac:
                return Drop(f"duplicated_{n}_n_grams", f"{c}/{len(text)}")
        return doc


def _dup_line_numbers(text: str) -> list[int]:
    """Indices, into `text.split("\n")` (the convention of `Drop.lines` that the report and
    `corpus clean` use), of the non-empty lines that repeat an earlier one; the rule itself
    counts over `\n+`-split lines, so blank lines must not shift the indices."""
    seen: set[str] = set()
    out = []
    for i, l in enumerate(text.split("\n")):
        if not l:
            continue
        if l in seen:
            out.append(i)
        seen.add(l)
    return out


def _line_indices(text: str, pred) -> list[int]:
    return [i for i, l in enumerate(text.split("\n")) if pred(l)]


@register
class GopherQuality(Stage):
    """Gopher quality rules. For CJK documents: word counts use per-character words with their own
    length bounds (a one-line Q&A answer of 20 characters is a whole reply; a 120k-character
    textbook is one document), the mean word length rule is skipped (a CJK 'word' is one
    character by construction), the alphabetic-word floor is FineWeb-2's Mandarin value, and
    the stop words are Chinese function words."""

    name = "gopher_quality"

    class Params(StageParams):
        min_doc_words: int = 50
        max_doc_words: int = 100_000
        # CJK documents count characters: 20 is a one-sentence answer (the dev set labels those
        # keep); 300,000 = Gopher's 100,000 words at gopher_repetition's 3 characters per word
        cjk_min_doc_words: int = 20
        cjk_max_doc_words: int = 300_000
        cjk_min_alpha_words_ratio: float = 0.735  # FineWeb-2 configs/cmn_Hani.yml max_non_alpha_words_ratio
        min_avg_word_length: float = 3
        max_avg_word_length: float = 10
        max_symbol_word_ratio: float = 0.1
        max_bullet_lines_ratio: float = 0.9
        max_ellipsis_lines_ratio: float = 0.3
        max_non_alpha_words_ratio: float = 0.8
        min_stop_words: int = 2
        stop_words: list[str] | None = None
        # datatrove counts punctuation tokens as words in the alphabetic-word ratio, which drops
        # ~10% of C4 (punctuation-rich prose); we count words only, unless this is set
        alpha_ratio_over_all_tokens: bool = False
        bullets: list[str] = ["•", "-", "*", "●", "·"]
        min_lines_for_line_ratios: int = 3  # dev set: 2 of 226 Q&A answers were dropped at 1

    def apply(self, doc: Document) -> Document | Drop:
        p, text = self.p, doc.text
        words = split_words(text)
        cjk = is_cjk(text)
        n_words = len(words)
        non_symbol = list(itertools.compress(words, map(operator.not_, map(SYMBOL.__getitem__, words))))
        n = len(non_symbol)
        if n < (p.cjk_min_doc_words if cjk else p.min_doc_words):
            return Drop("gopher_short_doc", f"{n} words")
        if n > (p.cjk_max_doc_words if cjk else p.max_doc_words):
            return Drop("gopher_long_doc", f"{n} words")
        if not cjk:
            avg = sum(map(len, non_symbol)) / n
            if avg < p.min_avg_word_length:
                return Drop("gopher_below_avg_threshold", f"{avg:.2f}")
            if avg > p.max_avg_word_length:
                return Drop("gopher_above_avg_threshold", f"{avg:.2f}")
        if text.count("#") / n_words > p.max_symbol_word_ratio:
            return Drop("gopher_too_many_hashes")
        if (text.count("...") + text.count("…")) / n_words > p.max_symbol_word_ratio:
            return Drop("gopher_too_many_ellipsis")
        lines = text.splitlines()
        # a line share needs lines: a one-line answer that trails off ("……") is 100% ellipsis lines
        if len(lines) >= p.min_lines_for_line_ratios:
            bullets = [i for i, l in enumerate(lines) if l.lstrip().startswith(tuple(p.bullets))]
            if len(bullets) / len(lines) > p.max_bullet_lines_ratio:
                return Drop("gopher_too_many_bullets",
                            lines=_line_indices(text, lambda l: l.lstrip().startswith(tuple(p.bullets))))
            ell = [i for i, l in enumerate(lines) if l.rstrip().endswith(("...", "…"))]
            if len(ell) / len(lines) > p.max_ellipsis_lines_ratio:
                return Drop("gopher_too_many_end_ellipsis",
                            lines=_line_indices(text, lambda l: l.rstrip().endswith(("...", "…"))))
        # punctuation tokens are not words here (they are in the symbol rules above)
        pool = words if p.alpha_ratio_over_all_tokens else non_symbol
        alpha = sum(map(ALPHA.__getitem__, pool))
        if alpha / len(pool) < (p.cjk_min_alpha_words_ratio if cjk else p.max_non_alpha_words_ratio):
            return Drop("gopher_below_alpha_threshold", f"{alpha}/{len(pool)}")
        stops = set(p.stop_words) if p.stop_words else (ZH_STOP_WORDS if cjk else EN_STOP_WORDS)
        # distinct stop words; an ALL-CAPS page ("3 BEDROOM WITH THE VIEW") is asked again in lower case
        if len(stops.intersection(words)) < p.min_stop_words and \
                len(stops.intersection(map(str.lower, words))) < p.min_stop_words:
            return Drop("gopher_enough_stop_words")
        return doc
