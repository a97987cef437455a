"""Issue 18: the lines a drop names (highlighted by the report, listed by `corpus clean`) are
indices into `text.split("\\n")`, whatever blank lines or `\\r` the page holds."""

from corpus.document import Document
from corpus.filters.gopher import GopherRepetition
from corpus.stages import Drop


def test_dup_line_indices_skip_blank_lines(shared):
    import json

    line = json.loads(open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8").readline())["text"]
    a, c, d = [x.replace("\n", " ") + "." for x in line.split(". ")[:3]]
    b = "Call us today for a free quote."
    # paragraphs all differ (the paragraph rules pass); lines repeat across the blank lines
    text = "\n".join([a, b, "", b, c, "", d, b, a])
    got = GopherRepetition().apply(Document(id="d", text=text, source="s"))
    assert isinstance(got, Drop) and got.reason.startswith("dup_line"), got
    lines = text.split("\n")
    assert got.lines == [3, 7, 8]
    assert [lines[i] for i in got.lines] == [b, b, a]
