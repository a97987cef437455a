"""A labelled near-duplicate set built from real Chinese and English text (for bench/dedup_quality.py).

Nothing is shipped: the set is generated, deterministically from a seed, from the real documents of
../shared/data and ../shared/corpora. Base documents are real texts (or consecutive pieces of one:
articles of a law, pages of a book or article) of 300-3000 characters; near-duplicate variants are made
of them the way copies differ on the web; hard negatives are pairs a user would NOT call duplicates.

Contract: `make_set(seed)` returns `DedupSet(docs, groups, langs, positives, negatives)`:
- `docs[i]` a text, `groups[i]` the id of its duplicate group (documents of one group are all
  near-duplicates of each other; documents of different groups are not), `langs[i]` "zh" or "en";
- `positives`: (i, j, kind) labelled duplicate pairs (same group), kind one of POSITIVE_KINDS;
- `negatives`: (i, j, kind) labelled hard-negative pairs (different groups), kind one of NEGATIVE_KINDS.
Bases are screened against each other (exact 5-gram Jaccard and containment < 0.3) so that two
groups are never duplicates by accident; the only cross-group pairs with high overlap are the
labelled hard negatives.
"""

from __future__ import annotations

import glob
import html
import io
import json
import os
import random
import re
import textwrap
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared"))
DATA = os.path.join(SHARED, "data")
CORPORA = os.path.join(SHARED, "corpora")

POSITIVE_KINDS = ("exact", "boilerplate", "two_variants", "edits", "truncate", "reorder", "width", "whitespace",
                  "entities", "hardwrap", "combo", "law_revision")
NEGATIVE_KINDS = ("same_law", "template", "consecutive", "amended_law")

# site templates: header lines, footer lines (a page of the site carries 1-7 of them)
SITES_ZH = [
    (["首页 > 新闻中心 > 正文", "来源：本站原创 作者：编辑部 发布时间：2023-05-12", "【字体：大 中 小】 【打印本页】 【关闭窗口】"],
     ["版权所有 © 2023 本网站保留所有权利", "扫码关注我们的微信公众号", "免责声明：本文仅供参考，不构成任何建议", "京ICP备12345678号-1"]),
    (["您当前的位置：首页 >> 法律法规 >> 国家法律", "发布日期：2021-08-20 浏览次数：1024", "分享到：微信 微博 QQ空间"],
     ["主办单位：某某市人民政府办公室", "联系电话：010-12345678 邮编：100000", "网站标识码：1100000001", "建议使用1920*1080分辨率浏览"]),
    (["登录 | 注册 | 手机版 | 帮助中心", "热门搜索：考研 公务员 英语四六级", "当前位置：学习资料 > 文章阅读"],
     ["上一篇：没有了 下一篇：点击查看", "相关文章推荐", "本文由网友投稿，如有侵权请联系删除", "Copyright 2010-2024 学习网 All Rights Reserved"]),
    (["新浪首页 新闻 体育 财经 娱乐 科技", "原标题：今日要闻", "责任编辑：王小明"],
     ["点击进入专题：今日热点", "新浪简介 | 广告服务 | 联系我们 | 招聘信息", "客户服务热线：4000520066", "违法和不良信息举报电话：4000520066"]),
    (["医学百科 健康问答 找医生 查疾病", "问题描述：", "提问时间：2022-03-15 09:32"],
     ["以上回答仅供参考，不能作为诊断及医疗的依据", "温馨提示：如有不适请及时就医", "好大夫在线 版权所有", "举报 | 收藏 | 分享"]),
    (["微信扫一扫 关注该公众号", "阅读原文 在看 点赞", "作者：佚名 来源：网络"],
     ["长按识别二维码关注我们", "喜欢就点个在看吧", "往期推荐：点击蓝字关注", "声明：图片来源于网络，侵删"]),
]
SITES_EN = [
    (["Home > News > World", "By Staff Reporter | Published 12 May 2023", "Share on Facebook  Share on Twitter  Email"],
     ["© 2023 Example Media Group. All rights reserved.", "Subscribe to our newsletter for more", "Privacy Policy | Terms of Use | Contact",
      "This article was originally published by our partners."]),
    (["Skip to main content", "Menu  Search  Sign in", "Advertisement"],
     ["Related Articles", "Comments are closed.", "Copyright 2019 The Daily Example. All Rights Reserved.", "Back to top"]),
    (["You are here: Home / Blog / Articles", "Posted on March 3, 2021 by admin", "Leave a comment"],
     ["Filed Under: Uncategorized", "Tagged With: news, updates", "Previous Post  Next Post", "Powered by WordPress"]),
    (["From Wikipedia, the free encyclopedia", "Jump to navigation Jump to search", "This article needs additional citations for verification."],
     ["Retrieved from the archive.", "This page was last edited on 1 January 2020.", "Text is available under the Creative Commons License.",
      "Categories: Articles"]),
    (["MEDLINE Health Topics", "Last reviewed: 2022-06-01", "Print this page  Email this page"],
     ["The information on this site should not be used as a substitute for professional medical care.",
      "U.S. National Library of Medicine", "Contact Us | Accessibility | Viewers & Players", "Page last updated"]),
    (["Sign up for our daily briefing", "Listen to this article 5 min", "Advertisement - Continue reading below"],
     ["We may earn commission from links on this page.", "Follow us on Instagram", "Cookie Settings", "Do Not Sell My Personal Information"]),
]


@dataclass
class DedupSet:
    docs: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    positives: list[tuple[int, int, str]] = field(default_factory=list)
    negatives: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, text: str, group: int, lang: str) -> int:
        self.docs.append(text)
        self.groups.append(group)
        self.langs.append(lang)
        return len(self.docs) - 1


def _zst_lines(path: str):
    import zstandard

    with open(path, "rb") as fh:
        for line in io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8"):
            yield json.loads(line)


def _pieces(text: str, rng: random.Random, lo: int = 500, hi: int = 2500) -> list[str]:
    """Consecutive pieces of a long text, cut on paragraph boundaries, each lo..hi characters."""
    paras = [p for p in re.split(r"\n+", text) if p.strip()]
    out, cur = [], []
    target = rng.randint(lo, hi)
    for p in paras:
        cur.append(p)
        if sum(len(x) for x in cur) >= target:
            piece = "\n".join(cur)
            if len(piece) <= hi * 1.5:
                out.append(piece)
            cur = []
            target = rng.randint(lo, hi)
    return out


def _bases(rng: random.Random) -> list[tuple[str, str, str, int]]:
    """(text, lang, topic, run) of real base documents; pieces of one text share a run id (consecutive
    pieces are hard negatives)."""
    out: list[tuple[str, str, str, int]] = []
    run = [0]

    def add_runs(texts, lang, topic, per_text=4, lo=500, hi=2500):
        for t in texts:
            ps = _pieces(t, rng, lo, hi)
            if len(ps) >= 2:
                s = rng.randrange(max(1, len(ps) - per_text + 1))
                run[0] += 1
                out.extend((p, lang, topic, run[0]) for p in ps[s: s + per_text])

    def add_single(texts, lang, topic, lo=300, hi=3000):
        for t in texts:
            t = t.strip()
            if lo <= len(t) <= hi:
                run[0] += 1
                out.append((t, lang, topic, run[0]))

    # Chinese: laws (pieces of consecutive articles), Q&A and web pages, news, book chapters
    laws = sorted(glob.glob(os.path.join(DATA, "domain/lawrefbook_zh/**/*.md"), recursive=True))
    versioned = {re.sub(r"\(.*", "", os.path.basename(f)) for f in laws if "(" in f}
    law_texts = [open(f, encoding="utf-8").read() for f in laws if "(" not in os.path.basename(f)
                 and re.sub(r"\.md$", "", os.path.basename(f)) not in versioned]
    rng.shuffle(law_texts)
    add_runs(law_texts[:40], "zh", "law", per_text=4, lo=400, hi=1500)
    qa = [json.loads(l)["content"] for l in open(os.path.join(DATA, "general/flagdata_web_zh/qa_demo_input.jsonl"), encoding="utf-8")]
    rng.shuffle(qa)
    add_single(qa[:300], "zh", "qa")
    misc = [d["text"] for d in _zst_lines(os.path.join(CORPORA, "zh_modern_misc.jsonl.zst"))
            if d["source"] in ("cluecorpussmall_sample", "cmrc2018")]
    rng.shuffle(misc)
    add_single(misc[:600], "zh", "news")
    trans: dict[str, list[str]] = {}
    for d in _zst_lines(os.path.join(CORPORA, "zh_modern_translation.jsonl.zst")):
        trans.setdefault(d["book"], []).append(d["text"])
    books = sorted(trans)
    rng.shuffle(books)
    add_runs(["\n".join(trans[b]) for b in books[:30]], "zh", "book", per_text=3, lo=400, hi=1500)
    # English: web pages, news, Wikipedia article pieces, book pages, speeches
    c4 = [json.loads(l)["text"] for l in open(os.path.join(DATA, "general/c4_en/c4_demo.jsonl"), encoding="utf-8")]
    rng.shuffle(c4)
    add_single(c4[:500], "en", "web")
    wiki = [d["text"] for d in _zst_lines(os.path.join(CORPORA, "en_wikipedia.jsonl.zst"))]
    rng.shuffle(wiki)
    add_runs(wiki[:60], "en", "wiki", per_text=3, lo=800, hi=2500)
    books_en = [d["text"] for d in _zst_lines(os.path.join(CORPORA, "en_gutenberg_books.jsonl.zst"))]
    rng.shuffle(books_en)
    add_runs([b[len(b) // 3:len(b) // 3 + 60000] for b in books_en[:25]], "en", "book", per_text=3, lo=800, hi=2500)
    sp = [d["text"] for d in _zst_lines(os.path.join(CORPORA, "en_us_presidential_speeches.jsonl.zst"))]
    rng.shuffle(sp)
    add_runs(sp[:30], "en", "speech", per_text=2, lo=800, hi=2500)
    return out


def _shingles(text: str, n: int = 5) -> np.ndarray:
    from kernels.minhash import shingle_hashes

    return np.unique(shingle_hashes(np.frombuffer(text.encode("utf-32-le"), np.uint32), n))


def _screen(bases, rng):
    """Drop bases overlapping an earlier one (exact 5-gram Jaccard or containment >= 0.3), through a
    permissive LSH over 5-gram signatures."""
    from kernels.minhash import band_hashes, permutations, signatures

    a, b = permutations(64, 7)
    sig = signatures([t for t, *_ in bases], 5, a, b)
    bh = band_hashes(sig, 32, 2)
    cand: dict[int, set[int]] = {}
    for j in range(bh.shape[1]):
        seen: dict[int, int] = {}
        for i, h in enumerate(bh[:, j].tolist()):
            if h in seen:
                cand.setdefault(i, set()).add(seen[h])
            else:
                seen[h] = i
    sh = [_shingles(t) for t, *_ in bases]
    keep = []
    dropped = set()
    for i in range(len(bases)):
        bad = False
        for k in cand.get(i, ()):
            if k in dropped:
                continue
            inter = len(np.intersect1d(sh[i], sh[k], assume_unique=True))
            if inter / max(1, min(len(sh[i]), len(sh[k]))) >= 0.3:
                bad = True
                break
        if bad or len(sh[i]) < 20:
            dropped.add(i)
        else:
            keep.append(bases[i])
    return keep


# --------------------------------------------------------------------------- variants

_HALF = "0123456789,.:;!?()[]%"
_FULL = "０１２３４５６７８９，．：；！？（）［］％"
_ZH_P = "，。：；！？（）“”、"
_ZH_ASCII = ",.:;!?()\"\",,"


def _edits(text: str, lang: str, rng: random.Random, lo=0.01, hi=0.10) -> str:
    if lang == "en":
        words = text.split(" ")
        for _ in range(max(1, int(len(words) * rng.uniform(lo, hi)))):
            i = rng.randrange(len(words))
            op = rng.random()
            if op < 0.4:
                words[i] = rng.choice(["the", "a", "new", "data", "very", "its", "their", "this"])
            elif op < 0.7:
                words[i] = ""
            else:
                words[i] = words[i] + " " + rng.choice(["also", "now", "still", "again"])
        return re.sub(" +", " ", " ".join(words))
    chars = list(text)
    for _ in range(max(1, int(len(chars) * rng.uniform(lo, hi)))):
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice("的了是在和有这也就都")
        elif op < 0.7:
            chars[i] = ""
        else:
            chars[i] = chars[i] + rng.choice("的了，。也")
    return "".join(chars)


def _width(text: str, lang: str, rng: random.Random) -> str:
    if lang == "zh" and rng.random() < 0.5:  # full-width Chinese punctuation to ASCII, digits to full width
        t = text.translate(str.maketrans(_ZH_P[:len(_ZH_ASCII)], _ZH_ASCII[:len(_ZH_P)]))
        return t.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    t = text.translate(str.maketrans(_HALF, _FULL))  # half width to full width
    if lang == "en":
        t = re.sub(r'"([^"]*)"', "“\\1”", t).replace("'", "’")
    return t


def _whitespace(text: str, lang: str, rng: random.Random) -> str:
    paras = text.split("\n")
    ind = rng.choice(["    ", "\t", "　　", "  "])
    t = "\n\n".join(ind + p if p.strip() else p for p in paras)
    if rng.random() < 0.6:
        t = t.replace("\n", "\r\n")
    return "  " + t + "\n\n\n"


def _entities(text: str, lang: str, rng: random.Random) -> str:
    t = html.escape(text, quote=True)
    t = re.sub(r"(?<=\S) (?=\S)", lambda m: "&nbsp;" if rng.random() < 0.15 else " ", t)
    if lang == "zh":
        t = "".join(f"&#{ord(c)};" if c in "。，" and rng.random() < 0.3 else c for c in t)
    return t


def _hardwrap(text: str, lang: str, rng: random.Random) -> str:
    w = rng.randint(60, 80) if lang == "en" else rng.randint(25, 40)
    out = []
    for p in text.split("\n"):
        if lang == "en":
            out.append("\n".join(textwrap.wrap(p, w)) if p.strip() else p)
        else:
            out.append("\n".join(p[i: i + w] for i in range(0, len(p), w)))
    return "\n".join(out)


def _truncate(text: str, lang: str, rng: random.Random) -> str:
    return text[: int(len(text) * rng.uniform(0.6, 0.95))].rstrip()


def _reorder(text: str, lang: str, rng: random.Random) -> str:
    paras = text.split("\n")
    if len(paras) < 3:  # one paragraph: swap its sentences' halves instead
        cut = len(text) // 2
        m = re.search(r"[。.!?！？]", text[cut:])
        cut = cut + (m.end() if m else 0)
        return text[cut:] + "\n" + text[:cut]
    for _ in range(rng.randint(1, 3)):
        i, j = rng.randrange(len(paras)), rng.randrange(len(paras))
        paras[i], paras[j] = paras[j], paras[i]
    return "\n".join(paras)


def _boilerplate(text: str, lang: str, rng: random.Random, site=None) -> str:
    head, foot = site or rng.choice(SITES_ZH if lang == "zh" else SITES_EN)
    n = rng.randint(1, 7)
    nh = rng.randint(0, min(n, len(head)))
    nf = min(len(foot), n - nh)
    return "\n".join(head[:nh] + [text] + foot[:nf])


SIMPLE = {"boilerplate": _boilerplate, "edits": _edits, "truncate": _truncate, "reorder": _reorder, "width": _width,
          "whitespace": _whitespace, "entities": _entities, "hardwrap": _hardwrap}


def _combo(text: str, lang: str, rng: random.Random) -> str:
    kinds = rng.sample(["boilerplate", "small_edits", "truncate", "reorder", "width", "whitespace", "entities", "hardwrap"],
                       rng.randint(2, 3))
    order = ["truncate", "reorder", "small_edits", "width", "hardwrap", "boilerplate", "whitespace", "entities"]
    for k in sorted(kinds, key=order.index):
        text = _edits(text, lang, rng, 0.01, 0.04) if k == "small_edits" else SIMPLE[k](text, lang, rng)
    return text


def _variant(kind: str, text: str, lang: str, rng: random.Random) -> str:
    if kind == "exact":
        return text
    if kind == "combo":
        return _combo(text, lang, rng)
    return SIMPLE[kind](text, lang, rng)


# --------------------------------------------------------------------------- the set


def _law_versions() -> list[tuple[str, str, str]]:
    """(name, older text, newer text) of every law with two dated versions in ../shared/data."""
    by: dict[str, list[tuple[str, str]]] = {}
    for f in sorted(glob.glob(os.path.join(DATA, "domain/lawrefbook_zh/**/*.md"), recursive=True)):
        m = re.match(r"(.*)\((\d{4}-\d\d-\d\d)\)\.md$", os.path.basename(f))
        if m:
            by.setdefault(m.group(1), []).append((m.group(2), f))
    out = []
    for k, v in sorted(by.items()):
        if len(v) >= 2:
            v.sort()
            out.append((k, open(v[0][1], encoding="utf-8").read(), open(v[-1][1], encoding="utf-8").read()))
    return out


def make_set(seed: int = 0, n_per_kind: int = 60) -> DedupSet:
    rng = random.Random(seed)
    bases = _screen(_bases(rng), rng)
    order = list(range(len(bases)))
    rng.shuffle(order)
    s = DedupSet()
    group = 0
    placed: dict[int, int] = {}  # base index -> document index (bases present in the corpus)
    by_lang = {"zh": [i for i in order if bases[i][1] == "zh"], "en": [i for i in order if bases[i][1] == "en"]}
    cursor = {"zh": 0, "en": 0}

    def take(lang):
        i = by_lang[lang][cursor[lang] % len(by_lang[lang])]
        cursor[lang] += 1
        return i

    for kind in POSITIVE_KINDS:
        if kind == "law_revision":
            continue
        for lang in ("zh", "en"):
            for _ in range(n_per_kind // 2):
                bi = take(lang)
                text = bases[bi][0]
                if kind == "two_variants":  # the base itself is not in the corpus
                    k1, k2 = rng.sample([k for k in SIMPLE] + ["combo"], 2)
                    x = s.add(_variant(k1, text, lang, rng), group, lang)
                    y = s.add(_variant(k2, text, lang, rng), group, lang)
                else:
                    x = s.add(text, group, lang)
                    placed[bi] = x
                    y = s.add(_variant(kind, text, lang, rng), group, lang)
                s.positives.append((x, y, kind))
                group += 1
    # bases for the site-template negatives (not otherwise in the corpus); the rest of the bases
    # stand alone (each its own group) and give the other hard negatives
    template_pool = {}
    for lang in ("zh", "en"):
        template_pool[lang] = by_lang[lang][cursor[lang]: cursor[lang] + 2 * n_per_kind]
        cursor[lang] += 2 * n_per_kind
        for bi in by_lang[lang][cursor[lang]:]:
            placed[bi] = s.add(bases[bi][0], group, lang)
            group += 1
    # consecutive pieces of one law / book / article, both in the corpus
    runs: dict[int, list[int]] = {}
    for bi in sorted(placed):
        runs.setdefault(bases[bi][3], []).append(bi)
    for r, members in runs.items():
        members.sort()
        for x, y in zip(members, members[1:]):
            if y == x + 1:
                s.negatives.append((placed[x], placed[y], "same_law" if bases[x][2] == "law" else "consecutive"))
    # one site template around different texts
    for lang, sites in (("zh", SITES_ZH), ("en", SITES_EN)):
        pool = template_pool[lang]
        for t in range(0, min(len(pool) - 1, 2 * n_per_kind), 2):
            site = sites[(t // 2) % len(sites)]
            x = s.add(_boilerplate(bases[pool[t]][0], lang, random.Random(t), site), group, lang)
            y = s.add(_boilerplate(bases[pool[t + 1]][0], lang, random.Random(t), site), group + 1, lang)
            group += 2
            s.negatives.append((x, y, "template"))
    # real law revisions: minor ones are duplicates, substantial amendments are not (5-gram Jaccard
    # of the two versions >= 0.7 vs < 0.55; the ambiguous middle is left out)
    for name, old, new in _law_versions():
        a, b = _shingles(old), _shingles(new)
        j = len(np.intersect1d(a, b)) / max(1, len(np.union1d(a, b)))
        if j >= 0.7:
            x = s.add(old, group, "zh")
            y = s.add(new, group, "zh")
            s.positives.append((x, y, "law_revision"))
            group += 1
        elif j < 0.55:
            x = s.add(old, group, "zh")
            y = s.add(new, group + 1, "zh")
            s.negatives.append((x, y, "amended_law"))
            group += 2
    return s


if __name__ == "__main__":
    import collections
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    st = make_set()
    print(len(st.docs), "documents", len(set(st.groups)), "groups")
    print(collections.Counter(k for *_, k in st.positives))
    print(collections.Counter(k for *_, k in st.negatives))
