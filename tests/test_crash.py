"""Crash safety: kill -9 at random points and resume to byte-identical output; out of disk
space gives a clean error naming the file and resumes; fuzzed inputs never crash the readers
or the shard readers."""

import os
import random
import resource
import signal
import subprocess
import sys
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LLAMA_TOKENIZER, build_files
from shards.verify import verify

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _recipe_file(shared, tmp_path):
    r = {"name": "crash", "seed": 11,
         "sources": [{"name": "law", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/经济法")], "format": "md"},
                     {"name": "web_zh", "paths": [str(shared / "general/flagdata_web_zh")]},
                     {"name": "c4", "paths": [str(shared / "general/c4_en")]},
                     {"name": "pile", "paths": [str(shared / "general/pile")]}],
         "stages": [{"name": "normalize"}, {"name": "min_length"}, {"name": "exact_dedup"}, {"name": "minhash_dedup"}],
         "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 512},
         "split": {"val_ratio": 0.05}, "output": {"rows_per_shard": 128}}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(r, allow_unicode=True), encoding="utf-8")
    return p


def _cmd(recipe, out):
    return [sys.executable, "-m", "corpus.cli", "build", str(recipe), "--out", str(out)]




@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_is_byte_identical(shared, tmp_path):
    recipe = _recipe_file(shared, tmp_path)
    subprocess.run(_cmd(recipe, tmp_path / "ref"), check=True, capture_output=True)
    ref = build_files(tmp_path / "ref")
    n_units = len(list((tmp_path / "ref" / ".work" / "units").glob("*.json")))
    rng = random.Random(5)
    # kill points by progress, not by wall time (which varies with load): after k of the units
    # are done, for random k, and while the shards are being written
    points = [("units", rng.randrange(1, n_units)) for _ in range(5)] + [("shards", 0)]
    kills = 0
    for k, (phase, target) in enumerate(points):
        out = tmp_path / f"killed{k}"
        p = subprocess.Popen(_cmd(recipe, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while p.poll() is None:
            done = len(list((out / ".work" / "units").glob("*.json"))) if (out / ".work" / "units").exists() else 0
            if (phase == "units" and done >= target) or (phase == "shards" and (out / "train").exists()):
                p.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.002)
        p.wait()
        if p.returncode == 0:
            continue  # finished before the point was reached (possible for the short shard phase)
        # after a kill: no manifest (not a dataset), never a half-written one that looks valid
        probs = verify(str(out))
        assert probs and "no manifest" in str(probs[0]), probs
        r = subprocess.run(_cmd(recipe, out), capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        got = build_files(out)
        assert got.keys() == ref.keys(), (phase, target, set(got) ^ set(ref))
        for name in ref:
            assert got[name] == ref[name], (phase, target, name)
        assert verify(str(out)) == []
    assert kills >= 5


def test_out_of_disk_space_is_a_clean_error_and_resumes(shared, tmp_path):
    recipe = _recipe_file(shared, tmp_path)
    out = tmp_path / "full"

    def limit():  # a real write failure (EFBIG) at 64 KiB per file, like a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run(_cmd(recipe, out), capture_output=True, text=True, preexec_fn=limit)
    assert r.returncode == 2
    msg = " ".join((r.stdout + r.stderr).split())  # the error line is on stderr
    assert "out of disk space while writing" in msg and ".tmp" in msg, msg
    assert "no manifest" in str(verify(str(out))[0])
    r = subprocess.run(_cmd(recipe, out), capture_output=True, text=True)  # space freed: resume
    assert r.returncode == 0, r.stdout + r.stderr
    assert verify(str(out)) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4000), ext=st.sampled_from([".jsonl", ".json", ".txt", ".jsonl.gz", ".jsonl.zst", ".csv",
                                                           ".parquet", ".md"]),
       prefix=st.sampled_from([b"", b"[", b"{\"text\": \"", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"PAR1", b"\xff\xfe"]))
def test_fuzzed_input_files_never_crash_the_reader(tmp_path_factory, data, ext, prefix):
    from corpus.document import BadUnit, Document
    from corpus.readers import FileReader
    from corpus.recipe import LimitsConfig, SourceConfig

    d = tmp_path_factory.mktemp("fuzz")
    p = d / ("f" + ext)
    p.write_bytes(prefix + data)
    items = list(FileReader(str(p), p.name, SourceConfig(name="f", paths=[str(p)]), LimitsConfig()))
    assert all(isinstance(x, (Document, BadUnit)) for x in items)


@pytest.fixture(scope="module")
def one_shard(small_build):
    from shards.dataset import ShardDataset

    return ShardDataset(str(small_build[0])).shards("train")[0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["idx", "bnd"]), cut=st.integers(0, 5000), flips=st.lists(st.integers(0, 10**6), max_size=4))
def test_fuzzed_index_files_give_clean_errors(one_shard, tmp_path_factory, which, cut, flips):
    from shards.format import ShardFormatError, read_bnd, read_idx

    raw = bytearray(open(f"{one_shard.base}.{which}", "rb").read())
    raw = raw[: min(cut, len(raw))] if cut < len(raw) else raw
    for f in flips:
        if raw:
            raw[f % len(raw)] ^= 0x5A
    p = tmp_path_factory.mktemp("fz") / f"x.{which}"
    p.write_bytes(bytes(raw))
    try:
        r = read_idx(str(p)) if which == "idx" else read_bnd(str(p))
    except ShardFormatError as e:
        assert str(p) in str(e)
        return
    # parsed: then the arrays have exactly the sizes the header declares
    if which == "idx":
        assert len(r["lengths"]) == len(r["pointers"])
    else:
        assert len(r.seg_ptr) == len(r.row_valid) + 1
