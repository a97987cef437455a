"""Issue 18: a build directory is self-contained. A build made from a recipe with relative paths
(inputs and tokenizer beside the recipe) is moved elsewhere, the recipe, inputs and tokenizer
are deleted, and from another working directory `corpus verify`, `corpus stats --sample`,
`--report`, `train run` and `train export` all work, on the tokenizer copy the build carries.
A build from before the copy existed still verifies (a warning) and, where its tokenizer is
gone, is a one-line error."""

from __future__ import annotations

import json
import os
import shutil

from typer.testing import CliRunner

from conftest import LLAMA_TOKENIZER
from shards.manifest import with_checksum


def _run(cli: str, *args) -> tuple[int, str]:
    from corpus.cli import app as corpus_app
    from train.cli import app as train_app

    r = CliRunner().invoke(corpus_app if cli == "corpus" else train_app, [str(a) for a in args])
    # (transformers' logger keeps the stream of an earlier in-process invocation, and logging
    # prints its own "--- Logging error ---" traceback for it: not ours, so only corpus is checked)
    assert cli == "train" or "Traceback" not in r.output, r.output
    return r.exit_code, r.output


def _strings(x, path=()):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _strings(v, path + (k,))
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v, path)
    elif isinstance(x, str):
        yield path, x


def test_moved_build_works_from_anywhere(shared, tmp_path, monkeypatch):
    a = tmp_path / "a"
    (a / "recipes").mkdir(parents=True)
    (a / "data").mkdir()
    (a / "tok").mkdir()
    shutil.copy(LLAMA_TOKENIZER, a / "tok" / "tokenizer.model")
    lines = open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8").readlines()[:200]
    (a / "data" / "c4.jsonl").write_text("".join(lines), encoding="utf-8")
    (a / "recipes" / "r.yaml").write_text(
        "name: moved\nsources:\n  - name: c4\n    paths: [../data/c4.jsonl]\n"
        "tokenizer:\n  path: ../tok/tokenizer.model\npacking:\n  seq_len: 64\nsplit:\n  val_ratio: 0.1\n")
    monkeypatch.chdir(a)
    code, out = _run("corpus", "build", "recipes/r.yaml", "--out", "build")
    assert code == 0, out

    m = json.load(open(a / "build" / "manifest.json", encoding="utf-8"))
    assert (a / "build" / m["tokenizer"]["file"]).read_bytes() == LLAMA_TOKENIZER.read_bytes()
    members = {e["name"] for sp in m["splits"].values() for e in sp["shards"]} | set(m["tokenizer"]["files"])
    for where, s in _strings(m):  # every path is absolute or a file inside the build directory
        if "/" in s and where[-1] not in ("pattern",):
            assert os.path.isabs(s) or s in members, (where, s)

    dst = tmp_path / "b" / "moved"
    dst.parent.mkdir()
    shutil.move(str(a / "build"), dst)
    monkeypatch.chdir(tmp_path)
    shutil.rmtree(a)  # recipe, inputs and tokenizer gone: only the build directory is left
    elsewhere = tmp_path / "c"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rel = os.path.join("..", "b", "moved")

    code, out = _run("corpus", "verify", rel)
    assert code == 0 and "warning" not in out.lower(), out
    code, out = _run("corpus", "stats", rel, "--sample", "2", "--report", "report.html")
    assert code == 0, out
    assert "⟦doc⟧" in out or "⟦cont⟧" in out, out  # rows decoded with the copy
    assert (elsewhere / "report.html").stat().st_size > 1000
    code, out = _run("train", "run", "--shards", rel, "--out", "run", "--model", "tiny", "--steps", "4",
                     "--micro-batch", "2", "--eval-interval", "0", "--eval-rows", "2", "--precision", "fp32")
    assert code == 0, out
    code, out = _run("train", "export", "run", "--out", "hf", "--dtype", "fp32")
    assert code == 0 and "exported" in out, out
    assert (elsewhere / "hf" / "tokenizer.model").read_bytes() == LLAMA_TOKENIZER.read_bytes()

    # a build from before the copy: verify warns; stats with its tokenizer gone is one line
    old = json.load(open(dst / "manifest.json", encoding="utf-8"))
    old["tokenizer"] = {k: v for k, v in old["tokenizer"].items() if k != "files"}
    old["tokenizer"]["file"] = "tokenizer.model"
    old["recipe"]["tokenizer"]["path"] = str(a / "tok" / "tokenizer.model")
    (dst / "manifest.json").write_text(json.dumps(with_checksum(old), indent=1), encoding="utf-8")
    shutil.rmtree(dst / "tokenizer")
    code, out = _run("corpus", "verify", rel)
    assert code == 0 and "no copy of the tokenizer" in out, out
    code, out = _run("corpus", "stats", rel, "--sample", "2")
    assert code == 2, out
    line = out.strip().splitlines()[-1]
    assert line.startswith("error: ") and "predates tokenizer copies" in line, out
