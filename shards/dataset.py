"""A built shard directory as a whole: the manifest plus its memory-mapped shards."""

from __future__ import annotations

import json
import os
from functools import cached_property
from typing import Any

import numpy as np

from .format import Shard, ShardFormatError


class ShardDataset:
    """Open `root/manifest.json`; `shards(split, source)` gives memory-mapped `Shard`s."""

    def __init__(self, root: str):
        self.root = root
        path = os.path.join(root, "manifest.json")
        if not os.path.exists(path):
            raise ShardFormatError(f"{path}: no manifest — not a finished build (was it interrupted? rerun "
                                   "`corpus build` with the same --out to resume)")
        try:
            self.manifest: dict[str, Any] = json.load(open(path, encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ShardFormatError(f"{path}: offset {e.pos}: invalid JSON: {e.msg}") from e
        if self.manifest.get("format") != "refinery-shards":
            raise ShardFormatError(f"{path}: not a refinery manifest")
        self.seq_len: int = self.manifest["seq_len"]
        self.dtype = np.dtype(self.manifest["dtype"])

    @property
    def tokenizer(self) -> dict[str, Any]:
        return self.manifest["tokenizer"]

    @property
    def sources(self) -> list[str]:
        return [s["name"] for s in self.manifest["sources"]]

    def entries(self, split: str, source: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.manifest["splits"][split]["shards"] if source is None or e["source"] == source]

    def shards(self, split: str, source: str | None = None) -> list[Shard]:
        return [self._shard(e["name"]) for e in self.entries(split, source)]

    def _shard(self, name: str) -> Shard:
        return self._cache.setdefault(name, Shard(os.path.join(self.root, name), self.seq_len, self.dtype))

    @cached_property
    def _cache(self) -> dict[str, Shard]:
        return {}

    def rows(self, split: str, source: str | None = None) -> int:
        return sum(e["rows"] for e in self.entries(split, source))
