"""Boilerplate lines out first, then the page judged on what remains (RefinedWeb's line-wise
corrections, Penedo et al. 2023, appendix G.2, rebuilt for Chinese and English web pages).

Contract:
* A line is boilerplate only as a whole: it matches a *line pattern* (anchored at its start, or
  the whole line), never because a marker word occurs inside a sentence. `广告` removes the line
  `广告` and the menu `登录 | 注册`, not `中华人民共和国广告法` or an article that cites it.
* Boilerplate lines are removed and never count against the page: a news article with
  `上一篇/下一篇` navigation and a `来源：` line is kept without them.
* The page is dropped for what remains: when it had boilerplate lines and, after their removal,
  less than `min_content_frac` of its characters are in content-like lines (sentences, not menus,
  field lists or link lists): `no_content`, the navigation, listing, login and error pages. A
  text without any web-page furniture is never judged so (verse and tables have no sentences).
* A run of >= `tail_list_min` short titles or cut-off teasers that ends the page is a related-article
  list and is removed with the other boilerplate lines.
* A mostly-Chinese page of >= 3 lines with less than `min_sentence_frac` of its characters in lines
  that end a sentence (or are long clauses, or verse) is a listing: `no_sentences`.
* The ALL-CAPS rule (off by default, `all_caps_lines`) applies to Latin-script lines only: a
  Chinese line with an acronym (`患者行 CT 检查`) is content.
"""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register

# --- English (and any Latin-script) line patterns, matched against the whole stripped line ---
EN_PATTERNS = [
    r"[\d.,]+\s*[kKmM]?\s*(likes?|shares?|comments?|views?|followers?|retweets?|replies|reviews?|votes?)",
    r"(sign in|log in|login|log out|sign up|register|subscribe|read more|click here|show more|load more"
    r"|continue reading|share this|share on \w+|follow us|skip to (main )?content|back to top|previous( post| article)?"
    r"|next( post| article)?|advertisement|sponsored|all rights reserved.*|copyright ©?.*|© ?\d{4}.*"
    r"|cookie(s)? (policy|settings).*|privacy policy|terms of (use|service).*|home|menu|search|print|email"
    r"|jump to: navigation, search|jump to navigation|leave a (comment|reply)|reply|permalink|related posts?"
    r"|recent (posts|comments)|scroll to top|archives?|categories|tags|share|tweet|pin it|download:?|search by date"
    r"|you are here:?.*|posted (in|on|by) .{0,80}|filed under:? .{0,80}|tag(ged|s)?: .{0,120}"
    r"|categor(y|ies): .{0,120}|photo( credit)?: .{0,120}|image( credit)?: .{0,120}|from [\w ]{1,40}pedia"
    r"|from [\w ]{1,40}wiki|revision as of .{0,160}|\(diff\).{0,160}|preceded by:?|followed by:?"
    r"|select (month|category)|(publication|publish(ed)?|posted|updated?) (date|on):? .{0,60})\s*[»›>|:]*",
    # Q&A-site chrome (StackExchange, Ask*): MathJax group markers, the answer form, post menus
    r"\\?\$\\(begin|end)group\\?\$|your answer|post your (answer|comment)|by clicking .{0,20}post your answer.{0,160}"
    r"|(not the answer you're looking for\? )?browse other questions tagged.{0,160}|you must log in to .{0,60}"
    r"|(asked|answered|edited) \d{4}-\d\d-\d\d .{0,30}|((edit|retag|flag|offensive|close|merge|delete|link|more|share|follow"
    r"|improve this (answer|question))\s*){2,}",
    # blog and CMS chrome: WordPress/Blogger widgets, bylines, comment headers, "Read more" teasers
    r"advertisements?|%d bloggers like this:?|this slideshow requires javascript\.?|create a free website or blog at .{0,40}"
    r"|blog comments powered by disqus|read more( at .{1,60})?|by( [\w.'’-]+){1,4}|updated:? .{0,60}"
    r"|originally published .{0,80}"
    r"|archives select month.{0,400}|commenting policy"
    r"|please see this page for our commenting policy\.?|send feedback about.{0,40}|was this page helpful\?.{0,80}"
    r"|(you are )?using an? (insecure|outdated) (version of your )?(web )?browser.{0,160}|translations of this page:?"
    r"|last modified:? .{0,60}|request an update|((twitter|facebook|pinterest|youtube|instagram|linkedin|rss"
    r"|google\+?|email)\s*){2,}",
    # licence footers and journal chrome
    r"(unless otherwise stated, )?the content of this page is licensed under .{0,120}|this is an open access article.{0,200}"
    r"|download (references|citation|pdf)|(rights|reprints) and permissions|about this article|cite this article"
    r"|authors’ original (submitted )?files? for .{0,40}|item type: .{0,60}|uri: \S{1,200}|(doi:? ?)?https?://doi\.org/\S+.{0,40}"
    r"|view download statistics for this item|doi|keywords:?|open access|links:?",
    # widget labels of code-sample boxes and menus ("filter_none", "play_arrow", "brightness_4")
    r"filter_none|play_arrow|chevron_(right|left)|brightness_\d|link|edit|code|close|none|unknown|top|to top|up ↑"
    r"|user tools|viewing options|view item|top menu",
    # number-only: counters and pagination ("0", "12", "1 2 3 4 5"), not enumerators or years
    # ("1.", "(2012)"), which the dev set labels content (docs/filters.md)
    r"\d[\d,]*(?:\s*[|/\-]\s*\d[\d,]*|\s+\d[\d,]*)*",  # each repeat needs a separator: linear
    r"(\d{1,2}\s+)?\d{1,2}:\d{2}(:\d{2})?\s*([ap]\.?m\.?)?",  # a timestamp ("16:39", "28 16:39")
    r"(\w+\s*\|\s*){3,}\w*",  # navigation: a | b | c | d
    # a date on a line of its own: "Tuesday, July 12, 2011", "12 March 2019"
    r"((mon|tues|wednes|thurs|fri|satur|sun)day,?\s+)?((jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
    r"\s+\d{1,2}(st|nd|rd|th)?,?\s+\d{4}|\d{1,2}\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,?"
    r"\s+\d{4})",
]
_EN_MAX_LEN = 460
# line endings that make a short line chrome whatever precedes it: a teaser's "… Read More", a forum
# comment header "name on Thu, 11/02/2006 - 8:00pm.", a category count "Activism (34)", an infobox
# "… Succeeded by:", a wiki footer "start.txt · Last modified: …". Searched at the end of lines of
# <= 200 characters, apart from the anchored patterns: as leading `.{0,N}` branches of _EN they made
# the stage 2.4x slower
_EN_SUFFIX = re.compile(r"(?:…\s?read more|\S on \w{3}, \d{1,2}/\d{1,2}/\d{4} - \d{1,2}:\d{2}\s*[ap]m\.?"
                        r"|^[\w'’&,. -]{1,40} \(\d{1,5}\)|\s(?:succeeded|preceded) by:?|\s·\s+last modified:? .{0,60})\s*$",
                        re.IGNORECASE)
_EN = re.compile("(?:" + "|".join(f"(?:{p})" for p in EN_PATTERNS) + r")\s*$", re.IGNORECASE)

# --- Chinese line patterns ---
# navigation and metadata fields: the line *starts* with the field name and a colon (or is the
# bare navigation word); the rest of the line is the field's value
_ZH_FIELD = re.compile(
    r"^[\d\s]*[«‹<\[【（(]*\s*(上一篇|下一篇|上一页|下一页|上一条|下一条|上一章|下一章|上篇|下篇|上一文章|下一文章|前一篇|后一篇"
    r"|上一篇文章|下一篇文章|来源|来源于|稿源|信息来源|文章来源|本文来源"
    r"|出处|作者|编辑|责任编辑|责编|编审|审核|校对|记者|通讯员|摄影|图片来源|发布时间|发布日期|发表时间|发表日期|更新时间"
    r"|发布者|发布人|浏览|浏览次数|浏览量|阅读|阅读数|阅读量|阅读次数|点击|点击数|点击量|点击率|人气|字号|关键词|关键字|标签"
    r"|分类|栏目|所属栏目|当前位置|您的位置|你的位置|您当前的位置|所在位置|原标题|原文链接|本文链接|本文地址|转载请注明"
    r"|电话|联系电话|咨询电话|服务热线|热线|手机|传真|联系人|邮箱|邮编|Tags|TAG|Tag"
    r"|收稿日期|修回日期|录用日期|网络出版日期|出版日期|基金项目|通信作者|通讯作者|作者简介|引用本文|文章历史)"
    r"\s*[:：»›>】)）]"
    # prev/next and breadcrumbs without a colon: "上一篇 你知道… 下一篇 …", "首页 > 新闻 > …"
    r"|^\s*(上一篇|下一篇|上一页|下一页|上一条|下一条|上篇|下篇|上一篇文章|下一篇文章)\s"
    r"|^\s*(首页|网站首页|主页|返回首页)\s*[>»›/→]")
# metadata lines: a short line that starts with a (possibly truncated) date or time ("07 17:42:00 点击量：",
# "2016年1月4日20:38:09 …浏览"), or that holds two metadata fields; never a clause (no ，。！？；)
_ZH_META_START = re.compile(r"^\s*(\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?|\d{1,2}[-/月]\d{1,2}日?\s+\d{1,2}:\d{2}"
                            r"|\d{1,2}\s+\d{1,2}:\d{2})")
_ZH_META_FIELD = re.compile(r"(来源|作者|编辑|责编|发布时间|发布日期|时间|点击量|点击|浏览量|浏览|阅读量|阅读|人气|评论)\s*[:：]"
                            r"|\d+\s*(次浏览|人浏览|次阅读|人阅读|浏览|阅读)")
_CLAUSE = re.compile("[，。！？；]")
# phone and fax numbers on a line of their own ("82672760、82675803", "83564964。")
_ZH_NUMBERS = re.compile(r"^[\d\s\-—、,，/()（）+]{7,}[。.]?$")
_ZH_FIELD_BARE = re.compile(r"^[«‹<\[【]*\s*(上一篇|下一篇|上一页|下一页|上一条|下一条|上一章|下一章|返回顶部|返回首页|返回列表"
                            r"|返回目录|回到顶部|引用本文|基金项目|通信作者|通讯作者|作者简介|文章历史|文章快速检索|快速检索|本文二维码)\s*[»›>】\]]*$")
# menu words: a short line made only of these (and separators) is a menu, a share bar or a prompt
ZH_MENU_WORDS = [
    "首页", "登录", "注册", "免费注册", "立即注册", "退出", "举报", "广告", "分享", "分享到", "收藏", "加入收藏", "打印", "关闭",
    "关闭窗口", "打印本页", "评论", "回复", "点赞", "赞", "踩", "返回", "顶部", "关注", "订阅", "微博", "微信", "新浪微博",
    "腾讯微博", "QQ空间", "QQ好友", "人人网", "豆瓣", "复制链接", "更多", "查看更多", "字号", "大", "中", "小", "默认",
    "设为首页", "联系我们", "关于我们", "网站地图", "免责声明", "隐私政策", "法律声明", "帮助中心", "意见反馈", "投诉",
    "投稿", "广告服务", "招聘信息", "友情链接", "客服中心", "手机版", "电脑版", "APP下载", "下载APP", "客户端", "扫码",
    "二维码", "搜索", "高级搜索", "高级检索", "热门", "推荐", "相关阅读", "相关文章", "相关新闻", "相关推荐", "热门推荐",
    "猜你喜欢", "延伸阅读", "推荐阅读", "精彩推荐", "热门文章", "最新文章", "热点", "排行", "排行榜", "全部", "我要评论",
    "发表评论", "网友评论", "条评论", "参与讨论", "阅读原文", "展开全文", "点击展开", "收起", "上一篇", "下一篇", "上一页",
    "下一页", "尾页", "末页", "首页", "跳转", "纠错", "导航", "频道", "快讯", "滚动", "资讯", "新闻", "图片", "视频", "专题",
]
_MENU_SEP = re.compile(r"[\s|｜/／·•・、,，>»›<«‹\-—_\[\]【】()（）:：]+")
_MENU_WORD = re.compile("|".join(sorted(map(re.escape, set(ZH_MENU_WORDS)), key=len, reverse=True)))
# prompts and notices that are boilerplate wherever they sit in a short line that is not a sentence
ZH_PROMPTS = ["扫码关注", "扫一扫", "长按识别", "长按二维码", "识别二维码", "点击查看", "点击进入", "点击下载", "点击阅读",
              "点击这里", "点击蓝字", "点击上方", "点击关注", "阅读原文", "微信公众号", "关注公众号", "关注我们", "打开APP",
              "打开app", "返回搜狐", "查看更多", "更多精彩", "转载请注明", "未经授权不得转载", "未经许可不得转载", "版权所有",
              "版权声明", "免责声明", "ICP备", "ICP证", "公网安备", "Copyright", "copyright", "COPYRIGHT", "©",
              "All Rights Reserved", "本站所有", "本网站所有", "本文仅代表作者", "不代表本站", "不代表本网", "相关阅读",
              "相关文章", "热门推荐", "猜你喜欢", "延伸阅读", "推荐阅读", "精彩推荐", "分享到", "收藏本文", "责任编辑",
              "我要评论", "发表评论", "网友评论", "评论区", "阅读更多", "閱讀更多", "可能也喜欢", "可能也會喜歡", "可能还喜欢", "的其他文章", "更多文章"]
_ZH_PROMPT = re.compile("|".join(sorted(map(re.escape, ZH_PROMPTS), key=len, reverse=True))
                        # counters need their number: "12人参与", not "强迫他人参与…" in the criminal law
                        + r"|\d\s*(条评论|人参与|人阅读|次阅读|次浏览|人浏览|人收藏)")
_SENT_END = ("。", "！", "？", "；", "…", "!", "?", ".", "”", "」", "』")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_CJK_SENT_PUNCT = re.compile("[，。！？；：、]")
_DATED_ITEM = re.compile(r"\s\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(\s+\d{1,2}:\d{2}(:\d{2})?)?$")
_CJK_SENT_END = re.compile("[。！？；]")
_ZH_FUNCTION = re.compile("[的了着在是和与也就都而把被呢吗吧啊呵]")


def zh_boilerplate(s: str, max_len: int) -> bool:
    """A stripped Chinese line that is navigation, a metadata field, a menu or a prompt."""
    if len(s) > 2 * max_len:
        return False
    if _DATED_ITEM.search(s) and not _CJK_SENT_END.search(s):
        return True  # "尼康D60套机仅4670 2008-04-28 07:50": a related-article list item
    if _ZH_FIELD.match(s) and len(s) <= 2 * max_len and not s.endswith("。"):
        return True
    if _ZH_FIELD_BARE.match(s):
        return True
    if len(s) <= 2 * max_len and not _CLAUSE.search(s):
        m = _ZH_META_START.match(s)
        n_fields = len(_ZH_META_FIELD.findall(s))
        # a date then a name or a field ("24 07:46:04 郭施亮"), not a dated clause of a statute
        # ("1999年12月25日 第九届全国人民代表大会常务委员会第十三次会议通过")
        if n_fields >= 2 or (m and (n_fields or len(s) - m.end() <= 12)):
            return True
    if _ZH_NUMBERS.match(s):
        return True
    if len(s) <= max_len and s.endswith(("上一篇", "下一篇")):
        return True  # "有利网安全性如何？是否还值得投资下一篇": a title glued to its navigation word
    if len(s) > max_len:
        return False
    rest = _MENU_SEP.sub("", _MENU_WORD.sub("", s))
    if not rest or rest.isdigit():
        return True  # only menu words, separators and counts: "登录 | 注册", "分享到：微博 微信 QQ空间", "评论 12"
    if _ZH_PROMPT.search(s) and not s.endswith(("。", "！", "？")):
        return True
    return False


def all_caps_latin(s: str) -> bool:
    """A short Latin-script line of several words, every letter upper case ("HOME NEWS SPORTS").
    A line with any CJK character is never one: `患者行 CT 检查` or `HEV RNA：…` are content."""
    if len(s) > 60 or _CJK.search(s):
        return False
    letters = [c for c in s if c.isalpha()]
    return len(letters) >= 3 and len(s.split()) >= 2 and all(c.isupper() for c in letters)


def boilerplate_kind(line: str, zh_max_len: int = 40, all_caps: bool = False) -> str | None:
    """Which rule makes a line boilerplate ("en", "caps", "zh"), or None for content."""
    s = line.strip()
    if not s:
        return None
    if _CJK.search(s):
        if zh_boilerplate(s, zh_max_len):
            return "zh"
        if len(s) <= 2 * zh_max_len and len(_CJK.findall(s)) <= 2 and _EN.match(s) is not None:
            return "en"
        return None
    # the longest whole-line pattern is under 460 characters: longer lines are text, and skipping the
    # regex on them keeps the stage at 2x its first-round speed instead of 2.4x slower (bench below)
    if len(s) <= _EN_MAX_LEN and _EN.match(s) is not None:
        return "en"
    if len(s) <= 200 and _EN_SUFFIX.search(s) is not None:
        return "en"
    return "caps" if all_caps and all_caps_latin(s) else None


def is_boilerplate(line: str, zh_max_len: int = 40, all_caps: bool = False) -> bool:
    return boilerplate_kind(line, zh_max_len, all_caps) is not None


def is_content_line(line: str) -> bool:
    """A line that reads like text rather than a menu, field or link: Chinese with >= 10 CJK
    characters and a clause mark (，。！？；：、), or >= 40 CJK characters, or a verse-like
    line of >= 6 CJK characters with a function character (的 了 在 着 ...: poems and lyrics have no
    punctuation, menus have no function words); or >= 8 Latin-script words with a clause mark.
    Either test passing is enough, so mixed Chinese/English lines are judged by both."""
    s = line.strip()
    n_cjk = len(_CJK.findall(s))
    if n_cjk >= 10 and (_CJK_SENT_PUNCT.search(s) is not None or n_cjk >= 40):
        return True
    if n_cjk >= 6 and _ZH_FUNCTION.search(s) is not None:
        return True
    words = s.split()
    return len(words) >= 8 and any(w.endswith((".", "!", "?", ",", ";", ":", '"', "”")) for w in words)


_TEASER_END = ("...", "…", "……", "...》", "…》")
_EN_TITLE_END = re.compile(r"[.:;,\"”)]$")


def list_item_like(line: str) -> bool:
    """A line of a related-article or link list: a short title that is not a sentence (Chinese: <= 48
    characters without 。, English: <= 12 words not ending in . : ; ,), or a teaser cut off with an
    ellipsis (`…`, `...`, <= 200 characters)."""
    s = line.strip()
    if not s or len(s) > 200:
        return False
    if s.endswith(_TEASER_END):
        return True
    if _CJK.search(s):
        return len(s) <= 48 and "。" not in s and not s.endswith(("：", ":", "，", "；"))
    return len(s.split()) <= 12 and _EN_TITLE_END.search(s) is None


def tail_list(lines: list[str], removed: set[int], min_items: int) -> list[int]:
    """Indices of the run of list-item-like lines that ends the page (already removed lines and blanks
    inside the run are skipped), when it has >= `min_items` items and something else precedes it."""
    run: list[int] = []
    for i in range(len(lines) - 1, -1, -1):
        if i in removed or not lines[i].strip():
            continue
        if not list_item_like(lines[i]):
            return run if len(run) >= min_items else []
        run.append(i)
    return []  # the whole page is such lines: a listing or a poem, judged by the page rule instead


_ZH_SENT_LINE_END = ("。", "！", "？", "!", "?", "…", "”", "」", "』", "；")


def zh_sentence_frac(lines: list[str], min_lines: int) -> float | None:
    """Share of a Chinese page's characters in lines that end a sentence; None when the page is not
    mostly CJK or has fewer than `min_lines` non-blank lines (a one-paragraph answer is not a listing)."""
    kept = [l.strip() for l in lines if l.strip()]
    if len(kept) < min_lines:
        return None
    total = sum(len(l) for l in kept)
    if len(_CJK.findall("".join(kept)[:20000])) < 0.3 * min(total, 20000):
        return None
    # a long line with clauses is prose even when the page cut it off mid-sentence
    return sum(len(l) for l in kept if l.endswith(_ZH_SENT_LINE_END)
               or (len(l) >= 80 and len(_CJK_SENT_PUNCT.findall(l)) >= 2) or _verse_line(l)) / total


_VERSE = re.compile("[\u4e00-\u9fff，、；：！？。—…“”‘’（）《》\s]+")


def _verse_line(s: str) -> bool:
    """A line of verse: only Han characters and Chinese punctuation, with a function character
    (的 了 在 …). People's Daily's poems have no sentence marks; spec, price and catalogue lines have
    digits or Latin model numbers (without this 18 of People's Daily's 975 documents dropped, 3 with it)."""
    return len(s) <= 40 and _VERSE.fullmatch(s) is not None and _ZH_FUNCTION.search(s) is not None


@register
class LineCorrections(Stage):
    """Remove boilerplate lines; drop the page when what remains is not text (docstring of the module)."""

    name = "line_corrections"

    class Params(StageParams):
        zh_max_len: int = 40  # a Chinese menu or prompt line is short; a field line may be twice this
        # share of the remaining characters that must be in content-like lines (dev set: docs/filters.md)
        min_content_frac: float = 0.2
        drop_no_content: bool = True
        no_content_needs_boilerplate: bool = True
        # RefinedWeb's ALL-CAPS line rule: off, because on the dev set it removed 22 content lines
        # (headings, titles: "MATERIALS AND METHODS") for 11 boilerplate ones (docs/filters.md)
        all_caps_lines: bool = False
        # a run of >= this many short titles or cut-off teasers ending a page is a
        # related-article list (dev set: docs/filters.md); 0 turns the rule off
        tail_list_min: int = 3
        tail_list_langs: str = "zh,en"
        # the list needs no other furniture: a headline list ends many pages with no other removed line
        # (dev set: zh line recall 0.49 -> 0.70, content lines removed 0.00 -> 0.01)
        tail_list_needs_boilerplate: bool = False
        # a Chinese page of >= `sentence_min_lines` lines with less than this share of its characters in
        # lines that end a sentence (。！？…) is a listing, catalogue or headline page (dev set: every
        # labelled-keep Chinese page of >= 3 lines is >= 0.32, navigation pages <= 0.27); 0 = off
        min_sentence_frac: float = 0.3
        sentence_min_lines: int = 3

    def apply(self, doc: Document) -> Document | Drop:
        lines = doc.text.split("\n")
        bad = [i for i, l in enumerate(lines) if is_boilerplate(l, self.p.zh_max_len, self.p.all_caps_lines)]
        line_bad = set(bad)
        if (bad or not self.p.tail_list_needs_boilerplate) and self.p.tail_list_min:
            tail = tail_list(lines, set(bad), self.p.tail_list_min)
            if tail:
                zh = _CJK.search(lines[tail[0]]) is not None
                if ("zh" if zh else "en") in self.p.tail_list_langs.split(","):
                    bad = sorted(set(bad) | set(tail))
        if bad:
            gone = set(bad)
            lines = [l for i, l in enumerate(lines) if i not in gone]
        # only a page that shows web-page furniture (a removed line) is judged by its content share:
        # verse, couplets and tables in curated text have no content-like lines and no furniture
        if self.p.drop_no_content and (bad or not self.p.no_content_needs_boilerplate):
            total = sum(len(l.strip()) for l in lines)
            content = sum(len(l.strip()) for l in lines if is_content_line(l))
            if total == 0 or content / total < self.p.min_content_frac:
                return Drop("no_content", f"{content}/{total} characters in content-like lines", bad)
        if self.p.min_sentence_frac:
            # judged with the tail list still in: a headline page is not rescued by losing its list
            frac = zh_sentence_frac([l for i, l in enumerate(doc.text.split("\n")) if i not in line_bad],
                                    self.p.sentence_min_lines)
            if frac is not None and frac < self.p.min_sentence_frac:
                return Drop("no_sentences", f"{frac:.2f} of the characters in sentence lines", bad)
        if not bad:
            return doc
        return doc.with_text("\n".join(lines).strip(), boilerplate_lines_removed=len(bad))
