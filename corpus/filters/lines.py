"""RefinedWeb line-wise corrections (Penedo et al. 2023, appendix G.2) for English web text,
with Chinese equivalents of the same boilerplate: counters, navigation, sign-in/read-more
calls, number-only and all-caps lines, timestamps, 扫码关注 / 点击查看 / 责任编辑 / 上一篇 ...
Lines are removed; when more than `max_removed_frac` of the document's words go, the whole
document is dropped (RefinedWeb's 5%)."""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register
from .text import split_words

EN_PATTERNS = [
    r"^\s*[\d.,]+\s*[kKmM]?\s*(likes?|shares?|comments?|views?|followers?|retweets?|replies|reviews?)\s*$",
    r"^\s*(sign in|log in|login|sign up|register|subscribe|read more|click here|show more|load more|continue reading"
    r"|share this|share on \w+|follow us|skip to (main )?content|back to top|previous( post| article)?|next( post| article)?"
    r"|advertisement|sponsored|all rights reserved.*|copyright ©?.*|cookie(s)? (policy|settings).*|privacy policy"
    r"|terms of (use|service).*|home|menu|search)\s*[»›>|]*\s*$",
    r"^[\s\d.,:/\-|()%+]+$",  # number-only
    r"^\s*\d{1,2}:\d{2}(:\d{2})?\s*([ap]\.?m\.?)?\s*$",  # a timestamp
    r"^\s*(\w+\s*\|\s*){3,}\w*\s*$",  # navigation: a | b | c | d
]
ZH_MARKERS = ["扫码关注", "扫一扫", "点击查看", "点击进入", "点击下载", "微信公众号", "关注我们", "关注公众号", "责任编辑",
              "上一篇", "下一篇", "版权所有", "免责声明", "广告", "阅读原文", "分享到", "打开APP", "返回搜狐",
              "查看更多", "本文来源", "未经授权", "转载请注明", "相关阅读", "热门推荐", "猜你喜欢", "联系我们",
              "网站地图", "登录", "注册", "收藏本文", "举报", "编辑：", "来源：", "更多精彩"]
_EN = re.compile("|".join(f"(?:{p})" for p in EN_PATTERNS), re.IGNORECASE)


def is_boilerplate(line: str, zh_max_len: int = 40) -> bool:
    s = line.strip()
    if not s:
        return False
    if _EN.match(s):
        return True
    if len(s) <= zh_max_len and any(m in s for m in ZH_MARKERS):
        return True
    letters = [c for c in s if c.isalpha()]
    # all-caps boilerplate ("HOME NEWS SPORTS"): short, several words, every letter upper-case
    return 3 <= len(letters) and len(s) <= 60 and s.upper() == s and any(c.isascii() for c in letters) \
        and len(s.split()) >= 2 and all(c.isupper() for c in letters if c.isascii())


@register
class LineCorrections(Stage):
    """Remove boilerplate lines; drop the document when too much of it was boilerplate."""

    name = "line_corrections"

    class Params(StageParams):
        max_removed_frac: float = 0.05
        zh_max_len: int = 40

    def apply(self, doc: Document) -> Document | Drop:
        lines = doc.text.split("\n")
        bad = [i for i, l in enumerate(lines) if is_boilerplate(l, self.p.zh_max_len)]
        if not bad:
            return doc
        total = len(split_words(doc.text)) or 1
        removed = sum(len(split_words(lines[i])) for i in bad)
        if removed / total > self.p.max_removed_frac:
            return Drop("too_much_boilerplate", f"{removed}/{total} words in {len(bad)} lines", bad)
        keep = [l for i, l in enumerate(lines) if i not in set(bad)]
        return doc.with_text("\n".join(keep).strip(), boilerplate_lines_removed=len(bad))
