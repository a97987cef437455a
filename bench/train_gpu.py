"""Training throughput on one GPU: ours (`train.trainer.train`) vs the LLaMA-Factory path
(Hugging Face transformers + DeepSpeed ZeRO-2 bf16, a plain loop), same shards, same model
shapes, in one run. Each configuration runs in its own process (liger-kernel patches
transformers globally). Prints a table and writes results JSON.

    python bench/train_gpu.py --shards DIR --out results.json [--models 124m,1b] [--steps 30]
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


def baseline(shards: str, model_name: str, mb: int, steps: int, warm: int) -> dict:
    """HF LlamaForCausalLM + deepspeed.initialize(ZeRO-2, bf16) + torch AdamW, labels = input_ids."""
    import deepspeed
    import numpy as np
    import torch

    from shards.dataset import ShardDataset
    from train.model import build_model, count_params, flops_per_token
    from train.trainer import setup_distributed

    setup_distributed()
    ds = ShardDataset(shards)
    model = build_model(model_name, ds.tokenizer, ds.seq_len)
    n_all, n_noemb = count_params(model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    cfg = {"train_micro_batch_size_per_gpu": mb, "gradient_accumulation_steps": 1, "gradient_clipping": 1.0,
           "zero_optimization": {"stage": 2}, "bf16": {"enabled": True}, "steps_per_print": 10**9}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    rows = np.concatenate([np.asarray(s.tokens) for s in ds.shards("train")])
    rng = np.random.default_rng(0)
    times = []
    for i in range(warm + steps):
        idx = rng.integers(0, len(rows), mb)
        x = torch.from_numpy(rows[idx].astype(np.int64)).cuda()
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = engine(input_ids=x, labels=x).loss
        engine.backward(loss)
        engine.step()
        torch.cuda.synchronize()
        if i >= warm:
            times.append(time.perf_counter() - t)
    tps = mb * ds.seq_len * len(times) / sum(times)
    fpt = flops_per_token(n_noemb, model.config.num_hidden_layers, model.config.hidden_size, ds.seq_len)
    return {"tokens_per_s": tps, "mfu": fpt * tps / 989e12, "params": n_all, "loss": float(loss),
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


def ours(shards: str, model_name: str, mb: int, steps: int, warm: int, liger: bool, out: str,
         doc_attention: str = "none") -> dict:
    import torch

    from train.config import TrainConfig
    from train.trainer import train

    cfg = TrainConfig(shards=shards, out=out, model=model_name, micro_batch=mb, steps=warm + steps, lr=3e-4,
                      warmup_ratio=0.01, eval_interval=0, eval_rows=8, log_interval=1, zero_stage=2,
                      precision="bf16", liger=liger, tensorboard=False, doc_attention=doc_attention)
    res = train(cfg, progress=False)
    recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"train"' in l]
    recs = recs[warm:]
    tps = sum(r["tokens_per_s"] for r in recs) / len(recs)
    mfu = sum(r.get("mfu", 0) for r in recs) / len(recs)
    return {"tokens_per_s": tps, "mfu": mfu, "params": res["params"], "loss": recs[-1]["loss"],
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30}


CONFIGS = {
    # name: (kind, model, micro_batch, liger)
    "baseline-124m": ("baseline", "124m", 16, False),
    "ours-124m": ("ours", "124m", 16, True),
    "ours-124m-mb32": ("ours", "124m", 32, True),
    "ours-124m-mb64": ("ours", "124m", 64, True),
    "ours-124m-mb128": ("ours", "124m", 128, True),
    "baseline-1b": ("baseline", "1b", 8, False),
    "ours-1b": ("ours", "1b", 8, True),
    "ours-1b-mb16": ("ours", "1b", 16, True),
    # packed-document attention (doc_attention): positions reset / block-diagonal causal mask
    "ours-124m-mb32-reset": ("ours", "124m", 32, True, "reset_positions"),
    "ours-124m-mb32-mask": ("ours", "124m", 32, True, "mask"),
    "ours-1b-mb8-mask": ("ours", "1b", 8, True, "mask"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True)
    ap.add_argument("--out", default="train_gpu_results.json")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        kind, model, mb, liger, *doc = CONFIGS[a.one]
        if kind == "baseline":
            r = baseline(a.shards, model, mb, a.steps, a.warm)
        else:
            r = ours(a.shards, model, mb, a.steps, a.warm, liger, os.path.join(os.path.dirname(a.out), "run-" + a.one),
                     *doc)
        print("RESULT " + json.dumps(r), flush=True)
        return
    results = {}
    for name in a.configs.split(","):
        t = time.time()
        env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(29600 + len(results)))
        p = subprocess.run([sys.executable, __file__, "--shards", a.shards, "--out", a.out, "--one", name,
                            "--steps", str(a.steps), "--warm", str(a.warm)], capture_output=True, text=True, env=env)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        results[name] = json.loads(line[-1][7:]) if line else {"error": (p.stderr or p.stdout)[-2000:]}
        results[name]["wall_s"] = round(time.time() - t, 1)
        json.dump(results, open(a.out, "w"), indent=1)
        print(name, {k: v for k, v in results[name].items() if k != "error"} or results[name]["error"][-500:], flush=True)
    print(f"\n{'config':18s} {'tokens/s':>10s} {'MFU':>6s} {'vs baseline':>11s} {'peak GB':>8s}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:18s} ERROR")
            continue
        base = results.get("baseline-" + name.split("-")[1], {}).get("tokens_per_s")
        rel = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        print(f"{name:18s} {r['tokens_per_s']:10,.0f} {100 * r['mfu']:5.1f}% {rel:>11s} {r['peak_mem_gb']:8.1f}")


if __name__ == "__main__":
    main()
