"""No code execution from untrusted checkpoints (issue 17): a pickle planted in place of any file
that `train run --resume` or `train export` reads is refused with one line, and nothing in it
runs; real checkpoints of every ZeRO stage hold only the allow-listed classes."""

import glob
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from train.config import TrainConfig
from train.safe_load import CheckpointError, allowed_globals, latest_tag, safe_loads
from train.safe_load import load as safe_load
from train.trainer import train


class OpenFile:
    """Unpickling this creates `marker` (pickle calls `open(marker, "w")`)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Shell:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _cfg(shards, out, zero, steps):
    return TrainConfig(shards=shards, out=out, model="tiny", micro_batch=2, steps=steps, eval_interval=0, eval_rows=2,
                       log_interval=1, precision="fp32", tensorboard=False, zero_stage=zero)


@pytest.fixture(scope="module")
def runs(small_build, tmp_path_factory):
    """A finished 2-step run (checkpoint step2) per ZeRO stage 0-3."""
    root = tmp_path_factory.mktemp("ckpt_runs")
    out = {}
    for zero in (0, 1, 2, 3):
        d = root / f"zero{zero}"
        train(_cfg(str(small_build[0]), str(d), zero, 2), progress=False)["engine"].destroy()
        out[zero] = d
    return out


def _files(run):
    return sorted(os.path.basename(p) for p in glob.glob(str(run / "checkpoints" / "step2" / "*.pt")))


def _plant(path, kind, marker):
    """Replace `path` by a hostile file: a torch.save zip holding the object, or a bare pickle."""
    evil = (OpenFile if kind != "shell" else Shell)(str(marker))
    os.remove(path)
    if kind == "bare":
        with open(path, "wb") as f:
            pickle.dump({"module": evil}, f, protocol=2)  # torch's own protocol: reaches the GLOBAL
    else:
        torch.save({"module": evil, "step": 2}, path)


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_planted_pickles_are_live(tmp_path):
    """The hostile files do run code when unpickled as DeepSpeed does (weights_only=False), so
    the tests below would fail if a load were not restricted."""
    for kind in ("zip", "bare", "shell"):
        p, marker = tmp_path / f"{kind}.pt", tmp_path / f"{kind}.marker"
        _plant_new(p, kind, marker)
        try:  # a bare pickle runs while torch reads it as the legacy format's magic number
            torch.load(p, weights_only=False)
        except RuntimeError:
            assert kind == "bare"
        assert marker.exists(), kind
        os.remove(marker)
        with pytest.raises(CheckpointError, match=r"^\S+\.pt: refused: it holds (io\.open|posix\.system)"):
            safe_load(p)
        assert not marker.exists()
    p, marker = tmp_path / "proto4.pt", tmp_path / "proto4.marker"
    p.write_bytes(pickle.dumps({"module": OpenFile(str(marker))}, protocol=4))
    with pytest.raises(CheckpointError, match=r"proto4\.pt: refused: not a plain weights file \(UnpicklingError: Unsupp"):
        safe_load(p)
    assert not marker.exists()


def _plant_new(path, kind, marker):
    open(path, "wb").close()
    _plant(path, kind, marker)


@pytest.mark.parametrize("zero", [0, 2, 3])
def test_resume_refuses_planted_pickle_in_every_file(runs, small_build, tmp_path, zero):
    files = _files(runs[zero])
    assert any("model_states" in f for f in files) and (zero == 0 or any("optim_states" in f for f in files))
    for i, name in enumerate(files):
        for kind in ("zip", "bare", "shell"):
            run = tmp_path / f"{i}-{kind}"
            shutil.copytree(runs[zero], run)
            marker = tmp_path / f"{i}-{kind}.marker"
            _plant(run / "checkpoints" / "step2" / name, kind, marker)
            with pytest.raises(CheckpointError) as ei:
                train(_cfg(str(small_build[0]), str(run), zero, 3).model_copy(update={"resume": True}), progress=False)
            msg = str(ei.value)
            assert "\n" not in msg and name in msg and "refused: it holds" in msg, msg
            assert not marker.exists(), (name, kind)


def test_resume_cli_is_one_error_line(runs, small_build, tmp_path):
    from train.cli import app

    run = _copy(runs[2], tmp_path)
    marker = tmp_path / "marker"
    name = "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    _plant(run / "checkpoints" / "step2" / name, "zip", marker)
    r = CliRunner().invoke(app, ["run", "--shards", str(small_build[0]), "--out", str(run), "--model", "tiny",
                                 "--steps", "3", "--micro-batch", "2", "--eval-interval", "0", "--eval-rows", "2",
                                 "--precision", "fp32", "--zero-stage", "2", "--resume"])
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and name in err[0] and "io.open" in err[0], r.stderr
    assert "Traceback" not in r.stderr and not marker.exists()


@pytest.mark.parametrize("zero", [0, 2])
def test_export_refuses_planted_pickle(runs, tmp_path, zero):
    from train.cli import app

    for i, name in enumerate(_files(runs[zero])):
        run = tmp_path / f"run{i}"
        shutil.copytree(runs[zero], run)
        marker = tmp_path / f"{i}.marker"
        _plant(run / "checkpoints" / "step2" / name, "zip", marker)
        r = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / f"hf{i}"), "--dtype", "fp32"])
        assert r.exit_code == 2, r.output
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]  # (zero_to_fp32 draws a tqdm bar)
        assert len(err) == 1 and name in err[0] and "io.open" in err[0], r.stderr
        assert "Traceback" not in r.stderr
        assert not marker.exists(), name
        assert not (tmp_path / f"hf{i}").exists()


def test_latest_cannot_point_outside(runs, small_build, tmp_path):
    from train.export import fp32_state_dict

    run = _copy(runs[0], tmp_path)
    ck = run / "checkpoints"
    for bad in ("../../elsewhere", "/etc", "..", "step2/../step2"):
        (ck / "latest").write_text(bad)
        with pytest.raises(CheckpointError, match="not a plain directory name"):
            latest_tag(str(ck))
        with pytest.raises(CheckpointError, match="not a plain directory name"):
            train(_cfg(str(small_build[0]), str(run), 0, 3).model_copy(update={"resume": True}), progress=False)
    with pytest.raises(CheckpointError, match="not a plain directory name"):
        fp32_state_dict(str(ck), "../zero2/checkpoints/step2")


def test_real_checkpoints_hold_only_the_allow_list(runs):
    """Every file of every ZeRO stage loads under weights_only=True; what is beyond torch's
    defaults is exactly the allow-list (nothing listed that no checkpoint holds)."""
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in allowed_globals()}
    seen = set()
    for zero, run in runs.items():
        for name in _files(run):
            p = str(run / "checkpoints" / "step2" / name)
            unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(p))
            assert unsafe <= allowed, (zero, name, unsafe - allowed)
            seen |= unsafe
            sd = safe_load(p)
            assert isinstance(sd, dict)
    # DynamicLossScaler is what fp16 training (GPU only) stores; the CPU runs store the static one
    assert seen == allowed - {"deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler"}, seen


def test_checkpoint_before_plain_rng_state_is_refused_naming_numpy(tmp_path):
    p = tmp_path / "old.pt"
    torch.save({"rng": {"numpy": np.random.get_state()}}, p)
    with pytest.raises(CheckpointError, match=r"old\.pt: refused: it holds numpy"):
        safe_load(p)


def test_safe_loads_restores_torch_load(tmp_path):
    real = torch.load
    p, marker = tmp_path / "x.pt", tmp_path / "marker"
    _plant_new(p, "zip", marker)
    with pytest.raises(CheckpointError):
        with safe_loads():
            assert torch.load is safe_load and os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"
            torch.load(p, map_location="cpu", weights_only=False)  # what DeepSpeed calls
    assert torch.load is real and torch.serialization.load is real and not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_truncated_checkpoint_is_one_line(runs, tmp_path):
    p = tmp_path / "cut.pt"
    data = open(glob.glob(str(runs[0] / "checkpoints" / "step2" / "*model_states.pt"))[0], "rb").read()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint file") as ei:
        safe_load(p)
    assert "\n" not in str(ei.value)


def test_model_dir_with_planted_bin_is_refused(small_build, tmp_path):
    """`train run --model DIR` and `train generate DIR` read DIR/pytorch_model.bin (through
    transformers) under the same allow-list: refused in one line, nothing run."""
    from transformers import LlamaConfig

    from train.cli import app

    d, marker = tmp_path / "hf", tmp_path / "marker"
    LlamaConfig(vocab_size=32000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, bos_token_id=1, eos_token_id=2).save_pretrained(d)
    torch.save({"model.embed_tokens.weight": OpenFile(str(marker))}, d / "pytorch_model.bin")
    for args in (["run", "--shards", str(small_build[0]), "--out", str(tmp_path / "run"), "--model", str(d),
                  "--steps", "1", "--micro-batch", "2", "--eval-interval", "0", "--precision", "fp32"],
                 ["generate", str(d), "--prompt", "第一条"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args[0], r.output)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(err) == 1 and "pytorch_model.bin: refused: it holds io.open" in err[0], r.stderr
        assert not marker.exists(), args[0]


def test_a_library_widening_torchs_allow_list_does_not_widen_ours(tmp_path):
    """megatron.core (imported by the 32-bit test) registers numpy's array constructors with
    torch.serialization.add_safe_globals at import; our loads must still refuse them."""
    import megatron.core.datasets.indexed_dataset  # noqa: F401

    p = tmp_path / "old.pt"
    torch.save({"rng": {"numpy": np.random.get_state()}}, p)
    with pytest.raises(CheckpointError, match=r"old\.pt: refused"):
        safe_load(p)
