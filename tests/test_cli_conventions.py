"""Issue 18, CLI conventions: `corpus build --input A B C`, `python -m corpus.cli dedup`, output
to a pipe not cut to 80 columns, plain progress lines when stdout is not a terminal (build and a
short CPU training run), and `corpus stats A B` listing stages in pipeline order. Real text of
../shared/data, real processes (stdout is a pipe here, as in `> log`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import LLAMA_TOKENIZER, ROOT, SHARED, build_files

PILE = SHARED / "general/pile"
CC_NEWS = SHARED / "general/cc_news"
OWT = SHARED / "general/openwebtext"


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", **extra)
    return env


def _corpus(*args, **env):
    return subprocess.run([sys.executable, "-m", "corpus.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=_env(**env), timeout=300)


def test_build_input_takes_several_paths_after_one_flag(tmp_path):
    common = ["-o", None, "--seq-len", "128", "--tokenizer", LLAMA_TOKENIZER]
    a = tmp_path / "a" / ("a-directory-name-long-enough-to-pass-eighty-columns-" * 2).rstrip("-")
    r = _corpus("build", "--input", PILE, CC_NEWS, OWT, *[str(a) if x is None else x for x in common],
                REFINERY_PROGRESS_SECONDS="0.2")
    assert r.returncode == 0, r.stderr
    m = json.loads((a / "manifest.json").read_text())
    assert list(m["per_source"]) == ["pile", "cc_news", "openwebtext"]  # one source each, in order
    assert re.search(r"^read\+clean\+tokenize: (\d+)/\1 .*done$", r.stdout, re.M), r.stdout  # plain progress
    assert "━━" not in r.stdout.split("build summary")[0]  # no bar drawn into a pipe
    b = tmp_path / "b"
    r = _corpus("build", "--input", PILE, "--input", CC_NEWS, "-i", OWT, *[str(b) if x is None else x for x in common])
    assert r.returncode == 0, r.stderr
    assert build_files(a) == build_files(b)  # the two spellings are the same build

    # piped output is not cut at 80 columns: the long path and whole table rows stay on one line
    r = _corpus("stats", a)
    assert r.returncode == 0, r.stderr
    assert str(a) in r.stdout.splitlines()[0] and len(str(a)) > 80
    assert any("source" in ln and "realised" in ln for ln in r.stdout.splitlines())
    assert max(len(ln) for ln in r.stdout.splitlines()) > 80


def test_python_m_corpus_cli_dedup(tmp_path):
    r = _corpus("dedup", "--help")
    assert r.returncode == 0 and "MinHash" in r.stdout, r.stderr
    r = _corpus("dedup", PILE, CC_NEWS, "-o", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "clusters.jsonl").exists() and "near_duplicates" in r.stdout


def _stage_rows(text: str, source: str) -> list[str]:
    rows = []
    for ln in text.splitlines():
        cells = [c.strip() for c in ln.strip("│┃ ").split("│")]
        if len(cells) == 4 and cells[0] == source:
            rows.append(cells[1])
    return rows


def test_stats_compare_lists_stages_in_pipeline_order(tmp_path):
    from corpus.build import build
    from corpus.recipe import Recipe

    def mk(name, stages):
        r = Recipe.model_validate({"sources": [{"name": "pile", "paths": [str(PILE)]}], "stages": stages,
                                   "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 128}})
        build(r, str(tmp_path / name))
        return tmp_path / name

    a = mk("a", [{"name": "normalize"}, {"name": "min_length", "min_chars": 20}, {"name": "exact_dedup"}])
    b = mk("b", [{"name": "normalize"}, {"name": "gopher_repetition"}, {"name": "min_length", "min_chars": 20},
                 {"name": "exact_dedup"}])
    r = _corpus("stats", a, b)
    assert r.returncode == 0, r.stderr
    compare = r.stdout.split("A vs B")[-1]
    stages = _stage_rows(compare, "pile")
    # the order the builds ran them (B's extra stage where B ran it), not alphabetical
    assert stages == ["read", "normalize", "gopher_repetition", "min_length", "exact_dedup", "mix"], stages


def test_train_run_to_a_pipe_prints_periodic_progress_lines(small_build, tmp_path):
    r = subprocess.run([sys.executable, "-m", "train.cli", "run", "--shards", str(small_build[0]),
                        "--out", str(tmp_path / "run"), "--model", "tiny", "--steps", "4", "--micro-batch", "2",
                        "--eval-rows", "2", "--eval-interval", "0"], capture_output=True, text=True, cwd=ROOT,
                       env=_env(REFINERY_PROGRESS_SECONDS="0.5"), timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("train: ")]
    assert len(lines) >= 2, r.stdout  # periodic lines while it runs, not silence for minutes
    assert re.match(r"train: 4/4 loss [\d.]+ lr \S+ [\d,]+ tokens/s \(\d+ s\), done$", lines[-1]), lines[-1]
    assert "train summary" in r.stdout
    assert "━━" not in r.stdout.split("train summary")[0]  # no progress bar drawn into the pipe


def test_a_failing_command_prints_no_progress_after_the_error(tmp_path):
    """The build fails inside the progress context (an interrupted build in --out is resumed only
    by its own recipe): the error line is the last line, no progress line follows it."""
    out = tmp_path / "o"
    r = _corpus("build", "--input", PILE, "-o", out, "--seq-len", "128", "--tokenizer", LLAMA_TOKENIZER)
    assert r.returncode == 0, r.stderr
    (out / "manifest.json").unlink()  # now an interrupted build of this recipe
    r = _corpus("build", "--input", CC_NEWS, "-o", out, "--seq-len", "128", "--tokenizer", LLAMA_TOKENIZER,
                REFINERY_PROGRESS_SECONDS="0.1")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: corpus build: "), r.stderr
    assert "done" not in r.stdout and "Traceback" not in r.stderr
