"""Fuzz suite (issue 17): hostile bytes and structures through every parser of untrusted input.

Targets: the readers (random bytes; real files of ../shared/data truncated, byte-flipped, with
junk inserted, re-encoded in part, their JSON structure damaged), recipe loading (random
dicts and YAML), manifest and `.idx`/`.bnd` parsing (mutations of a tiny real build), and the
train loader on mutated shard files. Each example must end in one of three outcomes only:

* ok (documents, a dataset, a batch),
* a clean error of the project's declared types (ReadError, RecipeError/ValidationError/
  YAMLError/OSError for recipes, ShardFormatError/ManifestError for builds) -- never a bare
  KeyError, IndexError, TypeError or a numpy error,
* a reported skip (a BadUnit naming the file and a reason).

Never a hang: every example runs under a SIGALRM time limit. The whole file runs in about a
minute on 2 cores (max_examples per target below).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
from contextlib import contextmanager

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from corpus.document import BadUnit, Document
from corpus.readers import FileReader
from corpus.recipe import LimitsConfig, Recipe, SourceConfig
from shards.format import ShardFormatError, read_bnd, read_idx
from shards.manifest import ManifestError, manifest_checksum, read_manifest

from conftest import LLAMA_TOKENIZER, SHARED

# REFINERY_FUZZ=K: K times the examples, from random seeds (a longer bug hunt); by default the
# examples are derandomized so CI runs are reproducible
_SCALE = int(os.environ.get("REFINERY_FUZZ", "0") or 0)
FUZZ = settings(max_examples=60 * max(_SCALE, 1), deadline=None, derandomize=not _SCALE, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def examples(n: int) -> int:
    return n * max(_SCALE, 1)


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    """A hang is a failure: SIGALRM interrupts the example after `seconds`."""
    def on_alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------
# mutations


def _real_inputs() -> dict[str, bytes]:
    """Small real inputs of every format the readers sniff, from ../shared/data."""
    c4 = (SHARED / "general/c4_en/c4_demo.jsonl").read_bytes()[:12000]
    qa = [json.loads(l) for l in open(SHARED / "general/flagdata_web_zh/qa_demo_input.jsonl", encoding="utf-8")][:8]
    wudao = [{"id": i, "uniqueKey": f"k{i}", "titleUkey": f"t{i}", "dataType": "问答", "title": r["title"] or "题",
              "content": r["content"][:600]} for i, r in enumerate(qa)]
    law = (SHARED / "domain/lawrefbook_zh/刑法/刑法修正案（七）.md").read_bytes()[:8000]
    fever = (SHARED / "domain/medicalgpt/pretrain/fever.txt").read_text(encoding="utf-8")[:3000]
    rows = [json.loads(l) for l in c4.decode("utf-8", "ignore").split("\n")[:5] if l.endswith("}")]
    csv_text = "text,timestamp\n" + "".join('"' + r["text"][:300].replace('"', '""') + '",' + str(r.get("timestamp", "")) + "\n" for r in rows)
    return {
        "c4.jsonl": c4,
        "wudao.json": json.dumps(wudao, ensure_ascii=False).encode("utf-8"),
        "wudao_indent.json": json.dumps(wudao, ensure_ascii=False, indent=1).encode("utf-8"),
        "law.md": law,
        "fever.gbk.txt": fever.encode("gb18030"),
        "fever.utf16.txt": fever.encode("utf-16"),
        "qa.utf16.jsonl": "\n".join(json.dumps(w, ensure_ascii=False) for w in wudao).encode("utf-16"),
        "c4.csv": csv_text.encode("utf-8"),
        "c4.jsonl.gz": gzip.compress(c4, mtime=0),
    }


INPUTS = _real_inputs()
JUNK = [b"\x00", b"\xff\xfe", b"\xe4\xb8", b"}", b"{", b"]", b"[", b'"', b"\\", b",", b"\n", b"\r\n",
        b"\\ud800", b"1" * 400, b"[" * 3000, b"<!--", b"-->", b"\x1f\x8b", "中文".encode("gb18030"),
        "中文".encode("utf-16"), b"\x80" * 7]

op = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.one_of(st.sampled_from(JUNK), st.binary(max_size=40))),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 200)),
    st.tuples(st.just("reencode"), st.floats(0, 1), st.sampled_from(["gb18030", "big5", "utf-16-le", "latin-1"])),
)


def mutate(raw: bytes, ops: list) -> bytes:
    for o in ops:
        at = int(o[1] * len(raw))
        if o[0] == "truncate":
            raw = raw[:at]
        elif o[0] == "flip" and raw:
            at = min(at, len(raw) - 1)
            raw = raw[:at] + bytes([o[2]]) + raw[at + 1:]
        elif o[0] == "insert":
            raw = raw[:at] + o[2] + raw[at:]
        elif o[0] == "delete":
            raw = raw[:at] + raw[at + o[2]:]
        elif o[0] == "reencode":  # the rest of the file in another encoding (a mixed file)
            raw = raw[:at] + raw[at:].decode("utf-8", "replace").encode(o[2], "replace")
    return raw


# ---------------------------------------------------------------------------------------
# readers


def check_reader(path, name: str, **src) -> list:
    cfg = SourceConfig(name="f", paths=[str(path)], **src)
    out = []
    with time_limit(20):
        for item in FileReader(str(path), name, cfg, LimitsConfig(max_doc_chars=5000)):
            assert isinstance(item, (Document, BadUnit)), type(item)
            if isinstance(item, Document):
                assert isinstance(item.text, str) and len(item.text) <= 5000
                item.text.encode("utf-8")  # no lone surrogate reaches the tokenizer
            else:
                assert item.reason and item.file == name
            out.append(item)
    return out


@FUZZ
@given(data=st.binary(max_size=3000), ext=st.sampled_from([".jsonl", ".json", ".txt", ".md", ".csv", ".bin"]))
def test_readers_on_random_bytes(tmp_path, data, ext):
    p = tmp_path / ("r" + ext)
    p.write_bytes(data)
    items = check_reader(p, p.name)
    if not data.strip():
        assert not any(isinstance(i, Document) for i in items)


@settings(FUZZ, max_examples=examples(150))
@given(name=st.sampled_from(sorted(INPUTS)), ops=st.lists(op, min_size=1, max_size=4),
       fmt=st.sampled_from(["auto", "auto", "auto", "jsonl", "json", "md", "txt"]))
def test_readers_on_mutated_real_files(tmp_path, name, ops, fmt):
    raw = mutate(INPUTS[name], ops)
    p = tmp_path / name
    p.write_bytes(raw)
    check_reader(p, name, format=fmt)


@settings(FUZZ, max_examples=examples(40))
@given(k=st.integers(0, 7), damage=st.sampled_from(['"', "}", "{", ",", ":", "]", "x", ""]),
       where=st.floats(0, 1))
def test_one_damaged_wudao_element_costs_at_most_that_element(tmp_path, k, damage, where):
    """JSON structure damage inside one element: every other element is still read."""
    rows = json.loads(INPUTS["wudao.json"])
    parts = [json.dumps(r, ensure_ascii=False) for r in rows]
    at = 1 + int(where * (len(parts[k]) - 2))
    parts[k] = parts[k][:at] + damage + parts[k][at + 1:]
    p = tmp_path / "w.json"
    p.write_text("[" + ",".join(parts) + "]", encoding="utf-8")
    items = check_reader(p, "w.json")
    texts = {i.text for i in items if isinstance(i, Document)}
    for j, r in enumerate(rows):
        if j != k:
            assert f"{r['title']}\n{r['content']}".replace("\r\n", "\n") in texts, j


# ---------------------------------------------------------------------------------------
# recipes

RECIPE_ERRORS: tuple = (ValidationError, yaml.YAMLError, OSError)
try:  # the declared recipe error (issue 17's errors-as-messages work)
    from corpus.recipe import RecipeError
    RECIPE_ERRORS += (RecipeError,)
except ImportError:  # pragma: no cover
    pass

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
recipe_keys = st.sampled_from(["name", "seed", "sources", "stages", "tokenizer", "packing", "split", "output",
                               "limits", "workers", "paths", "format", "seq_len", "weight", "stage_overrides",
                               "text_key", "min_chars", "max_doc_chars", "unit_bytes"])
recipe_like = st.recursive(
    st.none() | st.integers(-5, 5000) | st.text(max_size=12) | st.booleans() | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(recipe_keys, inner, max_size=5), max_leaves=20)


def _valid_recipe() -> dict:
    return {"name": "f", "sources": [{"name": "law", "paths": [str(SHARED / "domain/lawrefbook_zh/宪法")]}],
            "stages": [{"name": "normalize"}, {"name": "min_length", "min_chars": 5}],
            "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 64}}


def _set_path(d: dict, path: list, value) -> dict:
    cur = d
    for k in path[:-1]:
        nxt = cur.get(k) if isinstance(cur, dict) else None
        if not isinstance(nxt, (dict, list)):
            return d
        cur = nxt[0] if isinstance(nxt, list) and nxt else nxt
        if not isinstance(cur, dict):
            return d
    if isinstance(cur, dict):
        cur[path[-1]] = value
    return d


def check_recipe(data) -> None:
    with time_limit(10):
        try:
            r = Recipe.model_validate(data)
            if hasattr(r, "check_stages"):
                r.check_stages()
            r.fingerprint()
        except RECIPE_ERRORS:
            pass


@FUZZ
@given(data=recipe_like)
def test_recipe_from_random_structures(data):
    check_recipe(data)


@FUZZ
@given(path=st.lists(st.sampled_from(["sources", "name", "paths", "stages", "min_chars", "packing", "seq_len",
                                      "limits", "max_doc_chars", "tokenizer", "path", "weight", "format",
                                      "stage_overrides", "split", "val_ratio"]), min_size=1, max_size=3),
       value=json_values)
def test_recipe_with_one_field_replaced(path, value):
    check_recipe(_set_path(_valid_recipe(), path, value))


@FUZZ
@given(doc=st.one_of(st.text(max_size=300), recipe_like.map(lambda d: yaml.safe_dump(d, allow_unicode=True))),
       ops=st.lists(op, max_size=2))
def test_recipe_from_random_yaml(tmp_path, doc, ops):
    p = tmp_path / "r.yaml"
    p.write_bytes(mutate(yaml.safe_dump(_valid_recipe(), allow_unicode=True).encode() + doc.encode(), ops))
    with time_limit(10):
        try:
            Recipe.from_yaml(p)
        except RECIPE_ERRORS + (UnicodeDecodeError,):
            pass


# ---------------------------------------------------------------------------------------
# manifests, .idx, .bnd and the train loader on a tiny real build


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    from corpus.build import build

    out = tmp_path_factory.mktemp("fuzz_build")
    # short Q&A documents: most rows hold several document segments (.bnd boundaries matter)
    qa = tmp_path_factory.mktemp("fuzz_input") / "qa.jsonl"
    lines = (SHARED / "general/flagdata_web_zh/qa_demo_input.jsonl").read_text(encoding="utf-8").split("\n")
    qa.write_text("\n".join(json.dumps({"text": json.loads(l)["content"][:80]}, ensure_ascii=False)
                            for l in lines[:120] if l.strip()), encoding="utf-8")
    recipe = Recipe.model_validate({**_valid_recipe(), "output": {"rows_per_shard": 40},
                                    "split": {"val_ratio": 0.2}})
    recipe.sources.append(SourceConfig(name="qa", paths=[str(qa)]))
    build(recipe, str(out))
    return out


def _copy(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".work", ".lock"))
    return dst


def open_build(root) -> None:
    """Everything a reader of a build does: manifest, every shard's .idx/.bnd/.bin, a batch."""
    from shards.dataset import ShardDataset
    from shards.verify import verify

    problems = verify(str(root))  # verify reports a damaged build, it never raises
    assert isinstance(problems, list)
    ds = ShardDataset(str(root))
    for split in ds.manifest["splits"]:
        for sh in ds.shards(split):
            read_idx(sh.base + ".idx")
            b = read_bnd(sh.base + ".bnd")
            for r in range(len(sh)):
                b.segments(r)
            sh.tokens[: len(sh)].sum()
    load_batches(ds)


def load_batches(ds) -> None:
    from train.data import Loader, RowSource

    src = RowSource(ds, "train")
    try:
        loader = Loader(src, micro_batch=8, seed=1, doc_mask=True)
    except ValueError as e:  # the loader's own message for a split too small for one batch
        assert "rows for a global micro-batch" in str(e)
        return
    for _ in range(min(loader.per_epoch, 40)):  # every row of the build once (a damaged row is met)
        b = loader.next()
        assert b.input_ids.shape == (8, src.seq_len)


BUILD_ERRORS = (ShardFormatError,)  # ManifestError is one


@settings(FUZZ, max_examples=examples(50))
@given(ops=st.lists(op, min_size=1, max_size=3))
def test_manifest_bytes_mutated(tiny_build, tmp_path, ops):
    root = _copy(tiny_build, tmp_path / "b")
    m = root / "manifest.json"
    m.write_bytes(mutate(m.read_bytes(), ops))
    with time_limit(20):
        try:
            open_build(root)
        except BUILD_ERRORS:
            pass


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield from _paths(v, prefix + (i,))


@settings(FUZZ, max_examples=examples(80))
@given(data=st.data())
def test_manifest_field_replaced_and_checksum_recomputed(tiny_build, tmp_path, data):
    """A hand edit that also fixed the checksum: every field of the manifest may hold anything."""
    root = _copy(tiny_build, tmp_path / "b")
    m = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    paths = [p for p in _paths(m) if p and p[-1] != "manifest_sha256"]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(st.one_of(json_values, st.just("../x"), st.just("/etc/passwd"), st.integers(-3, 10**6)))
    cur = m
    for k in path[:-1]:
        cur = cur[k]
    if data.draw(st.booleans()) and isinstance(cur, dict):
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    m["manifest_sha256"] = manifest_checksum(m)
    (root / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with time_limit(20):
        try:
            open_build(root)
        except BUILD_ERRORS:
            pass


@settings(FUZZ, max_examples=examples(80))
@given(ext=st.sampled_from([".idx", ".bnd", ".bin"]), ops=st.lists(op, min_size=1, max_size=3),
       which=st.integers(0, 10))
def test_shard_files_mutated(tiny_build, tmp_path, ext, ops, which):
    root = _copy(tiny_build, tmp_path / "b")
    files = sorted(p for p in root.glob(f"*/*{ext}"))
    f = files[which % len(files)]
    f.write_bytes(mutate(f.read_bytes(), [o for o in ops if o[0] != "reencode"] or [("flip", 0.5, 0)]))
    with time_limit(20):
        try:
            open_build(root)
        except BUILD_ERRORS:
            pass


def test_manifest_reader_refuses_what_the_fuzzer_generates(tiny_build, tmp_path):
    """The fuzz targets above can fail: a shard name outside the build is refused."""
    root = _copy(tiny_build, tmp_path / "b")
    m = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    m["splits"]["train"]["shards"][0]["name"] = "../x"
    m["manifest_sha256"] = manifest_checksum(m)
    (root / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(ManifestError):
        read_manifest(str(root))
    open_build(tiny_build)  # the real build itself is ok


def test_a_bnd_segment_start_outside_the_row_is_a_format_error(tiny_build, tmp_path):
    """Found by the fuzzer: a damaged segment start reached the loader as an index (IndexError)."""
    from shards.format import BND_HEADER_SIZE

    root = _copy(tiny_build, tmp_path / "b")
    f = sorted(root.glob("train/qa-*.bnd"))[0]
    b = read_bnd(str(f))
    row = next(r for r in range(len(b.row_valid)) if len(b.segments(r)) > 1)
    k = int(b.seg_ptr[row]) + 1
    raw = bytearray(f.read_bytes())
    raw[BND_HEADER_SIZE + b.seg_ptr.nbytes + 4 * k + 3] = 0x7F
    f.write_bytes(bytes(raw))
    with pytest.raises(ShardFormatError, match="out of range"):
        open_build(root)
