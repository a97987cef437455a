"""The training loop: DeepSpeed engine over zero-copy shard batches, CPT schedule, exact
resume, per-source held-out perplexity (general = forgetting, domain = learning).

Three parts: `build_engine` (process group, model, loader, schedule, optimizer, engine),
`train_step` (one optimizer step over grad_accum micro-batches) and `evaluate` (the held-out
loop of train/evaluation.py, the same one `train eval` runs); `train` strings them together
with logging, resume and checkpoints. The last step of a session is evaluated and saved once;
a resume with nothing left to train says so and writes nothing; a resume that would run a
decayed schedule past its end at min lr is refused without --rewarm.
"""

from __future__ import annotations

import glob
import json
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from shards.cliutil import UserError
from shards.dataset import ShardDataset

from . import flex
from .advisor import advise, explain_loss_curve
from .config import TrainConfig
from .data import Batch, Loader, RowSource
from .evaluation import check_vocab, evaluate_sources
from .model import build_model, count_params, flops_per_token
from .safe_load import latest_tag, safe_loads
from .schedule import Schedule, scaled_lr, warmup_steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup_distributed() -> tuple[int, int, torch.device]:
    """Join (or, as one plain process, create) the process group DeepSpeed needs."""
    import deepspeed

    if "RANK" not in os.environ:  # one plain process: a world of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    cuda = torch.cuda.is_available()
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    return rank, world, torch.device("cuda", local) if cuda else torch.device("cpu")


def resolve_precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16" if torch.cuda.is_available() else "fp32"


def ds_config(cfg: TrainConfig, precision: str) -> dict[str, Any]:
    """The DeepSpeed config generated from ours; a user's JSON (cfg.ds_config) is merged over it."""
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage >= 1:
        zero.update(contiguous_gradients=True, overlap_comm=torch.cuda.is_available())
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if cfg.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    d: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "initial_scale_power": 16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if cfg.offload_optimizer:  # ZeRO-Offload needs DeepSpeed's CPU Adam
        d["optimizer"] = {"type": "AdamW", "params": {"lr": cfg.lr, "betas": [cfg.beta1, cfg.beta2], "eps": cfg.eps,
                                                      "weight_decay": cfg.weight_decay}}
    if cfg.ds_config:
        d = _merge(d, json.load(open(cfg.ds_config)))
    return d


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def peak_flops(device: torch.device, cfg: TrainConfig) -> float | None:
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tf in (("H200", 989), ("H100", 989), ("A100", 312), ("L40", 181), ("A10", 125)):
            if key in name:
                return tf * 1e12
    return None


class MetricsLog:
    """Every record goes to metrics.jsonl; TensorBoard and W&B get the scalars when available."""

    def __init__(self, out: str, cfg: TrainConfig, enabled: bool):
        self.enabled = enabled
        self.f = open(os.path.join(out, "metrics.jsonl"), "a") if enabled else None
        self.tb = self.wb = None
        if enabled and cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(out, "tb"))
            except Exception:  # tensorboard not installed
                self.tb = None
        if enabled and cfg.wandb:
            try:
                import wandb

                os.environ.setdefault("WANDB_MODE", "offline")
                self.wb = wandb.init(project="refinery", dir=out, config=cfg.model_dump())
            except Exception:
                self.wb = None

    def log(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.f.write(json.dumps(rec) + "\n")  # type: ignore[union-attr]
        self.f.flush()  # type: ignore[union-attr]
        step = rec.get("step", 0)
        scalars = {k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{rec.get('kind', 'train')}/{k}", v, step)
        if self.wb:
            self.wb.log({f"{rec.get('kind', 'train')}/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self.f:
            self.f.close()
        if self.tb:
            self.tb.close()
        if self.wb:
            self.wb.finish()


def _doc_kw(cfg: TrainConfig) -> dict[str, bool]:
    """Loader options for `doc_attention` (the same for training and held-out evaluation)."""
    mode = "none" if cfg.doc_attention == "auto" else cfg.doc_attention  # train() resolves auto first
    return {"reset_positions": mode != "none", "doc_mask": mode == "mask", "flex": mode == "flex"}


def evaluate(engine: Any, ds: ShardDataset, cfg: TrainConfig, device: torch.device,
             vocab: int | None = None, rank: int = 0, world: int = 1) -> dict[str, float]:
    """Held-out loss and perplexity per val source: every one of the first eval_rows rows,
    always the same ones (train/evaluation.py, the loop `train eval` runs too)."""
    engine.eval()
    try:
        res = evaluate_sources(lambda b: forward(engine, b, vocab, cfg.shards).loss, ds, cfg.eval_rows,
                               cfg.micro_batch, device, rank, world, **_doc_kw(cfg))
    finally:
        engine.train()
    out: dict[str, float] = {}
    for src, r in res.items():
        out[f"val_loss/{src}"] = r["loss"]
        out[f"val_ppl/{src}"] = r["ppl"]
    return out


@dataclass
class Setup:
    """What `build_engine` makes: the DeepSpeed engine and what the loop needs beside it."""

    engine: Any
    model: torch.nn.Module
    ds: ShardDataset
    loader: Loader
    schedule: Schedule
    dsc: dict[str, Any]
    lr: float
    precision: str
    rank: int
    world: int
    device: torch.device
    vocab: int  # rows of the model's input embedding: a larger token id is refused, not looked up
    params: int
    params_no_embedding: int
    flops_per_token: float
    global_batch: int  # rows per optimizer step, all ranks


def build_engine(cfg: TrainConfig) -> Setup:
    """Process group, seeds, model (preset or local directory, LoRA), train loader, schedule,
    optimizer and the DeepSpeed engine: everything before the first step."""
    import deepspeed

    rank, world, device = setup_distributed()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    ds = ShardDataset(cfg.shards)
    tok = ds.tokenizer
    precision = resolve_precision(cfg)
    if cfg.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=True)
    with safe_loads():  # a `--model` directory's pytorch_model.bin: refused in one line, never run
        model = build_model(cfg.model, tok, ds.seq_len, cfg.resize_embeddings,
                            attn=flex.resolve(cfg, ds, device))
    model.config.use_cache = False
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora_r:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 target_modules=cfg.lora_targets, task_type="CAUSAL_LM"))
    vocab = int(model.get_input_embeddings().num_embeddings)  # before ZeRO-3 partitions the weight
    n_all, n_noemb = count_params(model)
    mc = model.config
    fpt = flops_per_token(n_noemb, mc.num_hidden_layers, mc.hidden_size, ds.seq_len)

    train_src = RowSource(ds, "train", cfg.train_sources)
    loader = Loader(train_src, cfg.micro_batch, cfg.seed, rank, world, device, **_doc_kw(cfg))
    global_batch = cfg.micro_batch * cfg.grad_accum * world
    lr = scaled_lr(cfg.lr, global_batch, cfg.lr_scale_batch)
    schedule = Schedule(cfg.schedule, cfg.steps, warmup_steps(cfg.steps, cfg.warmup_ratio, cfg.warmup_steps),
                        cfg.min_lr_ratio, cfg.wsd_decay_ratio)
    dsc = ds_config(cfg, precision)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = None
    if "optimizer" not in dsc:
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]  # ZeRO drops empty groups
        optimizer = torch.optim.AdamW(groups, lr=lr,
                                      betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                      fused=device.type == "cuda")
    sched_fn = (lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule))
    if optimizer is not None:
        lr_sched = sched_fn(optimizer)
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=lr_sched, config=dsc)
    else:
        dsc["optimizer"]["params"]["lr"] = lr
        engine, opt, _, _ = deepspeed.initialize(model=model, model_parameters=params, config=dsc,
                                                 lr_scheduler=sched_fn)
    if cfg.compile:
        engine.compile()
    return Setup(engine, model, ds, loader, schedule, dsc, lr, precision, rank, world, device, vocab, n_all,
                 n_noemb, fpt, global_batch)


def forward(engine: Any, b: Batch, vocab: int | None, where: str) -> Any:
    """The model on one batch; a token id the embedding lacks is a one-line user error."""
    check_vocab(b, vocab, where)
    return engine(input_ids=b.input_ids, labels=b.labels, position_ids=b.position_ids,
                  attention_mask=b.attention_mask, use_cache=False)


def train_step(s: Setup, cfg: TrainConfig, loss_acc: torch.Tensor, want_grad_norm: bool = False
               ) -> tuple[int, float | None]:
    """One optimizer step: grad_accum micro-batches forward and backward (DeepSpeed updates at
    the accumulation boundary). Each micro-batch loss is added to `loss_acc` on the device (no
    host sync here); returns this rank's real tokens and, on ZeRO-0 when asked, the grad norm."""
    tokens, gnorm = 0, None
    for micro in range(cfg.grad_accum):
        b = s.loader.next()
        res = forward(s.engine, b, s.vocab, cfg.shards)
        s.engine.backward(res.loss)
        if want_grad_norm and micro == cfg.grad_accum - 1 and cfg.zero_stage == 0:
            gnorm = _local_grad_norm(s.model)  # ZeRO-0 keeps no global norm; grads are whole here
        s.engine.step()
        loss_acc += res.loss.detach().float()
        tokens += b.tokens
    return tokens, gnorm


def _resume(s: Setup, cfg: TrainConfig, ckpt_dir: str) -> tuple[int, int, bool, list[dict[str, Any]]]:
    """(start step, tokens seen, resumed, events to log) from the latest checkpoint with --resume.
    Refuses to continue a decaying schedule past its end (it would train at min lr, silently)."""
    if not cfg.resume:
        return 0, 0, False, []
    if not os.path.exists(os.path.join(ckpt_dir, "latest")):
        return 0, 0, False, [{"kind": "event", "step": 0, "event": "no_checkpoint",
                              "message": f"nothing to resume in {ckpt_dir}"}]
    # DeepSpeed unpickles with weights_only=False; under safe_loads nothing in a planted file runs
    tag = latest_tag(ckpt_dir)
    saved_world = len(glob.glob(os.path.join(ckpt_dir, tag, "*zero_pp_rank_*_optim_states.pt")))
    if saved_world and saved_world != s.world:
        # DeepSpeed refuses to re-partition ZeRO optimizer state (its universal-checkpoint
        # conversion is not wired in here yet): say so before it raises deep inside load
        raise UserError("--resume", f"the checkpoint {tag} in {ckpt_dir} was written by {saved_world} ranks and "
                                    f"this run has {s.world}: resume with {saved_world} ranks (the global batch "
                                    "must stay the same too)")
    with safe_loads():
        _, client = s.engine.load_checkpoint(ckpt_dir, tag=tag, load_lr_scheduler_states=not cfg.rewarm)
    s.loader.restore(client["data"])
    tokens_seen = int(client["tokens_seen"])
    if cfg.rewarm:
        return 0, tokens_seen, True, [{"kind": "event", "step": int(client["step"]), "event": "rewarm",
                                       "message": "lr schedule restarted from step 0 (--rewarm)"}]
    start = int(client["step"])
    _restore_rng(client["rng"])
    saved = client.get("schedule") or {}
    if start < cfg.steps and saved.get("kind", "constant") != "constant" and cfg.steps > saved.get("total", cfg.steps):
        # the LambdaLR state restored above holds the checkpoint's Schedule: past its total it
        # returns min_lr_ratio for every further step
        raise UserError("--steps", f"the checkpoint's {saved['kind']} schedule decays to its minimum lr "
                                   f"({saved.get('min_lr_ratio')} x) at step {saved['total']}; --steps "
                                   f"{cfg.steps} would train steps {max(start, saved['total']) + 1}-{cfg.steps} "
                                   "at that minimum: pass --rewarm to restart the schedule over --steps, or "
                                   f"--steps {saved['total']}")
    events = []
    if saved != s.schedule.describe():
        events.append({"kind": "event", "step": start, "event": "schedule_kept",
                       "message": f"the checkpoint's schedule {saved} continues; pass --rewarm to restart it"})
    return start, tokens_seen, True, events


def train(cfg: TrainConfig, on_record: Callable[[dict], None] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final summary (losses, lrs, evals). A resume
    with no step left to train returns `nothing_to_do` (a message) and writes nothing."""
    s = build_engine(cfg)
    engine, ds, loader, world = s.engine, s.ds, s.loader, s.world
    os.makedirs(cfg.out, exist_ok=True)
    ckpt_dir = os.path.join(cfg.out, "checkpoints")
    start_step, tokens_seen, resumed, events = _resume(s, cfg, ckpt_dir)
    history: dict[str, list] = {"loss": [], "lr": [], "eval": []}
    if resumed and start_step >= cfg.steps:
        return {"steps": start_step, "tokens_seen": tokens_seen, "history": history, "advice": [],
                "params": s.params, "checkpoint": ckpt_dir, "engine": engine,
                "nothing_to_do": f"nothing to do: the checkpoint in {ckpt_dir} is at step {start_step} and --steps "
                                 f"is {cfg.steps} (give a larger --steps to train further)"}
    log = MetricsLog(cfg.out, cfg, s.rank == 0)
    for e in events:
        log.log(e)

    notes = advise(cfg, ds.manifest["splits"]["train"]["tokens"], resumed)
    if s.rank == 0:
        for n in notes:
            log.log({"kind": "advice", "step": start_step, "message": n})
        with open(os.path.join(cfg.out, "run.json"), "w") as f:
            # shards_dir: `train export` finds the build from any working directory
            json.dump({"config": cfg.model_dump(), "shards_dir": os.path.abspath(cfg.shards), "ds_config": s.dsc,
                       "params": s.params, "params_no_embedding": s.params_no_embedding,
                       "flops_per_token": s.flops_per_token,
                       "tokenizer": ds.tokenizer, "seq_len": ds.seq_len, "precision": s.precision,
                       "world_size": world, "global_batch_rows": s.global_batch, "lr": s.lr, "advice": notes},
                      f, indent=1)

    peak = peak_flops(s.device, cfg)
    fpt = s.flops_per_token
    tokens_per_step = s.global_batch * ds.seq_len
    bar = _progress(cfg.steps - start_step) if (progress and s.rank == 0) else None
    loss_acc = torch.zeros((), device=s.device)
    t_last, steps_since = time.perf_counter(), 0
    engine.train()
    end_step = cfg.steps if cfg.stop_after is None else min(cfg.steps, start_step + cfg.stop_after)
    for step in range(start_step, end_step):
        done = step + 1
        log_now = done % cfg.log_interval == 0 or done == end_step
        tokens, gnorm = train_step(s, cfg, loss_acc, want_grad_norm=log_now)
        tokens_seen += tokens * world
        steps_since += 1
        if log_now:
            loss = float(loss_acc) / (cfg.grad_accum * steps_since)  # the one host sync per log interval
            loss_acc.zero_()
            dt = time.perf_counter() - t_last
            tps = tokens_per_step * steps_since / dt
            rec = {"kind": "train", "step": done, "loss": loss, "lr": float(engine.get_lr()[0]),
                   "grad_norm": gnorm if gnorm is not None else _grad_norm(engine), "tokens_seen": tokens_seen,
                   "tokens_per_s": tps, "tflops_per_device": fpt * tps / world / 1e12}
            if peak:
                rec["mfu"] = fpt * tps / world / peak
            history["loss"].append((done, loss))
            history["lr"].append((done, rec["lr"]))
            log.log(rec)
            if on_record:
                on_record(rec)
            t_last, steps_since = time.perf_counter(), 0
        # the last step of this session (end of run or --stop-after) is evaluated and saved once,
        # after the loop
        if done != end_step and cfg.eval_interval and done % cfg.eval_interval == 0:
            ev = {"kind": "eval", "step": done, **evaluate(engine, ds, cfg, s.device, s.vocab, s.rank, s.world)}
            history["eval"].append(ev)
            log.log(ev)
            t_last = time.perf_counter()
        if done != end_step and cfg.save_interval and done % cfg.save_interval == 0:
            _save(engine, ckpt_dir, done, loader, tokens_seen, s.schedule)
        if bar:
            bar[0].update(bar[1], advance=1, description=f"step {done} loss {history['loss'][-1][1]:.3f}"
                          if history["loss"] else f"step {done}")
    if bar:
        bar[0].stop()
    ev = {"kind": "eval", "step": end_step, **evaluate(engine, ds, cfg, s.device, s.vocab, s.rank, s.world)}
    history["eval"].append(ev)
    log.log(ev)
    _save(engine, ckpt_dir, end_step, loader, tokens_seen, s.schedule)
    expl = explain_loss_curve(history["loss"])
    if expl:
        log.log({"kind": "advice", "step": end_step, "message": expl})
    if s.rank == 0:
        _write_hf_meta(cfg.out, s.model, ds.tokenizer)
    log.close()
    return {"steps": end_step, "tokens_seen": tokens_seen, "history": history,
            "advice": notes + ([expl] if expl else []), "params": s.params, "checkpoint": ckpt_dir,
            "engine": engine, "rank": s.rank}


def _grad_norm(engine: Any) -> float | None:
    g = engine.get_global_grad_norm()
    if g is None:
        return None
    return float(g)


def _local_grad_norm(model: torch.nn.Module) -> float:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def _rng_state() -> dict:
    # plain values only (the numpy key as a list of ints, not an ndarray): checkpoints are read
    # back with weights_only=True and numpy is not on train/safe_load.py's allow-list
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [str(name), key.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _restore_rng(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    name, key, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(st["python"])
    if st.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _save(engine: Any, ckpt_dir: str, step: int, loader: Loader, tokens_seen: int, schedule: Schedule) -> None:
    engine.save_checkpoint(ckpt_dir, tag=f"step{step}",
                           client_state={"step": step, "data": loader.state(), "tokens_seen": tokens_seen,
                                         "rng": _rng_state(), "schedule": schedule.describe()})


def _write_hf_meta(out: str, model: Any, tok: dict) -> None:
    """config.json + tokenizer identity beside the checkpoints, for `train export`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.to_json_file(os.path.join(out, "config.json"))
    with open(os.path.join(out, "tokenizer_identity.json"), "w") as f:
        json.dump(tok, f, indent=1)


def _progress(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                 TimeRemainingColumn())
    p.start()
    return p, p.add_task("training", total=total)
