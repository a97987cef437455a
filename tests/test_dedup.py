"""MinHash near-dedup: signatures equal datasketch's, real duplicates in ../shared/data are
caught, different versions of a law are both kept, clusters are deterministic."""

import hashlib
import json
import random

import numpy as np
import pytest
from datasketch import MinHash

from conftest import LLAMA_TOKENIZER
from corpus.build import build
from corpus.dedup import MinHashDedup
from corpus.recipe import Recipe
from kernels.minhash import permutations, shingle_hashes, signatures


def _real_docs(shared, n=200):
    rows = [json.loads(l)["text"] for l in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    rows += [json.loads(l)["content"] for l in open(shared / "general/flagdata_web_zh/qa_demo_input.jsonl", encoding="utf-8")]
    random.Random(0).shuffle(rows)
    return [r for r in rows if len(r) > 200][:n]


def _perturb(text, rng):
    words = list(text)
    for _ in range(int(len(words) * rng.uniform(0.0, 0.3))):
        i = rng.randrange(len(words))
        words[i] = rng.choice("abcdefg的了是在和")
    return "".join(words)


def test_signatures_equal_datasketch_bit_for_bit(shared):
    a, b = permutations(120, 1)
    docs = _real_docs(shared)
    sig = signatures(docs, 5, a, b)
    for text, s in zip(docs, sig):
        m = MinHash(num_perm=120, seed=1, hashfunc=lambda x: x, scheme="legacy")
        for h in shingle_hashes(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), 5):
            m.update(int(h))
        assert np.array_equal(m.hashvalues.astype(np.uint32), s)


def test_jaccard_estimates_agree_with_datasketch_sha1(shared):
    """Our hash vs datasketch's own sha1 over the same shingles: two independent estimates of
    the same Jaccard on 200 real pairs (a document and an edited copy)."""
    rng = random.Random(1)
    a, b = permutations(128, 1)
    docs = _real_docs(shared)
    pairs = [(d, _perturb(d, rng)) for d in docs]
    ours = signatures([x for p in pairs for x in p], 5, a, b).reshape(len(pairs), 2, -1)
    diffs = []
    for (x, y), sg in zip(pairs, ours):
        j_ours = float((sg[0] == sg[1]).mean())
        ms = []
        for t in (x, y):
            m = MinHash(num_perm=128, seed=1, scheme="legacy")
            cps = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32)
            for h in shingle_hashes(cps, 5):
                m.update(hashlib.sha1(int(h).to_bytes(8, "little")).digest())
            ms.append(m)
        diffs.append(abs(j_ours - ms[0].jaccard(ms[1])))
    diffs = np.array(diffs)
    assert diffs.mean() < 0.05 and np.percentile(diffs, 90) < 0.1, (diffs.mean(), np.percentile(diffs, 90))


@pytest.fixture(scope="module")
def dd_build(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("dd")
    r = Recipe.model_validate({
        "sources": [
            {"name": "law", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/民法商法")], "format": "md"},
            {"name": "cail", "kind": "domain", "paths": [str(shared / "domain/hf_cail2018_zh")], "text_key": "fact"},
            {"name": "oscar", "paths": [str(shared / "general/oscar_zh")], "txt_mode": "file"},
            {"name": "pile", "paths": [str(shared / "general/pile")]}],
        "stages": [{"name": "normalize"}, {"name": "minhash_dedup"}],  # no exact dedup: MinHash must catch them
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0}})
    res = build(r, str(out))
    return out, res


def test_known_duplicates_in_shared_data_are_caught(dd_build):
    out, res = dd_build
    f = {s: {r["stage"]: r for r in rows} for s, rows in res.report["funnel"].items()}
    near = {s: rows["minhash_dedup"]["drops"].get("minhash_dedup:near_duplicate", 0) for s, rows in f.items()}
    assert near["pile"] == 1  # 00 and 01 are byte-identical
    assert near["cail"] == 2  # three identical CAIL files
    assert near["oscar"] == 1  # deduplicated vs original variant: one repeated line apart
    clusters = [json.loads(l) for l in open(out / "dedup_clusters.jsonl", encoding="utf-8")]
    assert {c["id"].split("/")[1] for c in clusters if not c["kept"]} >= {"01.jsonl.zst:1"}
    assert all(c["kept"] == (c["id"] == c["cluster"]) for c in clusters)


def test_law_versions_that_differ_substantially_are_both_kept(dd_build):
    out, res = dd_build
    clusters = [json.loads(l) for l in open(out / "dedup_clusters.jsonl", encoding="utf-8")]
    dropped = [c["id"] for c in clusters if not c["kept"]]
    assert not [d for d in dropped if d.startswith("law/")], dropped  # e.g. 公司法 2018 vs 2023


def test_preferred_source_wins_the_cluster(shared, tmp_path):
    text_dir = tmp_path / "in"
    text_dir.mkdir()
    doc = (shared / "domain/lawrefbook_zh/宪法/宪法.md").read_text(encoding="utf-8")
    (text_dir / "general.txt").write_text(doc, encoding="utf-8")
    (text_dir / "domain.txt").write_text(doc.replace("第一条", "第 一 条"), encoding="utf-8")
    r = Recipe.model_validate({
        "sources": [{"name": "web", "kind": "general", "paths": [str(text_dir / "general.txt")]},
                    {"name": "laws", "kind": "domain", "paths": [str(text_dir / "domain.txt")]}],
        "stages": [{"name": "minhash_dedup", "prefer": "domain"}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0}})
    res = build(r, str(tmp_path / "out"))
    assert res.manifest["per_source"]["laws"]["train"]["docs"] == 1
    assert res.manifest["per_source"]["web"]["train"]["docs"] == 0


def test_explain_and_bad_parameters():
    curve = dict(MinHashDedup(bands=12, rows=10).explain())
    assert curve[0.5] < 0.02 and 0.7 < curve[0.8] < 0.8 and curve[0.9] > 0.99
    curve = dict(MinHashDedup().explain())  # the default: permissive LSH, verified by signatures
    assert curve[0.5] > 0.8
    with pytest.raises(ValueError):
        MinHashDedup(num_perm=64, bands=12, rows=10)


def test_decontamination_against_eval_files_and_val(shared, tmp_path):
    c4 = [json.loads(l)["text"] for l in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    ev = tmp_path / "eval.jsonl"
    # an "evaluation set" quoting a passage of 3 training documents
    ev.write_text("".join(json.dumps({"text": "Question: " + c4[i][100:400]}) + "\n" for i in (3, 50, 120)))
    r = Recipe.model_validate({
        "sources": [{"name": "c4", "paths": [str(shared / "general/c4_en/c4_demo.jsonl")]}],
        "stages": [{"name": "decontaminate", "ngram": 13, "use_val_split": False, "eval_files": [str(ev)]}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0}})
    res = build(r, str(tmp_path / "out"))
    row = next(x for x in res.report["funnel"]["c4"] if x["stage"] == "decontaminate")
    assert row["drops"] == {"decontaminate:eval_overlap": 3}
    assert all(c["ok"] for c in res.report["accounting"].values())


def test_line_dedup_removes_boilerplate_repeated_across_documents(shared, tmp_path):
    # Dolma's provided documents: pages of the same sites share header/footer paragraphs
    r = Recipe.model_validate({
        "sources": [{"name": "web", "paths": [str(shared / "general/dolma_commoncrawl_en/provided_documents")]}],
        "stages": [{"name": "line_dedup", "max_docs": 1, "min_chars": 20}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.0}})
    res = build(r, str(tmp_path / "out"))
    row = next(x for x in res.report["funnel"]["web"] if x["stage"] == "line_dedup")
    assert row["changed"] >= 2 and row["chars_out"] < row["chars_in"]
    import gzip

    from corpus.dedup import line_hashes
    docs = [json.loads(l)["text"] for l in gzip.open(shared / "general/dolma_commoncrawl_en/provided_documents/000.json.gz")]
    from collections import Counter
    counts = Counter(h for d in docs for h in line_hashes(d, 20).tolist())
    assert sum(c > 1 for c in counts.values()) >= 3  # the fixture really repeats lines across documents
    assert all(c["ok"] for c in res.report["accounting"].values())
