"""Issue 17, --out semantics: refinery writes only into an --out that is absent, empty or marked as a
refinery build, never overlaps --out with an input, and never deletes a file it did not write."""

import json
import os
import shutil

import pytest

from conftest import LLAMA_TOKENIZER
from corpus.build import MARKER, BuildError, build
from corpus.recipe import Recipe


def _recipe(paths):
    return Recipe.model_validate({
        "name": "outdir", "seed": 1,
        "sources": [{"name": "c4", "paths": [str(p) for p in paths]}],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.1},
    })


@pytest.fixture
def c4(shared, tmp_path):
    """A copy of real C4 text laid out as train/ + val/ (the layout that used to be deleted)."""
    d = tmp_path / "data"
    for sp in ("train", "val"):
        (d / sp).mkdir(parents=True)
        shutil.copy(shared / "general/c4_en/c4_demo.jsonl", d / sp / "c4_demo.jsonl")
    return d


def _snapshot(d):
    return {os.path.relpath(os.path.join(r, f), d): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(d) for f in fs}


def _foreign(tmp_path):
    d = tmp_path / "foreign"
    for sub in ("train", "val", "rejected"):
        (d / sub).mkdir(parents=True)
        (d / sub / "notes.txt").write_text(f"my {sub} notes\n")
    (d / "README.txt").write_text("not a refinery build\n")
    return d


def test_foreign_dir_refused_files_intact(c4, tmp_path):
    d = _foreign(tmp_path)
    before = _snapshot(d)
    with pytest.raises(BuildError, match="not a refinery build"):
        build(_recipe([c4]), str(d))
    assert _snapshot(d) == before


def test_force_keeps_foreign_files(c4, tmp_path):
    d = _foreign(tmp_path)
    before = _snapshot(d)
    res = build(_recipe([c4]), str(d), force=True)
    after = _snapshot(d)
    assert all(after[k] == v for k, v in before.items())
    assert res.manifest["splits"]["train"]["rows"] > 0 and (d / MARKER).exists()
    # a rebuild into the now-marked dir replaces refinery's files only
    build(_recipe([c4]), str(d), restart=True)
    after2 = _snapshot(d)
    assert all(after2[k] == v for k, v in before.items())


def test_force_refuses_to_overwrite_foreign_shard_name(c4, tmp_path):
    d = _foreign(tmp_path)
    (d / "manifest.json").write_text("{}")
    with pytest.raises(BuildError, match="did not write"):
        build(_recipe([c4]), str(d), force=True)
    assert (d / "manifest.json").read_text() == "{}"


def test_out_equal_to_input_refused(c4):
    before = _snapshot(c4)
    with pytest.raises(BuildError, match="input path"):
        build(_recipe([c4]), str(c4))
    assert _snapshot(c4) == before


def test_out_inside_input_refused(c4):
    before = _snapshot(c4)
    with pytest.raises(BuildError, match="inside the input path"):
        build(_recipe([c4]), str(c4 / "built"), restart=True)
    assert _snapshot(c4) == before and not (c4 / "built").exists()


def test_input_inside_out_refused(c4, tmp_path):
    with pytest.raises(BuildError, match="is inside --out"):
        build(_recipe([c4 / "train"]), str(c4))
    with pytest.raises(BuildError, match="is inside --out"):  # through a symlink too
        os.symlink(c4, tmp_path / "link")
        build(_recipe([c4 / "train"]), str(tmp_path / "link"))


def test_marked_dir_rebuild_and_restart(c4, tmp_path):
    out = tmp_path / "out"
    r1 = build(_recipe([c4]), str(out))
    marker = json.load(open(out / MARKER))
    assert marker["refinery_build"] == 1 and any(f.startswith("train/") for f in marker["files"])
    r2 = build(_recipe([c4]), str(out))  # resume/no-op into a marked dir
    assert r2.manifest == r1.manifest
    r3 = build(_recipe([c4]), str(out), restart=True)
    assert r3.manifest["splits"] == r1.manifest["splits"]
    # an empty existing dir is accepted
    (tmp_path / "empty").mkdir()
    build(_recipe([c4]), str(tmp_path / "empty"))
