"""Readers on every format of ../shared/data and on fixtures made from its real text:
WuDao arrays, parquet, datasets dirs, GBK/UTF-16 copies, and corrupted copies."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpus.build import build
from corpus.document import BadUnit, Document
from corpus.readers import FileReader, ReadError, clean_text
from corpus.recipe import LimitsConfig, Recipe, SourceConfig

REPO = Path(__file__).resolve().parents[1]


def read(path, limits=None, **src):
    src.setdefault("name", "t")
    cfg = SourceConfig(paths=[str(path)], **src)
    items = list(FileReader(str(path), os.path.basename(str(path)), cfg, limits or LimitsConfig()))
    return [d for d in items if isinstance(d, Document)], [b for b in items if isinstance(b, BadUnit)]


def _qa_records(shared, n=200):
    rows = [json.loads(l) for l in open(shared / "general/flagdata_web_zh/qa_demo_input.jsonl", encoding="utf-8")]
    return rows[:n]


def _wudao(rec, i):
    return {"id": i, "uniqueKey": f"k{i}", "titleUkey": f"t{i}", "dataType": "问答", "title": rec["title"] or f"问题{i}",
            "content": rec["content"]}


def test_wudao_json_array_streams_with_title_and_content(shared, tmp_path):
    recs = _qa_records(shared)
    p = tmp_path / "part-2021278643.json"
    p.write_text(json.dumps([_wudao(r, i) for i, r in enumerate(recs)], ensure_ascii=False, indent=1), encoding="utf-8")
    docs, bad = read(p)
    assert not bad and len(docs) == len(recs)
    assert docs[5].text == clean_text(f"{_wudao(recs[5], 5)['title']}\n{recs[5]['content']}")


def test_wudao_array_with_a_broken_element_reports_it_and_keeps_the_rest(shared, tmp_path):
    recs = [_wudao(r, i) for i, r in enumerate(_qa_records(shared, 50))]
    parts = [json.dumps(r, ensure_ascii=False) for r in recs]
    parts[20] = parts[20][: len(parts[20]) // 2]  # cut an element in half
    p = tmp_path / "broken.json"
    p.write_text("[" + ",\n".join(parts) + "]", encoding="utf-8")
    docs, bad = read(p)
    assert len(bad) == 1 and bad[0].reason == "malformed_json" and bad[0].offset > 0
    assert len(docs) >= 48  # the broken element and at most its neighbour are lost, and reported


def test_truncated_zst_keeps_what_was_read_and_reports(shared, tmp_path):
    import zstandard

    lines = open(shared / "general/c4_en/c4_demo.jsonl", "rb").read()
    comp = zstandard.ZstdCompressor(level=3).compress(lines)
    p = tmp_path / "c4.jsonl.zst"
    p.write_bytes(comp[: len(comp) // 2])
    docs, bad = read(p)
    assert 50 < len(docs) < 300
    assert [b.reason for b in bad] == ["truncated_or_corrupt_stream"]


def test_truncated_gzip(shared, tmp_path):
    raw = (shared / "general/dolma_commoncrawl_en/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz").read_bytes()
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(raw[: len(raw) // 3])
    docs, bad = read(p)
    assert len(docs) > 10 and bad and bad[-1].reason == "truncated_or_corrupt_stream"


def test_broken_json_line_in_the_middle(shared, tmp_path):
    lines = open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8").read().split("\n")
    lines[150] = lines[150][:40]
    p = tmp_path / "c4.jsonl"
    p.write_text("\n".join(lines), encoding="utf-8")
    docs, bad = read(p)
    assert len(docs) == 299
    assert bad[0].reason == "malformed_json" and bad[0].line == 151


def test_gbk_and_utf16_copies_decode_to_the_same_text(shared, tmp_path):
    cases = [("domain/lawrefbook_zh/宪法/宪法.md", "gbk"), ("domain/medicalgpt/pretrain/fever.txt", "gb18030"),
             ("domain/medicalgpt/pretrain/fever.txt", "utf-16")]
    for rel, enc in cases:
        src = shared / rel
        ref, _ = read(src)
        p = tmp_path / f"copy.{enc}.txt"
        p.write_bytes(src.read_text(encoding="utf-8").encode(enc))
        docs, bad = read(p)
        assert not bad and len(docs) == 1 and docs[0].text == ref[0].text, enc


def test_undecodable_bytes_are_counted(shared, tmp_path):
    raw = (shared / "domain/medicalgpt/pretrain/fever.txt").read_bytes()
    p = tmp_path / "bad.txt"
    p.write_bytes(raw[:5000] + b"\xff\xfe\xfa" + raw[5000:20000])
    docs, bad = read(p, encoding="utf-8")
    assert len(docs) == 1 and bad[0].reason == "undecodable_bytes"


def test_empty_and_binary_files(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    docs, bad = read(tmp_path / "empty.jsonl")
    assert not docs and bad[0].reason == "empty_file"
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)) * 100)
    docs, bad = read(tmp_path / "junk.bin")
    assert not docs and bad[0].reason == "binary_content"


def test_strict_mode_raises_on_the_first_bad_unit(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ReadError, match="empty_file"):
        read(tmp_path / "empty.txt", LimitsConfig(strict=True))


def test_oversize_document_split_or_dropped(shared):
    wiki = shared / "general/wikipedia_en/wiki_demo.txt"
    lines = [l for l in wiki.read_text(encoding="utf-8").split("\n") if l.strip()]
    docs, bad = read(wiki, LimitsConfig(max_doc_chars=20000), txt_mode="line")
    assert not bad and all(len(d.text) <= 20000 for d in docs) and len(docs) > len(lines)
    assert "".join(d.text for d in docs) == "".join(lines)
    docs, bad = read(wiki, LimitsConfig(max_doc_chars=20000, oversize="drop"), txt_mode="line")
    assert len(docs) + len(bad) == len(lines) and all(b.reason == "oversize_document" for b in bad)


def test_jsonl_behind_txt_and_list_fields(shared):
    docs, bad = read(shared / "domain/hf_scientific_papers_pubmed/train.txt", text_key="article_text")
    assert not bad and len(docs) == 2 and "\n" in docs[0].text


def test_u2028_inside_a_json_string_does_not_split_the_line(shared):
    docs, bad = read(shared / "general/dolma_commoncrawl_en/CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz")
    assert len(docs) == 697 and not bad
    assert any("\u2028" in d.text for d in docs)


def test_pile_subset_is_kept(shared):
    docs, _ = read(shared / "general/pile/val.jsonl.zst")
    assert docs[0].metadata["subset"] == "OpenWebText2"


def test_parquet_csv_and_datasets_fixtures_match_jsonl(shared, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = shared / "general/c4_en/c4_demo.jsonl"
    rows = [json.loads(l) for l in open(src, encoding="utf-8")]
    ref, _ = read(src)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c4.parquet", row_group_size=64)
    docs, bad = read(tmp_path / "c4.parquet")
    assert not bad and [d.text for d in docs] == [d.text for d in ref]
    import csv

    with open(tmp_path / "c4.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "timestamp", "url"])
        w.writeheader()
        w.writerows(rows)
    docs, bad = read(tmp_path / "c4.csv")
    assert not bad and [d.text for d in docs] == [d.text for d in ref]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "c4_ds"))
    docs, bad = read(tmp_path / "c4_ds")
    assert not bad and [d.text for d in docs] == [d.text for d in ref]


# README.md of ../shared/data: documents per source (JSON records, files, or non-blank lines)
EXPECTED = {
    "medical_rag": 87, "finance_zh": 6, "cail2018_zh": 6, "scotus_en": 6, "medical_dialog_zh": 2,
    "pubmed_en": 6, "law_zh": 237, "web_zh": 100 + 7 + 1000, "oscar_zh": 2 + 2,
    "dolma_cc_en": 697 + 10 + 10 + 10, "c4_en": 300 + 3, "wikipedia_en": 30, "shakespeare_en": 1,
    "pile": 4, "pg19_en": 3, "openwebtext_en": 4, "cc_news_en": 1,
}


@pytest.mark.slow
def test_recipe_over_every_file_of_shared_data(shared, tmp_path):
    recipe = Recipe.from_yaml(REPO / "recipes/shared-data.yaml")
    res = build(recipe, str(tmp_path / "all"))
    rep = res.report
    read_counts = {src: rows[0]["docs_in"] for src, rows in rep["funnel"].items()}
    med = shared / "domain/medicalgpt/pretrain"
    expected = dict(EXPECTED)
    expected["medical_pretrain"] = sum(
        sum(1 for l in f.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n") if l.strip())
        for f in med.iterdir())
    assert read_counts == expected
    # pg19's metadata.csv has no text column: each row is a reported bad unit, nothing crashes
    bad = [b for b in rep["bad_units"] if b["file"].endswith("metadata.csv")]
    assert len(bad) == 2 and all(b["reason"] == "no_text_field" for b in bad)
    assert all(c["ok"] for c in rep["accounting"].values())
    # the byte-identical Pile shards and CAIL files are exact duplicates
    dd = {s: next(r for r in rows if r["stage"] == "exact_dedup")["drops"].get("exact_dedup:duplicate", 0)
          for s, rows in rep["funnel"].items()}
    assert dd["pile"] >= 1 and dd["cail2018_zh"] >= 2


@pytest.mark.slow
def test_reading_a_1gb_wudao_file_stays_in_bounded_memory(shared, tmp_path):
    recs = [_wudao(r, i) for i, r in enumerate(_qa_records(shared, 1000))]
    p = tmp_path / "big.json"
    with open(p, "w", encoding="utf-8") as f:
        f.write("[")
        n, size = 0, 0
        while size < 1_000_000_000:
            r = dict(recs[n % len(recs)], id=n)
            s = ("," if n else "") + json.dumps(r, ensure_ascii=False)
            f.write(s)
            size += len(s.encode("utf-8"))
            n += 1
        f.write("]")
    code = f"""
import sys
from corpus.readers import FileReader
from corpus.recipe import LimitsConfig, SourceConfig
src = SourceConfig(name='w', paths=['x'])
n = 0
for d in FileReader({str(p)!r}, 'big.json', src, LimitsConfig()):
    n += 1
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent (pytest)
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(n, int(hwm) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == n
    print("peak RSS MB", out[1])
    assert int(out[1]) < 300, f"peak RSS {out[1]} MB"


def test_sentencepiece_to_tokenizer_json_encodes_identically(shared, tmp_path):
    """`corpus tokenizer convert`: the HF tokenizer.json gives SentencePiece's ids on real text
    (English web, Chinese Q&A and statutes, literal special-token strings, emoji, rare CJK), for the
    LLaMA model and the demo's default, and a build with it writes the same token rows."""
    import numpy as np

    from corpus.build import build
    from corpus.recipe import Recipe
    from shards.tokenizer import Tokenizer, default_tokenizer_path, spm_to_tokenizer_json

    texts = [json.loads(l)["text"] for l in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    texts += [json.loads(l)["content"] for l in open(shared / "general/flagdata_web_zh/qa_demo_input.jsonl",
                                                     encoding="utf-8")][:300]
    texts += ["<s> literal </s> and <unk>", "  two  spaces\ttab\n\nnewlines", "emoji 😀 and 𠀀 rare"]
    for i, model in enumerate([str(shared / "tokenizers/llama/tokenizer.model"), default_tokenizer_path()]):
        out = tmp_path / f"t{i}" / "tokenizer.json"
        spm_to_tokenizer_json(model, str(out))
        a, b = Tokenizer(model), Tokenizer(str(out))
        assert (a.vocab_size, a.bos_id, a.eos_id) == (b.vocab_size, b.bos_id, b.eos_id)
        for x, y, t in zip(a.encode_batch(texts), b.encode_batch(texts), texts):
            assert np.array_equal(x, y), t[:80]
        assert b.decode(b.encode_batch(texts[-1:])[0]) == texts[-1]
    law = str(shared / "domain/lawrefbook_zh/宪法")
    rows = []
    for tok in (str(shared / "tokenizers/llama/tokenizer.model"), str(tmp_path / "t0" / "tokenizer.json")):
        r = Recipe.model_validate({"name": "tj", "sources": [{"name": "law", "paths": [law]}],
                                   "tokenizer": {"path": tok}, "packing": {"seq_len": 128}})
        d = tmp_path / ("b" + str(len(rows)))
        build(r, str(d))
        rows.append(sorted((p.name, p.read_bytes()) for p in d.glob("*/*.bin")))
    assert rows[0] == rows[1] and rows[0]


# ---------------------------------------------------------------------------------------
# one document constructor, one reading loop (issue 16)


def test_pieces_of_a_big_text_file_carry_source_kind_like_every_document(shared):
    """A text file longer than max_doc_chars streams out as pieces: they are made by the same
    constructor as every other document (before, `piece_doc` built them bare, without the
    source's kind, so the domain classifier judged a domain source's big books as general)."""
    path = shared / "domain/medicalgpt/pretrain/tianlongbabu.txt"  # 854 KB of a real novel
    docs, bad = read(path, LimitsConfig(max_doc_chars=100_000), kind="domain")
    assert not bad and len(docs) >= 3
    assert [d.metadata.get("oversize_piece") for d in docs] == list(range(len(docs)))
    for d in docs:
        assert d.metadata["source_kind"] == "domain" and d.metadata["file"] == "tianlongbabu.txt"
    small, _ = read(shared / "domain/medicalgpt/pretrain/en_article_tail500.txt", kind="domain")
    assert set(small[0].metadata) - {"line"} == set(docs[0].metadata) - {"oversize_piece"}


def test_a_source_language_list_reaches_pieces_of_a_big_text_file(shared):
    """The per-source `languages` list is the language stage's parameter for that source
    (`Recipe.stages_for`), not document metadata that one constructor forgot: an English
    source kept by its own list survives a recipe that keeps only zh, pieces included."""
    from corpus.build import source_stages
    from corpus.stages import Chain

    path = shared / "general/wikipedia_en/wiki_demo.txt"  # 1 MB of English Wikipedia
    recipe = Recipe.model_validate({
        "name": "t", "sources": [{"name": "en", "paths": [str(path)], "languages": ["en"]},
                                 {"name": "other", "paths": [str(path)]}],
        "stages": [{"name": "language", "languages": ["zh"]}],
        "limits": {"max_doc_chars": 200_000}})
    assert recipe.stages_for(0)[0].params()["languages"] == ["en"]
    assert recipe.stages_for(1)[0].params()["languages"] == ["zh"]
    per_source = source_stages(recipe)
    docs, _ = read(path, recipe.limits, name="en", languages=["en"])
    assert len(docs) >= 3 and all("oversize_piece" in d.metadata for d in docs)
    assert "languages_keep" not in docs[0].metadata  # a setting, not data about the document
    kept = [Chain(per_source[0], 0)(d) for d in docs[:3]]
    dropped = [Chain(per_source[1], 0)(d) for d in docs[:3]]
    assert all(k is not None for k in kept) and all(d is None for d in dropped)


def test_read_documents_is_the_reader_loop_with_a_log(shared, tmp_path):
    """`read_documents` yields what FileReader yields as documents, in order, and puts the rest
    in the log: counts per reason, the first `keep` units, records and replaced characters."""
    from corpus.readers import ReadLog, read_documents

    files = [str(shared / "general/c4_en/c4_demo.jsonl"), str(shared / "general/flagdata_web_zh/qa_demo_input.jsonl")]
    good = shared / "general"
    raw = open(files[0], "rb").read()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(raw[: len(raw) // 3] + b"\n{\"text\": \"broken\n" + raw[len(raw) // 3:][:2000] + b"\xff\xfe\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    src = SourceConfig(name="s", paths=[str(good)])
    log = ReadLog(keep=1)
    got = list(read_documents([*files, str(cut), str(tmp_path / "empty.txt")], src, log=log))
    want = [d for f in [*files, str(cut)] for d in FileReader(f, os.path.basename(f), src, LimitsConfig())
            if isinstance(d, Document)]
    assert [(d.id, d.text) for d in got] == [(d.id, d.text) for d in want] and len(got) > 100
    assert log.counts["empty_file"] == 1 and log.counts["malformed_json"] >= 1
    assert len(log.examples) == 1 and sum(log.counts.values()) >= 3
    assert log.records >= len(got)
    one = list(read_documents(files[0], src, rel="x/y.jsonl"))
    assert one and all(d.id.startswith("s/x/y.jsonl:") for d in one)
    with pytest.raises(ReadError):
        list(read_documents([str(tmp_path / "empty.txt")], src, LimitsConfig(strict=True)))
