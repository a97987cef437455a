"""The labelled cleaning dev set: references into ../shared (never copies of the text) and the
one function that turns a reference back into the document text.

A label file is JSON Lines under `bench/data/clean_dev/`, one object per document:

    {"ref": {"file": "data/general/flagdata_web_zh/cleared1.jsonl", "record": 12},
     "sha1": "3f2a9c0d51b7",            # first 12 hex of sha1(text) - detects a changed file
     "lang": "zh",                      # zh | en | other (the page's main language)
     "source": "flagdata_web_zh",       # the folder under data/general (or the corpora file stem)
     "label": "drop",                   # keep | drop | unsure
     "category": "gambling",            # see docs/filters.md "Labelling guideline"
     "boilerplate_lines": [0, 1, 17],   # kept pages only: 0-based indices into text.split("\n")
     "note": "casino SEO injected into a news page"}   # short, in English, no copied sentences

`file` is relative to the shared folder (`data/...` or `corpora/...`). `record` is 0-based:
the k-th JSON line of a JSONL file (compressed or not), or the k-th blank-line-separated
document of a plain-text file (OSCAR layout). The text field is the first present of
`text`, `raw_content`, `content`, `maintext`.

    python bench/data/devset.py show data/general/flagdata_web_zh/cleared1.jsonl 12   # numbered lines
    python bench/data/devset.py check                                             # every label resolves
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import sys
from functools import lru_cache

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("REFINERY_SHARED", os.path.join(HERE, "..", "..", "..", "shared"))
LABELS = os.path.join(HERE, "clean_dev")
TEXT_KEYS = ("text", "raw_content", "content", "maintext")
LABEL_VALUES = ("keep", "drop", "unsure")


def _open(path: str) -> io.TextIOBase:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    if path.endswith(".zst"):
        import zstandard

        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")),
                                encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@lru_cache(maxsize=64)
def records(file: str) -> tuple[dict, ...]:
    """Every record of one shared file, as {"text": ..., "id": <the input's own id or None>}."""
    path = os.path.join(SHARED, file)
    name = file.rsplit("/", 1)[-1]
    is_jsonl = any(name.endswith(e) for e in (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz"))
    out = []
    with _open(path) as f:
        if is_jsonl:
            for line in f.read().split("\n"):
                if not line.strip():
                    continue
                rec = json.loads(line)
                text = next((rec[k] for k in TEXT_KEYS if isinstance(rec.get(k), str)), None)
                out.append({"text": text or "", "id": rec.get("id")})
        else:
            docs = [d.strip("\n") for d in f.read().replace("\r\n", "\n").split("\n\n")]
            out = [{"text": d, "id": None} for d in docs if d.strip()]
    return tuple(out)


def text_of(ref: dict) -> str:
    return records(ref["file"])[ref["record"]]["text"]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def load(pattern: str = "*.jsonl") -> list[dict]:
    """All labels, each with its resolved `text` added; raises if a reference no longer matches."""
    rows = []
    for path in sorted(glob.glob(os.path.join(LABELS, pattern))):
        for i, line in enumerate(open(path, encoding="utf-8"), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            text = text_of(row["ref"])
            if row.get("sha1") and row["sha1"] != sha1(text):
                raise ValueError(f"{path}:{i}: {row['ref']} no longer has sha1 {row['sha1']}")
            if row["label"] not in LABEL_VALUES:
                raise ValueError(f"{path}:{i}: label {row['label']!r} not in {LABEL_VALUES}")
            n = len(text.split("\n"))
            bad = [j for j in row.get("boilerplate_lines", []) if not 0 <= j < n]
            if bad:
                raise ValueError(f"{path}:{i}: boilerplate line indices {bad} outside 0..{n - 1}")
            row["text"] = text
            row["label_file"] = os.path.basename(path)
            rows.append(row)
    return rows


def show(file: str, record: int) -> None:
    rec = records(file)[record]
    text = rec["text"]
    print(f"# {file} record {record} id={rec['id']!r} sha1={sha1(text)} chars={len(text)}")
    for j, line in enumerate(text.split("\n")):
        print(f"{j:4d}| {line}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["show"]:
        show(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["count"]:
        print(len(records(sys.argv[2])))
    elif sys.argv[1:2] == ["check"]:
        rows = load()
        from collections import Counter

        print(len(rows), "labels;", dict(Counter((r["lang"], r["label"]) for r in rows)))
    else:
        print(__doc__)
