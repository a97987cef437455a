"""Issue 23 (CPU part): `torchrun --nproc_per_node 2 -m train.cli run` trains on the CPU (gloo),
prints one summary, and its held-out evaluation - batches dealt to the ranks, sums all-reduced -
equals a one-rank run with the same global batch (same rows, same order, same init)."""

import json
import os
import subprocess
import sys

import pytest


def _run(cmd, env):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout


def _evals(out):
    return [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl")) if '"eval"' in l]


@pytest.mark.slow
def test_two_cpu_ranks_match_one_rank(small_build, tmp_path):
    shards = str(small_build[0])
    # not the pytest process's own rendezvous (an in-process run earlier set RANK/MASTER_PORT and holds the port)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    common = ["run", "--shards", shards, "--model", "tiny", "--steps", "3", "--eval-rows", "7"]
    two = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "-m", "train.cli", *common, "--micro-batch", "2", "--out", str(tmp_path / "two")], env)
    one = _run([sys.executable, "-m", "train.cli", *common, "--micro-batch", "4", "--out", str(tmp_path / "one")], env)
    assert two.count("train summary") == 1 and one.count("train summary") == 1
    e2, e1 = _evals(tmp_path / "two")[-1], _evals(tmp_path / "one")[-1]
    keys = [k for k in e1 if k.startswith("val_loss/")]
    assert keys and keys == [k for k in e2 if k.startswith("val_loss/")]
    for k in keys:  # same rows scored once each; only fp32 summation order and 3 steps of DP differ
        assert abs(e1[k] - e2[k]) < 2e-3, (k, e1[k], e2[k])
    # resuming the 2-rank checkpoint on 1 rank: a one-line refusal, not DeepSpeed's exception
    p = subprocess.run([sys.executable, "-m", "train.cli", "run", "--shards", shards, "--model", "tiny", "--steps", "4",
                        "--micro-batch", "4", "--out", str(tmp_path / "two"), "--resume"],
                       capture_output=True, text=True, env=env, timeout=600)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 2 and err[-1].startswith("error: --resume:") and "written by 2 ranks" in err[-1], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
