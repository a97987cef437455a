"""The build recipe: one validated object (YAML <-> pydantic) that says everything a build does.

CLI flags only override fields of this object; nothing else is threaded through the code.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one line, `<where>: <what is wrong>`."""


def _check_params(cls: Any, params: dict[str, Any], where: str) -> None:
    from pydantic import ValidationError

    try:
        cls.Params(**params)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(x) for x in er['loc']) or 'params'}: {er['msg']}"
                         for er in e.errors(include_url=False))
        raise RecipeError(f"{where}: {errs}") from None


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
    dtype: Literal["auto", "uint16", "int32"] = "auto"  # auto: shards.format.token_dtype (Megatron's rule)
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
        """The recipe's stages with one source's `stage_overrides` applied, and its `languages`
        as the language stage's keep list (over any override: the source's own list wins)."""
        src = self.sources[source_index]
        ov = src.stage_overrides
        out = []
        for st in self.stages:
            o = ov.get(st.name)
            if o is False:
                continue
            if st.name == "language" and src.languages:
                o = {**(o or {}), "languages": list(src.languages)}
            out.append(StageConfig(name=st.name, **{**st.params(), **o}) if o else st)
        return out

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "Recipe":
        """Load and validate a YAML recipe; relative paths are taken from the YAML's folder.

        A missing file is FileNotFoundError, bad YAML yaml.YAMLError, a document that is not a
        mapping RecipeError, wrong keys or types pydantic's ValidationError: the CLI prints each
        as one `error: <file>: ...` line."""
        p = Path(path)
        if p.is_dir():
            raise RecipeError(f"{p}: is a directory, not a YAML recipe (for input paths use --input)")
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RecipeError(f"{p}: a recipe is a YAML mapping (name:, sources:, stages:, ...), "
                              f"not a {type(data).__name__}")
        base = p.parent

        def rebase(x: Any) -> Any:  # only strings are paths; anything else is left to validation
            return str(base / x) if isinstance(x, str) and not os.path.isabs(x) else x

        sources = data.get("sources")
        for s in sources if isinstance(sources, list) else []:
            if isinstance(s, dict) and isinstance(s.get("paths"), list):
                s["paths"] = [rebase(x) for x in s["paths"]]
        stages = data.get("stages")
        for st in stages if isinstance(stages, list) else []:
            for key in _PATH_PARAMS & set(st if isinstance(st, dict) else ()):
                v = st[key]
                st[key] = [rebase(x) for x in v] if isinstance(v, list) else rebase(v)
        tk = data.get("tokenizer")
        if isinstance(tk, dict) and tk.get("path"):
            tk["path"] = rebase(tk["path"])
        return cls.model_validate(data)

    def check_stages(self) -> None:
        """Every stage name is registered and its parameters (with each source's overrides)
        validate, without building the stages (no model is loaded). RecipeError or a pydantic
        ValidationError naming the stage."""
        from .stages import stage_class

        for i, st in enumerate(self.stages):
            try:
                cls = stage_class(st.name)
            except ValueError as e:
                raise RecipeError(f"stages[{i}].name: {e}") from None
            _check_params(cls, st.params(), f"stages[{i}] ({st.name})")
        for j, src in enumerate(self.sources):
            for i, st in enumerate(self.stages_for(j)):
                if st.name in src.stage_overrides:
                    _check_params(stage_class(st.name), st.params(),
                                  f"sources[{j}].stage_overrides.{st.name}")

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
    """Files named by paths, directories (recursive) and globs, sorted for a deterministic order.

    Symlinked sub-directories are followed. A symlink that leads back to a directory on its own
    path (a loop) is not entered: it is returned as it is, a directory that is neither walked
    nor an HF dataset, and the reader reports it once as a skipped unit (`symlink_loop`); a
    broken symlink is returned too and reported by the reader (it cannot be opened). A
    missing input path is FileNotFoundError (errno ENOENT, the path as its filename)."""
    out: list[str] = []
    for pat in patterns:
        if any(c in pat for c in "*?["):
            hits = sorted(glob.glob(pat, recursive=True))
        elif os.path.isdir(pat):
            hits = [pat] if _is_hf_dataset_dir(pat) else _walk(pat)
        elif os.path.lexists(pat):
            hits = [pat]  # a file, or a broken / looping symlink the reader reports
        else:
            raise FileNotFoundError(errno.ENOENT, "input path does not exist", pat)
        for h in hits:
            if h not in out:
                out.append(h)
    return out


def _walk(top: str) -> list[str]:
    """Files under `top` (sorted, hidden files skipped), following symlinked directories; a
    directory whose identity (device, inode) is already on the path from `top` is a loop."""
    hits: list[str] = []
    ident = {os.path.normpath(top): (_dir_id(top),)}  # directory -> identities of it and its ancestors
    for root, dirs, files in os.walk(top, followlinks=True):
        dirs.sort()
        if _is_hf_dataset_dir(root) and root != top:
            hits.append(root)
            dirs[:] = []
            continue
        chain = ident.pop(os.path.normpath(root), ())
        hits += [os.path.join(root, f) for f in sorted(files) if not f.startswith(".")]
        keep = []
        for d in dirs:
            full = os.path.join(root, d)
            did = _dir_id(full)
            if did in chain:
                hits.append(full)  # a loop: handed over unwalked, reported by the reader
                continue
            ident[os.path.normpath(full)] = chain + (did,)
            keep.append(d)
        dirs[:] = keep
    return hits


def _dir_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def is_symlink_loop(path: str) -> bool:
    """True for a directory `expand_paths` hands over unwalked: one that is (through a symlink on
    its path) the same directory as one of its own ancestors."""
    if not os.path.isdir(path):
        return False
    target = _dir_id(path)
    parent = os.path.dirname(os.path.abspath(path))  # the path as written, symlinks unresolved
    while True:
        if _dir_id(parent) == target:
            return True
        up = os.path.dirname(parent)
        if up == parent:
            return False
        parent = up


def _is_hf_dataset_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "dataset_info.json")) or os.path.isfile(
        os.path.join(path, "dataset_dict.json"))
