"""Document masking with FlexAttention (`--doc-attention flex`).

Contract: `doc_block_mask(starts)` turns the loader's document-start flags (B, L bool, on the
device; row position 0 always starts a segment) into a `torch.nn.attention.flex_attention.BlockMask`
in which a token attends to earlier tokens of its own document only; `ATTENTION` names an
attention function registered with transformers' `AttentionInterface` that runs
`flex_attention` with that mask (compiled on CUDA). The model gets the mask through the usual
`attention_mask=` argument: transformers passes a 4-D `BlockMask` through untouched, so every
decoder layer (and liger-kernel's fused RoPE/RMSNorm/SwiGLU around it) works unchanged.

Why: with an explicit dense mask (and with position ids that restart, from which transformers
>= 5 builds the same mask) SDPA leaves its causal flash kernel for the masked one and costs
16-21% of tokens/s on an H200; FlexAttention skips whole 128x128 blocks that cross documents,
so masking costs nothing or gains (a probe: 1.43 ms vs 1.61 ms causal SDPA, fwd+bwd, B=8 H=32
S=2048 D=64, ~500-token documents). FlexAttention has no backward on the CPU (torch 2.13), so
training with it needs a GPU; the forward runs on the CPU (unfused), which the tests use to
check the mask against the dense path.
"""

from __future__ import annotations

import importlib

import torch

ATTENTION = "refinery_flex"
_compiled = None


def available(device: torch.device | str) -> str | None:
    """None when FlexAttention training can run on `device`, else the reason it cannot."""
    device = torch.device(device)
    try:
        importlib.import_module("torch.nn.attention.flex_attention")
    except ImportError:  # torch < 2.5
        return f"torch {torch.__version__} has no FlexAttention (torch >= 2.5 needed)"
    if device.type != "cuda":
        return "FlexAttention has no backward pass on the CPU; --doc-attention flex needs a CUDA GPU"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "FlexAttention's Triton kernels need a GPU of compute capability 8.0 or newer"
    return None


def doc_block_mask(starts: torch.Tensor):
    """Block-diagonal causal BlockMask from document-start flags (B, L bool), built on their device.

    Segment ids are a cumsum over the flags (no loop per row); the mask_mod compares them. The
    sparse block structure is computed once per batch and shared by all layers and heads.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    seg = starts.to(torch.int32).cumsum(dim=1)
    B, L = seg.shape

    def same_doc_causal(b, h, q, kv):
        return (seg[b, q] == seg[b, kv]) & (q >= kv)

    return create_block_mask(same_doc_causal, B, None, L, L, device=seg.device)


def _flex(q, k, v, **kw):
    global _compiled
    from torch.nn.attention.flex_attention import flex_attention

    if q.device.type != "cuda":
        return flex_attention(q, k, v, **kw)  # unfused reference path (forward only on the CPU)
    if _compiled is None:
        # dynamic=False: one kernel per (B, L) shape; a run has one training shape and one eval shape
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled(q, k, v, **kw)


def flex_doc_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: (B, H, L, D) projections -> (B, L, H, D) output."""
    from torch.nn.attention.flex_attention import BlockMask

    if not isinstance(attention_mask, BlockMask):
        raise ValueError("--doc-attention flex: the model got no BlockMask (the loader builds one per batch)")
    if dropout:
        raise ValueError("--doc-attention flex does not support attention dropout")
    gqa = query.shape[1] != key.shape[1]
    out = _flex(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register the attention function (idempotent) and return the name to put in the config."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(ATTENTION, flex_doc_attention)
    # mask creation is bypassed (the BlockMask arrives prepared), but transformers looks the
    # implementation up by name: reuse its flex mask builder for any call without our mask
    AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["flex_attention"])
    return ATTENTION


class FlexUnavailable(Exception):
    """`--doc-attention flex` asked for where FlexAttention cannot train (a user error)."""


def resolve(cfg, ds, device: torch.device) -> str:
    """Settle `cfg.doc_attention` ("auto" -> "flex" or "none") and return the attention
    implementation the model is built with."""
    if cfg.doc_attention == "auto":
        cfg.doc_attention = "flex" if available(device) is None else "none"
    if cfg.doc_attention != "flex":
        return "sdpa"
    reason = available(device)
    if reason is not None:
        raise FlexUnavailable(f"--doc-attention flex: {reason} (use --doc-attention mask there)")
    return register()
