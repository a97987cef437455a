"""`manifest.json`, the one writer and the one reader: its format name and version, its schema
(the fields every reader indexes, with their types), and its own checksum (`manifest_sha256`).

* `write_manifest(root, fields)` stamps `format`/`format_version`, checks the schema (a build
  can never write a manifest its readers refuse), adds the checksum and writes atomically.
* `read_manifest(root)` refuses unsafe shard names (plain file names inside the build
  directory only), fields of the wrong type, and (when strict) hand edits.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from .fileio import atomic_write
from .format import FORMAT_VERSION, TOKEN_DTYPES, ShardFormatError

MANIFEST = "manifest.json"
FORMAT_NAME = "refinery-shards"
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


def write_manifest(root: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Write `root/manifest.json` (the commit point of a build: written last, atomically) from
    the build's `fields`; returns the manifest as written, checksum included."""
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                **{k: v for k, v in fields.items() if k not in ("format", "format_version", CHECKSUM_FIELD)}}
    path = os.path.join(root, MANIFEST)
    _check_schema(manifest, path)
    manifest = with_checksum(manifest)
    atomic_write(path, json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def check_shard_name(name: Any, what: str = "shard name") -> str:
    """A shard name is `SPLIT/PREFIX-NNNNN` as the writer makes it: relative, '/'-separated
    plain file names (no '..', '.', empty part, backslash, NUL or drive), so it stays inside
    the build directory. The tokenizer copies (`tokenizer/NAME`) follow the same rule."""
    ok = isinstance(name, str) and bool(name) and "\x00" not in name and "\\" not in name \
        and not os.path.isabs(name) and not name.startswith("/") and ":" not in name
    if ok:
        parts = name.split("/")
        ok = len(parts) <= 2 and all(p and p not in (".", "..") and (os.sep == "/" or os.sep not in p)
                                     for p in parts)
    if not ok:
        raise ManifestError(f"{MANIFEST}: {what} {name!r} is not a plain file name inside the build directory")
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
    except (UnicodeDecodeError, RecursionError, ValueError) as e:  # not UTF-8, nesting, huge ints
        raise ShardFormatError(f"{path}: invalid JSON: {type(e).__name__}: {str(e)[:120]}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise ShardFormatError(f"{path}: not a refinery manifest")
    warnings: list[str] = []
    _check_schema(m, path)
    if CHECKSUM_FIELD not in m:
        warnings.append(f"no {CHECKSUM_FIELD} (built before manifests carried a checksum): edits cannot be detected")
    elif m[CHECKSUM_FIELD] != manifest_checksum(m):
        if strict:
            raise ManifestError(f"{path}: {EDITED}")
        warnings.append(EDITED)
    return m, warnings


def _check_schema(m: dict[str, Any], path: str) -> None:
    """Plain shard names, then the types of the fields every reader indexes."""
    try:
        for split in m["splits"].values():
            for e in split["shards"]:
                check_shard_name(e["name"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ManifestError(f"{path}: malformed splits/shards ({e!r})") from None
    _check_types(m, path)


def _check_types(m: dict[str, Any], path: str) -> None:
    """The fields every reader indexes have the types the writer gives them (a hand edit that
    recomputed the checksum, or a damaged file, is a ManifestError naming the field, never a
    KeyError or TypeError in whatever opens the build next)."""
    def need(ok: bool, where: str, what: str) -> None:
        if not ok:
            raise ManifestError(f"{path}: {where}: {what}")

    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    need(count(m.get("seq_len")) and m["seq_len"] > 0, "seq_len", "must be a positive integer")
    try:
        dt = np.dtype(m.get("dtype")) if isinstance(m.get("dtype"), str) else None
    except TypeError:
        dt = None
    need(dt in TOKEN_DTYPES, "dtype", "must be uint16 or int32 (the token dtypes Megatron reads)")
    tok = m.get("tokenizer")
    need(isinstance(tok, dict) and count(tok.get("vocab_size")) and isinstance(tok.get("sha256"), str),
         "tokenizer", "must be a mapping with vocab_size and sha256")
    if "files" in tok:  # the copies inside the build directory (builds before them have none)
        files = tok["files"]
        need(isinstance(files, dict) and all(isinstance(v, str) for v in files.values()) and tok.get("file") in files,
             "tokenizer.files", "must map each copied file (tokenizer.file among them) to its sha256")
        for rel in files:
            check_shard_name(rel, "tokenizer file")
    srcs = m.get("sources")
    need(isinstance(srcs, list) and all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in srcs),
         "sources", "must be a list of {name: ...}")
    for split in ("train", "val"):
        sp = m["splits"].get(split)
        need(isinstance(sp, dict) and count(sp.get("rows")) and count(sp.get("tokens")), f"splits.{split}",
             "must have shards, rows and tokens")
        for i, e in enumerate(sp["shards"]):
            sha = e.get("sha256") if isinstance(e, dict) else None
            need(isinstance(e, dict) and isinstance(e.get("source"), str) and count(e.get("rows"))
                 and count(e.get("tokens")) and isinstance(sha, dict)
                 and all(isinstance(sha.get(k), str) for k in ("bin", "idx", "bnd"))
                 and isinstance(e.get("bin_block_xxh64"), list), f"splits.{split}.shards[{i}]",
                 "must have source, rows, tokens, sha256 {bin, idx, bnd} and bin_block_xxh64")
