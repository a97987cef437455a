"""The build recipe: one validated object (YAML <-> pydantic) that says everything a build does.

CLI flags only override fields of this object; nothing else is threaded through the code.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """One named input source: files, how to read them, and its share of the mix."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    paths: list[str]
    kind: Literal["general", "domain"] = "general"
    format: Literal["auto", "jsonl", "json", "txt", "md", "wudao", "parquet", "csv", "hf"] = "auto"
    text_key: str | None = None  # None: first of the usual keys found (text, content, raw_content, ...)
    template: str | None = None  # e.g. "{title}\n{content}"; overrides text_key
    id_key: str | None = None
    txt_mode: Literal["file", "paragraph", "line"] = "file"
    encoding: str | None = None  # None: detect (BOM, UTF-8, GB18030, Big5)
    weight: float | None = Field(default=None, gt=0)  # target share of train tokens
    epochs: float | None = Field(default=None, gt=0)  # or: how many passes over the source
    languages: list[str] | None = None  # language-ID keep list for this source (None: recipe default)
    # per-source changes to the recipe's per-document stages: {stage: {param: value, ...}} merges
    # into that stage's parameters for this source, {stage: false} skips it (e.g. a curated corpus
    # that its own pipeline already length-filtered, or statutes that are not web pages)
    stage_overrides: dict[str, dict[str, Any] | Literal[False]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weight_or_epochs(self) -> "SourceConfig":
        if self.weight is not None and self.epochs is not None:
            raise ValueError(f"source {self.name!r}: give weight or epochs, not both")
        return self


class StageConfig(BaseModel):
    """A pipeline stage by registered name plus its parameters (validated by the stage)."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "name"}


class TokenizerConfig(_Strict):
    path: str | None = None  # SentencePiece .model or HF tokenizer.json; None: the demo default
    add_bos: bool = True
    add_eos: bool = True
    batch_size: int = Field(default=1024, gt=0)


class PackingConfig(_Strict):
    mode: Literal["concat", "pad", "best_fit"] = "concat"
    seq_len: int = Field(default=2048, ge=8)
    tail: Literal["pad", "drop"] = "pad"  # the last partial row of each stream


class SplitConfig(_Strict):
    val_ratio: float = Field(default=0.01, ge=0, lt=1)
    val_max_docs: int | None = None  # cap val documents per source


class OutputConfig(_Strict):
    rows_per_shard: int = Field(default=32768, gt=0)
    dtype: Literal["auto", "uint16", "uint32"] = "auto"
    rejected_samples: int = Field(default=20, ge=0)


class LimitsConfig(_Strict):
    max_doc_chars: int = Field(default=2_000_000, gt=0)
    oversize: Literal["split", "drop"] = "split"
    strict: bool = False  # first bad unit is fatal
    max_bad_examples: int = Field(default=50, ge=0)
    # an uncompressed JSON Lines file larger than this is read as several byte-range units (cut
    # at line ends) so that one big file uses several workers; None: one unit per file
    unit_bytes: int | None = Field(default=256 << 20, ge=4096)


# stage parameters that name files: resolved from the YAML's folder like source paths
_PATH_PARAMS = {"model_path", "blocklist_files", "eval_files"}


def stage_files(recipe: "Recipe") -> list[str]:
    """Files that stages read (models, blocklists, eval sets): part of a build's input identity."""
    out: list[str] = []
    for st in recipe.stages:
        for key, v in st.params().items():
            if key in _PATH_PARAMS and v:
                out += [v] if isinstance(v, str) else list(v)
    return out


class Recipe(_Strict):
    """Everything a `corpus build` does, in one object."""

    name: str = "build"
    seed: int = 1234
    sources: list[SourceConfig]
    stages: list[StageConfig] = Field(default_factory=lambda: [
        StageConfig(name="normalize"), StageConfig(name="min_length", min_chars=20),
        StageConfig(name="exact_dedup")])
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    packing: PackingConfig = Field(default_factory=PackingConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    workers: int = Field(default=1, ge=1)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in v]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique: {names}")
        if not v:
            raise ValueError("a recipe needs at least one source")
        return v

    @model_validator(mode="after")
    def _overrides_name_stages(self) -> "Recipe":
        names = {s.name for s in self.stages}
        for src in self.sources:
            unknown = set(src.stage_overrides) - names
            if unknown:
                raise ValueError(f"source {src.name!r}: stage_overrides name stages not in the recipe: "
                                 f"{sorted(unknown)}")
        return self

    def stages_for(self, source_index: int) -> list[StageConfig]:
        """The recipe's stages with one source's `stage_overrides` applied."""
        ov = self.sources[source_index].stage_overrides
        out = []
        for st in self.stages:
            o = ov.get(st.name)
            if o is False:
                continue
            out.append(StageConfig(name=st.name, **{**st.params(), **o}) if o else st)
        return out

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "Recipe":
        """Load and validate a YAML recipe; relative paths are taken from the YAML's folder."""
        p = Path(path)
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        base = p.parent
        for s in data.get("sources", []):
            s["paths"] = [x if os.path.isabs(x) else str((base / x)) for x in s.get("paths", [])]
        for st in data.get("stages", []) or []:
            for key in _PATH_PARAMS & set(st):
                v = st[key]
                if isinstance(v, str) and not os.path.isabs(v):
                    st[key] = str(base / v)
                elif isinstance(v, list):
                    st[key] = [x if os.path.isabs(x) else str(base / x) for x in v]
        tp = (data.get("tokenizer") or {}).get("path")
        if tp and not os.path.isabs(tp):
            data["tokenizer"]["path"] = str(base / tp)
        return cls.model_validate(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the recipe (minus worker count and unit size, which never
        change the output)."""
        d = self.model_dump(mode="json")
        d.pop("workers", None)
        d["limits"].pop("unit_bytes", None)  # how big files are cut into units never changes the output
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def expand_paths(patterns: list[str]) -> list[str]:
    """Files named by paths, directories (recursive) and globs, sorted for a deterministic order."""
    out: list[str] = []
    for pat in patterns:
        if any(c in pat for c in "*?["):
            hits = sorted(glob.glob(pat, recursive=True))
        elif os.path.isdir(pat):
            hits = []
            if _is_hf_dataset_dir(pat):
                hits = [pat]
            else:
                for root, dirs, files in os.walk(pat):
                    dirs.sort()
                    if _is_hf_dataset_dir(root):
                        hits.append(root)
                        dirs[:] = []
                        continue
                    hits += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
        elif os.path.exists(pat):
            hits = [pat]
        else:
            raise FileNotFoundError(f"input path does not exist: {pat}")
        for h in hits:
            if h not in out:
                out.append(h)
    return out


def _is_hf_dataset_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "dataset_info.json")) or os.path.isfile(
        os.path.join(path, "dataset_dict.json"))
