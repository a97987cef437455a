"""Issue 16, layers that hold: no module under train/ imports corpus/ (at top level or inside
a function), so training and export run from shards alone."""

import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "train"


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            mods.add(str(node.args[0].value))
    return mods


def test_train_imports_nothing_from_corpus():
    files = sorted(TRAIN.glob("**/*.py"))
    assert len(files) >= 8  # trainer, export, cli, data, model, config, schedule, safe_load, ...
    bad = {f.name: sorted(m for m in _imports(f) if m == "corpus" or m.startswith("corpus."))
           for f in files}
    assert not {k: v for k, v in bad.items() if v}, bad
    # the check sees imports inside functions too (export used one before issue 16)
    assert "shards.tokenizer" in _imports(TRAIN / "export.py")
