"""Checkpoints and model files are data, never code: every `torch.load` that refinery makes,
its own and DeepSpeed's inside `engine.load_checkpoint` and `zero_to_fp32`, unpickles with
`weights_only=True` and an allow-list of exactly the classes refinery checkpoints hold.

Contract
- `load(path)` is the one way `train/` reads a `.pt` file. Anything the restricted unpickler
  will not build (a `__reduce__` calling `open`/`os.system`, any class not listed below, a
  TorchScript archive) raises `CheckpointError` with one line, `FILE: refused: it holds
  GLOBAL, which refinery checkpoints never hold; nothing in it was run`. A file that cannot be
  read at all (truncated, not a torch file) is a one-line `CheckpointError` too.
- `safe_loads()` is a context manager for DeepSpeed's loaders: for its duration `torch.load`
  (and `torch.serialization.load`) is `load`, whatever `weights_only=False` DeepSpeed passes
  (`runtime/checkpoint_engine/torch_checkpoint_engine.py`, `runtime/base_optimizer.py`,
  `runtime/zero/stage3.py`, `utils/zero_to_fp32.py`, ...), and `TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`
  covers a reference to the original function bound before it was entered.
- The trainer and `train/export.py` also load Hugging Face model directories (`--model DIR`,
  `train generate/eval`) under `safe_loads()`: a `pytorch_model.bin` is held to the same rule.
- `latest_tag(ckpt_dir)` reads DeepSpeed's `latest` pointer; a tag must be a plain directory
  name inside `ckpt_dir` (no separator, not `..`), so `latest` cannot point a load elsewhere.

Why DeepSpeed checkpoints under a restricted unpickler, and not our own safetensors + JSON:
resume needs DeepSpeed's ZeRO partitions of the optimizer state for every stage (and export
its consolidation in `zero_to_fp32`); writing them ourselves would be a second copy of
DeepSpeed's partition bookkeeping. The restricted unpickler builds only tensors, storages,
dtypes, sizes, primitive containers (dict, OrderedDict, list, tuple, set, str, int, float,
bool, None) and the allow-listed classes; it never calls an arbitrary callable, so the file
format stays DeepSpeed's and patching one function covers every code path that reads it.

The allow-list: found by saving real checkpoints of the tiny model under ZeRO 0, 1, 2, 3 and
listing `torch.serialization.get_unsafe_globals_in_checkpoint` for each file, plus the fp16
loss scaler that DeepSpeed's fp16/ZeRO `state_dict` code stores on the GPU:
  deepspeed.runtime.zero.config.ZeroStageEnum          ZeRO 1-3 optimizer states
  deepspeed.runtime.fp16.loss_scaler.LossScaler        ZeRO 1-3 optimizer states (fp32, bf16)
  deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler ZeRO 1-3 optimizer states (fp16)
  deepspeed.utils.tensor_fragment.fragment_address     ZeRO 1-2 / bf16 parameter slice maps
Each is rebuilt from plain fields (an int enum, dataclasses of numbers) and runs nothing.
The client state the trainer writes (step, data cursor, tokens seen, RNG states, schedule) is
plain values and tensors: the numpy RNG key is stored as a list of ints, not an ndarray, so
numpy is not on the list (checkpoints written before this rule hold an ndarray and are refused,
naming `numpy._core.multiarray._reconstruct`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import zipfile
from typing import Any, Iterator

import torch

_REAL_LOAD = torch.serialization.load  # the function `torch.load` is
_FORCE_ENV = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


class CheckpointError(ValueError):
    """A checkpoint or model file refinery will not (or cannot) load; the message is one line."""


def allowed_globals() -> list[Any]:
    """The classes (beyond torch's weights-only defaults) that refinery checkpoints hold."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


def _refused_global(msg: str) -> str | None:
    """The global torch's restricted unpickler refused, from its error message."""
    for pat in (r"GLOBAL (\S+) was not an allowed global", r"unsupported GLOBAL (\S+) whose module",
                r"Unsupported global: GLOBAL (\S+)", r"GLOBAL (\S+)"):
        m = re.search(pat, msg)
        if m:
            return m.group(1).rstrip(".,")
    return None


def _one_line(e: BaseException) -> str:
    text = str(e)
    if "WeightsUnpickler error:" in text:  # torch's advice ("re-run with weights_only=False") is not ours
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


@contextlib.contextmanager
def _only_our_globals() -> Iterator[None]:
    """The allow-list is exactly ours for the load: a library imported in the same process may
    have widened torch's process-wide list (megatron.core registers numpy's array constructors
    at import, transformers' Trainer does too), which would let such files through."""
    ser = torch.serialization
    others = ser.get_safe_globals()
    ser.clear_safe_globals()
    ser.add_safe_globals(allowed_globals())
    try:
        yield
    finally:
        ser.clear_safe_globals()
        ser.add_safe_globals(others)


def load(f: Any, map_location: Any = "cpu", pickle_module: Any = None, *, weights_only: Any = None,
         mmap: bool | None = None, **_ignored: Any) -> Any:
    """`torch.load` with `weights_only=True` and the allow-list, whatever the caller asked for
    (`pickle_module`, `weights_only` and pickle arguments are ignored on purpose)."""
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else repr(f)
    try:
        with _only_our_globals():
            return _REAL_LOAD(f, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        what = _refused_global(str(e))
        if what:
            raise CheckpointError(f"{name}: refused: it holds {what}, which refinery checkpoints never hold; "
                                  "nothing in it was run") from None
        raise CheckpointError(f"{name}: refused: not a plain weights file ({_one_line(e)}); "
                              "nothing in it was run") from None
    except FileNotFoundError as e:
        raise CheckpointError(f"{name}: missing ({e.strerror})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{name}: not a readable checkpoint file ({_one_line(e)})") from None


@contextlib.contextmanager
def safe_loads() -> Iterator[None]:
    """For its duration every `torch.load` (DeepSpeed's included) is `load`."""
    prev_load, prev_ser, prev_env = torch.load, torch.serialization.load, os.environ.get(_FORCE_ENV)
    torch.load = load  # type: ignore[assignment]
    torch.serialization.load = load  # type: ignore[assignment]
    os.environ[_FORCE_ENV] = "1"
    try:
        yield
    finally:
        torch.load, torch.serialization.load = prev_load, prev_ser  # type: ignore[assignment]
        if prev_env is None:
            os.environ.pop(_FORCE_ENV, None)
        else:
            os.environ[_FORCE_ENV] = prev_env


def check_tag(ckpt_dir: str, tag: str) -> str:
    """A checkpoint tag is a plain directory name inside `ckpt_dir`."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag) or tag in (".", ".."):
        raise CheckpointError(f"{ckpt_dir}: checkpoint tag {tag!r} is not a plain directory name")
    if not os.path.isdir(os.path.join(ckpt_dir, tag)):
        raise CheckpointError(f"{ckpt_dir}: no checkpoint directory {tag!r}")
    return tag


def latest_tag(ckpt_dir: str) -> str:
    """The tag DeepSpeed's `latest` file names, checked by `check_tag`."""
    p = os.path.join(ckpt_dir, "latest")
    if not os.path.isfile(p):
        raise CheckpointError(f"{ckpt_dir}: no 'latest' file — not a DeepSpeed checkpoint directory")
    with open(p, "rb") as fh:
        raw = fh.read(256)
    try:
        tag = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CheckpointError(f"{p}: not a checkpoint tag (undecodable bytes)") from None
    return check_tag(ckpt_dir, tag)
