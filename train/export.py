"""Checkpoints out: ZeRO (any stage) → fp32 → fp16/bf16 → a Hugging Face directory that
`AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` load offline; continuation and
perplexity on the exported model.

The FAQ's conversion was three clumsy steps (zero→fp32, fp32→fp16, fp16→HF) and a front end
to check continuation (`../shared/seed/cpt-faq-zh.md`, Q4); this is one command each.

Nothing read here runs code: checkpoint files are unpickled with `weights_only=True` and the
allow-list of `train/safe_load.py` (a planted pickle is a one-line `CheckpointError`), the
build manifest is read through `shards.manifest.read_manifest`, and models are loaded by
transformers with `local_files_only` (safetensors, or a `.bin` through the same allow-list).
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
from typing import Any

import numpy as np
import torch

from shards.manifest import read_manifest

from .safe_load import CheckpointError, check_tag, latest_tag, safe_loads
from .safe_load import load as safe_load

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def fp32_state_dict(ckpt_dir: str, tag: str | None = None) -> dict[str, torch.Tensor]:
    """Consolidated fp32 weights of a DeepSpeed checkpoint of any ZeRO stage. Every file is
    unpickled with weights_only=True (`train/safe_load.py`): a planted pickle is refused with
    `CheckpointError`, never run."""
    tag = check_tag(ckpt_dir, tag) if tag else latest_tag(ckpt_dir)
    zero_files = glob.glob(os.path.join(ckpt_dir, tag, "*optim_states.pt"))
    model_files = sorted(glob.glob(os.path.join(ckpt_dir, tag, "*mp_rank_00_model_states.pt")))
    if not model_files:
        raise FileNotFoundError(f"{ckpt_dir}/{tag}: no model states file")
    state = safe_load(model_files[0])
    if not isinstance(state, dict):
        raise CheckpointError(f"{model_files[0]}: not a DeepSpeed model states file")
    stage = (state.get("ds_config") or {}).get("zero_optimization", {}).get("stage", 0)
    if zero_files and stage in (1, 2, 3):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        with safe_loads():  # zero_to_fp32 unpickles with weights_only=False
            sd = get_fp32_state_dict_from_zero_checkpoint(ckpt_dir, tag=tag)
    else:  # ZeRO-0: the module weights are whole (zero_to_fp32 does not handle stage 0)
        sd = state.get("module")
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{model_files[0]}: no module weights (not a DeepSpeed model states file)")
    return {k: v.float() for k, v in sd.items()}


def export(run_dir: str, out: str, dtype: str = "bf16", tag: str | None = None,
           max_shard_size: str = "2GB") -> dict[str, Any]:
    """Write a Hugging Face model directory from a `train run` output directory."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    run = json.load(open(os.path.join(run_dir, "run.json")))
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    sd = fp32_state_dict(ckpt_dir, tag)
    cfg = AutoConfig.from_pretrained(run_dir, local_files_only=True)  # config.json written by train run
    model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    lora = any("lora_" in k for k in sd)
    if lora:
        from peft import LoraConfig, get_peft_model

        c = run["config"]
        model = get_peft_model(model, LoraConfig(r=c["lora_r"], lora_alpha=c["lora_alpha"],
                                                 target_modules=c["lora_targets"], task_type="CAUSAL_LM"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if lora:
        model = model.merge_and_unload()
    model = model.to(DTYPES[dtype])
    model.config.torch_dtype = DTYPES[dtype]
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    tok = run["tokenizer"]
    gen = GenerationConfig(bos_token_id=tok["bos_id"], eos_token_id=tok["eos_id"],
                           pad_token_id=tok["pad_id"] if tok["pad_id"] >= 0 else tok["eos_id"], do_sample=True,
                           temperature=0.8, top_p=0.95, max_new_tokens=128)
    gen.save_pretrained(out)
    _write_tokenizer(run["config"]["shards"], out, tok)
    return {"out": out, "dtype": dtype, "lora_merged": lora, "tensors": len(sd)}


def _write_tokenizer(shards: str, out: str, tok: dict[str, Any]) -> None:
    """Copy the shards' tokenizer file and write a tokenizer config with its special ids."""
    from shards.fileio import sha256_file
    from shards.tokenizer import default_tokenizer_path

    manifest, _ = read_manifest(shards)  # the one manifest reader: names checked, hand edits refused
    path = manifest["recipe"]["tokenizer"]["path"] or default_tokenizer_path()
    if not os.path.exists(path) or sha256_file(path) != tok["sha256"]:
        raise FileNotFoundError(f"tokenizer file {path} is missing or is not the one the shards were built with")
    if path.endswith(".json"):
        shutil.copy(path, os.path.join(out, "tokenizer.json"))
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast"}
    else:
        shutil.copy(path, os.path.join(out, "tokenizer.model"))
        cfg = {"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False}
    import sentencepiece as spm

    names = {}
    if not path.endswith(".json"):
        sp = spm.SentencePieceProcessor(model_file=path)
        names = {k: sp.id_to_piece(tok[f"{k}_id"]) for k in ("bos", "eos") if tok[f"{k}_id"] >= 0}
        names["unk"] = sp.id_to_piece(sp.unk_id())
    cfg.update({f"{k}_token": v for k, v in names.items()})
    cfg["model_max_length"] = manifest["seq_len"]
    json.dump(cfg, open(os.path.join(out, "tokenizer_config.json"), "w"), indent=1)
    json.dump({k: v for k, v in cfg.items() if k.endswith("_token")}, open(os.path.join(out, "special_tokens_map.json"), "w"))


def load(model_dir: str, dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with safe_loads():  # a pytorch_model.bin is unpickled with our allow-list, a refusal is one line
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model.eval(), tok


@torch.no_grad()
def generate(model_dir: str, prompt: str, max_new_tokens: int = 64, temperature: float = 0.8, top_p: float = 0.95,
             seed: int = 0) -> str:
    """Continue `prompt` with the exported (or any local HF) model, on CPU or GPU."""
    model, tok = load(model_dir)
    torch.manual_seed(seed)
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                         temperature=max(temperature, 1e-5), top_p=top_p, pad_token_id=tok.eos_token_id)
    return tok.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)


@torch.no_grad()
def perplexity(model_dir: str, shards: str, max_rows: int = 256, batch: int = 4) -> dict[str, dict[str, float]]:
    """Loss and perplexity per val source of a shard directory (padding masked)."""
    from shards.dataset import ShardDataset
    from train.data import Loader, RowSource

    model, _ = load(model_dir)
    ds = ShardDataset(shards)
    res: dict[str, dict[str, float]] = {}
    for src in ds.sources:
        rs = RowSource(ds, "val", [src])
        n = min(max_rows, rs.n_rows)
        if n == 0:
            continue
        b = min(batch, n)
        loader = Loader(rs, b, 0, shuffle=False)
        tot, ntok = 0.0, 0
        for a in range(0, n - n % b, b):
            bt = loader.load(np.arange(a, a + b))
            out = model(input_ids=bt.input_ids, labels=bt.labels)
            k = int((bt.labels[:, 1:] != -100).sum())
            tot += float(out.loss) * k
            ntok += k
        res[src] = {"loss": tot / ntok, "ppl": math.exp(min(50, tot / ntok)), "tokens": ntok}
    return res
