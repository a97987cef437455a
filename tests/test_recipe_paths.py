"""Issue 17: symlinks in input directories. A symlinked sub-directory is read like a real one; a
symlink loop is reported once per looping link as a skipped unit (path + reason) and never
hangs the build; a broken symlink is a skipped unit too. Real files of ../shared/data."""

from __future__ import annotations

import os
import shutil
import signal
from contextlib import contextmanager

import pytest

from conftest import LLAMA_TOKENIZER, SHARED


@contextmanager
def _deadline(seconds: int):
    """A hang fails the test instead of blocking the run."""
    def boom(*_):
        raise TimeoutError(f"still walking after {seconds} s: a symlink loop was followed")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def tree(tmp_path):
    """inputs/a.jsonl.zst, inputs/sub/linked -> ../../real (Pile and cc_news files),
    inputs/sub/linked/back -> ../../inputs (a loop through two links), inputs/self -> . ,
    inputs/broken -> nowhere."""
    real = tmp_path / "real"
    real.mkdir()
    shutil.copy(SHARED / "general/pile/01.jsonl.zst", real / "p01.jsonl.zst")
    for f in sorted((SHARED / "general/cc_news").iterdir()):
        shutil.copy(f, real / f.name)
    inputs = tmp_path / "inputs"
    (inputs / "sub").mkdir(parents=True)
    shutil.copy(SHARED / "general/pile/00.jsonl.zst", inputs / "a.jsonl.zst")
    os.symlink("../../real", inputs / "sub" / "linked")
    os.symlink("../inputs", real / "back")  # real/back -> inputs: inputs/sub/linked/back loops
    os.symlink(".", inputs / "self")
    os.symlink("nowhere", inputs / "broken")
    return tmp_path, inputs, real


def test_symlinked_subdirectory_is_read_and_loops_are_not_followed(tree):
    from corpus.recipe import expand_paths, is_symlink_loop

    tmp, inputs, real = tree
    with _deadline(60):
        files = expand_paths([str(inputs)])
    rel = [os.path.relpath(f, inputs) for f in files]
    assert "sub/linked/p01.jsonl.zst" in rel  # the symlinked directory was walked
    assert all(f"sub/linked/{f.name}" in rel for f in (real).iterdir() if f.is_file())
    loops = [r for r, f in zip(rel, files) if is_symlink_loop(f)]
    assert sorted(loops) == ["self", "sub/linked/back"]  # each looping link once, nothing below it
    assert "broken" in rel  # handed to the reader, which reports it
    assert len(rel) == len(set(rel))


def test_build_reports_loops_and_broken_links_as_skipped_units(tree):
    from corpus.build import build
    from corpus.recipe import Recipe

    tmp, inputs, real = tree
    recipe = Recipe.model_validate({"sources": [{"name": "mix", "paths": [str(inputs)]}],
                                    "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 128}})
    with _deadline(120):
        res = build(recipe, str(tmp / "out"))
    bad = res.report["bad_units"]
    by_file = {b["file"] if isinstance(b, dict) else b.file: b for b in bad}
    reasons = {f: (b["reason"] if isinstance(b, dict) else b.reason) for f, b in by_file.items()}
    assert reasons.get("self") == "symlink_loop" and reasons.get("sub/linked/back") == "symlink_loop", reasons
    assert reasons.get("broken") == "not_a_regular_file", reasons
    assert len([b for b in bad if (b["reason"] if isinstance(b, dict) else b.reason) == "symlink_loop"]) == 2

    # the documents of the symlinked directory are in the build: the same count as reading it directly
    plain = [str(inputs / "a.jsonl.zst")] + sorted(str(f) for f in real.iterdir() if not f.is_symlink())
    direct = Recipe.model_validate({"sources": [{"name": "mix", "paths": plain}],
                                    "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 128}})
    ref = build(direct, str(tmp / "ref"))
    assert res.report["documents_in"] == ref.report["documents_in"] > 0


def test_a_looping_input_path_itself_is_reported_not_walked(tmp_path):
    from corpus.readers import FileReader
    from corpus.recipe import LimitsConfig, SourceConfig, expand_paths

    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(SHARED / "general/cc_news/" / sorted(os.listdir(SHARED / "general/cc_news"))[0], d)
    os.symlink("..", d / "up")  # d/up -> tmp_path, which holds d again: d/up/d is the loop
    with _deadline(60):
        files = expand_paths([str(d)])
    src = SourceConfig(name="s", paths=[str(d)])
    out = {os.path.relpath(f, d): list(FileReader(f, os.path.relpath(f, d), src, LimitsConfig())) for f in files}
    loop = out["up/d"]
    assert len(loop) == 1 and loop[0].reason == "symlink_loop" and "up/d" in loop[0].detail
    assert sum(len(v) for k, v in out.items() if not k.startswith("up/")) >= 1  # the real file was read
    with pytest.raises(FileNotFoundError, match="input path does not exist"):
        expand_paths([str(tmp_path / "absent")])
