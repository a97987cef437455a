"""`--doc-attention flex` on the CPU: the BlockMask is the dense document mask, the model's
forward through the FlexAttention function equals the SDPA masked path and makes packed
documents independent, and training with it on the CPU is a one-line refusal.
(FlexAttention has no backward on the CPU; the GPU equivalence is in bench/train_gpu.py --check.)"""

import numpy as np
import pytest
import torch

from shards.dataset import ShardDataset
from train import flex
from train.data import Loader, RowSource
from train.model import build_model


def _rows(src, n=2):
    rows = [g for g in range(src.n_rows) if len(src._segments(g)) >= 3][:n]
    assert rows, "no row with three or more documents"
    return np.array(rows)


def test_block_mask_is_the_dense_document_mask(small_build):
    ds = ShardDataset(str(small_build[0]))
    src = RowSource(ds, "train")
    rows = _rows(src, 3)
    dense = Loader(src, len(rows), 0, shuffle=False, doc_mask=True).load(rows).attention_mask[:, 0]
    bm = Loader(src, len(rows), 0, shuffle=False, flex=True).load(rows).attention_mask
    from torch.nn.attention.flex_attention import BlockMask

    assert isinstance(bm, BlockMask) and bm.shape == (len(rows), 1, ds.seq_len, ds.seq_len)
    L = ds.seq_len
    q = torch.arange(L)[:, None].expand(L, L)
    kv = torch.arange(L)[None, :].expand(L, L)
    for b in range(len(rows)):
        got = bm.mask_mod(torch.tensor(b), torch.tensor(0), q, kv)
        assert torch.equal(got, dense[b]), b
    # blocks that lie wholly in another document are skipped: fewer kv blocks than causal
    n_blocks = -(-L // bm.BLOCK_SIZE[0])
    causal_blocks = n_blocks * (n_blocks + 1) // 2
    total = int((bm.kv_num_blocks + (bm.full_kv_num_blocks if bm.full_kv_num_blocks is not None else 0)).sum())
    assert total <= causal_blocks * len(rows)


def test_flex_forward_equals_masked_sdpa_and_isolates_documents(small_build):
    ds = ShardDataset(str(small_build[0]))
    src = RowSource(ds, "train")
    rows = _rows(src)
    torch.manual_seed(0)
    sdpa = build_model("tiny", ds.tokenizer, ds.seq_len).eval()
    fx = build_model("tiny", ds.tokenizer, ds.seq_len, attn=flex.register()).eval()
    fx.load_state_dict(sdpa.state_dict())
    m = Loader(src, len(rows), 0, shuffle=False, doc_mask=True).load(rows)
    f = Loader(src, len(rows), 0, shuffle=False, flex=True).load(rows)
    assert torch.equal(m.position_ids, f.position_ids) and torch.equal(m.input_ids, f.input_ids)
    with torch.no_grad():
        lm = sdpa(input_ids=m.input_ids, labels=m.labels, position_ids=m.position_ids,
                  attention_mask=m.attention_mask, use_cache=False)
        lf = fx(input_ids=f.input_ids, labels=f.labels, position_ids=f.position_ids,
                attention_mask=f.attention_mask, use_cache=False)
        assert torch.allclose(lm.logits, lf.logits, atol=1e-5)
        assert abs(float(lm.loss) - float(lf.loss)) < 1e-6
        for i, g in enumerate(rows):  # each document as if alone in the row
            segs = list(src._segments(int(g))) + [ds.seq_len]
            for a, z in zip(segs, segs[1:]):
                alone = sdpa(input_ids=f.input_ids[i: i + 1, a:z]).logits[0]
                assert torch.allclose(lf.logits[i, a:z], alone, atol=1e-5), (g, a, z)


def test_flex_without_a_block_mask_is_refused(small_build):
    ds = ShardDataset(str(small_build[0]))
    fx = build_model("tiny", ds.tokenizer, ds.seq_len, attn=flex.register()).eval()
    with pytest.raises(ValueError, match="BlockMask"):
        fx(input_ids=torch.tensor([[1, 5, 6, 7]]), attention_mask=torch.ones(1, 1, 4, 4, dtype=torch.bool))


def test_auto_is_none_on_the_cpu_and_flex_training_there_is_one_line(small_build, tmp_path):
    from typer.testing import CliRunner

    from train.cli import app
    from train.config import TrainConfig

    cfg = TrainConfig(shards=str(small_build[0]), out=str(tmp_path / "a"), model="tiny")
    assert cfg.doc_attention == "auto"
    assert flex.resolve(cfg, None, torch.device("cpu")) == "sdpa" and cfg.doc_attention == "none"
    r = CliRunner().invoke(app, ["run", "--shards", str(small_build[0]), "--out", str(tmp_path / "b"),
                                 "--model", "tiny", "--steps", "2", "--doc-attention", "flex"])
    assert r.exit_code == 2, r.output
    err = (r.stderr if r.stderr_bytes is not None else r.output).strip()
    assert err.startswith("error: ") and "CUDA GPU" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
