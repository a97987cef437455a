"""train → export → load with transformers → generate → continue training from the export;
the exported model's logits equal the trained engine's (ZeRO 2 and 3)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from train.config import TrainConfig
from train.trainer import train


def _train_and_logits(small_build, tmp_path, **kw):
    """Train a tiny model; return (a val batch, the engine's logits on it)."""
    from shards.dataset import ShardDataset
    from train.data import Loader, RowSource

    cfg = TrainConfig(shards=str(small_build[0]), out=str(tmp_path / "run"), model="tiny", micro_batch=4, steps=4,
                      eval_interval=0, eval_rows=4, precision="fp32", tensorboard=False, **kw)
    engine = train(cfg, progress=False)["engine"]
    batch = Loader(RowSource(ShardDataset(str(small_build[0])), "val"), 2, 0, shuffle=False).load(np.arange(2))
    engine.eval()
    with torch.no_grad():
        want = engine(input_ids=batch.input_ids).logits.float()
    engine.destroy()
    return batch, want


def _tensors_in(model_dir):
    from safetensors import safe_open

    n = 0
    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            n += len(list(st.keys()))
    return n


@pytest.mark.parametrize("zero", [2, 3])
def test_export_logits_match_engine(small_build, tmp_path, zero):
    from train.export import export, load

    batch, want = _train_and_logits(small_build, tmp_path, lr=3e-3, zero_stage=zero)
    export(str(tmp_path / "run"), str(tmp_path / "hf"), "fp32")
    model, tok = load(str(tmp_path / "hf"))
    with torch.no_grad():
        got = model(input_ids=batch.input_ids).logits.float()
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2
    assert tok("你好").input_ids[0] == 1


def test_export_generate_eval_and_continue(small_build, tmp_path):
    # a clean environment: in-process training in this pytest process set RANK/MASTER_PORT
    dist = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in dist}
    env["DS_ACCELERATOR"] = "cpu"
    cli = [sys.executable, "-m", "train.cli"]
    r = subprocess.run(cli + ["run", "--shards", str(small_build[0]), "--out", str(tmp_path / "run"), "--model", "tiny",
                              "--steps", "6", "--micro-batch", "2", "--lr", "3e-3", "--eval-interval", "0",
                              "--eval-rows", "4", "--precision", "fp32"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    # under a umask of 077 save_pretrained writes 0600 files: the export still leaves them 0644
    r = subprocess.run(cli + ["export", str(tmp_path / "run"), "--out", str(tmp_path / "hf"), "--dtype", "bf16"],
                       capture_output=True, text=True, env=env, preexec_fn=lambda: os.umask(0o077))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "generation_config.json").exists()
    written = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "config.json"} <= set(written)
    assert {p: oct((tmp_path / "hf" / p).stat().st_mode & 0o777) for p in written} == {p: "0o644" for p in written}
    assert f"exported {_tensors_in(tmp_path / 'hf')} tensors" in " ".join(r.stdout.split())
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert m.dtype == torch.bfloat16
    r = subprocess.run(cli + ["generate", str(tmp_path / "hf"), "--prompt", "第一条", "--max-new-tokens", "8"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.startswith("第一条"), r.stderr[-2000:]
    r = subprocess.run(cli + ["eval", str(tmp_path / "hf"), "--shards", str(small_build[0]), "--max-rows", "8"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "medical" in r.stdout, r.stderr[-2000:]
    # continue pretraining from the export (round trip)
    r = subprocess.run(cli + ["run", "--shards", str(small_build[0]), "--out", str(tmp_path / "run2"), "--model",
                              str(tmp_path / "hf"), "--steps", "2", "--micro-batch", "2", "--eval-interval", "0",
                              "--eval-rows", "4", "--precision", "fp32"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_lora_training_is_merged_at_export(small_build, tmp_path):
    from train.export import export, load

    batch, want = _train_and_logits(small_build, tmp_path, lr=1e-2, zero_stage=2, lora_r=4)
    info = export(str(tmp_path / "run"), str(tmp_path / "hf"), "fp32")
    assert info["lora_merged"]
    # the count of the merged model written, not of the checkpoint's base + adapter tensors
    assert info["tensors"] == _tensors_in(tmp_path / "hf")
    model, _ = load(str(tmp_path / "hf"))
    assert not any("lora" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        got = model(input_ids=batch.input_ids).logits.float()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
