"""Hostile inputs for corpus/readers.py (issue 17): every case is read or reported, never a hang,
traceback or silent loss. Texts come from ../shared/data."""

import json
import os
import threading

import pytest

from corpus.document import BadUnit, Document
from corpus.readers import FileReader
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
