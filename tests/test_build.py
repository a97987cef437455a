"""The build pipeline on real text: accounting, determinism across worker counts, resume,
refusal of a changed recipe, the lock, and the CLI."""

import json
import os
import subprocess
import sys

import pytest

from conftest import LLAMA_TOKENIZER, build_files
from corpus.build import BuildError, build
from corpus.recipe import Recipe
from shards.verify import verify


def _recipe(shared, **kw):
    d = {"name": "det", "seed": 3,
         "sources": [{"name": "law", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/宪法")]},
                     {"name": "fin", "kind": "domain", "paths": [str(shared / "domain/flagdata_finance_zh")]},
                     {"name": "c4", "paths": [str(shared / "general/c4_en")]},
                     {"name": "pile", "paths": [str(shared / "general/pile")]}],
         "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256}, "split": {"val_ratio": 0.1}}
    d.update(kw)
    return Recipe.model_validate(d)




def test_accounting_and_report(small_build):
    out, recipe, res = small_build
    rep = json.load(open(out / "build_report.json"))
    for src, c in rep["accounting"].items():
        assert c["ok"] and c["documents_read"] == c["documents_written"] + c["drops"]
    assert rep["documents_in"] == sum(c["documents_read"] for c in rep["accounting"].values())
    # the byte-identical Pile shards: the second copy is an exact duplicate
    pile = {r["stage"]: r for r in rep["funnel"]["pile"]}
    assert pile["exact_dedup"]["drops"] == {"exact_dedup:duplicate": 1}
    m = json.load(open(out / "manifest.json"))
    assert m["format_version"] == 1 and m["seq_len"] == 256 and m["dtype"] == "uint16"
    assert m["tokenizer"]["vocab_size"] == 32000 and m["tokenizer"]["bos_id"] == 1
    assert m["splits"]["train"]["tokens"] > 0 and m["splits"]["val"]["tokens"] > 0
    assert verify(str(out)) == []


def test_same_output_for_1_and_2_workers(shared, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(_recipe(shared, workers=1), str(a))
    build(_recipe(shared, workers=2), str(b))
    fa, fb = build_files(a), build_files(b)
    assert fa.keys() == fb.keys() and len(fa) > 6
    for k in fa:
        assert fa[k] == fb[k], k


def test_resume_from_completed_units_is_identical(shared, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build(_recipe(shared), str(a))
    build(_recipe(shared), str(b))
    # simulate a crash after some units: drop the later units' results and the manifest
    units = sorted((b / ".work" / "units").glob("*.json"))
    for u in units[len(units) // 2:]:
        u.unlink()
    (b / "manifest.json").unlink()
    res = build(_recipe(shared), str(b))
    assert res.report["resumed_units"] == len(units) // 2
    assert build_files(a) == build_files(b)


def test_changed_recipe_is_refused_until_restart(shared, tmp_path):
    build(_recipe(shared), str(tmp_path))
    with pytest.raises(BuildError, match="recipe changed"):
        build(_recipe(shared, seed=4), str(tmp_path))
    build(_recipe(shared, seed=4), str(tmp_path), restart=True)


def test_lock_refuses_a_second_writer(shared, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(BuildError, match="another build"):
        build(_recipe(shared), str(tmp_path))
    (tmp_path / ".lock").write_text("999999999")  # stale: no such process
    build(_recipe(shared), str(tmp_path))


def test_mixing_realises_declared_weights(shared, tmp_path):
    r = _recipe(shared, sources=[
        {"name": "med", "kind": "domain", "paths": [str(shared / "domain/medicalgpt/pretrain/fever.txt")],
         "txt_mode": "line", "weight": 0.95},
        {"name": "c4", "paths": [str(shared / "general/c4_en/c4_demo.jsonl")], "weight": 0.05}])
    res = build(r, str(tmp_path))
    ps = res.manifest["per_source"]
    for name, p in ps.items():
        assert abs(p["realised_share"] - p["target_share"]) < 0.01, (name, p["realised_share"], p["target_share"])
    # the domain source limits the mix: all of it is used once, the general replay is downsampled
    assert ps["med"]["downsampled_docs"] == 0 and ps["c4"]["downsampled_docs"] > 0


def test_epochs_upsample_with_counted_repeats(shared, tmp_path):
    r = _recipe(shared, sources=[
        {"name": "c4", "paths": [str(shared / "general/c4_en/c4_demo.jsonl")], "epochs": 2.5}])
    res = build(r, str(tmp_path))
    p = res.manifest["per_source"]["c4"]
    n = p["train"]["unique_docs"]
    assert 2 * n < p["train"]["docs"] < 3 * n  # epochs count tokens: 2 full passes + half the tokens again
    assert p["repeats"] == p["train"]["docs"] - p["train"]["unique_docs"]


def test_cli_build_stats_verify(shared, tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "corpus.cli"]
    r = subprocess.run(cmd + ["build", "--input", str(shared / "general/pile"), "--input",
                              str(shared / "domain/hf_cail2018_zh"), "--out", str(out), "--seq-len", "128",
                              "--tokenizer", str(LLAMA_TOKENIZER)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "accounting ok" in r.stdout
    r = subprocess.run(cmd + ["stats", str(out), "--json", "--sample", "2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert {x["source"] for x in st["splits"]["train"]} == {"pile", "hf_cail2018_zh"}
    assert len(st["samples"]) == 2 and "⟦" in st["samples"][0]["text"]
    r = subprocess.run(cmd + ["verify", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "OK" in r.stdout
    shard = next((out / "train").glob("*.bin"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    r = subprocess.run(cmd + ["verify", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and shard.name in r.stdout.replace("\n", "")


@pytest.mark.parametrize("mode", ["pad", "best_fit"])
def test_whole_document_modes_build_and_verify(shared, tmp_path, mode):
    r = _recipe(shared, packing={"seq_len": 512, "mode": mode})
    res = build(r, str(tmp_path))
    assert verify(str(tmp_path)) == []
    for name, ps in res.manifest["per_source"].items():
        for sp in ("train", "val"):
            s = ps[sp]
            assert s["tokens"] == s["doc_tokens"] + 2 * s["docs"]  # nothing truncated, BOS+EOS each
            assert s["truncated_tokens"] == 0


def test_best_fit_on_the_demo_corpus_pads_under_one_percent(tmp_path):
    from corpus.demo import demo_recipe

    r = demo_recipe()
    d = r.model_dump()
    d["packing"]["mode"] = "best_fit"
    res = build(Recipe.model_validate(d), str(tmp_path))
    tr = [p["train"] for p in res.manifest["per_source"].values()]
    pad = sum(t["pad_tokens"] for t in tr) / sum(t["rows"] * 2048 for t in tr)
    assert pad < 0.01, pad


def test_big_jsonl_as_byte_range_units_gives_the_same_build(shared, tmp_path):
    """An uncompressed JSON Lines file cut into byte-range units (several workers on one file)
    builds byte-identical shards to one unit per file: same documents, ids (file:line), order,
    and the same line numbers for bad lines."""
    from corpus.build import plan_units

    lines = open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8").read().splitlines()
    lines.insert(137, '{"text": "a broken line')  # a malformed line inside a later range
    lines.insert(5, "")
    big = tmp_path / "in" / "c4_big.jsonl"
    big.parent.mkdir()
    big.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # a BOM on line 1 as well
    base = {"name": "ranges", "seed": 5, "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 256},
            "split": {"val_ratio": 0.1},
            "sources": [{"name": "c4", "paths": [str(big)]},
                        {"name": "law", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/宪法")]}]}
    whole = Recipe.model_validate({**base, "limits": {"unit_bytes": None}})
    cut = Recipe.model_validate({**base, "limits": {"unit_bytes": 65536}, "workers": 2})
    units = [u for u in plan_units(cut) if u.source == "c4"]
    assert len(units) >= 10 and units[0].start == 0 and units[-1].end == big.stat().st_size
    assert all(a.end == b.start for a, b in zip(units, units[1:]))
    ra, rb = build(whole, str(tmp_path / "a")).report, build(cut, str(tmp_path / "b")).report
    fa, fb = build_files(tmp_path / "a"), build_files(tmp_path / "b")
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k] == fb[k], k
    assert ra["bad_units"] == rb["bad_units"] and rb["bad_unit_counts"] == {"malformed_json": 1}
    assert rb["bad_units"][0]["line"] == 139
    # resuming with another cut is refused (unit files are keyed by position)
    (tmp_path / "b" / "manifest.json").unlink()
    with pytest.raises(BuildError, match="units changed"):
        build(Recipe.model_validate({**base, "limits": {"unit_bytes": 131072}}), str(tmp_path / "b"))
