"""Issue 18: 32-bit tokens end to end, on the real Tekken tokenizer that `mistral-common` ships
offline (131,072 tokens). Real English and Chinese text is built into int32 shards (Megatron's
dtype code 4), and every id of 65,536 or more must survive each step unchanged: the build
(against mistral-common's own encoding), verify, Megatron's IndexedDataset, a plain
`np.memmap(..., dtype=np.int32)`, the training loader's batches, 20 CPU training steps, and the
exported Hugging Face tokenizer and model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from corpus.build import build
from corpus.recipe import Recipe
from shards.dataset import ShardDataset
from shards.format import read_idx, token_dtype
from shards.verify import verify
from test_shards import _clean, _docs_from_rows

C4 = "general/c4_en/c4_demo.jsonl"
ZH = "general/flagdata_web_zh/qa_demo_input.jsonl"
N_ZH = 400  # documents of the Chinese file (its head, written to a file of our own)
BIG = 1 << 16  # the first id a uint16 row cannot hold


def _tekken_path() -> str:
    import mistral_common

    return str(Path(mistral_common.__file__).parent / "data" / "tekken_240911.json")


@pytest.fixture(scope="module")
def texts(shared, tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("in32")
    zh = [json.loads(l) for l in open(shared / ZH, encoding="utf-8")][:N_ZH]
    with open(d / "zh.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": r["content"]}, ensure_ascii=False) + "\n" for r in zh)
    return [str(shared / C4), str(d / "zh.jsonl")]


@pytest.fixture(scope="module")
def big_build(texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("b32") / "build"
    recipe = Recipe.model_validate({
        "name": "tekken", "seed": 3,
        "sources": [{"name": "c4", "paths": [texts[0]]}, {"name": "zh", "paths": [texts[1]]}],
        "stages": [],  # the documents as read: their ids are mistral-common's encoding of the text
        "tokenizer": {"path": _tekken_path()}, "packing": {"seq_len": 128},
        "split": {"val_ratio": 0.1}, "output": {"rows_per_shard": 512}})
    build(recipe, str(out))
    return out


def _expected(paths: list[str]) -> Counter:
    """[BOS] ids [EOS] of every document, encoded by mistral-common's Tekkenizer itself."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    tk = Tekkenizer.from_file(_tekken_path())
    docs = [_clean(json.loads(l)["text"]) for p in paths for l in open(p, encoding="utf-8") if l.strip()]
    return Counter(tuple([tk.bos_id] + tk.encode(t, bos=False, eos=False) + [tk.eos_id]) for t in docs)


def test_the_dtype_rule_is_megatrons():
    from megatron.core.datasets.indexed_dataset import DType

    for v in (32000, 65499, 65500, 65536, 128256, 131072, 151646):
        assert token_dtype(v) == np.dtype(DType.optimal_dtype(v)), v


def test_big_ids_survive_build_verify_megatron_memmap(big_build, texts):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = ShardDataset(str(big_build))
    assert ds.dtype == np.int32 and ds.tokenizer["kind"] == "tekken" and ds.tokenizer["vocab_size"] == 131072
    assert verify(str(big_build)) == []
    got: Counter = Counter()
    high = 0
    for split in ("train", "val"):
        for source in ds.sources:
            docs: list = []
            for sh in ds.shards(split, source):
                assert read_idx(sh.base + ".idx")["dtype"] == np.int32
                assert open(sh.base + ".idx", "rb").read()[17] == 4  # Megatron's DType.int32
                mm = np.memmap(sh.base + ".bin", dtype=np.int32, mode="r").reshape(-1, ds.seq_len)
                meg = IndexedDataset(sh.base)
                assert len(meg) == len(mm)
                for i in range(len(mm)):
                    assert meg[i].dtype == np.int32 and np.array_equal(meg[i], mm[i])
                high += int((mm >= BIG).sum())
                _docs_from_rows(mm, sh.bounds, docs)
            got.update(tuple(d) for d in docs)
    # ids that uint16 would wrap exist, in quantity, and every document is mistral-common's encoding
    assert high > 1000, high
    assert got == _expected(texts)


def test_loader_batches_carry_big_ids_as_stored(big_build):
    from train.data import Loader, RowSource

    ds = ShardDataset(str(big_build))
    src = RowSource(ds, "train")
    loader = Loader(src, micro_batch=8, seed=1)
    rows = np.concatenate([sh.tokens for sh in src.shards]).astype(np.int64)
    seen_high = 0
    for _ in range(loader.per_epoch):
        idx = loader._rows_for(loader.cursor)
        b = loader.next()
        assert b.input_ids.dtype == torch.int64
        assert np.array_equal(b.input_ids.numpy(), rows[idx])  # no id narrowed on the way
        seen_high += int((b.input_ids >= BIG).sum())
    assert loader._buf.dtype == torch.int32 and seen_high > 1000


def test_train_20_steps_and_export_keep_big_ids(big_build, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.config import TrainConfig
    from train.export import export
    from train.trainer import train

    cfg = TrainConfig(shards=str(big_build), out=str(tmp_path / "run"), model="tiny", micro_batch=2, steps=20,
                      lr=3e-3, warmup_ratio=0.1, eval_interval=0, eval_rows=4, log_interval=1, precision="fp32",
                      tensorboard=False)
    res = train(cfg, progress=False)
    res["engine"].destroy()
    recs = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl") if json.loads(l)["kind"] == "train"]
    assert len(recs) == 20 and all(np.isfinite(r["loss"]) for r in recs)
    export(str(tmp_path / "run"), str(tmp_path / "hf"), "fp32")
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), local_files_only=True)
    assert model.config.vocab_size == 131072 and model.get_input_embeddings().weight.shape[0] == 131072
    # the exported tokenizer gives the shards' ids, big ones included, for whole documents
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    ds = ShardDataset(str(big_build))
    sh = next(s for s in ds.shards("train", "zh"))
    docs: list = []
    _docs_from_rows(np.asarray(sh.tokens), sh.bounds, docs)
    whole = [d for d in docs[1:-1] if max(d) >= BIG][:20]  # the first/last may be cut by the shard edge
    assert len(whole) == 20
    from shards.tokenizer import build_tokenizer

    bt = build_tokenizer(str(big_build), ds.manifest)
    for d in whole:
        text = bt.decode(d[1:-1])
        assert tok(text)["input_ids"] + [2] == d, text[:60]
