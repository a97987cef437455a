"""The training loop: DeepSpeed engine over zero-copy shard batches, CPT schedule, exact
resume, per-source held-out perplexity (general = forgetting, domain = learning)."""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from typing import Any, Callable

import numpy as np
import torch

from shards.dataset import ShardDataset

from .advisor import advise, explain_loss_curve
from .config import TrainConfig
from .data import Loader, RowSource
from . import flex
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


@torch.no_grad()
def evaluate(engine: Any, ds: ShardDataset, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Held-out loss and perplexity per val source (the first eval_rows rows, always the same)."""
    engine.eval()
    out: dict[str, float] = {}
    for src in ds.sources:
        rs = RowSource(ds, "val", [src])
        n = min(cfg.eval_rows, rs.n_rows)
        if n == 0:
            continue
        mb = min(cfg.micro_batch, n)
        loader = Loader(rs, mb, 0, device=device, shuffle=False, **_doc_kw(cfg))
        tot_loss, tot_tok = 0.0, 0
        for a in range(0, n - n % mb, mb):
            b = loader.load(np.arange(a, a + mb))
            res = engine(input_ids=b.input_ids, labels=b.labels, position_ids=b.position_ids,
                         attention_mask=b.attention_mask, use_cache=False)
            ntok = int((b.labels[:, 1:] != -100).sum())
            tot_loss += float(res.loss) * ntok
            tot_tok += ntok
        if tot_tok:
            out[f"val_loss/{src}"] = tot_loss / tot_tok
            out[f"val_ppl/{src}"] = math.exp(min(tot_loss / tot_tok, 50))
    engine.train()
    return out


def train(cfg: TrainConfig, on_record: Callable[[dict], None] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final summary (losses, lrs, evals)."""
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

    os.makedirs(cfg.out, exist_ok=True)
    ckpt_dir = os.path.join(cfg.out, "checkpoints")
    log = MetricsLog(cfg.out, cfg, rank == 0)
    start_step, tokens_seen = 0, 0
    resumed = False
    if cfg.resume and os.path.exists(os.path.join(ckpt_dir, "latest")):
        # DeepSpeed unpickles with weights_only=False; under safe_loads nothing in a planted file runs
        tag = latest_tag(ckpt_dir)
        with safe_loads():
            _, client = engine.load_checkpoint(ckpt_dir, tag=tag, load_lr_scheduler_states=not cfg.rewarm)
        loader.restore(client["data"])
        tokens_seen = int(client["tokens_seen"])
        resumed = True
        if cfg.rewarm:
            log.log({"kind": "event", "step": int(client["step"]), "event": "rewarm",
                     "message": "lr schedule restarted from step 0 (--rewarm)"})
        else:
            start_step = int(client["step"])
            _restore_rng(client["rng"])
            if client.get("schedule") != schedule.describe():
                log.log({"kind": "event", "step": start_step, "event": "schedule_kept",
                         "message": f"the checkpoint's schedule {client.get('schedule')} continues; "
                                    "pass --rewarm to restart it"})
    elif cfg.resume:
        log.log({"kind": "event", "step": 0, "event": "no_checkpoint", "message": f"nothing to resume in {ckpt_dir}"})

    corpus_tokens = ds.manifest["splits"]["train"]["tokens"]
    notes = advise(cfg, corpus_tokens, resumed)
    if rank == 0:
        for n in notes:
            log.log({"kind": "advice", "step": start_step, "message": n})
        with open(os.path.join(cfg.out, "run.json"), "w") as f:
            json.dump({"config": cfg.model_dump(), "ds_config": dsc, "params": n_all, "params_no_embedding": n_noemb,
                       "flops_per_token": fpt, "tokenizer": tok, "seq_len": ds.seq_len, "precision": precision,
                       "world_size": world, "global_batch_rows": global_batch, "lr": lr, "advice": notes}, f, indent=1)

    peak = peak_flops(device, cfg)
    tokens_per_step = global_batch * ds.seq_len
    history: dict[str, list] = {"loss": [], "lr": [], "eval": []}
    bar = _progress(cfg.steps - start_step) if (progress and rank == 0) else None
    loss_acc = torch.zeros((), device=device)
    real_acc = 0
    t_last, steps_since = time.perf_counter(), 0
    engine.train()
    step = start_step
    end_step = cfg.steps if cfg.stop_after is None else min(cfg.steps, start_step + cfg.stop_after)
    for step in range(start_step, end_step):
        log_now = (step + 1) % cfg.log_interval == 0 or step + 1 == end_step
        gnorm = None
        for micro in range(cfg.grad_accum):
            b = loader.next()
            res = engine(input_ids=b.input_ids, labels=b.labels, position_ids=b.position_ids,
                         attention_mask=b.attention_mask, use_cache=False)
            engine.backward(res.loss)
            if log_now and micro == cfg.grad_accum - 1 and cfg.zero_stage == 0:
                gnorm = _local_grad_norm(model)  # ZeRO-0 keeps no global norm; grads are whole here
            engine.step()
            loss_acc += res.loss.detach().float()
            real_acc += b.tokens
        tokens_seen += real_acc * world
        real_acc = 0
        steps_since += 1
        done = step + 1
        if done % cfg.log_interval == 0 or done == end_step:
            loss = float(loss_acc) / (cfg.grad_accum * steps_since)  # the one host sync per log interval
            loss_acc.zero_()
            dt = time.perf_counter() - t_last
            tps = tokens_per_step * steps_since / dt
            rec = {"kind": "train", "step": done, "loss": loss, "lr": float(engine.get_lr()[0]),
                   "grad_norm": gnorm if gnorm is not None else _grad_norm(engine), "tokens_seen": tokens_seen, "tokens_per_s": tps,
                   "tflops_per_device": fpt * tps / world / 1e12}
            if peak:
                rec["mfu"] = fpt * tps / world / peak
            history["loss"].append((done, loss))
            history["lr"].append((done, rec["lr"]))
            log.log(rec)
            if on_record:
                on_record(rec)
            t_last, steps_since = time.perf_counter(), 0
        if cfg.eval_interval and done % cfg.eval_interval == 0 and done != cfg.steps:
            ev = {"kind": "eval", "step": done, **evaluate(engine, ds, cfg, device)}
            history["eval"].append(ev)
            log.log(ev)
            t_last = time.perf_counter()
        if cfg.save_interval and done % cfg.save_interval == 0 and done != cfg.steps:
            _save(engine, ckpt_dir, done, loader, tokens_seen, schedule)
        if bar:
            bar[0].update(bar[1], advance=1, description=f"step {done} loss {history['loss'][-1][1]:.3f}"
                          if history["loss"] else f"step {done}")
    if bar:
        bar[0].stop()
    final_step = max(end_step, start_step)
    ev = {"kind": "eval", "step": final_step, **evaluate(engine, ds, cfg, device)}
    history["eval"].append(ev)
    log.log(ev)
    _save(engine, ckpt_dir, final_step, loader, tokens_seen, schedule)
    expl = explain_loss_curve(history["loss"])
    if expl:
        log.log({"kind": "advice", "step": final_step, "message": expl})
    if rank == 0:
        _write_hf_meta(cfg.out, model, tok)
    log.close()
    result = {"steps": final_step, "tokens_seen": tokens_seen, "history": history, "advice": notes + ([expl] if expl else []),
              "params": n_all, "checkpoint": ckpt_dir, "engine": engine}
    return result


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
