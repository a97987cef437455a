"""The base model's tokenizer: SentencePiece `tokenizer.model` or a Hugging Face `tokenizer.json`.

Documents are encoded *without* BOS/EOS: the packer inserts them by the recipe's policy, so
the same token arrays serve every packing mode.

Ground floor (in `shards/`, importing only `shards.fileio`): the build encodes with it, and
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

from .fileio import sha256_file


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
        if self.path.endswith(".json"):
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
        encs = self._hf.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encs]

    def decode(self, ids: list[int] | np.ndarray) -> str:
        ids = [int(i) for i in ids]
        if self.kind == "sentencepiece":
            return self._sp.decode(ids)  # type: ignore[no-any-return]
        return self._hf.decode(ids, skip_special_tokens=False)  # type: ignore[no-any-return]

    def piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i)) if self.kind == "sentencepiece" else str(self._hf.id_to_token(int(i)))

    def identity(self) -> dict[str, Any]:
        """What must match between shards and model: file hash, vocab size and special ids."""
        return {"kind": self.kind, "file": os.path.basename(self.path), "sha256": self.sha256,
                "vocab_size": self.vocab_size, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "pad_id": self.pad_id}


@lru_cache(maxsize=4)
def load_tokenizer(path: str | None = None, threads: int = 1) -> Tokenizer:
    """Cached per process: workers load the model once."""
    return Tokenizer(path, threads)


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
