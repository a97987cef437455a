"""Issue 19 item 1, the report: rejected samples per source (capped per reason *and* source,
with a source selector), lines removed from kept documents, before/after length curves of one
source in one colour, counts on the languages chart, Chinese rendered with a CJK font, and
characters per token / byte-fallback share per source in `corpus stats` and the report. One
real build of Chinese and English web text of ../shared/data (a few seconds)."""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter

import pytest
from typer.testing import CliRunner

from conftest import LLAMA_TOKENIZER, SHARED

WEB_ZH = SHARED / "general/flagdata_web_zh/cleared1.jsonl"
CC_EN = SHARED / "general/c4_en/c4_demo.jsonl"
K = 2  # rejected samples per reason and source


@pytest.fixture(scope="module")
def web_build(tmp_path_factory):
    from corpus.build import build
    from corpus.recipe import Recipe

    out = tmp_path_factory.mktemp("web") / "b"
    recipe = Recipe.model_validate({
        "name": "web", "sources": [{"name": "web_zh", "paths": [str(WEB_ZH)]}, {"name": "cc_en", "paths": [str(CC_EN)]}],
        # min_length at 3,000 characters drops pages of both sources for the same reason
        "stages": [{"name": "normalize"}, {"name": "line_corrections"}, {"name": "min_length", "min_chars": 3000}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0},
        "output": {"rejected_samples": K}})
    build(recipe, str(out))
    return out, recipe


def _jsonl(p) -> list[dict]:
    return [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines()]


def test_rejected_samples_are_capped_per_reason_and_source(web_build):
    out, _ = web_build
    rows = _jsonl(out / "rejected" / "min_length__too_short.jsonl")
    n = Counter(r["source"] for r in rows)
    assert set(n) == {"web_zh", "cc_en"}  # the first source no longer fills the reason's quota
    assert all(v == K for v in n.values())


def test_removed_lines_of_kept_documents_are_recorded(web_build):
    """rejected/removed_lines__line_corrections.jsonl: kept documents only, each sample's marked
    lines are the lines the stage removes when run again on the sample's text."""
    from corpus.document import Document
    from corpus.stages import Chain, build_stage

    out, _ = web_build
    rows = _jsonl(out / "rejected" / "removed_lines__line_corrections.jsonl")
    assert rows and Counter(r["source"] for r in rows)["web_zh"] == K
    dropped = {r["id"] for p in (out / "rejected").glob("*.jsonl") if not p.name.startswith("removed_lines")
               for r in _jsonl(p)}
    exact = 0
    for r in rows:
        assert r["stage"] == "line_corrections" and r["lines"] and r["id"] not in dropped
        n = len(r["text"].split("\n"))
        assert all(0 <= i < n and r["text"].split("\n")[i].strip() for i in r["lines"])
        if len(r["text"]) < 5000:  # not cut for the sample: the stage removes exactly those lines again
            ch = Chain([build_stage("line_corrections", {})], 0, trace=True)
            assert ch(Document(r["id"], r["text"], r["source"])) is not None
            assert ch.last.removed["line_corrections"] == r["lines"]
            exact += 1
    assert exact >= 2


def test_report_has_source_selector_removed_lines_and_tokenization(web_build, tmp_path):
    from shards.report import make_report

    out, _ = web_build
    html = open(make_report(str(out), str(tmp_path / "r.html")), encoding="utf-8").read()
    rej = html.split("<h2>Rejected samples")[1].split("<h2>Lines removed")[0]
    rem = html.split("<h2>Lines removed from kept documents")[1].split("<h2>")[0]
    assert 'class="srcsel"' in rej and '<option value="web_zh">' in rej and '<option value="cc_en">' in rej
    assert 'class="srcsel"' in rem and '<option value="web_zh">' in rem
    assert 'data-source="web_zh"' in rem and "<mark>" in rem
    assert "removed_lines" not in rej  # the removed-lines files are not listed as a drop reason
    tok = html.split("<h2>Characters per token")[1].split("<h2>")[0]
    assert "web_zh" in tok and "cc_en" in tok


def test_chars_per_token_and_byte_fallback_match_the_kept_documents(web_build):
    """Recomputed independently: the kept documents of each source (the same chain through
    `corpus clean`'s code), tokenized with the LLaMA tokenizer, their `<0xNN>` pieces counted."""
    import sentencepiece as spm

    from corpus.clean import clean_iter
    from shards.stats import collect

    out, recipe = web_build
    sp = spm.SentencePieceProcessor(model_file=str(LLAMA_TOKENIZER))
    want: dict[str, Counter] = {}
    for d in clean_iter(recipe):
        if d.kept:
            ids = sp.encode(d.text)
            c = want.setdefault(d.source, Counter())
            c["chars"] += len(d.text)
            c["tokens"] += len(ids)
            c["bytes"] += sum(1 for i in ids if re.fullmatch(r"<0x[0-9A-F]{2}>", sp.id_to_piece(i)))
    got = {r["source"]: r for r in collect(str(out))["tokenization"]}
    for src, c in want.items():
        assert (got[src]["chars"], got[src]["tokens"], got[src]["byte_tokens"]) == (c["chars"], c["tokens"], c["bytes"])
        assert got[src]["chars_per_token"] == pytest.approx(c["chars"] / c["tokens"])
    # LLaMA spells many Chinese characters as bytes, English almost never
    assert got["web_zh"]["byte_fallback_share"] > 0.05 > got["cc_en"]["byte_fallback_share"]
    assert got["web_zh"]["chars_per_token"] < got["cc_en"]["chars_per_token"]


def test_corpus_stats_prints_tokenization(web_build):
    from corpus.cli import app

    out, _ = web_build
    r = CliRunner().invoke(app, ["stats", str(out)])
    assert r.exit_code == 0, r.stdout + r.stderr
    line = next(l for l in r.stdout.splitlines() if "web_zh" in l and "%" not in l and l.count("│") >= 5
                and re.search(r"\d\.\d\d", l))
    assert "chars/token" in r.stdout and "byte-fallback" in r.stdout and line


def test_length_curves_of_a_source_share_a_colour_and_bars_show_counts(web_build):
    import matplotlib

    matplotlib.use("Agg")
    from shards.report import _bar_fig, _hist_fig

    out, _ = web_build
    report = json.load(open(out / "build_report.json", encoding="utf-8"))
    fig = _hist_fig(report)
    lines = {l.get_label(): l.get_color() for l in fig.axes[0].get_lines()}
    assert lines["web_zh before cleaning"] == lines["web_zh after"]
    assert lines["cc_en before cleaning"] == lines["cc_en after"]
    assert lines["web_zh after"] != lines["cc_en after"]
    langs = {"zh": 57, "en": 1234}
    fig = _bar_fig(list(langs), list(langs.values()), "documents per language")
    texts = {t.get_text().strip() for t in fig.axes[0].texts}
    assert {"57", "1,234"} <= texts


def test_chinese_renders_with_a_cjk_font():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shards.report import _png, use_cjk_font

    name = use_cjk_font()
    if name is None:
        pytest.skip("no CJK font on this machine (apt-get install fonts-wqy-microhei or fonts-noto-cjk)")
    fig, ax = plt.subplots()
    ax.set_title("来源：网页 中文")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _png(fig)
    assert not [x for x in w if "missing from" in str(x.message)], [str(x.message) for x in w]
