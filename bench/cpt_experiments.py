"""Reproduce the CPT FAQ's continued-pretraining findings (Q9-Q11; Gupta et al. 2023,
Ibrahim et al. 2024) on a small LLaMA, in one run on one GPU.

1. build general (English) and domain (Chinese) shards from real text staged in STAGE_DIR;
2. pretrain the `20m` preset on the general shards; export it;
3. continued-pretraining arms from that checkpoint, several at once on the GPU, each logging
   upstream (general val) and downstream (domain val) loss;
4. curves as JSON and PNG plots under OUT, and a summary table.

    python bench/cpt_experiments.py --stage .gpu/cpt --out OUT [--steps 400] [--parallel 4]

`--stage-from-shared` (on a machine with ../shared and snownlp) writes STAGE_DIR first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")


def stage_from_shared(stage: str) -> None:
    """Copy the real text the experiment needs beside the script (the GPU machine has no ../shared)."""
    from corpus.demo import _people_daily_docs, _pydoc_docs

    os.makedirs(f"{stage}/general", exist_ok=True)
    os.makedirs(f"{stage}/domain", exist_ok=True)
    for rel in ["general/c4_en/c4_demo.jsonl", "general/wikipedia_en/wiki_demo.txt", "general/tinyshakespeare/input.txt",
                "general/pg19/10006.txt", "general/pg19/12204.txt", "general/pg19/28213.txt",
                "general/dolma_commoncrawl_en/cc_en_head-0091.jsonl", "general/dolma_commoncrawl_en/cc_en_head-0174.jsonl",
                "domain/hf_lex_glue_scotus/scotus.jsonl"]:
        shutil.copy(os.path.join(SHARED, rel), f"{stage}/general/{os.path.basename(rel)}")
    with open(f"{stage}/general/pydoc.jsonl", "w", encoding="utf-8") as f:
        for d in _pydoc_docs():
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(f"{stage}/domain/peoples_daily_1998.jsonl", "w", encoding="utf-8") as f:
        for d in _people_daily_docs():
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    shutil.copytree(os.path.join(SHARED, "domain/lawrefbook_zh"), f"{stage}/domain/law", dirs_exist_ok=True)
    shutil.copy(os.path.join(SHARED, "domain/medicalgpt/pretrain/fever.txt"), f"{stage}/domain/fever.txt")
    shutil.copy(os.path.join(SHARED, "tokenizers/llama/tokenizer.model"), f"{stage}/tokenizer.model")


def build_shards(stage: str, out: str, seq_len: int) -> None:
    from corpus.build import build
    from corpus.recipe import Recipe

    common = {"tokenizer": {"path": f"{stage}/tokenizer.model"}, "packing": {"seq_len": seq_len},
              "split": {"val_ratio": 0.03}, "stages": [{"name": "normalize"}, {"name": "min_length"}, {"name": "exact_dedup"}]}
    gen = {"name": "general", "kind": "general", "paths": [f"{stage}/general"], "txt_mode": "paragraph"}
    dom = {"name": "domain", "kind": "domain", "paths": [f"{stage}/domain"], "txt_mode": "paragraph"}
    build(Recipe.model_validate({**common, "sources": [gen]}), f"{out}/shards_general")
    # CPT shards: domain + 5% general replay; arms without replay train on the domain source only
    build(Recipe.model_validate({**common, "sources": [{**dom, "weight": 0.95}, {**gen, "weight": 0.05}]}),
          f"{out}/shards_cpt")


class Runner:
    """Runs `train run` processes, several at once on the one GPU."""

    def __init__(self, parallel: int, log_dir: str):
        self.parallel, self.log_dir, self.live, self.port = parallel, log_dir, [], 29700

    def start(self, name: str, args: list[str]) -> None:
        while len(self.live) >= self.parallel:
            self._reap()
        self.port += 1
        env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(self.port), PYTHONUNBUFFERED="1")
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        p = subprocess.Popen([sys.executable, "-m", "train.cli", "run", *args], stdout=log, stderr=subprocess.STDOUT,
                             env=env, cwd=ROOT)
        self.live.append((name, p, time.time()))

    def _reap(self) -> None:
        time.sleep(1)
        for item in list(self.live):
            if item[1].poll() is not None:
                self.live.remove(item)
                print(f"  {item[0]} exit {item[1].returncode} in {time.time() - item[2]:.0f}s", flush=True)

    def wait(self) -> None:
        while self.live:
            self._reap()


def curves(run_dir: str) -> dict:
    recs = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
    ev = [r for r in recs if r["kind"] == "eval"]
    tr = [r for r in recs if r["kind"] == "train"]
    return {"step": [r["step"] for r in ev], "up": [r.get("val_loss/general") for r in ev],
            "down": [r.get("val_loss/domain") for r in ev], "train_step": [r["step"] for r in tr],
            "loss": [r["loss"] for r in tr], "lr": [r["lr"] for r in tr],
            "tokens_per_s": sum(r["tokens_per_s"] for r in tr[5:]) / max(1, len(tr[5:]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stage", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage-from-shared", action="store_true")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--pretrain-steps", type=int, default=600)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="the pretraining max lr (1x)")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--model", default="20m")
    a = ap.parse_args()
    t0 = time.time()
    if a.stage_from_shared:
        stage_from_shared(a.stage)
        print("staged", a.stage)
        return
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    build_shards(a.stage, out, a.seq_len)
    t_build = time.time() - t0
    print(f"built shards in {t_build:.0f}s", flush=True)
    runs = f"{out}/runs"
    R = Runner(a.parallel, out)
    base = ["--micro-batch", str(a.micro_batch), "--eval-rows", "64", "--precision", "bf16", "--zero-stage", "2"]
    gen_sh, cpt_sh = f"{out}/shards_general", f"{out}/shards_cpt"
    # 1. pretraining on general text
    R.start("pretrain", ["--shards", gen_sh, "--out", f"{runs}/pretrain", "--model", a.model, "--steps",
                         str(a.pretrain_steps), "--lr", str(a.lr), "--warmup-ratio", "0.02", "--eval-interval", "100",
                         *base])
    R.wait()
    subprocess.run([sys.executable, "-m", "train.cli", "export", f"{runs}/pretrain", "--out", f"{out}/base",
                    "--dtype", "fp32"], check=True, cwd=ROOT)
    t_pre = time.time() - t0
    print(f"pretrained in {t_pre:.0f}s", flush=True)
    S, lr = a.steps, a.lr
    cpt = ["--shards", cpt_sh, "--model", f"{out}/base", "--steps", str(S), "--eval-interval", str(max(1, S // 10)), *base]
    dom = ["--train-source", "domain"]
    arms = {
        # Q9: warmup length at the same max lr
        "warmup_0": [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0"],
        "warmup_0.5pct": [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0.005"],
        "warmup_1pct": [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0.01"],
        "warmup_2pct": [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0.02"],
        # Q10: max lr (cosine to 0.1x), and the FAQ's constant 10%
        "lr_0.5x": [*cpt, *dom, "--lr", str(0.5 * lr), "--warmup-ratio", "0.01"],
        "lr_2x": [*cpt, *dom, "--lr", str(2 * lr), "--warmup-ratio", "0.01"],
        "lr_const_0.1x": [*cpt, *dom, "--lr", str(0.1 * lr), "--schedule", "constant", "--warmup-ratio", "0"],
        # Q11: continuing on the *same* general data: re-warm vs constant
        "same_rewarm_1x": ["--shards", gen_sh, "--model", f"{out}/base", "--steps", str(S), "--eval-interval",
                           str(max(1, S // 10)), *base, "--lr", str(lr), "--warmup-ratio", "0.01"],
        "same_rewarm_2x": ["--shards", gen_sh, "--model", f"{out}/base", "--steps", str(S), "--eval-interval",
                           str(max(1, S // 10)), *base, "--lr", str(2 * lr), "--warmup-ratio", "0.01"],
        "same_constant": ["--shards", gen_sh, "--model", f"{out}/base", "--steps", str(S), "--eval-interval",
                          str(max(1, S // 10)), *base, "--lr", str(0.1 * lr), "--schedule", "constant",
                          "--warmup-ratio", "0"],
        # Ibrahim et al.: 5% replay of general data in the domain mix (0% = warmup_1pct)
        "replay_5pct": [*cpt, "--lr", str(lr), "--warmup-ratio", "0.01"],
    }
    for name, args in arms.items():
        R.start(name, [*args, "--out", f"{runs}/{name}"])
    # resume after interruption at half: exact state vs a reset (re-warmed) schedule
    for name in ("resume_exact", "resume_reset"):
        R.start(name + "_a", [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0.01", "--stop-after", str(S // 2),
                              "--out", f"{runs}/{name}"])
    R.wait()
    R.start("resume_exact_b", [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0.01", "--resume", "--out",
                               f"{runs}/resume_exact"])
    R.start("resume_reset_b", [*cpt, *dom, "--lr", str(lr), "--warmup-ratio", "0.01", "--resume", "--rewarm",
                               "--steps", str(S - S // 2), "--out", f"{runs}/resume_reset"])
    R.wait()
    results = {"wall_s": round(time.time() - t0, 1), "build_s": round(t_build, 1), "pretrain_s": round(t_pre - t_build, 1),
               "config": vars(a), "pretrain": curves(f"{runs}/pretrain")}
    for name in [*arms, "resume_exact", "resume_reset"]:
        try:
            results[name] = curves(f"{runs}/{name}")
        except FileNotFoundError as e:
            results[name] = {"error": str(e)}
    results["params"] = json.load(open(f"{runs}/pretrain/run.json"))["params"]
    json.dump(results, open(f"{out}/cpt_curves.json", "w"), indent=1)
    plot(results, out)
    table(results)


GROUPS = {
    "warmup": ["warmup_0", "warmup_0.5pct", "warmup_1pct", "warmup_2pct"],
    "max_lr": ["lr_0.5x", "warmup_1pct", "lr_2x", "lr_const_0.1x"],
    "rewarm_same_data": ["same_rewarm_1x", "same_rewarm_2x", "same_constant"],
    "resume": ["resume_exact", "resume_reset"],
    "replay": ["warmup_1pct", "replay_5pct"],
}
LABEL = {"warmup_1pct": "warmup 1% / lr 1x / 0% replay"}


def plot(results: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for g, names in GROUPS.items():
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for n in names:
            r = results.get(n, {})
            if "step" not in r:
                continue
            ax[0].plot(r["step"], r["down"], marker=".", label=LABEL.get(n, n))
            ax[1].plot(r["step"], r["up"], marker=".", label=LABEL.get(n, n))
        ax[0].set_title("downstream: domain (zh) val loss")
        ax[1].set_title("upstream: general (en) val loss")
        for x in ax:
            x.set_xlabel("step")
            x.grid(alpha=0.3)
        ax[0].legend(fontsize=8)
        fig.suptitle(f"CPT experiment: {g}")
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"cpt_{g}.png"), dpi=110)
        plt.close(fig)


def table(results: dict) -> None:
    print(f"\n{'arm':18s} {'down first':>10s} {'down last':>10s} {'up first':>9s} {'up last':>9s}")
    for name, r in results.items():
        if isinstance(r, dict) and "down" in r and r["down"] and r["down"][0] is not None:
            print(f"{name:18s} {r['down'][0]:10.3f} {r['down'][-1]:10.3f} {r['up'][0]:9.3f} {r['up'][-1]:9.3f}")
        elif isinstance(r, dict) and "up" in r and r["up"]:
            print(f"{name:18s} {'-':>10s} {'-':>10s} {r['up'][0]:9.3f} {r['up'][-1]:9.3f}")
    print(f"wall time {results['wall_s']}s")


if __name__ == "__main__":
    main()
