"""Spam density: gambling, lottery and porn keywords per character (Chinese) or word (English).
Keyword stuffing is how SEO spam gets into crawled news pages (FlagData's `cleared1.jsonl`,
OSCAR zh); a real article mentioning 彩票 once is far below the threshold."""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register
from .text import is_cjk

# unambiguous terms only: place names (澳门, 金沙江), finance (开户, 发票) and everyday words (成人教育) stay out
ZH_SPAM = ["博彩", "赌场", "娱乐城", "百家乐", "时时彩", "六合彩", "赌博", "真人娱乐", "老虎机", "棋牌游戏", "色情",
           "约炮", "一夜情", "威尼斯人", "葡京娱乐", "太阳城", "送彩金", "彩金", "体育投注", "北京赛车", "快三",
           "网投", "赌球", "足彩", "彩票网", "注册送", "电子游艺", "亚博", "金沙线路", "金沙网站", "金沙娱乐",
           "裸聊", "美女直播", "私服", "天天中彩票", "彩神争霸", "大发快三", "大发时时彩", "js333", "bet365"]
EN_SPAM = ["casino", "casinos", "poker", "gambling", "roulette", "blackjack", "jackpot", "porn", "porno", "xxx",
           "escort", "escorts", "viagra", "cialis", "nude", "nudes"]
_ZH = re.compile("|".join(sorted(map(re.escape, ZH_SPAM), key=len, reverse=True)))
_EN = re.compile(r"\b(" + "|".join(map(re.escape, EN_SPAM)) + r")\b", re.IGNORECASE)


def spam_score(text: str) -> tuple[float, int, list[int]]:
    """(keyword characters / all characters, keyword hits, lines with hits)."""
    hits = en_hits = 0
    chars = 0
    lines = []
    for i, line in enumerate(text.split("\n")):
        n = 0
        for m in _ZH.finditer(line):
            n += 1
            chars += len(m.group(0))
        for m in _EN.finditer(line):
            n += 1
            en_hits += 1
            chars += len(m.group(0))
        if n:
            lines.append(i)
            hits += n
    return chars / max(1, len(text)), hits, lines


@register
class SpamDensity(Stage):
    name = "spam"

    class Params(StageParams):
        min_hits: int = 5  # never drop for fewer keyword hits than this
        max_hits_per_kchar: float = 2.0  # injected SEO spam repeats its brand every few hundred characters
        # (for non-CJK text: per 1000 ~words, i.e. characters/6)
        max_density: float = 0.02  # or: keyword characters per character (keyword-stuffed link lists)

    def apply(self, doc: Document) -> Document | Drop:
        dens, hits, lines = spam_score(doc.text)
        # English words are ~6 characters: the same threshold per word, not per character
        per_k = 1000 * hits / max(1, len(doc.text)) * (1.0 if is_cjk(doc.text) else 6.0)
        if hits >= self.p.min_hits and (per_k > self.p.max_hits_per_kchar or dens > self.p.max_density):
            return Drop("spam_keywords", f"{hits} hits, {per_k:.1f}/1000 chars, density {dens:.3f}", lines)
        return doc
