"""Issue 18, exact tokenizer round trip: the tokenizer a `train export` directory ships gives,
through `AutoTokenizer.from_pretrained`, exactly the ids of the shard rows the model was trained
on, on real text (Chinese and English, web and domain files) and on the cases that differed
(runs of spaces, leading spaces, newlines, CJK, byte fallback, literal special-token strings)."""

import json

import numpy as np
import pytest

from tests.conftest import LLAMA_TOKENIZER

EDGE = ["  two  spaces", "x  y", " lead", "trail  ", "   ", "a\nb\n\nc\r\n", "\n\nleading newlines", "tab\there",
        "中文 测试，全角　空格", "emoji 😀 and 𠀀 rare 𝔘", "<s> literal </s> and <unk>", "", "ünïcödé façade", "12345 678"]


@pytest.fixture(scope="module")
def rt_build(shared, tmp_path_factory):
    """A real build of Chinese web Q&A, English web, Chinese statutes and Chinese/English medical
    text (about 2,000 documents), and the tokenizer files `train export` writes for it."""
    from corpus.build import build
    from corpus.recipe import Recipe
    from train.export import write_tokenizer

    out = tmp_path_factory.mktemp("rt_build")
    recipe = Recipe.model_validate({
        "name": "roundtrip", "seed": 3,
        "sources": [
            {"name": "web_zh", "paths": [str(shared / "general/flagdata_web_zh")]},
            {"name": "web_en", "paths": [str(shared / "general/c4_en/c4_demo.jsonl"),
                                         str(shared / "general/dolma_commoncrawl_en")]},
            {"name": "law_zh", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/宪法"),
                                                           str(shared / "domain/lawrefbook_zh/刑法")]},
            {"name": "med", "kind": "domain", "paths": [str(shared / "domain/medicalgpt/rag"),
                                                        str(shared / "domain/hf_scientific_papers_pubmed")]},
        ],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)},
        "packing": {"seq_len": 2048},
        "split": {"val_ratio": 0.0},
    })
    build(recipe, str(out / "build"))
    (out / "hf").mkdir()
    cfg = write_tokenizer(str(out / "build"), str(out / "hf"))
    return out / "build", out / "hf", cfg


def _documents(build_dir):
    """Every whole document of the shards as stored: [BOS] ids [EOS], per source, from the
    concatenated rows of each source's stream (concat packing splits documents across rows)."""
    from shards.dataset import ShardDataset

    ds = ShardDataset(str(build_dir))
    bos, eos = ds.tokenizer["bos_id"], ds.tokenizer["eos_id"]
    docs = {}
    for src in ds.sources:
        rows = [s.tokens[r, : s.bounds.row_valid[r]] for s in ds.shards("train", src) for r in range(len(s))]
        stream = np.concatenate(rows).astype(np.int64)
        starts = np.flatnonzero(stream == bos)  # SentencePiece never emits a control id for text
        parts = np.split(stream, starts)[1:]
        docs[src] = [p for p in parts if p[-1] == eos]
    return docs


def test_autotokenizer_gives_the_shard_rows(rt_build):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    build_dir, hf, _ = rt_build
    tok = AutoTokenizer.from_pretrained(str(hf), local_files_only=True)
    sp = spm.SentencePieceProcessor(model_file=str(hf / "tokenizer.model"))
    docs = _documents(build_dir)
    assert len(docs["web_zh"]) >= 500 and len(docs["web_en"]) >= 500 and docs["law_zh"] and docs["med"]
    n = 0
    for src, ds in docs.items():
        texts = [sp.decode(d[1:-1].tolist()) for d in ds]  # SentencePiece is lossless here (identity normalizer)
        got = tok(texts).input_ids
        for d, g, t in zip(ds, got, texts):
            # a prompt is the start of a document: BOS + ids; the shards close it with EOS
            assert g + [tok.eos_token_id] == d.tolist(), (src, t[:80])
            n += 1
    assert n >= 1000, n
    # the spaces, newlines and bytes the shards hold come back on decode
    some = [t for ds in docs.values() for t in ds[:50]]
    for d in some:
        assert tok.decode(d[1:-1].tolist()) == sp.decode(d[1:-1].tolist())


def test_autotokenizer_matches_the_build_tokenizer_on_raw_text_and_edge_cases(rt_build, shared):
    """The same ids as the wrapper the build encodes documents with, on the raw source texts
    (not decoded from shards) and the strings that differed before."""
    from transformers import AutoTokenizer

    from shards.tokenizer import Tokenizer

    _, hf, cfg = rt_build
    tok = AutoTokenizer.from_pretrained(str(hf), local_files_only=True)
    ref = Tokenizer(str(LLAMA_TOKENIZER))
    texts = [json.loads(line)["content"] for line in open(shared / "general/flagdata_web_zh/qa_demo_input.jsonl",
                                                          encoding="utf-8")][:400]
    texts += [json.loads(line)["text"] for line in open(shared / "general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    texts += EDGE
    want = ref.encode_batch(texts)
    got = tok(texts, add_special_tokens=False).input_ids
    for w, g, t in zip(want, got, texts):
        assert g == w.tolist(), t[:80]
    # BOS framing from the recipe (add_bos true, add_eos false: a prompt is not a whole document)
    assert cfg["add_bos_token"] is True and cfg["add_eos_token"] is False
    assert tok(" lead").input_ids == [ref.bos_id] + ref.encode_batch([" lead"])[0].tolist()
    assert tok("<s>").input_ids[1:] == ref.encode_batch(["<s>"])[0].tolist() != [ref.bos_id]
    for t in EDGE:
        assert tok.decode(tok(t).input_ids, skip_special_tokens=True) == t
    # the file itself frames a prompt (the `tokenizers` library, vLLM, older transformers)
    from tokenizers import Tokenizer as HFTokenizer

    raw = HFTokenizer.from_file(str(hf / "tokenizer.json"))
    assert raw.encode("x  y").ids == [ref.bos_id] + ref.encode_batch(["x  y"])[0].tolist()
