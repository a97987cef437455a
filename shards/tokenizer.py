"""The base model's tokenizer: SentencePiece `tokenizer.model`, a Hugging Face `tokenizer.json`,
or a Mistral Tekken `tekken.json` (131,072 tokens, read through `mistral-common`; a `.json`
file is Tekken when its top level has Tekken's `config` and `vocab`, else Hugging Face).

Documents are encoded *without* BOS/EOS: the packer inserts them by the recipe's policy, so
the same token arrays serve every packing mode.

A build directory carries its own copy (`install_tokenizer`: `OUT/tokenizer/`, each file's
sha256 in the manifest), and every reader of a build (stats, report, export) loads that copy
through `build_tokenizer`, so a build works from any directory and after being moved.

Ground floor (in `shards/`, importing only `shards.fileio` and `shards.format`): the build encodes with it, and
`shards/` (stats, report) and `train/` (export) decode and check identities with the same class,
without importing `corpus/`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write, sha256_file
from .format import ShardFormatError


def default_tokenizer_path() -> str:
    """The LLaMA-style 32,000-piece SentencePiece model shipped inside `mistral-common`."""
    import mistral_common

    p = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    if not p.exists():  # pragma: no cover - depends on the installed package
        raise FileNotFoundError(f"mistral-common does not ship {p}; pass tokenizer.path")
    return str(p)


class Tokenizer:
    """A loaded tokenizer with its identity (what the shards record and the trainer checks)."""

    def __init__(self, path: str | None = None, threads: int = 1):
        self.path = os.path.abspath(path or default_tokenizer_path())
        self.threads = threads
        if self.path.endswith(".json") and _is_tekken(self.path):
            from mistral_common.tokens.tokenizers.tekken import Tekkenizer

            self.kind = "tekken"
            self._tk = Tekkenizer.from_file(self.path)
            self.vocab_size = self._tk.n_words  # special tokens included (ids 0..999)
            self.bos_id, self.eos_id, self.pad_id = self._tk.bos_id, self._tk.eos_id, self._tk.pad_id
        elif self.path.endswith(".json"):
            from tokenizers import Tokenizer as HFTokenizer

            self.kind = "hf-tokenizers"
            self._hf = HFTokenizer.from_file(self.path)
            self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
            cfg = _hf_special(self.path)
            self.bos_id = _tok_id(self._hf, cfg.get("bos_token", "<s>"))
            self.eos_id = _tok_id(self._hf, cfg.get("eos_token", "</s>"))
            self.pad_id = _tok_id(self._hf, cfg.get("pad_token"))
        else:
            import sentencepiece as spm

            self.kind = "sentencepiece"
            self._sp = spm.SentencePieceProcessor(model_file=self.path)
            self.vocab_size = self._sp.vocab_size()
            self.bos_id, self.eos_id, self.pad_id = self._sp.bos_id(), self._sp.eos_id(), self._sp.pad_id()
        self.sha256 = sha256_file(self.path)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text (int32 arrays, no BOS/EOS), batched and multi-threaded."""
        if not texts:
            return []
        if self.kind == "sentencepiece":
            return self._sp.encode(texts, out_type="numpy", num_threads=self.threads)  # type: ignore[no-any-return]
        if self.kind == "tekken":  # text only: a literal "<s>" in a document is text, never a control id
            return [np.asarray(self._tk.encode(t, bos=False, eos=False), dtype=np.int32) for t in texts]
        encs = self._hf.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def decode(self, ids: list[int] | np.ndarray) -> str:
        ids = [int(i) for i in ids]
        if self.kind == "sentencepiece":
            return self._sp.decode(ids)  # type: ignore[no-any-return]
        if self.kind == "tekken":
            return self._tk.decode(ids)  # type: ignore[no-any-return]  # special ids are left out
        return self._hf.decode(ids, skip_special_tokens=False)  # type: ignore[no-any-return]

    def piece(self, i: int) -> str:
        if self.kind == "tekken":
            return str(self._tk.id_to_piece(int(i)))
        return self._sp.id_to_piece(int(i)) if self.kind == "sentencepiece" else str(self._hf.id_to_token(int(i)))

    def files(self) -> list[str]:
        """The files that define the tokenizer: the model, plus the `tokenizer_config.json`
        beside a Hugging Face `tokenizer.json` (its BOS/EOS/PAD names are read from it)."""
        side = Path(self.path).with_name("tokenizer_config.json")
        return [self.path] + ([str(side)] if self.kind == "hf-tokenizers" and side.is_file() else [])

    def identity(self) -> dict[str, Any]:
        """What must match between shards and model: file hash, vocab size and special ids."""
        return {"kind": self.kind, "file": os.path.basename(self.path), "sha256": self.sha256,
                "vocab_size": self.vocab_size, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "pad_id": self.pad_id}


@lru_cache(maxsize=4)
def load_tokenizer(path: str | None = None, threads: int = 1) -> Tokenizer:
    """Cached per process: workers load the model once."""
    return Tokenizer(path, threads)


def _is_tekken(path: str) -> bool:
    """A Tekken file is a JSON object with `config` (its regex pattern) and a `vocab` list; a
    Hugging Face tokenizer.json has `model` instead."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False  # the Hugging Face loader then names the problem
    return isinstance(d, dict) and isinstance(d.get("config"), dict) and "pattern" in d["config"] \
        and isinstance(d.get("vocab"), list) and "model" not in d


# ---------------------------------------------------------------------------------------
# the copy inside a build directory

TOKENIZER_DIR = "tokenizer"  # OUT/tokenizer/: the copies of the tokenizer's files


def install_tokenizer(tok: Tokenizer, out: str) -> dict[str, Any]:
    """Copy the tokenizer's files into `out/tokenizer/` (atomic writes) and return its identity
    as the manifest records it: `file` is the model's path relative to the build directory and
    `files` maps each copied file's relative path to its sha256 (verify checks them)."""
    d = os.path.join(out, TOKENIZER_DIR)
    os.makedirs(d, exist_ok=True)
    files = {}
    for src in tok.files():
        rel = f"{TOKENIZER_DIR}/{os.path.basename(src)}"
        with open(src, "rb") as f:
            data = f.read()
        atomic_write(os.path.join(out, rel), data)
        files[rel] = sha256_file(os.path.join(out, rel))
    ident = tok.identity()
    ident["file"] = f"{TOKENIZER_DIR}/{os.path.basename(tok.path)}"
    if files[ident["file"]] != ident["sha256"]:  # the file changed while the build read it
        raise ShardFormatError(f"{tok.path}: changed while it was copied into {d}; rerun the build")
    ident["files"] = files
    return ident


def build_tokenizer_path(root: str, manifest: dict[str, Any]) -> str:
    """The tokenizer file of a build: its copy inside `root` (a build that has one), else, for a
    build made before builds carried a copy, the recipe's path if it still holds the same file
    (checked by sha256). Anything else is a one-line ShardFormatError."""
    tok = manifest["tokenizer"]
    if "files" in tok:
        path = os.path.join(root, tok["file"])
        if not os.path.isfile(path):
            raise ShardFormatError(f"{path}: the build's copy of its tokenizer is missing (copy the whole build "
                                   "directory, or rebuild)")
        if sha256_file(path) != tok["sha256"]:
            raise ShardFormatError(f"{path}: sha256 differs from the manifest's tokenizer.sha256 (the copy was "
                                   "changed; rebuild or restore it)")
        return path
    given = ((manifest.get("recipe") or {}).get("tokenizer") or {}).get("path") or default_tokenizer_path()
    if os.path.isfile(given) and sha256_file(given) == tok["sha256"]:
        return given
    raise ShardFormatError(f"{os.path.join(root, 'manifest.json')}: this build predates tokenizer copies in the "
                           f"build directory and its tokenizer {given} is {'changed' if os.path.isfile(given) else 'not found'} "
                           "from here: run from the directory it was built in, or rebuild")


def build_tokenizer(root: str, manifest: dict[str, Any]) -> Tokenizer:
    """The loaded tokenizer of a build (see `build_tokenizer_path`)."""
    return load_tokenizer(build_tokenizer_path(root, manifest))


def _hf_special(path: str) -> dict[str, Any]:
    cfg = Path(path).with_name("tokenizer_config.json")
    if cfg.exists():
        d = json.loads(cfg.read_text())
        return {k: (v["content"] if isinstance(v, dict) else v) for k, v in d.items()
                if k in ("bos_token", "eos_token", "pad_token")}
    return {}


def _tok_id(tok: Any, token: str | None) -> int:
    if not token:
        return -1
    i = tok.token_to_id(token)
    return -1 if i is None else int(i)


def spm_to_tokenizer_json(model_path: str, out: str) -> dict[str, Any]:
    """Write a Hugging Face `tokenizer.json` that encodes exactly like a LLaMA-style SentencePiece
    BPE model (byte fallback, "▁" for spaces, a "▁" prefix), plus a `tokenizer_config.json` naming
    BOS/EOS/UNK. Returns a summary (vocab size, merges).

    BPE merges are not stored in a `.model` file; SentencePiece applies the highest-scoring pair
    whose merge is in the vocabulary. So every way of splitting a piece into two vocabulary
    pieces becomes a merge ranked by the piece's score (ties: longer left part first, then longer
    right part, then piece id order) — the rank order that reproduces SentencePiece's choices.
    """
    import sentencepiece as spm
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, normalizers
    from tokenizers.models import BPE

    sp = spm.SentencePieceProcessor(model_file=model_path)
    n = sp.vocab_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    special = {i for i in range(n) if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)}
    ranked = []
    for i in range(n):
        if i in special:
            continue
        piece, score = sp.id_to_piece(i), sp.get_score(i)
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece))]
        splits = [(a, b) for a, b in splits if vocab.get(a, -1) >= 0 and vocab.get(b, -1) >= 0
                  and vocab[a] not in special and vocab[b] not in special]
        for a, b in sorted(splits, key=lambda ab: (vocab[ab[0]], vocab[ab[1]])):
            ranked.append((-score, -len(a), -len(b), len(ranked), a, b))
    merges = [(a, b) for *_, a, b in sorted(ranked)]
    unk = sp.id_to_piece(sp.unk_id()) if sp.unk_id() >= 0 else None
    tok = HFTokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    tok.save(out)
    cfg = {"bos_token": sp.id_to_piece(sp.bos_id()) if sp.bos_id() >= 0 else None,
           "eos_token": sp.id_to_piece(sp.eos_id()) if sp.eos_id() >= 0 else None,
           "unk_token": unk, "pad_token": sp.id_to_piece(sp.pad_id()) if sp.pad_id() >= 0 else None,
           "source": os.path.basename(model_path), "source_sha256": sha256_file(model_path)}
    Path(out).with_name("tokenizer_config.json").write_text(json.dumps(cfg, indent=1))
    return {"vocab_size": n, "merges": len(merges), "out": out}


def tekken_to_tokenizer_json(path: str, out: str, bos_id: int | None = None) -> dict[str, str]:
    """Write a Hugging Face `tokenizer.json` that encodes text exactly like the Tekken file at
    `path` (transformers' own Tekken converter: byte-level BPE with Tekken's regex and ranks;
    ids 0..999 are Tekken's control tokens). With `bos_id`, encoding a prompt prepends BOS as
    the shards' rows do. Returns the names of BOS/EOS/PAD/UNK (for tokenizer_config.json).

    Tekken never reads control tokens from text, so a tokenizer_config.json beside the output
    should set `split_special_tokens` (a literal `<s>` in a document is text in the shards)."""
    from tokenizers import processors
    from transformers.integrations.mistral.tokenizer import MistralConverter

    tk = load_tokenizer(path)
    hf = MistralConverter(vocab_file=path).converted()
    names = {k: str(hf.id_to_token(i)) for k, i in (("bos", tk.bos_id), ("eos", tk.eos_id), ("pad", tk.pad_id),
                                                     ("unk", tk._tk.unk_id)) if i is not None and i >= 0}
    if bos_id is not None and bos_id >= 0:
        bos = str(hf.id_to_token(bos_id))
        hf.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                          special_tokens=[(bos, bos_id)])
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    hf.save(out)
    return names
