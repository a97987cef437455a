"""The one reader of `manifest.json`: shard names must be plain file names inside the build
directory, and the manifest carries its own checksum (`manifest_sha256`)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from .format import FORMAT_VERSION, ShardFormatError

MANIFEST = "manifest.json"
KNOWN_FORMAT_VERSIONS = (FORMAT_VERSION,)
CHECKSUM_FIELD = "manifest_sha256"
EDITED = "manifest.json was edited by hand (checksum mismatch)"


class ManifestError(ShardFormatError, ValueError):
    """manifest.json is unsafe or inconsistent; the message is one line."""


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of every field except `manifest_sha256` itself."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_FIELD}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def with_checksum(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as written: every field plus its `manifest_sha256`."""
    out = {k: v for k, v in manifest.items() if k != CHECKSUM_FIELD}
    out[CHECKSUM_FIELD] = manifest_checksum(out)
    return out


def check_shard_name(name: Any) -> str:
    """A shard name is `SPLIT/PREFIX-NNNNN` as the writer makes it: relative, '/'-separated
    plain file names (no '..', '.', empty part, backslash, NUL or drive), so it stays inside
    the build directory."""
    ok = isinstance(name, str) and bool(name) and "\x00" not in name and "\\" not in name \
        and not os.path.isabs(name) and not name.startswith("/") and ":" not in name
    if ok:
        parts = name.split("/")
        ok = len(parts) <= 2 and all(p and p not in (".", "..") and (os.sep == "/" or os.sep not in p)
                                     for p in parts)
    if not ok:
        raise ManifestError(f"{MANIFEST}: shard name {name!r} is not a plain file name inside the build directory")
    return name


def read_manifest(root: str, strict: bool = True) -> tuple[dict[str, Any], list[str]]:
    """Parse and check `root/manifest.json`; returns (manifest, warnings). A checksum mismatch
    raises ManifestError when `strict`, else is returned as a warning (verify reports it)."""
    path = os.path.join(root, MANIFEST)
    if not os.path.exists(path):
        raise ShardFormatError(f"{path}: no manifest — not a finished build (was it interrupted? rerun "
                               "`corpus build` with the same --out to resume)")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except json.JSONDecodeError as e:
        raise ShardFormatError(f"{path}: offset {e.pos}: invalid JSON: {e.msg}") from e
    if not isinstance(m, dict) or m.get("format") != "refinery-shards":
        raise ShardFormatError(f"{path}: not a refinery manifest")
    warnings: list[str] = []
    try:
        for split in m["splits"].values():
            for e in split["shards"]:
                check_shard_name(e["name"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"{path}: malformed splits/shards ({e!r})") from None
    if CHECKSUM_FIELD not in m:
        warnings.append(f"no {CHECKSUM_FIELD} (built before manifests carried a checksum): edits cannot be detected")
    elif m[CHECKSUM_FIELD] != manifest_checksum(m):
        if strict:
            raise ManifestError(f"{path}: {EDITED}")
        warnings.append(EDITED)
    return m, warnings
