"""The training configuration: one validated object (YAML <-> pydantic); CLI flags override it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """Everything `train run` does."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    shards: str
    out: str = "runs/cpt"
    model: str = "tiny"  # preset (tiny, 124m, 350m, 1b) or a local Hugging Face checkpoint directory
    resize_embeddings: bool = False  # grow the model's vocabulary to the shards' tokenizer
    seed: int = 1234

    # batch
    micro_batch: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    steps: int = Field(default=100, ge=1)

    # schedule (the CPT knobs)
    lr: float = Field(default=3e-4, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    warmup_ratio: float = Field(default=0.01, ge=0, lt=1)
    warmup_steps: int | None = Field(default=None, ge=0)  # overrides warmup_ratio
    wsd_decay_ratio: float = Field(default=0.1, gt=0, le=1)  # WSD: share of steps spent decaying
    lr_scale_batch: int | None = Field(default=None, ge=1)  # scale lr by sqrt(global batch / this)
    pretrain_max_lr: float | None = Field(default=None, gt=0)  # the base model's max lr, for the advisor

    # optimizer
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0

    # DeepSpeed
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    activation_checkpointing: bool = False
    ds_config: str | None = None  # a user's DeepSpeed JSON, merged over the generated one
    compile: bool = False
    liger: bool = False  # fused RoPE/RMSNorm/SwiGLU/cross-entropy kernels (GPU, liger-kernel installed)

    # data
    # none: attention and positions run across packed documents (LLaMA, most CPT recipes);
    # reset_positions: RoPE positions restart per document; mask: also a block-diagonal causal
    # attention mask, so no token attends to another document (LLaMA-3's intra-document masking);
    # flex: the same mask as a FlexAttention BlockMask (GPU; blocks across documents skipped, so
    # masking costs nothing, train/flex.py); auto: flex on a GPU that runs it, else none.
    # Note: transformers >= 5 builds the block mask from restarting position ids by itself, so
    # reset_positions masks too (and costs as much as mask) on the SDPA path.
    doc_attention: Literal["auto", "none", "reset_positions", "mask", "flex"] = "auto"
    train_sources: list[str] | None = None  # restrict training to these sources

    # monitoring
    log_interval: int = Field(default=1, ge=1)
    eval_interval: int = Field(default=50, ge=0)  # 0: only at the end
    eval_rows: int = Field(default=64, ge=1)  # val rows per source per evaluation
    save_interval: int = Field(default=0, ge=0)  # 0: only at the end
    peak_tflops: float | None = None  # per device; None: 989 on H100/H200, none on CPU
    tensorboard: bool = True
    wandb: bool = False

    # resume
    resume: bool = False
    rewarm: bool = False
    stop_after: int | None = Field(default=None, ge=1)  # end this session (with a checkpoint) after N steps

    # LoRA
    lora_r: int = Field(default=0, ge=0)  # 0: full fine-tuning
    lora_alpha: int = 16
    lora_targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage >= 1")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: object) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):  # a YAML list or scalar: a clean ValueError, not AttributeError
            raise ValueError(f"{path}: a train config is a YAML mapping (shards:, steps:, ...), "
                             f"not a {type(data).__name__}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)
