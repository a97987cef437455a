"""URL filter (RefinedWeb, Penedo et al. 2023, section G.1): a domain blocklist plus banned
words in the URL — any strict word, or several soft words — when a document's URL is known
(`metadata.url`). User blocklist files (one domain per line) extend the built-in lists."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..document import Document
from ..stages import Drop, Stage, StageParams, register

BLOCKED_DOMAINS = {"pornhub.com", "xvideos.com", "xnxx.com", "xhamster.com", "redtube.com", "youporn.com",
                   "bet365.com", "888casino.com", "pokerstars.com", "williamhill.com"}
STRICT_WORDS = ["porn", "xxx", "hentai", "camgirl", "escort", "casino", "赌场", "博彩", "色情", "成人视频", "六合彩"]
SOFT_WORDS = ["sex", "adult", "bet", "poker", "slots", "lottery", "nude", "dating", "gamble", "彩票", "娱乐城", "棋牌"]


@register
class URLFilter(Stage):
    name = "url_filter"

    class Params(StageParams):
        blocklist_files: list[str] = []
        extra_domains: list[str] = []
        strict_words: list[str] = STRICT_WORDS
        soft_words: list[str] = SOFT_WORDS
        soft_threshold: int = 2

    def __init__(self, **params):
        super().__init__(**params)
        self.domains = set(BLOCKED_DOMAINS) | set(self.p.extra_domains)
        for f in self.p.blocklist_files:
            with open(f, encoding="utf-8") as fh:
                self.domains |= {l.strip().lower() for l in fh if l.strip() and not l.startswith("#")}
        self._tok = re.compile(r"[\W_]+")

    def apply(self, doc: Document) -> Document | Drop:
        url = doc.metadata.get("url")
        if not url:
            return doc
        host = (urlsplit(url).hostname or "").lower()
        parts = host.split(".")
        for i in range(len(parts) - 1):
            if ".".join(parts[i:]) in self.domains:
                return Drop("blocked_domain", host)
        low = url.lower()
        for w in self.p.strict_words:
            if w in low:
                return Drop("banned_url_word", w)
        toks = set(self._tok.split(low))
        soft = [w for w in self.p.soft_words if w in toks or (not w.isascii() and w in low)]
        if len(soft) >= self.p.soft_threshold:
            return Drop("soft_banned_url_words", ",".join(soft))
        return doc
