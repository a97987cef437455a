import os
from pathlib import Path

import pytest

os.environ.setdefault("DS_ACCELERATOR", "cpu")
ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
LLAMA_TOKENIZER = SHARED / "tokenizers" / "llama" / "tokenizer.model"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: the tests read real text from ../shared/data")
    return SHARED


@pytest.fixture(scope="session")
def small_build(shared, tmp_path_factory):
    """A real build of medical + C4 + Pile text at seq_len 256 (shared by several tests)."""
    from corpus.build import build
    from corpus.recipe import Recipe

    out = tmp_path_factory.mktemp("small_build")
    recipe = Recipe.model_validate({
        "name": "small", "seed": 7,
        "sources": [
            {"name": "medical", "kind": "domain", "paths": [str(shared / "domain/medicalgpt/pretrain")],
             "txt_mode": "paragraph"},
            {"name": "c4", "paths": [str(shared / "general/c4_en")]},
            {"name": "pile", "paths": [str(shared / "general/pile")]},
        ],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)},
        "packing": {"seq_len": 256},
        "split": {"val_ratio": 0.1},
    })
    res = build(recipe, str(out))
    return out, recipe, res


def build_files(out) -> dict:
    """Every file of a build directory except the intermediate .work/, the lock and the build
    report (which holds timings): what must be byte-identical between equivalent builds."""
    res = {}
    for root, _, files in os.walk(out):
        if ".work" in root:
            continue
        for f in files:
            if f not in ("build_report.json", ".lock"):
                p = os.path.join(root, f)
                res[os.path.relpath(p, out)] = open(p, "rb").read()
    return res
