"""`train` command line: run, export, generate, eval.

Every user error is one `error: <where>: <what is wrong>` line on stderr with exit status 2,
never a traceback (shards/cliutil.py; train/ never imports corpus/). When stdout is not a
terminal (`train run > log`), `train run` prints a plain progress line every
REFINERY_PROGRESS_SECONDS (30) seconds instead of a progress bar, and output is not wrapped
at 80 columns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from shards.cliutil import ErrorsAsMessages, UserError, check_build_dir, make_console, progress, reading

app = typer.Typer(help="Continued pretraining on refinery shards with DeepSpeed.", no_args_is_help=True,
                  add_completion=False, cls=ErrorsAsMessages)
console = make_console()

# the options of `train run` by TrainConfig field: a validation error names the flag the user typed
RUN_FLAGS = {"shards": "--shards", "out": "--out", "model": "--model", "steps": "--steps",
             "micro_batch": "--micro-batch", "grad_accum": "--grad-accum", "lr": "--lr", "schedule": "--schedule",
             "warmup_ratio": "--warmup-ratio", "min_lr_ratio": "--min-lr-ratio", "lr_scale_batch": "--lr-scale-batch",
             "pretrain_max_lr": "--pretrain-max-lr", "zero_stage": "--zero-stage",
             "offload_optimizer": "--offload-optimizer", "offload_params": "--offload-params",
             "precision": "--precision", "eval_interval": "--eval-interval", "eval_rows": "--eval-rows",
             "save_interval": "--save-interval", "lora_r": "--lora-r", "seed": "--seed",
             "train_sources": "--train-source", "stop_after": "--stop-after", "liger": "--liger",
             "warmup_steps": "--warmup-steps", "doc_attention": "--doc-attention"}


@app.command()
def run(
    shards: Optional[str] = typer.Option(None, "--shards", help="build directory (corpus build --out)"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML train config"),
    out: Optional[str] = typer.Option(None, "--out", "-o"),
    model: Optional[str] = typer.Option(None, "--model", help="preset (tiny, 20m, 50m, 124m, 350m, 1b) or HF dir"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch"),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="cosine | linear | constant | wsd"),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio"),
    min_lr_ratio: Optional[float] = typer.Option(None, "--min-lr-ratio"),
    lr_scale_batch: Optional[int] = typer.Option(None, "--lr-scale-batch", help="scale lr by sqrt(batch/REF)"),
    pretrain_max_lr: Optional[float] = typer.Option(None, "--pretrain-max-lr"),
    zero_stage: Optional[int] = typer.Option(None, "--zero-stage"),
    offload_optimizer: Optional[bool] = typer.Option(None, "--offload-optimizer/--no-offload-optimizer"),
    offload_params: Optional[bool] = typer.Option(None, "--offload-params/--no-offload-params"),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto | bf16 | fp16 | fp32"),
    eval_interval: Optional[int] = typer.Option(None, "--eval-interval"),
    eval_rows: Optional[int] = typer.Option(None, "--eval-rows", help="val rows per source per evaluation"),
    save_interval: Optional[int] = typer.Option(None, "--save-interval"),
    resume: bool = typer.Option(False, "--resume", help="continue exactly from the latest checkpoint in --out"),
    rewarm: bool = typer.Option(False, "--rewarm", help="with --resume: restart the lr schedule (logged)"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r"),
    train_sources: Optional[list[str]] = typer.Option(None, "--train-source", help="train on these sources only"),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", help="end this session after N steps"),
    liger: Optional[bool] = typer.Option(None, "--liger/--no-liger", help="fused liger-kernel ops (GPU)"),
    warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps"),
    doc_attention: Optional[str] = typer.Option(None, "--doc-attention",
                                                help="auto | none | reset_positions | mask | flex (no attention across packed documents; auto: flex on a GPU)"),
    seed: Optional[int] = typer.Option(None, "--seed"),
) -> None:
    """Train (or resume) on the shards; logs loss, lr, tokens, tokens/s, MFU and per-source val perplexity."""
    from train.config import TrainConfig
    from train.trainer import train

    over = dict(shards=shards, out=out, model=model, steps=steps, micro_batch=micro_batch, grad_accum=grad_accum,
                lr=lr, schedule=schedule, warmup_ratio=warmup_ratio, min_lr_ratio=min_lr_ratio,
                lr_scale_batch=lr_scale_batch, pretrain_max_lr=pretrain_max_lr, zero_stage=zero_stage,
                offload_optimizer=offload_optimizer, offload_params=offload_params, precision=precision,
                eval_interval=eval_interval, eval_rows=eval_rows, save_interval=save_interval, lora_r=lora_r, seed=seed,
                train_sources=train_sources or None, stop_after=stop_after, liger=liger, warmup_steps=warmup_steps,
                doc_attention=doc_attention)
    if resume:
        over["resume"] = True
    if rewarm:
        over["rewarm"] = True
    given = {k: f for k, f in RUN_FLAGS.items() if over.get(k) is not None}
    if config:
        if not config.is_file():
            raise UserError(str(config), "no such config file" if not config.exists() else "not a file")
        from pydantic import ValidationError

        with reading(str(config), given):
            try:
                cfg = TrainConfig.from_yaml(config, **over)
            except ValidationError:
                raise
            except ValueError as e:  # not a mapping
                raise UserError(str(config), str(e).removeprefix(f"{config}: ")) from None
    else:
        if not shards:
            raise UserError("train run", "give --shards (a `corpus build --out` directory) or --config")
        with reading("train run", given):
            cfg = TrainConfig(**{k: v for k, v in over.items() if v is not None})
    check_build_dir(cfg.shards, "--shards" if shards or not config else f"{config}: shards")
    _check_model(cfg.model, "--model" if model else (f"{config}: model" if config else "--model"))

    # one progress display for both cases (shards/cliutil.progress): a bar on a terminal, erased
    # if training fails; in a log, a plain line every REFINERY_PROGRESS_SECONDS. Other ranks: none.
    if os.environ.get("RANK", "0") != "0":
        res = train(cfg, None, progress=False)
    else:
        with progress(console, "train") as prog:
            prog.update(total=cfg.steps, info="(setting up: model, data, DeepSpeed)")

            def on_record(rec: dict) -> None:
                prog.update(completed=rec["step"], info=f"loss {rec['loss']:.4f} lr {rec['lr']:.3e} "
                                                         f"{rec['tokens_per_s']:,.0f} tokens/s")

            res = train(cfg, on_record, progress=False)
    if res.get("nothing_to_do"):  # a finished run resumed: said once, nothing logged or saved
        console.print(res["nothing_to_do"])
        _shutdown(res["engine"])
        return
    if os.environ.get("RANK", "0") != "0":  # one summary and one set of advice, from rank 0
        _shutdown(res["engine"])
        return
    h = res["history"]
    t = Table(title=f"train summary: {res['steps']} steps, {res['tokens_seen']:,} tokens, {res['params']:,} params")
    t.add_column("metric")
    t.add_column("value", justify="right")
    if h["loss"]:
        t.add_row("first loss", f"{h['loss'][0][1]:.4f}")
        t.add_row("last loss", f"{h['loss'][-1][1]:.4f}")
        t.add_row("last lr", f"{h['lr'][-1][1]:.3e}")
    for k, v in (h["eval"][-1].items() if h["eval"] else []):
        if k.startswith("val_"):
            t.add_row(k, f"{v:.4f}")
    t.add_row("checkpoint", res["checkpoint"])
    console.print(t)
    for n in res["advice"]:
        console.print(f"[yellow]advice:[/] {n}")
    _shutdown(res["engine"])


def _shutdown(engine) -> None:
    import gc

    import torch

    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    engine.destroy()
    del engine
    gc.collect()
    # one plain process keeps its world-of-one group: it ends with the process, and destroying it
    # leaves DeepSpeed's cached groups dangling for the next run in the same process (tests,
    # notebooks: "Group ... is not registered")
    if world > 1:
        torch.distributed.destroy_process_group()


def _check_model(model: str, where: str) -> None:
    from train.model import PRESETS

    if model not in PRESETS and not os.path.isdir(model):
        raise UserError(where, f"{model!r} is neither a preset ({', '.join(PRESETS)}) nor a local "
                               "Hugging Face model directory")


def _check_hf_dir(path: str, where: str) -> None:
    if not os.path.isdir(path):
        raise UserError(where, f"{path}: no such model directory" if not os.path.exists(path) else
                        f"{path}: not a directory")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserError(where, f"{path}: not a Hugging Face model directory (no config.json; "
                               "`train export` writes one)")


@app.callback()
def _main() -> None:
    """Continued pretraining on refinery shards with DeepSpeed."""


@app.command("export")
def export_cmd(
    run_dir: str = typer.Argument(..., help="a `train run --out` directory (holds checkpoints/)"),
    out: str = typer.Option(..., "--out", "-o", help="Hugging Face model directory to write"),
    dtype: str = typer.Option("bf16", "--dtype", help="bf16 | fp16 | fp32"),
    tag: Optional[str] = typer.Option(None, "--tag", help="checkpoint tag (default: latest)"),
) -> None:
    """ZeRO checkpoint → fp32 → fp16/bf16 → Hugging Face directory (LoRA merged), in one step."""
    from train.export import export

    if dtype not in ("bf16", "fp16", "fp32"):
        raise UserError("--dtype", f"bf16, fp16 or fp32 (got {dtype!r})")
    if not os.path.isdir(run_dir):
        raise UserError(run_dir, "no such run directory (a `train run --out` directory)")
    if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
        raise UserError(run_dir, "no checkpoints/ here: not a `train run --out` directory, or no step was saved")
    res = export(run_dir, out, dtype, tag)
    console.print(f"[green]exported[/] {res['tensors']} tensors as {dtype} to {out}"
                  + (" (LoRA merged)" if res["lora_merged"] else ""))


@app.command("generate")
def generate_cmd(
    model: str = typer.Argument(..., help="local Hugging Face model directory"),
    prompt: str = typer.Option(..., "--prompt", "-p"),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_p: float = typer.Option(0.95, "--top-p"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Continue a prompt (the FAQ's sanity check of a converted model)."""
    from train.export import generate

    _check_hf_dir(model, "MODEL")
    if max_new_tokens < 1:
        raise UserError("--max-new-tokens", f"at least 1 (got {max_new_tokens})")
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError("--temperature" if temperature < 0 else "--top-p",
                        f"temperature >= 0 and 0 < top-p <= 1 (got {temperature}, {top_p})")
    console.print(prompt + "[bold]" + generate(model, prompt, max_new_tokens, temperature, top_p, seed) + "[/]")


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help="local Hugging Face model directory"),
    shards: str = typer.Option(..., "--shards"),
    max_rows: int = typer.Option(256, "--max-rows"),
) -> None:
    """Perplexity of a model on every val source of a shard directory."""
    from train.export import perplexity

    _check_hf_dir(model, "MODEL")
    check_build_dir(shards, "--shards")
    if max_rows < 1:
        raise UserError("--max-rows", f"at least 1 (got {max_rows})")
    res = perplexity(model, shards, max_rows)
    t = Table(title=f"perplexity on {shards}")
    for c in ("source", "rows", "tokens", "loss", "ppl"):
        t.add_column(c)
    for src, r in res.items():
        t.add_row(src, f"{r['rows']:,}", f"{r['tokens']:,}", f"{r['loss']:.4f}", f"{r['ppl']:.2f}")
    console.print(t)


if __name__ == "__main__":  # pragma: no cover - `python -m train.cli`
    app()
