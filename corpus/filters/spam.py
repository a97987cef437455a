"""Gambling, lottery, porn and SEO-ad spam: a weighted lexicon with brand patterns, scored per
page. Injected spam marks a hacked or spam site, so the page goes wherever in it the spam sits
(docs/filters.md, labelling guideline): one unambiguous term (a casino brand such as `XX贵宾会`,
a lottery-draw phrase such as `秒速赛车开奖`, a porn SEO phrase such as `一级a…`) is enough;
words that ordinary pages also use need company.

Contract: `spam_score(text, lexicon)` -> (score, hits, lines with hits); the stage drops a page
whose score reaches `min_score`. Weights: `certain` terms 2.0 (one drops at the default
`min_score: 2`), `likely` 1.0 (two), `weak` 0.25 (eight, and only by density: weak hits count
only past `weak_min_per_kchar` per 1000 characters, so an article about a lottery draw or a
gambling crackdown that says 彩票/赌博 a few times stays). User word files add terms with their
weights (`word_files`); nothing built in can be removed except by `builtin: false`.

The lists are ours, written for the classes of spam seen in Chinese Common Crawl (FlagData's
`cleared1.jsonl`, OSCAR zh) and English web spam; FlagData's and Data-Juicer's published word
lists were the starting point for the categories (not copied). Place names (澳门, 金沙江),
finance (开户, 发票) and everyday words (成人教育, 体育, 国际, 娱乐) are never terms on their own:
brands are matched as patterns, a name *followed by* a gambling word (`XX娱乐平台`, `XX体育app`).
"""

from __future__ import annotations

import re

from ..document import Document
from ..stages import Drop, Stage, StageParams, register

_H = "[\u4e00-\u9fff]"
_N = "[\u4e00-\u9fffA-Za-z0-9]"  # a brand name may be Latin: "ope体育app"
# brand patterns: a 1-4 character name + a gambling suffix; the suffix alone is an ordinary word
BRAND_PATTERNS = [
    rf"{_N}{{1,4}}贵宾会",
    rf"{_N}{{1,4}}娱乐(?:官网|网址|开户|代理|登录|登入|注册|app|APP|城|线路|手机版|客户端|真人|棋牌|老虎机)",
    rf"{_N}{{1,4}}体育(?:app|APP|App|官网|官方网站|官方app|平台下载|网址|登录|登入|注册|手机版|入口)",
    # not 国际注册/代理/线路/官网: international trademark registration, agencies and routes are news
    rf"{_N}{{1,4}}国际(?:ag|AG|充值|客户端|登录|app|APP|棋牌|真人)",
    # "the ten most reliable betting platforms": the SEO title of betting-platform spam
    r"(?:十大|正规|靠谱|信誉|最好的)(?:体育|娱乐|博彩|彩票|网投|赌博)(?:平台|网站|app|APP|网址)",
    # a betting brand slipped into an SEO keyword line ("本文关键词：…,XX体育,…")
    rf"(?:关键词|关键字)[:：][^\n]*?(?:^|[,，、\s]){_N}{{1,4}}体育(?=[,，、\s]|$)",
    r"(?<![A-Za-z])be?t ?365",  # bet365 and its spun spellings (bt365)
    # lower-case a only: 一级A (the wastewater discharge standard) is everyday news
    r"(?-i:一级a)(?:片|做|毛|视频|在线|看|卡片|v|V|爱|免费|黄)",
    rf"{_N}{{1,4}}棋牌(?:官网|平台|app|APP|下载|游戏平台|注册)",
    r"(?:金沙|新葡京|葡京|威尼斯人|太阳城|永利|银河|皇冠|美高梅|巴黎人|伦敦人)(?:娱乐|线路|网址|官网|app|APP|注册|开户|平台|登录|网站|集团网址|手机版|体育|现金)",
    r"(?:澳洲|澳门|极速|秒速|幸运|北京|SG|sg|分分|腾讯|重庆|江苏|广东)(?:幸运)?(?:赛车|飞艇|5|8|10|快三|快3|时时彩|分分彩)(?:开奖|计划|预测|走势|人工计划|历史|官网|app|APP|网址|规则|平台|在线|结果)",
]
CERTAIN = [
    # lottery-draw SEO: only spam sites publish these
    "秒速赛车", "极速赛车", "极速飞艇", "幸运飞艇", "澳洲幸运", "分分彩", "五分彩", "三分彩", "北京赛车pk10", "pk10", "PK10",
    "pk拾", "PK拾", "开奖结果网址", "开奖直播网", "一肖一码", "平特一肖", "六合彩开奖", "香港马会",
    "彩票计划", "大发快三", "大发时时彩", "彩神争霸", "天天中彩票",
    # casino and betting
    "百家乐", "真人视讯", "电子游艺", "送彩金", "注册送", "菠菜网", "博彩网", "赌场网站", "线上赌场",
    "js333", "betway", "必威", "bwin", "188bet", "12bet", "伟德国际", "威廉希尔", "亚博体育", "华体会", "开云体育",
    "乐鱼体育", "九游会", "米乐体育", "博天堂", "ag真人", "AG真人", "AG亚游", "BBIN", "bbin", "沙巴体育", "皇冠hg",
    # porn SEO
    # (not 欧美日韩 or 一区二区: "Europe, the US, Japan and Korea" and district names are news)
    "一级毛片", "三级片", "黄色网站", "黄色视频", "黄片", "自拍偷拍", "偷拍自拍", "亚洲无码",
    "无码av", "无码视频", "日韩av", "久久精品", "久久热", "草榴", "91porn", "av网站",
    "成人网站", "成人视频", "成人电影", "激情视频", "激情小说", "激情图片", "裸聊", "援交",
    # SEO ads
    "代开发票", "发票代开", "代孕", "私服发布", "传奇私服",
]
LIKELY = [
    "时时彩", "北京赛车", "六合彩", "棋牌游戏", "开奖结果", "开奖记录", "开奖号码", "美女直播", "私服", "体育投注", "彩票网",
    "快三", "毛片", "国产精品", "人工计划", "特码", "首存", "网投", "约炮", "一夜情",
    # betting tips: handicaps, odds and "red slips" (winning tips)
    "盘口", "让球", "大小球", "串关", "竞彩", "亚盘", "欧赔", "初盘", "红单",
    # contact-to-buy and make-money pitches (the `ads` category): two of these make a pitch
    "加微信", "加我微信", "加我vx", "加vx", "加V信", "私信我", "免费领取", "日赚", "月入过万", "月入上万", "招代理",
    "一件代发", "躺赚", "副业项目", "零成本创业", "无需投资",
    # (not xxx: Chinese text writes XXX for a name left out)
    "porn", "porno", "viagra", "cialis", "escort service", "escorts", "sportsbook", "free spins", "online gambling",
    "online casino", "casino bonus", "payday loan", "payday loans", "replica watches",
]
# ordinary in news and law (澳门博彩业, 扫黄打非…色情, 《威尼斯商人》, a Las Vegas report): density only
WEAK = ["赌博", "博彩", "网赌", "赌球", "赌场", "彩金", "投注", "足彩", "老虎机", "太阳城", "威尼斯人", "葡京", "色情", "彩票",
        "在线观看", "赔率", "下注", "德州扑克", "扑克", "福利视频", "美女", "一区二区", "casino", "casinos", "roulette",
        "blackjack", "slot machines", "gambling", "poker", "jackpot", "betting", "nude", "nudes", "escort", "slots",
        "lottery", "sex"]
WEIGHTS = {"certain": 2.0, "likely": 1.0, "weak": 0.25}


def _term(t: str) -> str:
    e = re.escape(t)
    # Latin terms are whole words ("sex" not in "Essex"); CJK terms have no word boundaries
    return rf"(?<![A-Za-z]){e}(?![A-Za-z])" if t.isascii() else e


def compile_lexicon(tiers: dict[str, list[str]], patterns: dict[str, list[str]] | None = None) -> re.Pattern:
    """One regex for all terms, a named group per tier (longest terms first inside a tier);
    certain patterns before terms, so `XX娱乐平台` is one hit, not a brand plus a word."""
    groups = []
    for tier in ("certain", "likely", "weak"):
        alts = list((patterns or {}).get(tier, []))
        alts += [_term(t) for t in sorted(set(tiers.get(tier, [])), key=len, reverse=True)]
        if alts:
            groups.append(f"(?P<{tier}>" + "|".join(alts) + ")")
    return re.compile("|".join(groups) or "(?!)", re.IGNORECASE)  # no terms: a pattern that never matches


def read_word_file(path: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """A user word file: one term per line, optionally `<TAB>tier` (certain | likely | weak;
    default certain); `re:` starts a regular expression; `#` starts a comment."""
    terms: dict[str, list[str]] = {}
    pats: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            term, _, tier = line.partition("\t")
            tier = tier.strip() or "certain"
            if tier not in WEIGHTS:
                raise ValueError(f"{path}:{n}: tier {tier!r} is not one of {sorted(WEIGHTS)}")
            if term.startswith("re:"):
                re.compile(term[3:])  # a bad pattern fails here, with the file and line above it
                pats.setdefault(tier, []).append(term[3:])
            else:
                terms.setdefault(tier, []).append(term.strip())
    return terms, pats


_DEFAULT = compile_lexicon({"certain": CERTAIN, "likely": LIKELY, "weak": WEAK}, {"certain": BRAND_PATTERNS})


def _tier(m: re.Match) -> str:
    # a user pattern may hold capturing groups, so m.lastgroup is not reliable: ask the tiers
    d = m.groupdict()
    return next(t for t in ("certain", "likely", "weak") if d.get(t) is not None)


def spam_score(text: str, lexicon: re.Pattern = _DEFAULT, weak_min_per_kchar: float = 3.0) -> tuple[float, int, list[int]]:
    """(score, hits, indices of lines with hits). Weak hits count only above
    `weak_min_per_kchar` per 1000 characters (per ~170 words of English)."""
    strong = 0.0
    weak = hits = 0
    lines = []
    for i, line in enumerate(text.split("\n")):
        n = 0
        for m in lexicon.finditer(line):
            n += 1
            tier = _tier(m)
            if tier == "weak":
                weak += 1
            else:
                strong += WEIGHTS[tier]
        if n:
            lines.append(i)
            hits += n
    score = strong
    if weak and 1000 * weak / max(1, len(text)) > weak_min_per_kchar:
        score += WEIGHTS["weak"] * weak
    return score, hits, lines


@register
class SpamDensity(Stage):
    """Drop gambling/lottery/porn/SEO-ad pages by their weighted lexicon score (module docstring)."""

    name = "spam"

    class Params(StageParams):
        min_score: float = 2.0  # one certain term, two likely ones, or eight dense weak ones
        # weak words (赌博, 彩票, poker) are ordinary in news: they count only when this dense;
        # 3 per 1000 characters is ~10x their rate in People's Daily (docs/filters.md)
        weak_min_per_kchar: float = 3.0
        word_files: list[str] = []  # user terms, one per line, `<TAB>tier` optional (read_word_file)
        builtin: bool = True

    def __init__(self, **params):
        super().__init__(**params)
        tiers: dict[str, list[str]] = {"certain": [], "likely": [], "weak": []}
        pats: dict[str, list[str]] = {"certain": [], "likely": [], "weak": []}
        if self.p.builtin:
            tiers = {"certain": list(CERTAIN), "likely": list(LIKELY), "weak": list(WEAK)}
            pats["certain"] = list(BRAND_PATTERNS)
        for f in self.p.word_files:
            t, ps = read_word_file(f)
            for k, v in t.items():
                tiers[k] += v
            for k, v in ps.items():
                pats[k] += v
        self.lexicon = _DEFAULT if (self.p.builtin and not self.p.word_files) else compile_lexicon(tiers, pats)

    def apply(self, doc: Document) -> Document | Drop:
        score, hits, lines = spam_score(doc.text, self.lexicon, self.p.weak_min_per_kchar)
        if score >= self.p.min_score:
            return Drop("spam_keywords", f"score {score:.2f}, {hits} hits", lines)
        return doc
