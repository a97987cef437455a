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
_EN = re.compile("(?:" + "|".join(f"(?:{p})" for p in EN_PATTERNS) + r")\s*$", re.IGNORECASE)

# --- Chinese line patterns ---
# navigation and metadata fields: the line *starts* with the field name and a colon (or is the
# bare navigation word); the rest of the line is the field's value
_ZH_FIELD = re.compile(
    r"^[\d\s]*[«‹<\[【（(]*\s*(上一篇|下一篇|上一页|下一页|上一条|下一条|上一章|下一章|上篇|下篇|上一文章|下一文章|前一篇|后一篇"
    r"|上一篇文章|下一篇文章|来源|来源于|稿源|信息来源|文章来源|本文来源"
    r"|出处|作者|编辑|责任编辑|责编|编审|审核|校对|记者|通讯员|摄影|图片来源|发布时间|发布日期|发表时间|发表日期|更新时间"
    r"|发布者|发布人|浏览|浏览次数|浏览量|阅读|阅读数|阅读量|阅读次数|点击|点击数|点击量|点击率|人气|字号|关键词|关键字|标签"
    r"|分类|栏目|所属栏目|当前位置|您的位置|你的位置|您当前的位置|所在位置|原标题|原文链接|本文链接|本文地址|转载请注明)"
    r"\s*[:：»›>】)）]")
_ZH_FIELD_BARE = re.compile(r"^[«‹<\[【]*\s*(上一篇|下一篇|上一页|下一页|上一条|下一条|上一章|下一章|返回顶部|返回首页|返回列表"
                            r"|返回目录|回到顶部)\s*[»›>】\]]*$")
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
              "我要评论", "发表评论", "网友评论", "评论区", "条评论", "人参与", "人阅读", "次阅读", "次浏览", "人浏览",
              "阅读更多", "閱讀更多", "可能也喜欢", "可能也會喜歡", "可能还喜欢", "的其他文章", "更多文章"]
_ZH_PROMPT = re.compile("|".join(sorted(map(re.escape, ZH_PROMPTS), key=len, reverse=True)))
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
    if _EN.match(s) is not None:
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

    def apply(self, doc: Document) -> Document | Drop:
        lines = doc.text.split("\n")
        bad = [i for i, l in enumerate(lines) if is_boilerplate(l, self.p.zh_max_len, self.p.all_caps_lines)]
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
        if not bad:
            return doc
        return doc.with_text("\n".join(lines).strip(), boilerplate_lines_removed=len(bad))
