"""Issue 2's bar: shards of real text read back token-for-token equal to the tokenizer's
output, through np.memmap and through megatron-core's IndexedDataset; verify catches a flipped byte."""

import gzip
import io
import json
import re
import shutil
from collections import Counter

import numpy as np
import pytest
import sentencepiece as spm
import zstandard

from conftest import LLAMA_TOKENIZER
from corpus.build import build
from corpus.recipe import Recipe
from shards.dataset import ShardDataset
from shards.format import FLAG_CONTINUES, read_idx
from shards.verify import verify

CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(t: str) -> str:
    return CTRL.sub("", t.replace("\r\n", "\n").replace("\r", "\n"))


def _expected_texts(shared):
    texts = []
    for f in sorted((shared / "domain/medicalgpt/pretrain").iterdir()):
        texts.append(_clean(f.read_bytes().decode("utf-8")))
    for f in sorted((shared / "general/c4_en").rglob("*")):
        if f.is_file():
            raw = f.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            texts += [_clean(json.loads(l)["text"]) for l in raw.split(b"\n") if l.strip()]
    for f in sorted((shared / "general/pile").iterdir()):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(f.read_bytes())).read()
        texts += [_clean(json.loads(l)["text"]) for l in raw.split(b"\n") if l.strip()]
    return texts


@pytest.fixture(scope="module")
def raw_build(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("raw")
    recipe = Recipe.model_validate({
        "sources": [{"name": "medical", "paths": [str(shared / "domain/medicalgpt/pretrain")]},
                    {"name": "c4", "paths": [str(shared / "general/c4_en")]},
                    {"name": "pile", "paths": [str(shared / "general/pile")]}],
        "stages": [], "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 512},
        "split": {"val_ratio": 0.2}, "output": {"rows_per_shard": 64}})
    build(recipe, str(out))
    return out


def _docs_from_rows(rows, bounds, docs):
    for r in range(len(rows)):
        valid = int(bounds.row_valid[r])
        segs = list(bounds.segments(r)) + [valid]
        for i in range(len(segs) - 1):
            piece = [int(x) for x in rows[r][segs[i]: segs[i + 1]]]
            if i == 0 and bounds.row_flags[r] & FLAG_CONTINUES:
                docs[-1] += piece
            else:
                docs.append(piece)


def test_tokens_read_back_equal_to_tokenizer_output(shared, raw_build):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    assert verify(str(raw_build)) == []
    sp = spm.SentencePieceProcessor(model_file=str(LLAMA_TOKENIZER))
    expected = Counter(tuple([1] + ids + [2]) for ids in sp.encode(_expected_texts(shared)))
    ds = ShardDataset(str(raw_build))
    got: Counter = Counter()
    n_shards = 0
    streams = [(split, source) for split in ("train", "val") for source in ds.sources]
    for split, source in streams:
        docs: list = []  # a document may continue from one shard into the next
        for sh in ds.shards(split, source):
            n_shards += 1
            mm = np.memmap(sh.base + ".bin", dtype=np.uint16, mode="r").reshape(-1, ds.seq_len)  # nanoGPT's way
            meg = IndexedDataset(sh.base)
            assert len(meg) == len(mm)
            for i in range(len(mm)):
                assert np.array_equal(meg[i], mm[i])
            _docs_from_rows(mm, sh.bounds, docs)
        got.update(tuple(d) for d in docs)
    assert n_shards > 3  # rows_per_shard=64 forces several shards per source
    assert got == expected


def test_idx_header_is_megatron_v1(raw_build):
    ds = ShardDataset(str(raw_build))
    sh = ds.shards("train")[0]
    raw = open(sh.base + ".idx", "rb").read()
    assert raw[:9] == b"MMIDIDX\x00\x00" and raw[9:17] == (1).to_bytes(8, "little") and raw[17] == 8
    idx = read_idx(sh.base + ".idx")
    assert (idx["pointers"] == np.arange(len(sh)) * ds.seq_len * 2).all()


def test_verify_names_file_and_offset_of_a_flipped_byte(raw_build, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(raw_build, dst)
    ds = ShardDataset(str(dst))
    sh = ds.shards("train")[0]
    data = bytearray(open(sh.base + ".bin", "rb").read())
    data[1000] ^= 0xFF
    open(sh.base + ".bin", "wb").write(bytes(data))
    probs = verify(str(dst))
    assert len(probs) == 1
    assert probs[0].file == sh.base + ".bin" and probs[0].offset == 0  # block 0 holds byte 1000
    assert "checksum mismatch" in probs[0].message


def test_verify_rejects_missing_manifest_and_truncated_shard(raw_build, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(raw_build, dst)
    sh = ShardDataset(str(dst)).shards("val")[0]
    with open(sh.base + ".bin", "r+b") as f:
        f.truncate(100)
    probs = verify(str(dst))
    assert probs and probs[0].file.endswith(".bin") and "size" in probs[0].message
    (dst / "manifest.json").unlink()
    assert "no manifest" in str(verify(str(dst))[0])


def test_hf_tokenizer_json_path(shared, tmp_path):
    """A Hugging Face tokenizer.json (trained here with `tokenizers` on real text) drives a build;
    rows decode back to the documents."""
    import json as _json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [_json.loads(l)["text"] for l in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>"]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    (tmp_path / "tokenizer_config.json").write_text(_json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    out = tmp_path / "out"
    r = Recipe.model_validate({"sources": [{"name": "c4", "paths": [str(shared / "general/c4_en/c4_demo.jsonl")]}],
                               "stages": [], "tokenizer": {"path": str(path)}, "packing": {"seq_len": 128},
                               "split": {"val_ratio": 0.0}})
    res = build(r, str(out))
    assert res.manifest["tokenizer"]["kind"] == "hf-tokenizers" and res.manifest["tokenizer"]["bos_id"] == 1
    ds = ShardDataset(str(out))
    docs: list = []
    for sh in ds.shards("train"):
        _docs_from_rows(np.asarray(sh.tokens), sh.bounds, docs)
    decoded = sorted(tok.decode(d[1:-1]) for d in docs)
    assert decoded == sorted(texts)
