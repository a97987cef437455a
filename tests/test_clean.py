"""Issue 19 item 1: `corpus clean` writes per-document decisions. On real web text of
../shared/data: a drop is reported with its stage and reason, a removed line's index is the
right line of the input, ids are the input's own, the chain trace agrees between a stage that
reports its removals (`Document.without_lines`) and one aligned by content, and bad input is a
one-line error. Recipes here use stages whose decisions the test can recompute on its own, so
that the tests check the reporting, not the current rules."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SHARED

WEB_ZH = SHARED / "general/flagdata_web_zh/cleared1.jsonl"  # no ids of its own
CC_EN = SHARED / "general/dolma_commoncrawl_en/cc_en_head-0091.jsonl"  # an `id` per record


def _raw(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").split("\n") if l.strip()]


def _text(rec: dict) -> str:
    """The record's text as the reader hands it over (control characters removed)."""
    from corpus.readers import clean_text

    return clean_text(rec.get("text") if isinstance(rec.get("text"), str) else rec["raw_content"])


def _recipe(tmp_path: Path, stages: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(f"sources:\n  - {{name: x, paths: [{WEB_ZH}]}}\nstages:\n{stages}", encoding="utf-8")
    return p


def _run(args: list) -> tuple[int, str, str]:
    from corpus.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def _rows(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]


def test_drops_carry_stage_reason_and_the_inputs_ids(tmp_path):
    """min_length at 300 characters: exactly the short records are dropped, by that stage, and
    every row is keyed `file:line` (cleared1 has no ids) with the line of its record."""
    out = tmp_path / "o"
    code, so, se = _run(["clean", WEB_ZH, "--recipe", _recipe(tmp_path, "  - {name: min_length, min_chars: 300}\n"),
                         "--out", out])
    assert code == 0, so + se
    raw = _raw(WEB_ZH)
    nonws = [len(_text(r)) - sum(_text(r).count(c) for c in " \n\t") for r in raw]
    short = {f"cleared1.jsonl:{i + 1}" for i, n in enumerate(nonws) if n < 300}
    assert 0 < len(short) < len(raw)
    dropped, kept = _rows(out / "dropped.jsonl"), _rows(out / "kept.jsonl")
    assert {d["id"] for d in dropped} == short
    assert all(d["stage"] == "min_length" and d["reason"] == "too_short" and d["detail"] for d in dropped)
    assert len(kept) + len(dropped) == len(raw)
    for k in kept:  # the id names the record: its text is that line's text (nothing was changed)
        assert k["text"] == _text(raw[int(k["id"].split(":")[1]) - 1])
        assert k["removed"] == {}
    summary = json.loads((out / "clean_summary.json").read_text(encoding="utf-8"))
    assert summary["per_source"]["cleared1"]["drops"] == {"min_length:too_short": len(short)}
    assert "cleared1" in so and str(len(short)) in so  # the summary table


def test_own_ids_are_kept(tmp_path):
    out = tmp_path / "o"
    code, so, se = _run(["clean", CC_EN, "--recipe", _recipe(tmp_path, "  - {name: min_length, min_chars: 1500}\n"),
                         "--out", out])
    assert code == 0, so + se
    ids = [r["id"] for r in _raw(CC_EN)]
    rows = _rows(out / "kept.jsonl") + _rows(out / "dropped.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(i.startswith("http") for i in ids)


def test_removed_line_indices_are_the_input_lines(tmp_path):
    """normalize + line_corrections: in every kept page, each reported index is an input line
    that is gone from the cleaned text, and every non-blank input line that is gone is reported."""
    out = tmp_path / "o"
    rec = _recipe(tmp_path, "  - {name: normalize}\n  - {name: line_corrections}\n")
    code, so, se = _run(["clean", WEB_ZH, "--recipe", rec, "--out", out])
    assert code == 0, so + se
    raw = _raw(WEB_ZH)
    n_removed = 0
    for k in _rows(out / "kept.jsonl"):
        lines = _text(raw[int(k["id"].split(":")[1]) - 1]).split("\n")
        after = Counter(l.strip() for l in k["text"].split("\n"))
        before = Counter(l.strip() for l in lines if l.strip())
        gone = {i for i, l in enumerate(lines) if l.strip() and l.strip() not in after}
        rep = set(k["removed"].get("line_corrections", []))
        assert set(k["removed"]) <= {"line_corrections"}  # normalize rewrote lines, removed none
        # every line whose content vanished is reported; a reported line whose content is still
        # there is one copy of a repeated line (a title repeated in a related-article list)
        assert gone <= rep, (k["id"], sorted(rep), sorted(gone))
        per_content = Counter(lines[i].strip() for i in rep)
        assert all(before[c] - after[c] == n for c, n in per_content.items()), (k["id"], per_content)
        n_removed += len(rep)
    assert n_removed > 10


def _stage(name: str, fn):
    from corpus.stages import Stage

    class S(Stage):
        def apply(self, doc):
            return fn(doc)

    S.name = name
    return S()


def test_trace_reported_and_aligned_removals_agree():
    """Removing every third non-blank line of real pages, once through Document.without_lines
    (exact) and once by rebuilding the text (content alignment): the same input indices, also
    after a stage that rewrote lines in place and shifted them (stripped, blank lines dropped)."""
    from corpus.document import Document
    from corpus.stages import Chain

    def squeeze(doc):  # shifts lines: strip each, drop blank lines
        return doc.with_text("\n".join(l.strip() for l in doc.text.split("\n") if l.strip()))

    def pick(doc):
        return [i for i, l in enumerate(doc.text.split("\n")) if i % 3 == 1]

    exact = _stage("cut", lambda d: d.without_lines(pick(d)))
    aligned = _stage("cut", lambda d: d.with_text("\n".join(l for i, l in enumerate(d.text.split("\n"))
                                                            if i not in set(pick(d)))))
    docs = [Document(str(i), _text(r), "web") for i, r in enumerate(_raw(WEB_ZH)[:40])]
    total = 0
    for d in docs:
        a, b = Chain([_stage("squeeze", squeeze), exact], 0, trace=True), Chain([_stage("squeeze", squeeze), aligned], 0,
                                                                              trace=True)
        assert a(d) is not None and b(d) is not None
        lines = d.text.split("\n")
        nonblank = [i for i, l in enumerate(lines) if l.strip()]
        want = [nonblank[j] for j in range(len(nonblank)) if j % 3 == 1]
        assert a.last.removed.get("cut", []) == want
        if len({l.strip() for l in lines}) == len(lines):  # content alignment is exact when lines are unique
            assert b.last.removed.get("cut", []) == want
        assert "squeeze" not in a.last.removed
        total += len(want)
    assert total > 50


def test_drop_lines_map_to_input_lines():
    """A drop's offending lines are given in the stage's text; the trace maps them back to the
    input (here after a stage that removed the first lines)."""
    from corpus.document import Document
    from corpus.stages import Chain, Drop

    raw = _text(_raw(WEB_ZH)[0])
    lines = raw.split("\n")
    assert len(lines) > 6
    head = _stage("head", lambda d: d.without_lines([0, 1, 2]))
    flag = _stage("flag", lambda d: Drop("why", "", [0, 2]))
    ch = Chain([head, flag], 0, trace=True)
    assert ch(Document("a", raw, "web")) is None
    assert ch.last.stage == "flag" and ch.last.drop.reason == "why"
    blank = {i for i, l in enumerate(lines) if not l.strip()}
    assert ch.last.removed == {"head": [i for i in (0, 1, 2) if i not in blank]}
    assert ch.last.drop.lines == [3, 5]


@pytest.mark.parametrize("case", ["missing_input", "missing_recipe", "foreign_out", "bad_stage", "bad_source"])
def test_bad_input_is_one_line(tmp_path, case):
    rec = _recipe(tmp_path, "  - {name: min_length}\n")
    out = tmp_path / "o"
    args = ["clean", WEB_ZH, "--recipe", rec, "--out", out]
    needle = ""
    if case == "missing_input":
        args[1], needle = tmp_path / "nope.jsonl", "no such file"
    elif case == "missing_recipe":
        args[3], needle = tmp_path / "nope.yaml", "no such recipe"
    elif case == "foreign_out":
        out.mkdir()
        (out / "kept.jsonl").write_text("mine\n", encoding="utf-8")
        needle = "--out"
    elif case == "bad_stage":
        args[3], needle = _recipe(tmp_path, "  - {name: no_such_stage}\n"), "no_such_stage"
    else:
        args += ["--source", "zz"]
        needle = "--source"
    code, so, se = _run(args)
    text = (se.strip() or so.strip())
    assert code == 2, (code, so, se)
    assert len(text.splitlines()) == 1 and text.startswith("error: ") and needle in text, text
    assert "Traceback" not in so + se
    if case == "foreign_out":
        assert (out / "kept.jsonl").read_text(encoding="utf-8") == "mine\n"  # never overwritten
