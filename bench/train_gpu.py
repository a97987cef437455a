"""Training throughput on one GPU: ours (`train.trainer.train`) vs the LLaMA-Factory path
(Hugging Face transformers + DeepSpeed ZeRO-2 bf16, a plain loop), same shards, same model
shapes, in one run. Each configuration runs in its own process (liger-kernel patches
transformers globally). Prints a table and writes results JSON.

    python bench/train_gpu.py --shards DIR --out results.json --configs baseline:124m:64,ours:124m:64:flex
    python bench/train_gpu.py --shards DIR --sweep 124m --mbs 16,32,64 [--ac]     (baseline and ours, all modes)
    python bench/train_gpu.py --shards DIR --check      (flex vs dense-mask losses on the GPU, bf16)
    python bench/train_gpu.py --shards DIR --profile ours:1b:16:flex   (top CUDA kernels of a few steps)

A config is `kind:model:micro_batch[:doc[:ac]]`: kind `baseline` or `ours`; doc `none`
(documents attend across each other), `mask` (no attention across packed documents: for the
baseline per-document position ids, from which transformers builds SDPA's block-diagonal mask,
as LLaMA-Factory's neat packing does; for ours `--doc-attention mask`) or `flex` (ours only,
FlexAttention); `ac` turns on activation checkpointing. The table gives each config's ratio to
the baseline of the same model, micro-batch and masking, to the best baseline of that model
and masking, and to the best unmasked baseline, all measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse(spec: str) -> dict:
    parts = spec.split(":")
    kind, model, mb = parts[0], parts[1], int(parts[2])
    doc = parts[3] if len(parts) > 3 else "none"
    ac = len(parts) > 4 and parts[4] == "ac"
    assert kind in ("baseline", "ours") and doc in ("none", "mask", "flex"), spec
    assert not (kind == "baseline" and doc == "flex"), "the baseline has no FlexAttention path"
    return {"kind": kind, "model": model, "mb": mb, "doc": doc, "ac": ac}


def baseline(shards: str, model_name: str, mb: int, steps: int, warm: int, doc: str, ac: bool) -> dict:
    """HF LlamaForCausalLM + deepspeed.initialize(ZeRO-2, bf16) + torch AdamW (fused), labels =
    input_ids; doc=mask: per-document position ids (transformers then masks across documents)."""
    import deepspeed
    import numpy as np
    import torch

    from shards.dataset import ShardDataset
    from train.data import RowSource
    from train.model import build_model, count_params, flops_per_token
    from train.trainer import setup_distributed

    setup_distributed()
    ds = ShardDataset(shards)
    model = build_model(model_name, ds.tokenizer, ds.seq_len)
    model.config.use_cache = False
    if ac:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n_all, n_noemb = count_params(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    cfg = {"train_micro_batch_size_per_gpu": mb, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
           "zero_optimization": {"stage": 2}, "bf16": {"enabled": True}, "steps_per_print": 10**9}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    src = RowSource(ds, "train")
    rows = np.concatenate([np.asarray(s.tokens) for s in src.shards])
    rng = np.random.default_rng(0)
    times = []
    for i in range(warm + steps):
        idx = rng.integers(0, len(rows), mb)
        x = torch.from_numpy(rows[idx].astype(np.int64)).cuda()
        kw = {}
        if doc == "mask":
            kw["position_ids"] = torch.from_numpy(np.stack([src.positions(int(r)) for r in idx])).cuda()
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = engine(input_ids=x, labels=x, use_cache=False, **kw).loss
        engine.backward(loss)
        engine.step()
        torch.cuda.synchronize()
        if i >= warm:
            times.append(time.perf_counter() - t)
    tps = mb * ds.seq_len * len(times) / sum(times)
    fpt = flops_per_token(n_noemb, model.config.num_hidden_layers, model.config.hidden_size, ds.seq_len)
    return {"tokens_per_s": tps, "mfu": fpt * tps / 989e12, "params": n_all, "loss": float(loss),
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


def _ours_cfg(shards: str, out: str, model_name: str, mb: int, steps: int, doc: str, ac: bool, **kw):
    from train.config import TrainConfig

    return TrainConfig(shards=shards, out=out, model=model_name, micro_batch=mb, steps=steps, lr=3e-4,
                       warmup_ratio=0.01, eval_interval=0, eval_rows=8, log_interval=1, zero_stage=2,
                       precision="bf16", liger=kw.pop("liger", True), tensorboard=False,
                       doc_attention=doc, activation_checkpointing=ac, **kw)


def ours(shards: str, model_name: str, mb: int, steps: int, warm: int, doc: str, ac: bool, out: str) -> dict:
    import torch

    from train.trainer import train

    res = train(_ours_cfg(shards, out, model_name, mb, warm + steps, doc, ac), progress=False)
    recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"train"' in l]
    recs = recs[warm:]
    tps = sum(r["tokens_per_s"] for r in recs) / len(recs)
    mfu = sum(r.get("mfu", 0) for r in recs) / len(recs)
    return {"tokens_per_s": tps, "mfu": mfu, "params": res["params"], "loss": recs[-1]["loss"],
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


def check(shards: str, out: str) -> dict:
    """On the GPU, bf16: (1) the same weights and batches give the same loss with FlexAttention
    as with the dense SDPA mask; (2) 30 training steps of the 20m preset with flex and with mask
    (same seed, same data order) give loss curves equal within bf16 noise."""
    import numpy as np
    import torch

    from shards.dataset import ShardDataset
    from train import flex
    from train.data import Loader, RowSource
    from train.model import build_model
    from train.trainer import train

    ds = ShardDataset(shards)
    src = RowSource(ds, "train")
    torch.manual_seed(0)
    sdpa = build_model("124m", ds.tokenizer, ds.seq_len, dtype=torch.bfloat16).cuda().eval()
    fx = build_model("124m", ds.tokenizer, ds.seq_len, dtype=torch.bfloat16, attn=flex.register()).cuda().eval()
    fx.load_state_dict(sdpa.state_dict())
    diffs = []
    with torch.no_grad():
        for k in range(4):
            rows = np.arange(k * 8, k * 8 + 8)
            m = Loader(src, 8, 0, device="cuda", shuffle=False, doc_mask=True).load(rows)
            f = Loader(src, 8, 0, device="cuda", shuffle=False, flex=True).load(rows)
            lm = float(sdpa(input_ids=m.input_ids, labels=m.labels, position_ids=m.position_ids,
                            attention_mask=m.attention_mask, use_cache=False).loss)
            lf = float(fx(input_ids=f.input_ids, labels=f.labels, position_ids=f.position_ids,
                          attention_mask=f.attention_mask, use_cache=False).loss)
            diffs.append(abs(lm - lf))
    curves = {}
    for doc in ("mask", "flex"):
        train(_ours_cfg(shards, os.path.join(out, "check-" + doc), "20m", 16, 30, doc, False, seed=3, liger=False),
              progress=False)
        curves[doc] = [json.loads(l)["loss"] for l in open(os.path.join(out, "check-" + doc, "metrics.jsonl"))
                       if '"train"' in l]
    gap = max(abs(a - b) for a, b in zip(curves["mask"], curves["flex"]))
    return {"forward_loss_max_abs_diff": max(diffs), "train_curve_max_abs_diff": gap,
            "mask_final": curves["mask"][-1], "flex_final": curves["flex"][-1],
            "mask_first": curves["mask"][0], "ok": max(diffs) < 2e-2 and gap < 5e-2}


def profile(shards: str, spec: str, out: str, top: int = 15) -> list:
    """torch.profiler over 3 steps of one config of ours; the top CUDA kernels by time."""
    import torch

    from train.trainer import train

    c = parse(spec)
    recs = []
    prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA],
                                  schedule=torch.profiler.schedule(wait=0, warmup=6, active=3, repeat=1))

    def on_record(rec):
        if rec.get("kind") == "train" or '"train"' in json.dumps(rec):
            prof.step()

    prof.start()
    train(_ours_cfg(shards, out, c["model"], c["mb"], 10, c["doc"], c["ac"]), on_record=on_record, progress=False)
    prof.stop()
    ev = sorted(prof.key_averages(), key=lambda e: -getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0)))
    total = sum(getattr(e, "device_time_total", 0) for e in ev) or 1
    for e in ev[:top]:
        t = getattr(e, "device_time_total", 0)
        recs.append({"kernel": e.key[:90], "share": t / total, "ms_per_step": t / 1000 / 3, "calls": e.count})
    return recs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--out", default="train_gpu_results.json")
    ap.add_argument("--configs", default="")
    ap.add_argument("--sweep", default="", help="models to sweep, e.g. 124m,1b")
    ap.add_argument("--mbs", default="16,32,64")
    ap.add_argument("--ac", action="store_true", help="with --sweep: also with activation checkpointing")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--profile", default="")
    ap.add_argument("--work", default=None, help="run directories (checkpoints); default: beside --out")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    outdir = a.work or os.path.dirname(os.path.abspath(a.out))
    os.makedirs(outdir, exist_ok=True)
    if a.check:
        r = check(a.shards, outdir)
        print("CHECK " + json.dumps(r), flush=True)
        return
    if a.profile:
        for r in profile(a.shards, a.profile, os.path.join(outdir, "profile-run")):
            print(f"{100 * r['share']:5.1f}%  {r['ms_per_step']:8.2f} ms/step  {r['calls']:6d}  {r['kernel']}")
        return
    if a.one:
        c = parse(a.one)
        if c["kind"] == "baseline":
            r = baseline(a.shards, c["model"], c["mb"], a.steps, a.warm, c["doc"], c["ac"])
        else:
            r = ours(a.shards, c["model"], c["mb"], a.steps, a.warm, c["doc"], c["ac"],
                     os.path.join(outdir, "run-" + a.one.replace(":", "_")))
        print("RESULT " + json.dumps(r), flush=True)
        return
    specs = [s for s in a.configs.split(",") if s]
    for model in [m for m in a.sweep.split(",") if m]:
        for ac in ([False, True] if a.ac else [False]):
            tail = ":ac" if ac else ""
            for mb in a.mbs.split(","):
                specs += [f"baseline:{model}:{mb}:none{tail}", f"baseline:{model}:{mb}:mask{tail}",
                          f"ours:{model}:{mb}:none{tail}", f"ours:{model}:{mb}:mask{tail}", f"ours:{model}:{mb}:flex{tail}"]
    results = json.load(open(a.out)) if os.path.exists(a.out) else {}
    for name in specs:
        t = time.time()
        env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(29600 + len(results) % 200))
        p = subprocess.run([sys.executable, __file__, "--shards", a.shards, "--out", a.out, "--one", name,
                            "--steps", str(a.steps), "--warm", str(a.warm), "--work", outdir], capture_output=True, text=True, env=env)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        results[name] = json.loads(line[-1][7:]) if line else {"error": (p.stderr or p.stdout)[-2000:]}
        results[name]["wall_s"] = round(time.time() - t, 1)
        json.dump(results, open(a.out, "w"), indent=1)
        print(name, {k: v for k, v in results[name].items() if k != "error"} or results[name]["error"][-600:], flush=True)
    print(table(results))


def table(results: dict) -> str:
    """ratio columns: vs the baseline at the same model/mb/masking (or at no masking for flex),
    and vs the best baseline of the model at that masking."""
    def base_doc(doc):
        return "none" if doc == "none" else "mask"

    best: dict = {}
    for name, r in results.items():
        if "error" in r:
            continue
        c = parse(name)
        if c["kind"] == "baseline":
            k = (c["model"], c["doc"])
            best[k] = max(best.get(k, 0), r["tokens_per_s"])
    lines = [f"{'config':26s} {'tokens/s':>10s} {'MFU':>6s} {'vs base same mb':>15s} {'vs best base':>12s} "
             f"{'vs best unmasked base':>21s} {'peak GB':>8s} {'loss':>7s}"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:26s} ERROR")
            continue
        c = parse(name)
        same = results.get(f"baseline:{c['model']}:{c['mb']}:{base_doc(c['doc'])}" + (":ac" if c["ac"] else ""), {})
        rel = f"{r['tokens_per_s'] / same['tokens_per_s']:.2f}x" if same.get("tokens_per_s") else "-"
        b = best.get((c["model"], base_doc(c["doc"])))
        relb = f"{r['tokens_per_s'] / b:.2f}x" if b else "-"
        bn = best.get((c["model"], "none"))
        reln = f"{r['tokens_per_s'] / bn:.2f}x" if bn else "-"
        lines.append(f"{name:26s} {r['tokens_per_s']:10,.0f} {100 * r['mfu']:5.1f}% {rel:>15s} {relb:>12s} "
                     f"{reln:>21s} {r['peak_mem_gb']:8.1f} {r['loss']:7.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
