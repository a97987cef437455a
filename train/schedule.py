"""Learning-rate schedules for continued pretraining.

Linear warmup (by ratio or steps), then cosine / linear / constant / WSD (warmup-stable-
decay) down to `min_lr_ratio` of the max. The schedule is a plain callable object so that
`torch.optim.lr_scheduler.LambdaLR.state_dict()` saves its parameters with the step, and a
resumed run continues with the same lr value *and* the same decay state — the CPT FAQ's
lesson (Q11) that re-warming on the same data costs loss that is never recovered.
"""

from __future__ import annotations

import math


class Schedule:
    """lr multiplier at optimizer step `step` (0-based), for LambdaLR."""

    def __init__(self, kind: str, total_steps: int, warmup_steps: int, min_lr_ratio: float,
                 wsd_decay_ratio: float = 0.1):
        self.kind, self.total, self.warmup = kind, max(1, total_steps), max(0, warmup_steps)
        self.min_ratio, self.wsd_decay_ratio = min_lr_ratio, wsd_decay_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total - self.warmup)
        t = min(1.0, (step - self.warmup) / span)
        if self.kind == "cosine":
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "linear":
            return 1.0 - (1 - self.min_ratio) * t
        if self.kind == "wsd":
            decay_start = self.total - max(1, int(round(self.wsd_decay_ratio * self.total)))
            if step < decay_start:
                return 1.0
            u = min(1.0, (step - decay_start) / max(1, self.total - decay_start))
            return 1.0 - (1 - self.min_ratio) * u
        raise ValueError(f"unknown schedule {self.kind!r}")

    def describe(self) -> dict:
        return {"kind": self.kind, "total": self.total, "warmup": self.warmup, "min_lr_ratio": self.min_ratio,
                "wsd_decay_ratio": self.wsd_decay_ratio}


def warmup_steps(total_steps: int, warmup_ratio: float, warmup_steps: int | None) -> int:
    return warmup_steps if warmup_steps is not None else int(round(warmup_ratio * total_steps))


def scaled_lr(lr: float, global_batch: int, ref_batch: int | None) -> float:
    """The FAQ's rule: lr scales with the square root of the batch-size ratio."""
    return lr if not ref_batch else lr * math.sqrt(global_batch / ref_batch)
