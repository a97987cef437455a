"""Issue 18, trainer correctness: `train eval` scores every val row; `--stop-after` evaluates and
saves its last step once; `--resume` with nothing left says so and writes nothing; resuming a
finished decaying schedule into more steps is refused without --rewarm; the advisor does not
suggest LoRA to a LoRA run; token ids outside the model's vocabulary are a one-line error.
Issue 16: the in-run evaluation and `train eval` are one loop (the same numbers)."""

import json
import shutil

import numpy as np
import pytest

from shards.cliutil import UserError
from train.config import TrainConfig
from train.trainer import train


def _cfg(small_build, out, **kw):
    d = dict(shards=str(small_build[0]), out=str(out), model="tiny", micro_batch=2, steps=4, lr=3e-3,
             warmup_ratio=0.25, eval_interval=0, eval_rows=2, log_interval=1, precision="fp32", tensorboard=False,
             zero_stage=0)
    d.update(kw)
    return TrainConfig(**d)


def _run(cfg):
    res = train(cfg, progress=False)
    res["engine"].destroy()
    return res


def _records(out, kind):
    return [r for r in map(json.loads, open(out / "metrics.jsonl")) if r["kind"] == kind]


def test_train_eval_scores_every_val_row_and_matches_the_in_run_evaluation(small_build, tmp_path):
    from shards.dataset import ShardDataset
    from train.data import RowSource
    from train.export import export, perplexity

    run = tmp_path / "run"
    _run(_cfg(small_build, run, steps=2, eval_rows=7, micro_batch=4))
    export(str(run), str(tmp_path / "hf"), "fp32")
    ds = ShardDataset(str(small_build[0]))
    got = perplexity(str(tmp_path / "hf"), str(small_build[0]), max_rows=7, batch=3)
    final = _records(run, "eval")[-1]
    assert set(got) == set(ds.sources)
    for src, r in got.items():
        rs = RowSource(ds, "val", [src])
        n = min(7, rs.n_rows)
        valid = np.concatenate([s.bounds.row_valid[: len(s)] for s in rs.shards])[:n]
        # every label position of the first n rows (7 = two batches of 3 + a remainder of 1)
        assert r["rows"] == n and r["tokens"] == int((valid - 1).sum()), (src, r)
        # `train run`'s evaluation of the same rows (micro-batch 4: 4 + 3) is the same loop, and
        # the loss does not depend on the batch size
        assert final[f"val_loss/{src}"] == pytest.approx(r["loss"], rel=1e-5)


def test_stop_after_evaluates_and_saves_its_last_step_once(small_build, tmp_path):
    run = tmp_path / "run"
    _run(_cfg(small_build, run, steps=8, eval_interval=2, save_interval=2, stop_after=4))
    assert [r["step"] for r in _records(run, "train")] == [1, 2, 3, 4]
    assert [r["step"] for r in _records(run, "eval")] == [2, 4]
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["step2", "step4"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step4"


def test_resume_with_nothing_left_says_so_and_writes_nothing(small_build, tmp_path):
    run = tmp_path / "run"
    _run(_cfg(small_build, run, steps=3))
    before = {p: (run / p).read_bytes() for p in ("metrics.jsonl", "run.json", "config.json")}
    for steps in (3, 2):
        res = _run(_cfg(small_build, run, steps=steps, resume=True))
        assert "nothing to do" in res["nothing_to_do"] and "step 3" in res["nothing_to_do"]
        assert res["steps"] == 3 and not res["history"]["loss"]
    assert {p: (run / p).read_bytes() for p in before} == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["step3"]


def test_resuming_past_the_end_of_a_cosine_schedule_is_refused_without_rewarm(small_build, tmp_path):
    run = tmp_path / "run"
    cos = dict(schedule="cosine", min_lr_ratio=0.1)
    _run(_cfg(small_build, run, steps=4, stop_after=2, **cos))  # a checkpoint at step 2 of a 4-step schedule
    before = (run / "metrics.jsonl").read_bytes()
    with pytest.raises(UserError, match="--rewarm") as e:
        _run(_cfg(small_build, run, steps=6, resume=True, **cos))  # steps 5-6 would run at min lr
    assert e.value.where == "--steps" and "at step 4" in e.value.what and "\n" not in str(e.value)
    assert (run / "metrics.jsonl").read_bytes() == before
    # inside the schedule the resume goes on (--rewarm restarting it: tests/test_train.py)
    _run(_cfg(small_build, run, steps=4, resume=True, **cos))
    assert [r["step"] for r in _records(run, "train")] == [1, 2, 3, 4]


def test_advisor_suggests_lora_only_without_lora(small_build, tmp_path):
    from train.advisor import advise

    plain = advise(_cfg(small_build, tmp_path), 5_000_000, False)
    lora = advise(_cfg(small_build, tmp_path, lora_r=8), 5_000_000, False)
    assert any("--lora-r" in n for n in plain)
    assert lora and not any("lora" in n.lower() for n in lora)


def test_token_ids_outside_the_model_vocabulary_are_a_one_line_error(small_build, tmp_path):
    from shards.dataset import ShardDataset

    src = small_build[0]
    bad = tmp_path / "bad_build"
    shutil.copytree(src, bad, ignore=shutil.ignore_patterns(".work", ".lock"))
    ds = ShardDataset(str(bad))
    for e in ds.entries("train") + ds.entries("val"):  # an id beyond the LLaMA vocabulary in every row
        rows = np.memmap(bad / (e["name"] + ".bin"), dtype=ds.dtype, mode="r+").reshape(-1, ds.seq_len)
        rows[:, 3] = 40000
        rows.flush()
        del rows
    with pytest.raises(UserError, match="token id 40000") as e:
        _run(_cfg(small_build, tmp_path / "run", shards=str(bad)))
    assert "32,000" in str(e.value) and "\n" not in str(e.value)
    # `train eval` of a model directory on those shards: the same one-line error
    from train.export import perplexity, write_tokenizer
    from train.model import build_model

    hf = tmp_path / "hf"
    build_model("tiny", ds.tokenizer, ds.seq_len).save_pretrained(hf)
    write_tokenizer(str(src), str(hf))
    with pytest.raises(UserError, match="token id 40000 .* vocabulary of 32,000"):
        perplexity(str(hf), str(bad), max_rows=2)
