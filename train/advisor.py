"""The CPT advisor: warnings from the continued-pretraining lessons, with the evidence in
docs/cpt-recipe.md (and the FAQ in ../shared/seed/cpt-faq-zh.md, questions 5–11)."""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

DOC = "docs/cpt-recipe.md"


def advise(cfg: TrainConfig, corpus_tokens: int, resumed: bool) -> list[str]:
    """Warnings about a CPT configuration before training starts."""
    notes: list[str] = []
    if cfg.pretrain_max_lr and cfg.lr > 0.1 * cfg.pretrain_max_lr * 1.0001 and corpus_tokens < 100e9:
        notes.append(
            f"lr {cfg.lr:.2e} is {cfg.lr / cfg.pretrain_max_lr:.0%} of the base model's max lr {cfg.pretrain_max_lr:.2e}; "
            "for a corpus well under ~100B tokens the rule of thumb is ~10% (less forgetting, smoother start). "
            "Gupta et al. 2023 and Ibrahim et al. 2024 instead re-warm to the full max lr and add replay of the "
            f"old data — pick one recipe on purpose ({DOC}#learning-rate).")
    warm = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_ratio * cfg.steps
    if warm < 0.01 * cfg.steps and not resumed and cfg.schedule != "constant":
        notes.append(f"warmup of {warm:.0f} steps is under 1% of {cfg.steps}: for CPT a longer warmup lets the "
                     f"model move to the new distribution more smoothly ({DOC}#warmup).")
    if resumed and cfg.rewarm:
        notes.append("resuming with --rewarm restarts the lr schedule: on the *same* data this costs loss that "
                     f"later training does not recover (FAQ Q11); only do it when switching data ({DOC}#resume).")
    if 0 < corpus_tokens < 1e9:
        # a LoRA run is already the lighter option: suggesting --lora-r to it would be noise
        alt = "supervised fine-tuning may serve better" if cfg.lora_r else \
            "consider LoRA (--lora-r) or supervised fine-tuning"
        notes.append(f"the corpus has {corpus_tokens / 1e6:.1f}M tokens; CPT pays off from a few billion tokens — "
                     f"with less, {alt} ({DOC}#how-much-data).")
    return notes


def explain_loss_curve(losses: list[tuple[int, float]]) -> str | None:
    """Explain an early loss rise (the usual CPT 'bump') when the log shows one."""
    if len(losses) < 10:
        return None
    first = losses[0][1]
    early = losses[: max(3, len(losses) // 5)]
    peak_step, peak = max(early, key=lambda x: x[1])
    if peak > first * 1.02 and losses[-1][1] < peak:
        return (f"loss rose from {first:.3f} to {peak:.3f} by step {peak_step} and then fell to {losses[-1][1]:.3f}: "
                "the usual early rise when continued pretraining moves a converged model onto new data and a "
                f"re-warmed lr; it settles as training goes on (FAQ Q6, {DOC}#loss-rise). If it does not, "
                "lower the max lr or lengthen the warmup.")
    return None


def summary(cfg: TrainConfig) -> dict[str, Any]:
    return {"lr": cfg.lr, "schedule": cfg.schedule, "warmup_ratio": cfg.warmup_ratio, "min_lr_ratio": cfg.min_lr_ratio}
