"""A built shard directory as a whole: the manifest plus its memory-mapped shards."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import numpy as np

from .format import Shard, ShardFormatError  # noqa: F401 (re-exported)
from .manifest import check_shard_name, read_manifest


class ShardDataset:
    """Open `root/manifest.json`; `shards(split, source)` gives memory-mapped `Shard`s."""

    def __init__(self, root: str, strict: bool = True):
        self.root = root
        self.manifest, self.warnings = read_manifest(root, strict=strict)
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
        return self._cache.setdefault(name, Shard(os.path.join(self.root, check_shard_name(name)), self.seq_len, self.dtype))

    @cached_property
    def _cache(self) -> dict[str, Shard]:
        return {}

    def rows(self, split: str, source: str | None = None) -> int:
        return sum(e["rows"] for e in self.entries(split, source))
