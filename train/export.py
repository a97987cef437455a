"""Checkpoints out: ZeRO (any stage) → fp32 → fp16/bf16 → a Hugging Face directory that
`AutoModelForCausalLM` / `AutoTokenizer.from_pretrained` load offline; continuation and
perplexity on the exported model.

The FAQ's conversion was three clumsy steps (zero→fp32, fp32→fp16, fp16→HF) and a front end
to check continuation (`../shared/seed/cpt-faq-zh.md`, Q4); this is one command each.

Nothing read here runs code: checkpoint files are unpickled with `weights_only=True` and the
allow-list of `train/safe_load.py` (a planted pickle is a one-line `CheckpointError`), the
build manifest is read through `shards.manifest.read_manifest`, and models are loaded by
transformers with `local_files_only` (safetensors, or a `.bin` through the same allow-list).

The exported tokenizer gives the ids the model was trained on. For a SentencePiece build the
directory ships `tokenizer.json` (converted from the `.model` by
`shards.tokenizer.spm_to_tokenizer_json`: SentencePiece's ids on real text) beside
`tokenizer.model`, and `AutoTokenizer.from_pretrained(export)(text).input_ids` is a shard
document without its EOS: BOS (when the recipe framed documents with one) + the text's ids; a
literal `<s>` in a text stays characters, as in the shards. Every file the export writes is
mode 0644, and the tensor count reported is the count in the written files.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

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
    before = _files(out)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    tok = run["tokenizer"]
    gen = GenerationConfig(bos_token_id=tok["bos_id"], eos_token_id=tok["eos_id"],
                           pad_token_id=tok["pad_id"] if tok["pad_id"] >= 0 else tok["eos_id"], do_sample=True,
                           temperature=0.8, top_p=0.95, max_new_tokens=128)
    gen.save_pretrained(out)
    write_tokenizer(_shards_dir(run_dir, run), out, tok)
    # save_pretrained and copies follow the umask and the source file's mode; a model directory
    # is shared (a serving box, the Hub): readable by all, as other tools write it
    for name, stamp in _files(out).items():
        if before.get(name) != stamp:  # written by this export, never a file that was already there
            os.chmod(os.path.join(out, name), 0o644)
    return {"out": out, "dtype": dtype, "lora_merged": lora, "tensors": count_tensors(out)}


def _shards_dir(run_dir: str, run: dict[str, Any]) -> str:
    """The build the run trained on: its absolute path as `train run` recorded it, else the
    configured path (relative to the working directory, then to the run directory)."""
    given = run["config"]["shards"]
    for c in (run.get("shards_dir"), given, os.path.join(run_dir, given)):
        if c and os.path.isfile(os.path.join(c, "manifest.json")):
            return c
    raise FileNotFoundError(f"{run_dir}/run.json: the build it was trained on ({run.get('shards_dir') or given}) "
                            "is not there any more")


def _files(d: str) -> dict[str, tuple[int, int]]:
    return {e.name: (e.stat().st_mtime_ns, e.stat().st_ino) for e in os.scandir(d) if e.is_file()}


def count_tensors(model_dir: str) -> int:
    """Tensors in the written safetensors files (what a loader sees, after a LoRA merge)."""
    from safetensors import safe_open

    n = 0
    for f in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
        with safe_open(f, "pt") as st:
            n += len(list(st.keys()))
    return n


def write_tokenizer(shards: str, out: str, tok: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the tokenizer files of a Hugging Face directory for the shards' tokenizer; returns
    the tokenizer_config written.

    The shards frame each document as [BOS] ids [EOS] (the recipe's add_bos/add_eos). A prompt
    is the start of a document, so `add_bos_token` follows the recipe and `add_eos_token` is
    false: an EOS after a prompt would tell the model the document has ended. (To score whole
    documents as the shards hold them, append `eos_token_id`.)"""
    from shards.tokenizer import build_tokenizer_path

    manifest, _ = read_manifest(shards)  # the one manifest reader: names checked, hand edits refused
    tok = tok or manifest["tokenizer"]
    if tok["sha256"] != manifest["tokenizer"]["sha256"]:
        raise CheckpointError(f"{shards}: the run was trained with another tokenizer (sha256 {tok['sha256'][:12]}...) "
                              f"than this build's ({manifest['tokenizer']['sha256'][:12]}...)")
    path = build_tokenizer_path(shards, manifest)  # the build's copy (or, for an old build, the recipe's file)
    framing = manifest.get("recipe", {}).get("tokenizer") or {}
    add_bos = bool(framing.get("add_bos", True)) and tok["bos_id"] >= 0
    if tok.get("kind") == "tekken":
        # Tekken has no Hugging Face file of its own: the converted tokenizer.json gives the ids
        # the build encoded with mistral-common (tests/test_32bit.py); control tokens never from text
        from shards.tokenizer import tekken_to_tokenizer_json

        names = tekken_to_tokenizer_json(path, os.path.join(out, "tokenizer.json"), tok["bos_id"] if add_bos else None)
        names = {k: v for k, v in names.items() if k != "pad" or tok["pad_id"] >= 0}
        cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "split_special_tokens": True}
    elif path.endswith(".json"):
        # the build encoded with this very file (add_special_tokens=False): its normalizer and
        # added tokens are what the shards hold
        from tokenizers import Tokenizer as HFTokenizer

        shutil.copyfile(path, os.path.join(out, "tokenizer.json"))
        hf = HFTokenizer.from_file(path)
        names = {k: hf.id_to_token(tok[f"{k}_id"]) for k in ("bos", "eos", "pad") if tok[f"{k}_id"] >= 0}
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast"}
    else:
        import sentencepiece as spm

        shutil.copyfile(path, os.path.join(out, "tokenizer.model"))
        sp = spm.SentencePieceProcessor(model_file=path)
        names = {k: sp.id_to_piece(tok[f"{k}_id"]) for k in ("bos", "eos", "pad") if tok[f"{k}_id"] >= 0}
        if sp.unk_id() >= 0:
            names["unk"] = sp.id_to_piece(sp.unk_id())
        _spm_tokenizer_json(path, os.path.join(out, "tokenizer.json"), names.get("bos") if add_bos else None,
                            tok["bos_id"])
        # SentencePiece never reads control pieces in text: a literal `<s>` in a document is
        # three pieces in the shards, so the fast tokenizer must not match special tokens either
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "split_special_tokens": True}
    cfg.update({f"{k}_token": v for k, v in names.items()})
    cfg.update(add_bos_token=add_bos, add_eos_token=False, model_max_length=manifest["seq_len"])
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({k: v for k, v in cfg.items() if k.endswith("_token") and isinstance(v, str)}, f)
    return cfg


def _spm_tokenizer_json(model: str, out: str, bos: str | None, bos_id: int) -> None:
    """tokenizer.json for a SentencePiece model, the BOS template in the file itself (so the
    `tokenizers` library, vLLM and older transformers frame a prompt the same way)."""
    import tempfile

    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import processors

    from shards.tokenizer import spm_to_tokenizer_json

    with tempfile.TemporaryDirectory() as tmp:  # the converter also writes a config beside its output
        spm_to_tokenizer_json(model, os.path.join(tmp, "tokenizer.json"))
        hf = HFTokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
    if bos:
        hf.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, bos_id)])
    hf.save(out)


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


def perplexity(model_dir: str, shards: str, max_rows: int = 256, batch: int = 4) -> dict[str, dict[str, float]]:
    """Loss and perplexity per val source of a shard directory: every one of the first
    `max_rows` rows of each source (the loop `train run` evaluates with, train/evaluation.py)."""
    from shards.dataset import ShardDataset

    from .evaluation import check_vocab, evaluate_sources

    model, _ = load(model_dir)
    vocab = int(model.get_input_embeddings().num_embeddings)

    def forward(b):
        check_vocab(b, vocab, shards)
        return model(input_ids=b.input_ids, labels=b.labels).loss

    return evaluate_sources(forward, ShardDataset(shards), max_rows, batch)
