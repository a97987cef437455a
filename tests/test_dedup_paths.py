"""Near-dedup, one code path: `corpus dedup` and the build's `minhash_dedup` cluster the same real
documents the same way (any worker count), with normalised shingles and exact verification; the
length floor keeps empty and very short documents out of every cluster; cluster files carry the
input's own ids; `prefer` chooses which copy survives (慈善法 2016 vs its 2023 revision)."""

import html
import json
import random

import numpy as np
import pytest

from conftest import LLAMA_TOKENIZER
from corpus.build import build
from corpus.dedup import MinHashDedup, cluster_texts, dedup_files, document_date
from corpus.executor import LocalExecutor
from corpus.recipe import Recipe

LAW = "domain/lawrefbook_zh/社会法"


def _variants(text: str, rng: random.Random) -> list[str]:
    """Copies as they differ on the web: entities + full-width digits + CRLF, truncation, a site
    header and footer, a hard wrap."""
    full = {c: c + 0xFEE0 for c in range(0x21, 0x7F) if chr(c).isalnum()}  # full-width letters and digits
    words = html.escape(text).split(" ")  # and every third word as numeric character references
    ent = " ".join("".join(f"&#{ord(c)};" for c in w) if i % 3 == 0 else w.translate(full) for i, w in enumerate(words))
    return [ent.replace("\n", "\r\n"),
            text[: int(len(text) * 0.5)],
            "Home > News > World\nShare on Facebook\n" + text + "\n© 2023 Example Media. All rights reserved.",
            "\n".join(text[i: i + 70] for i in range(0, len(text), 70))]


@pytest.fixture(scope="module")
def corpus_file(shared, tmp_path_factory):
    rows = [json.loads(l)["text"] for l in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    rows = [r for r in rows if len(r) > 800][:40]
    rng = random.Random(0)
    recs = []
    for i, t in enumerate(rows):
        recs.append({"id": f"doc-{i}", "text": t})
        if i < 10:
            recs += [{"id": f"doc-{i}-v{k}", "text": v} for k, v in enumerate(_variants(t, rng))]
    recs += [{"id": f"short-{k}", "text": t} for k, t in enumerate(["", " ", "a", "a", "ok", "ok", "Hi there"])]
    d = tmp_path_factory.mktemp("in")
    p = d / "docs.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return p


def _build(path, out, executor=None, **mh):
    r = Recipe.model_validate({
        "sources": [{"name": "web", "paths": [str(path)]}],
        "stages": [{"name": "minhash_dedup", "prefer": "first", **mh}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0}})
    return build(r, str(out), executor=executor)


def _multi(rows):
    groups = {}
    for r in rows:
        groups.setdefault(r["cluster"], []).append(r)
    return sorted((r["id"], r["cluster"], r["kept"]) for g in groups.values() if len(g) > 1 for r in g)


def test_build_and_corpus_dedup_give_the_same_clusters(corpus_file, tmp_path):
    _build(corpus_file, tmp_path / "b")
    built = [json.loads(l) for l in open(tmp_path / "b/dedup_clusters.jsonl", encoding="utf-8")]
    res = dedup_files([str(corpus_file)], str(tmp_path / "d"), MinHashDedup(prefer="first"))
    alone = [json.loads(l) for l in open(tmp_path / "d/clusters.jsonl", encoding="utf-8")]
    assert _multi(built) == _multi(alone)
    # every copy of the ten bases found, each cluster keeps the original (first in input order)
    clusters = {}
    for i, c, kept in _multi(alone):
        clusters.setdefault(c, []).append(i)
    assert sorted(clusters) == sorted(f"doc-{i}" for i in range(10))
    assert all(sorted(m) == sorted([c] + [f"{c}-v{k}" for k in range(4)]) for c, m in clusters.items())
    assert res["near_duplicates"] == 40
    # cluster files carry the input's own ids (not file:record)
    assert {r["id"] for r in alone} >= {"doc-0", "doc-0-v1", "short-0"}


def test_empty_and_very_short_documents_are_never_clustered(corpus_file, tmp_path):
    dedup_files([str(corpus_file)], str(tmp_path / "d"), MinHashDedup())
    alone = {r["id"]: r for r in map(json.loads, open(tmp_path / "d/clusters.jsonl", encoding="utf-8"))}
    shorts = [r for k, r in alone.items() if k.startswith("short-")]
    assert len(shorts) == 7 and all(r["kept"] and r["cluster"] == r["id"] for r in shorts)
    # the floor is what keeps them apart: without it the two "ok" documents are one cluster
    rep, _ = cluster_texts(["ok", "ok", "", ""], MinHashDedup(min_shingles=0))
    assert rep[0] == rep[1] and rep[2] != rep[3]  # (empty sets never verify)
    rep, _ = cluster_texts(["ok", "ok", "", ""], MinHashDedup())
    assert (rep == -1).all()


def test_clusters_are_identical_for_any_worker_count(corpus_file, tmp_path):
    _build(corpus_file, tmp_path / "w1", LocalExecutor(1))
    _build(corpus_file, tmp_path / "w2", LocalExecutor(2))
    a = (tmp_path / "w1/dedup_clusters.jsonl").read_bytes()
    assert a and a == (tmp_path / "w2/dedup_clusters.jsonl").read_bytes()


def test_normalisation_and_containment_are_what_catch_the_variants(corpus_file):
    rows = [json.loads(l)["text"] for l in open(corpus_file, encoding="utf-8")][:5]  # doc-0 and its variants
    on, _ = cluster_texts(rows, MinHashDedup())
    assert len(set(on.tolist())) == 1
    off, _ = cluster_texts(rows, MinHashDedup(normalize=False, containment=0))
    assert off[1] != off[0]  # character references: apart without normalisation
    assert off[2] != off[0]  # truncated to half: apart on Jaccard alone (J 0.5)


@pytest.fixture(scope="module")
def charity_law(shared):
    d = shared / LAW
    return [d / "慈善法(2016-03-16).md", d / "慈善法(2023-12-29).md"]


@pytest.mark.parametrize("prefer,kept", [("first", "2016"), ("newest", "2023"), ("longest", "2023")])
def test_which_copy_survives(charity_law, tmp_path, prefer, kept):
    if not all(p.exists() for p in charity_law):
        pytest.skip("慈善法 2016 and 2023 not both in ../shared/data")
    out = tmp_path / "out"
    r = Recipe.model_validate({
        "sources": [{"name": "law", "kind": "domain", "paths": [str(p) for p in charity_law], "format": "md"}],
        "stages": [{"name": "minhash_dedup", "prefer": prefer}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0}})
    build(r, str(out))
    rows = [json.loads(l) for l in open(out / "dedup_clusters.jsonl", encoding="utf-8")]
    assert len(rows) == 2  # the 2016 law and its 2023 revision are one cluster
    assert [kept in r["id"] for r in rows if r["kept"]] == [True]


def test_document_date_sources():
    assert document_date("law/慈善法(2023-12-29).md", "") == 20231229
    assert document_date("x", "2016年3月16日第十二届全国人民代表大会第四次会议通过\n2023年12月29日修正") == 20231229
    assert document_date("x", "", {"created": "2021-05-01T10:00:00Z"}) == 20210501
    assert document_date("x", "no date here") == 0


def test_containment_threshold_off_and_bad_parameters():
    with pytest.raises(ValueError):
        MinHashDedup(num_perm=64, bands=40, rows=3)
    with pytest.raises(Exception):
        MinHashDedup(prefer="oldest")
    assert np.isclose(dict(MinHashDedup().explain())[0.5], 1 - (1 - 0.5 ** 3) ** 40)


def test_fast_normalisation_shingles_like_the_reference(shared):
    """`sketch(normalize=True)` (width and punctuation folded in the kernel, NFKC only where other
    compatibility characters occur) gives the shingle sets of `normalize()` + the plain kernel."""
    from kernels.minhash import normalize, permutations, sketch

    rows = [json.loads(l)["content"] for l in open(shared / "general/flagdata_web_zh/qa_demo_input.jsonl", encoding="utf-8")][:200]
    rows += [r + " ① Ⅳ ㎡ ㈱ ﬁ ｶﾀｶﾅ x² ½ 𝐀𝐁 ＡＢＣ１２３ &amp; &#20013;" for r in rows[:20]]
    a, b = permutations(16, 1)
    _, f1, o1 = sketch(rows, 3, a, b, normalize=True)
    _, f2, o2 = sketch([normalize(t) for t in rows], 3, a, b)
    assert np.array_equal(o1, o2) and np.array_equal(f1, f2)
