"""Hostile inputs for corpus/readers.py (issue 17): every case is read or reported, never a hang,
traceback or silent loss. Texts come from ../shared/data."""

import json
import os
import threading

import pytest

from corpus.document import BadUnit, Document
from corpus.readers import FileReader, clean_text
from corpus.recipe import LimitsConfig, SourceConfig

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def _read(path):
    cfg = SourceConfig(name="t", paths=[str(path)])
    items = list(FileReader(str(path), os.path.basename(str(path)), cfg, LimitsConfig()))
    return [d for d in items if isinstance(d, Document)], [b for b in items if isinstance(b, BadUnit)]


def _qa(n=30):
    p = os.path.join(SHARED, "general/flagdata_web_zh/qa_demo_input.jsonl")
    return [json.loads(l) for l in open(p, encoding="utf-8")][:n]


def test_fifo_is_skipped_with_a_reason_not_a_hang(tmp_path):
    p = tmp_path / "pipe.jsonl"
    os.mkfifo(p)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=_read(p)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    docs, bad = out["r"]
    assert not docs and len(bad) == 1 and bad[0].reason == "not_a_regular_file" and "FIFO" in bad[0].detail
    cfg = SourceConfig(name="t", paths=[str(p)])
    assert FileReader(str(p), "pipe.jsonl", cfg, LimitsConfig()).splittable() is False


def test_wudao_null_or_dict_content_is_a_bad_field_type(tmp_path):
    recs = _qa(10)
    rows = [{"id": i, "uniqueKey": f"k{i}", "titleUkey": f"t{i}", "dataType": "问答",
             "title": r["title"] or f"问题{i}", "content": r["content"]} for i, r in enumerate(recs)]
    rows[3]["content"] = None
    rows[6]["content"] = {"p": rows[6]["content"]}
    p = tmp_path / "part-1.json"
    p.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    docs, bad = _read(p)
    assert len(docs) == 8
    assert [b.reason for b in bad] == ["bad field type", "bad field type"]
    assert not any(d.text.endswith("None") or "{'p'" in d.text for d in docs)


def _jsonl_with(tmp_path, bad_line):
    recs = _qa(10)
    lines = [json.dumps({"text": r["content"]}, ensure_ascii=False) for r in recs]
    lines.insert(4, bad_line)
    p = tmp_path / "x.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p, len(recs)


@pytest.mark.parametrize("bad_line", [
    '{"text": 1' + "7" * 5000 + "}",           # int max str digits (ValueError)
    "[" * 100000 + "]" * 100000,              # RecursionError
    '{"text": "\\ud800 lone surrogate"}',     # lone surrogate
])
def test_one_hostile_jsonl_line_is_skipped_and_the_rest_read(tmp_path, bad_line):
    p, n = _jsonl_with(tmp_path, bad_line)
    docs, bad = _read(p)
    assert len(docs) == n
    assert len(bad) == 1 and bad[0].line == 5 and bad[0].reason in ("malformed_json", "lone_surrogate")


def test_two_concatenated_wudao_arrays_are_both_read(tmp_path):
    recs = _qa(20)
    rows = [{"id": i, "uniqueKey": f"k{i}", "titleUkey": f"t{i}", "dataType": "问答",
             "title": r["title"] or f"问题{i}", "content": r["content"]} for i, r in enumerate(recs)]
    p = tmp_path / "part-2.json"
    p.write_text(json.dumps(rows[:10], ensure_ascii=False) + json.dumps(rows[10:], ensure_ascii=False) + "\n",
                 encoding="utf-8")
    docs, bad = _read(p)
    assert not bad and len(docs) == 20 and len({d.id for d in docs}) == 20


def test_80kb_of_blank_lines_before_text_is_read(tmp_path):
    text = "\n".join(r["content"] for r in _qa(5))
    p = tmp_path / "blank.txt"
    p.write_bytes(b"\n" * 80000 + text.encode("utf-8"))
    docs, bad = _read(p)
    assert not bad and docs and "".join(d.text for d in docs).replace("\n", "") == text.replace("\n", "")


def test_jsonl_with_a_first_line_over_64k_keeps_one_id_per_line(tmp_path):
    recs = _qa(10)
    lines = [json.dumps({"text": "".join(r["content"] for r in _qa(200)) * 3}, ensure_ascii=False)]
    assert len(lines[0].encode()) > 65536
    lines += [json.dumps({"text": r["content"]}, ensure_ascii=False) for r in recs]
    lines.insert(3, '{"text": "cut')
    p = tmp_path / "long.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs, bad = _read(p)
    assert len({d.id.split("#")[0] for d in docs}) == 11
    assert len(bad) == 1 and bad[0].line == 4 and bad[0].reason == "malformed_json"


def test_one_bad_byte_in_utf8_chinese_txt_stays_utf8_and_is_reported(tmp_path):
    text = "\n".join(r["content"] for r in _qa(20))
    raw = text.encode("utf-8")
    k = len(raw) // 2
    p = tmp_path / "zh.txt"
    p.write_bytes(raw[:k] + b"\xff" + raw[k:])
    docs, bad = _read(p)
    got = "\n".join(d.text for d in docs)
    assert got.replace("\ufffd", "").replace("\n", "") == text.replace("\n", "")
    assert len(bad) == 1 and bad[0].reason == "undecodable_bytes" and bad[0].detail.startswith("1 ")


def _wudao_rows(n):
    return [{"id": i, "uniqueKey": f"k{i}", "titleUkey": f"t{i}", "dataType": "问答",
             "title": r["title"] or f"问题{i}", "content": r["content"]} for i, r in enumerate(_qa(n))]


@pytest.mark.parametrize("damage", ["cut", "flip_quote", "flip_brace", "junk", "deep"])
@pytest.mark.parametrize("sep", [",", ",\n"])
def test_a_malformed_wudao_element_costs_only_that_element(tmp_path, damage, sep):
    rows = _wudao_rows(30)
    parts = [json.dumps(r, ensure_ascii=False) for r in rows]
    k = 12
    if damage == "cut":
        parts[k] = parts[k][: len(parts[k]) // 2]
    elif damage == "flip_quote":
        i = parts[k].index('"content": "') + len('"content": ')
        parts[k] = parts[k][:i] + "#" + parts[k][i + 1:]
    elif damage == "flip_brace":
        parts[k] = parts[k][:-1] + "]"
    elif damage == "junk":
        parts[k] = parts[k] + " \x7fGARBAGE<<"
    else:
        parts[k] = "[" * 5000 + "]" * 4999
    p = tmp_path / "part-9.json"
    p.write_text("[" + sep.join(parts) + "]", encoding="utf-8")
    docs, bad = _read(p)
    texts = {d.text for d in docs}
    want = {f"{r['title']}\n{r['content']}".replace("\r\n", "\n") for i, r in enumerate(rows) if i != k}
    assert want <= {t.replace("\r\n", "\n") for t in texts}, "an element other than the damaged one was lost"
    assert len(bad) == 1 and bad[0].reason == "malformed_json"
    start = len(("[" + sep.join(parts[:k]) + sep).encode("utf-8"))
    assert bad[0].offset == start or damage == "junk", (bad[0].offset, start)


def test_truncated_wudao_array_keeps_every_whole_element(tmp_path):
    parts = [json.dumps(r, ensure_ascii=False) for r in _wudao_rows(20)]
    raw = ("[" + ",".join(parts) + "]").encode("utf-8")
    cut = raw.index(parts[15][:40].encode("utf-8")) + 60
    p = tmp_path / "cut.json"
    p.write_bytes(raw[:cut])
    docs, bad = _read(p)
    assert len(docs) == 15 and [b.reason for b in bad] == ["truncated_json"]


def _big_text(nbytes):
    """Real text from ../shared/data repeated to about `nbytes` UTF-8 bytes."""
    base = "\n".join(r["content"] for r in _qa(200))
    reps = nbytes // len(base.encode("utf-8")) + 1
    return base * reps


def test_a_one_line_document_bigger_than_every_buffer_is_read_and_split(tmp_path):
    # 12 MB: over the reader's 1 MiB blocks, the old 64 KiB sniff window and max_doc_chars below;
    # the same code path read a 150 MB line in a manual check (docs/reliability.md)
    text = _big_text(12 << 20)
    limits = LimitsConfig(max_doc_chars=1_000_000)
    cfg = SourceConfig(name="t", paths=["x"])
    for name, body in (("one.jsonl", json.dumps({"text": text}, ensure_ascii=False) + "\n"
                        + json.dumps({"text": "after"}) + "\n"),
                       ("one.json", json.dumps([_wudao_rows(1)[0], {"text": text}, {"text": "after"}],
                                               ensure_ascii=False))):
        p = tmp_path / name
        p.write_text(body, encoding="utf-8")
        items = list(FileReader(str(p), name, cfg, limits))
        docs = [d for d in items if isinstance(d, Document)]
        assert not [b for b in items if isinstance(b, BadUnit)], name
        pieces = [d for d in docs if "oversize_piece" in d.metadata]
        assert len(pieces) >= len(text) // 1_000_000 >= 4 and all(len(d.text) <= 1_000_000 for d in pieces)
        assert "".join(d.text for d in pieces) == text.replace("\r\n", "\n").replace("\r", "\n")
        assert docs[-1].text == "after"


def test_a_cut_utf8_character_fails_only_its_line(tmp_path):
    lines = [json.dumps({"text": r["content"]}, ensure_ascii=False).encode("utf-8") for r in _qa(30)]
    zh = lines[7].index("的".encode("utf-8")) if "的".encode("utf-8") in lines[7] else 20
    lines[7] = lines[7][:zh] + lines[7][zh:zh + 2] + lines[7][zh + 3:]  # a 3-byte character cut to 2
    raw = b"\n".join(lines) + b"\n" + lines[3][:-5] + "的".encode("utf-8")[:2]  # last line cut mid-character
    p = tmp_path / "cut.jsonl"
    p.write_bytes(raw)
    docs, bad = _read(p)
    assert len(docs) == 30
    assert docs[7].text.count("\ufffd") == 1
    assert all("\ufffd" not in d.text for i, d in enumerate(docs) if i != 7)
    assert sorted((b.line, b.reason) for b in bad) == [(8, "undecodable_bytes"), (31, "malformed_json"),
                                                        (31, "undecodable_bytes")]


@pytest.mark.parametrize("enc", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_jsonl_reads_every_line(tmp_path, enc):
    recs = _qa(20)
    body = "\n".join(json.dumps({"text": r["content"]}, ensure_ascii=False) for r in recs) + "\n"
    if enc != "utf-16":
        body = "\n".join(json.dumps({"text": r["content"]}) for r in recs) + "\n"  # ASCII escapes: no BOM needed
    p = tmp_path / "u16.jsonl"
    p.write_bytes(body.encode(enc))
    docs, bad = _read(p)
    assert not bad and [d.text for d in docs] == [clean_text(r["content"]) for r in recs]


def test_binary_junk_with_few_control_bytes_is_skipped(tmp_path):
    import random

    rng = random.Random(5)
    for name, data in (("a.jsonl", bytes(rng.randrange(32, 256) for _ in range(50000))),
                       ("b.txt", bytes(rng.randrange(128, 256) for _ in range(50000))),
                       ("c.md", bytes(rng.choice([rng.randrange(32, 127), rng.randrange(160, 255)]) for _ in range(50000)))):
        p = tmp_path / name
        p.write_bytes(data)
        docs, bad = _read(p)
        assert not docs and [b.reason for b in bad] == ["binary_content"], name
    # real GBK and Big5 Chinese is text
    law = os.path.join(SHARED, "domain/lawrefbook_zh/宪法/宪法.md")
    zh = open(law, encoding="utf-8").read()
    for enc, text in (("gbk", zh), ("big5", _traditional(zh))):
        p = tmp_path / f"law.{enc}.txt"
        p.write_bytes(text.encode(enc, errors="ignore"))
        docs, bad = _read(p)
        assert docs and not bad, enc


def _traditional(text):
    import opencc

    return opencc.OpenCC("s2t").convert(text)


def test_markdown_html_comments_are_dropped(tmp_path):
    law = os.path.join(SHARED, "domain/lawrefbook_zh/刑法/刑法修正案（七）.md")
    raw = open(law, encoding="utf-8").read()
    assert "<!-- INFO END -->" in raw
    extra = raw + "\n正文<!-- 行内\n跨行注释 -->继续\n```html\n<!-- 代码里保留 -->\n```\n"
    p = tmp_path / "law.md"
    p.write_text(extra, encoding="utf-8")
    cfg = SourceConfig(name="t", paths=[str(p)], format="md")
    docs = [d for d in FileReader(str(p), "law.md", cfg, LimitsConfig()) if isinstance(d, Document)]
    text = "".join(d.text for d in docs)
    assert "INFO END" not in text and "跨行注释" not in text and "正文继续" in text
    assert "<!-- 代码里保留 -->" in text
    assert text.count("\n") >= raw.count("\n") - 2


def test_a_200kb_csv_field_is_read(tmp_path):
    import csv

    text = _big_text(200_000)[:200_000]
    p = tmp_path / "big.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerow([1, text])
        w.writerow([2, "short"])
    docs, bad = _read(p)
    assert not bad and [d.text for d in docs] == [clean_text(text), "short"]


def test_replaced_characters_are_counted_per_reader(tmp_path):
    raw = "\n".join(r["content"] for r in _qa(20)).encode("utf-8")
    p = tmp_path / "zh.txt"
    p.write_bytes(raw[:1000] + b"\xff" + raw[1000:3000] + b"\xfe" + raw[3000:])
    cfg = SourceConfig(name="t", paths=[str(p)])
    r = FileReader(str(p), "zh.txt", cfg, LimitsConfig())
    list(r)
    assert r.replaced == 2


def test_build_report_counts_replaced_characters(tmp_path):
    from corpus.build import build
    from corpus.recipe import Recipe

    raw = "\n".join(r["content"] for r in _qa(30)).encode("utf-8")
    inp = tmp_path / "in"
    inp.mkdir()
    txt = raw[:500] + b"\xff" + raw[500:2000] + b"\xfe\xfe" + raw[2000:]  # 2 of them cut characters too
    (inp / "zh.txt").write_bytes(txt)
    lines = [json.dumps({"text": r["content"]}, ensure_ascii=False).encode("utf-8") for r in _qa(10)]
    lines[2] = lines[2][:10] + b"\xe4\xb8" + lines[2][10:]  # a cut character at the start of line 3's text
    (inp / "qa.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    recipe = Recipe.model_validate({
        "name": "r", "sources": [{"name": "s", "paths": [str(inp)], "txt_mode": "line"}],
        "tokenizer": {"path": os.path.join(SHARED, "tokenizers/llama/tokenizer.model")},
        "packing": {"seq_len": 128}})
    rep = build(recipe, str(tmp_path / "out")).report
    assert rep["replaced_chars"] == txt.decode("utf-8", "replace").count("\ufffd") + 1 == 7
    assert rep["bad_unit_counts"] == {"undecodable_bytes": 2}
    assert {b["line"] for b in rep["bad_units"]} == {None, 3}


def test_utf8_bom_jsonl_is_splittable_and_read(tmp_path):
    lines = [json.dumps({"text": r["content"]}, ensure_ascii=False) for r in _qa(10)]
    p = tmp_path / "bom.jsonl"
    p.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    cfg = SourceConfig(name="t", paths=[str(p)])
    assert FileReader(str(p), "bom.jsonl", cfg, LimitsConfig()).splittable()
    docs, bad = _read(p)
    assert not bad and [d.text for d in docs] == [clean_text(r["content"]) for r in _qa(10)]
