"""Issue 17, errors as messages: every validation and usage error of both CLIs is one line,
`error: <where>: <what is wrong>`, exit status 2, no traceback. One parametrised case per class
of error, on real text of ../shared/data and real recipes; plus the tokenizer special-id
checks, `corpus verify` with warning-level problems only, and a `python -m` round trip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LLAMA_TOKENIZER, ROOT, SHARED

PILE = SHARED / "general/pile"
CC_NEWS = SHARED / "general/cc_news"


def _invoke(cli: str, args: list[str]):
    from corpus.cli import app as corpus_app
    from train.cli import app as train_app

    r = CliRunner().invoke(corpus_app if cli == "corpus" else train_app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def _assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    text = err.strip() or out.strip()
    first = text.splitlines()[0] if text else ""
    assert code == 2, (code, out, err)
    assert first.startswith("error: "), (out, err)
    assert "Traceback" not in out + err
    for n in needles:
        assert n in first, (n, first)
    return first


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """A real build of the Pile sample (about one second)."""
    from corpus.build import build
    from corpus.recipe import Recipe

    out = tmp_path_factory.mktemp("tiny") / "b"
    build(Recipe.model_validate({"sources": [{"name": "pile", "paths": [str(PILE)]}],
                                 "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 128}}), str(out))
    return out


def _recipe(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(text, encoding="utf-8")
    return p


GOOD_SOURCE = f"sources:\n  - {{name: pile, paths: [{PILE}]}}\ntokenizer: {{path: {LLAMA_TOKENIZER}}}\n"

# (id, CLI, recipe text or None, args (RECIPE / OUT / BUILD / TMP substituted), words the error line holds)
CASES = [
    ("recipe_missing", "corpus", None, ["build", "TMP/none.yaml", "-o", "OUT"], ["none.yaml", "no such recipe file"]),
    ("recipe_is_dir", "corpus", None, ["build", "TMP", "-o", "OUT"], ["is a directory"]),
    ("yaml_syntax", "corpus", "sources: [unclosed\n", ["build", "RECIPE", "-o", "OUT"], ["recipe.yaml:", "not valid YAML"]),
    ("yaml_list", "corpus", "- a\n- b\n", ["build", "RECIPE", "-o", "OUT"], ["recipe.yaml", "YAML mapping", "list"]),
    ("unknown_key", "corpus", GOOD_SOURCE + "bogus: 1\n", ["build", "RECIPE", "-o", "OUT"], ["bogus", "Extra inputs"]),
    ("unknown_nested_key", "corpus", GOOD_SOURCE + "packing: {sequence_len: 64}\n", ["build", "RECIPE", "-o", "OUT"],
     ["packing.sequence_len"]),
    ("wrong_type", "corpus", GOOD_SOURCE + "workers: many\n", ["build", "RECIPE", "-o", "OUT"], ["workers", "integer"]),
    ("source_not_mapping", "corpus", "sources:\n  - just-a-path\n", ["build", "RECIPE", "-o", "OUT"], ["sources[0]"]),
    ("paths_not_list", "corpus", f"sources:\n  - {{name: p, paths: {PILE}}}\n", ["build", "RECIPE", "-o", "OUT"],
     ["sources[0].paths", "list"]),
    ("no_sources", "corpus", "sources: []\n", ["build", "RECIPE", "-o", "OUT"], ["at least one source"]),
    ("negative_weight", "corpus", f"sources:\n  - {{name: p, paths: [{PILE}], weight: -1}}\n",
     ["build", "RECIPE", "-o", "OUT"], ["sources[0].weight", "greater than 0"]),
    ("seq_len_negative", "corpus", GOOD_SOURCE + "packing: {seq_len: -4}\n", ["build", "RECIPE", "-o", "OUT"],
     ["packing.seq_len", "-4"]),
    ("unknown_stage", "corpus", GOOD_SOURCE + "stages:\n  - {name: no_such_stage}\n", ["build", "RECIPE", "-o", "OUT"],
     ["stages[0].name", "no_such_stage"]),
    ("bad_stage_param", "corpus", GOOD_SOURCE + "stages:\n  - {name: min_length, min_chars: abc}\n",
     ["build", "RECIPE", "-o", "OUT"], ["stages[0] (min_length)", "min_chars"]),
    ("unknown_stage_param", "corpus", GOOD_SOURCE + "stages:\n  - {name: min_length, min_words: 3}\n",
     ["build", "RECIPE", "-o", "OUT"], ["min_length", "min_words"]),
    ("flag_seq_len_zero", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--seq-len", "0",
                                           "--tokenizer", LLAMA_TOKENIZER], ["--seq-len", "(got 0)"]),
    ("flag_workers_zero", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--workers", "0"], ["--workers"]),
    ("flag_not_a_number", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--workers", "abc"], ["--workers"]),
    ("unknown_option", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--bogus"], ["--bogus"]),
    ("missing_out", "corpus", None, ["build", "--input", PILE], ["--out"]),
    ("unknown_command", "corpus", None, ["frobnicate"], ["frobnicate"]),
    ("unknown_executor", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--executor", "slurm"],
     ["--executor", "slurm"]),
    ("input_missing", "corpus", None, ["build", "--input", "TMP/absent", "-o", "OUT"], ["--input", "absent"]),
    ("recipe_input_missing", "corpus", "sources:\n  - {name: p, paths: [/nonexistent/refinery/x]}\n",
     ["build", "RECIPE", "-o", "OUT"], ["sources[0] (p).paths", "/nonexistent/refinery/x"]),
    ("tokenizer_missing", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--tokenizer", "TMP/no.model"],
     ["--tokenizer", "no such tokenizer file"]),
    ("not_a_tokenizer", "corpus", None, ["build", "--input", PILE, "-o", "OUT", "--tokenizer",
                                         SHARED / "general/tinyshakespeare/input.txt"], ["--tokenizer", "not a SentencePiece"]),
    ("recipe_tokenizer_missing", "corpus", f"sources:\n  - {{name: p, paths: [{PILE}]}}\ntokenizer: {{path: x.model}}\n",
     ["build", "RECIPE", "-o", "OUT"], ["tokenizer.path", "no such tokenizer file"]),
    ("recipe_and_input", "corpus", GOOD_SOURCE, ["build", "RECIPE", "--input", PILE, "-o", "OUT"], ["not both"]),
    ("two_recipes", "corpus", GOOD_SOURCE, ["build", "RECIPE", "RECIPE", "-o", "OUT"], ["one recipe"]),
    ("out_is_a_file", "corpus", None, ["build", "--input", PILE, "-o", "TMP/recipe.yaml", "--tokenizer",
                                       LLAMA_TOKENIZER], ["--out"]),
    ("stats_missing_dir", "corpus", None, ["stats", "TMP/none"], ["no such build directory"]),
    ("stats_not_a_build", "corpus", None, ["stats", PILE], ["no manifest.json"]),
    ("stats_three_dirs", "corpus", None, ["stats", "BUILD", "BUILD", "BUILD"], ["two to compare"]),
    ("stats_damaged_manifest", "corpus", None, ["stats", "DAMAGED"], ["manifest.json", "invalid JSON"]),
    ("verify_missing_dir", "corpus", None, ["verify", "TMP/none"], ["no such build directory"]),
    ("dedup_no_out", "corpus", None, ["dedup", PILE], ["--out"]),
    ("dedup_bad_number", "corpus", None, ["dedup", PILE, "-o", "TMP/d", "--num-perm", "0"], ["num_perm"]),
    ("classifier_model_missing", "corpus", None, ["classifier", "score", "TMP/none.bin", PILE], ["no such model file"]),
    ("classifier_not_a_model", "corpus", None, ["classifier", "score", PILE / "00.jsonl.zst", PILE],
     ["00.jsonl.zst", "not a fastText model"]),
    ("convert_not_a_model", "corpus", None, ["tokenizer", "convert", SHARED / "general/tinyshakespeare/input.txt",
                                             "-o", "TMP/t.json"], ["input.txt", "not a SentencePiece model"]),
    ("classifier_recipe_missing", "corpus", None, ["classifier", "train", "TMP/none.yaml", "-o", "TMP/m.bin"],
     ["no such recipe file"]),
    ("train_no_shards", "train", None, ["run"], ["--shards"]),
    ("train_shards_missing", "train", None, ["run", "--shards", "TMP/none"], ["--shards", "no such build directory"]),
    ("train_shards_not_a_build", "train", None, ["run", "--shards", PILE], ["--shards", "no manifest.json"]),
    ("train_steps_negative", "train", None, ["run", "--shards", "BUILD", "--steps", "-5"], ["--steps", "(got -5)"]),
    ("train_lr_negative", "train", None, ["run", "--shards", "BUILD", "--lr", "-1"], ["--lr", "greater than 0"]),
    ("train_lr_not_a_number", "train", None, ["run", "--shards", "BUILD", "--lr", "fast"], ["--lr"]),
    ("train_bad_choice", "train", None, ["run", "--shards", "BUILD", "--schedule", "zigzag"], ["--schedule"]),
    ("train_model_unknown", "train", None, ["run", "--shards", "BUILD", "--model", "gpt-17"], ["--model", "gpt-17"]),
    ("train_config_missing", "train", None, ["run", "--config", "TMP/none.yaml"], ["no such config file"]),
    ("train_config_list", "train", "- shards\n- steps\n", ["run", "--config", "RECIPE"], ["YAML mapping"]),
    ("train_config_syntax", "train", "steps: [1\n", ["run", "--config", "RECIPE"], ["not valid YAML"]),
    ("train_config_unknown_key", "train", "shards: BUILD\nstepz: 3\n", ["run", "--config", "RECIPE"],
     ["recipe.yaml: stepz", "Extra inputs"]),
    ("train_config_shards_missing", "train", "shards: TMP/none\n", ["run", "--config", "RECIPE"],
     ["recipe.yaml: shards", "no such build directory"]),
    ("export_run_missing", "train", None, ["export", "TMP/none", "-o", "TMP/hf"], ["no such run directory"]),
    ("export_bad_dtype", "train", None, ["export", "TMP", "-o", "TMP/hf", "--dtype", "int4"], ["--dtype"]),
    ("eval_model_missing", "train", None, ["eval", "TMP/none", "--shards", "BUILD"], ["no such model directory"]),
    ("generate_not_a_model", "train", None, ["generate", "BUILD", "-p", "x"], ["not a Hugging Face model directory"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error_is_one_line_exit_2(case, tmp_path, tiny_build):
    name, cli, text, args, needles = case
    damaged = tmp_path / "damaged"
    if "DAMAGED" in args:
        shutil.copytree(tiny_build, damaged)
        (damaged / "manifest.json").write_text('{"format_version": 1, "splits": ', encoding="utf-8")
    if name == "out_is_a_file":
        (tmp_path / "recipe.yaml").write_text("not a directory\n", encoding="utf-8")
    if text is not None:
        _recipe(tmp_path, text.replace("BUILD", str(tiny_build)).replace("TMP", str(tmp_path)))
    sub = {"RECIPE": str(tmp_path / "recipe.yaml"), "OUT": str(tmp_path / "out"), "BUILD": str(tiny_build),
           "DAMAGED": str(damaged), "TMP": str(tmp_path)}
    argv = [str(a) for a in args]
    argv = [sub.get(a, a.replace("TMP", str(tmp_path)) if a.startswith("TMP") else a) for a in argv]
    code, out, err = _invoke(cli, argv)
    _assert_one_line_error(code, out, err, *needles)
    assert not (tmp_path / "out").exists() or name == "out_is_a_file"  # nothing was built


def test_python_m_error_and_no_progress_after_it(tmp_path):
    """A real process: one line on stderr, exit 2, and no progress bar printed after the error."""
    r = subprocess.run([sys.executable, "-m", "corpus.cli", "build", "--input", str(PILE), "-o", str(tmp_path / "o"),
                        "--seq-len", "0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    assert r.stderr.splitlines() == ["error: --seq-len: Input should be greater than or equal to 8 (got 0)"]
    assert "read+clean+tokenize" not in r.stdout
    # a failure in the middle of the build (two inputs, one of them a file --out): error is the last line
    r = subprocess.run([sys.executable, "-m", "corpus.cli", "build", "--input", str(PILE), "-o", str(PILE / "00.jsonl.zst"),
                        "--tokenizer", str(LLAMA_TOKENIZER)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: --out"), r.stderr
    assert "Traceback" not in r.stderr and "━" not in r.stdout


def test_tokenizer_without_pad_pads_with_eos(tmp_path):
    """LLaMA's SentencePiece model has no PAD (pad_id -1): the build says so and pads with EOS."""
    code, out, err = _invoke("corpus", ["build", "--input", PILE, "-o", tmp_path / "b", "--seq-len", "128",
                                        "--tokenizer", LLAMA_TOKENIZER])
    assert code == 0, out + err
    assert "no PAD token; rows are padded with EOS (id 2)" in out
    m = json.loads((tmp_path / "b/manifest.json").read_text())
    assert m["pad_id"] == m["eos_id"] == 2


def _bare_tokenizer(tmp_path: Path) -> Path:
    """A real BPE tokenizer.json trained on real text with no special tokens at all."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train([str(SHARED / "general/tinyshakespeare/input.txt")], trainers.BpeTrainer(vocab_size=400, special_tokens=[]))
    p = tmp_path / "bare" / "tokenizer.json"
    p.parent.mkdir()
    tok.save(str(p))
    return p


def test_tokenizer_without_special_tokens_is_refused(tmp_path):
    tj = _bare_tokenizer(tmp_path)
    code, out, err = _invoke("corpus", ["build", "--input", PILE, "-o", tmp_path / "b", "--tokenizer", tj])
    _assert_one_line_error(code, out, err, "--tokenizer", "no BOS token", "add_bos")
    r = _recipe(tmp_path, f"sources:\n  - {{name: p, paths: [{PILE}]}}\n"
                          f"tokenizer: {{path: {tj}, add_bos: false, add_eos: false}}\n")
    code, out, err = _invoke("corpus", ["build", r, "-o", tmp_path / "b"])
    _assert_one_line_error(code, out, err, "tokenizer.path", "no PAD and no EOS token")
    assert not (tmp_path / "b").exists()  # refused before anything is written, never pad -1


def test_verify_exits_0_on_warnings_only_and_1_on_problems(tiny_build, tmp_path):
    from shards.manifest import CHECKSUM_FIELD

    old = tmp_path / "old"
    shutil.copytree(tiny_build, old)
    m = json.loads((old / "manifest.json").read_text())
    m.pop(CHECKSUM_FIELD)  # a manifest from before checksums: a warning, not a failure
    (old / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    code, out, err = _invoke("corpus", ["verify", old])
    assert code == 0, out + err
    assert "WARNING" in out and "no manifest_sha256" in out and "OK" in out and "1 warning" in out
    bad = tmp_path / "bad"
    shutil.copytree(tiny_build, bad)
    shard = next((bad / "train").glob("*.bin"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    code, out, err = _invoke("corpus", ["verify", bad])
    assert code == 1 and "BAD" in out and shard.name in out and "Traceback" not in out + err


def test_unexpected_exception_is_one_line_exit_1(capsys):
    """A bug (not a user error) is still one line, exit 1, saying how to see the traceback; a
    user error class is exit 2."""
    from shards.cliutil import report
    from shards.format import ShardFormatError

    assert report(ZeroDivisionError("boom")) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error: ZeroDivisionError: boom") and "REFINERY_TRACEBACK=1" in err
    assert report(ShardFormatError("x/manifest.json: offset 3: bad")) == 2
    assert capsys.readouterr().err == "error: x/manifest.json: offset 3: bad\n"
