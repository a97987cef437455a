"""LLaMA-family models: presets with random init, or a local Hugging Face checkpoint; the
tokenizer identity of the shards is checked against the model."""

from __future__ import annotations

import os
from typing import Any

import torch

PRESETS: dict[str, dict[str, int]] = {
    # name: hidden, layers, heads, kv heads, ffn
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=172),
    "20m": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8,
                intermediate_size=688),
    "50m": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                intermediate_size=1376),
    "124m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
                 intermediate_size=2048),
    "350m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
                 intermediate_size=2816),
    # TinyLlama-1.1B's shape
    "1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
               intermediate_size=5632),
}


class TokenizerMismatch(Exception):
    """The shards were tokenized for another vocabulary or other special ids than the model's."""


def build_model(name: str, tok: dict[str, Any], seq_len: int, resize: bool = False,
                dtype: torch.dtype = torch.float32, attn: str = "sdpa") -> torch.nn.Module:
    """A preset with random init, or `AutoModelForCausalLM` from a local directory.

    `attn` is a transformers attention implementation name: "sdpa", or the FlexAttention
    document-masking function that `train.flex.register()` returns."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if name in PRESETS:
        cfg = LlamaConfig(vocab_size=tok["vocab_size"], max_position_embeddings=seq_len,
                          bos_token_id=tok["bos_id"], eos_token_id=tok["eos_id"],
                          pad_token_id=None, rms_norm_eps=1e-5, tie_word_embeddings=False,
                          attn_implementation=attn, **PRESETS[name])
        cfg._attn_implementation = attn
        return LlamaForCausalLM(cfg).to(dtype)
    if not os.path.isdir(name):
        raise ValueError(f"model {name!r} is neither a preset ({', '.join(PRESETS)}) nor a local directory")
    model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=dtype, attn_implementation=attn,
                                                 local_files_only=True)
    check_tokenizer(model.config, tok, resize)
    if resize and model.config.vocab_size < tok["vocab_size"]:
        model.resize_token_embeddings(tok["vocab_size"])
    return model


def check_tokenizer(cfg: Any, tok: dict[str, Any], resize: bool) -> None:
    """Raise a clear error when the shards' tokenizer does not fit the model."""
    problems = []
    if cfg.vocab_size != tok["vocab_size"]:
        if not (resize and cfg.vocab_size < tok["vocab_size"]):
            problems.append(f"vocab_size: model {cfg.vocab_size} vs shards {tok['vocab_size']}"
                            + ("" if resize else " (use --resize-embeddings for an extended vocabulary)"))
    for k_model, k_tok in (("bos_token_id", "bos_id"), ("eos_token_id", "eos_id")):
        mv = getattr(cfg, k_model, None)
        if isinstance(mv, list):
            mv = mv[0]
        if mv is not None and tok[k_tok] >= 0 and mv != tok[k_tok]:
            problems.append(f"{k_model}: model {mv} vs shards {tok[k_tok]}")
    if problems:
        raise TokenizerMismatch("the shards were built with another tokenizer than the model's: "
                                + "; ".join(problems))


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, parameters without the input embedding) — the latter for FLOPs."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() if hasattr(model, "get_input_embeddings") else 0
    return total, total - emb


def flops_per_token(n_params_no_emb: int, n_layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the matmuls plus 12·L·h·s for attention (PaLM appendix B)."""
    return 6.0 * n_params_no_emb + 12.0 * n_layers * hidden * seq_len
