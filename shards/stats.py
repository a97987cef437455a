"""What a build holds and what every stage removed: numbers for `corpus stats` (tables,
`--json`) computed from the manifest, the build report and the shards themselves."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .dataset import ShardDataset
from .format import FLAG_CONTINUES


def collect(root: str) -> dict[str, Any]:
    """Everything `corpus stats` shows, as one JSON-able dict."""
    ds = ShardDataset(root)
    m = ds.manifest
    rp = os.path.join(root, "build_report.json")
    report = json.load(open(rp, encoding="utf-8")) if os.path.exists(rp) else {}
    per_split: dict[str, Any] = {}
    for split in ("train", "val"):
        rows = []
        for src, ps in m["per_source"].items():
            s = ps[split]
            cap = s["rows"] * ds.seq_len
            rows.append({"source": src, "kind": ps["kind"], "docs": s["docs"], "unique_docs": s["unique_docs"],
                         "tokens": s["tokens"], "rows": s["rows"], "pad_tokens": s["pad_tokens"],
                         "pad_pct": 100.0 * s["pad_tokens"] / cap if cap else 0.0,
                         "tail_dropped_tokens": s["tail_dropped_tokens"],
                         "row_continuations": s["row_continuations"],
                         "doc_token_percentiles": s["doc_token_percentiles"],
                         "target_share": ps.get("target_share") if split == "train" else None,
                         "realised_share": ps.get("realised_share")
                         if split == "train" else None})
        per_split[split] = rows
    return {"root": root, "seq_len": ds.seq_len, "dtype": ds.dtype.name, "tokenizer": ds.tokenizer,
            "splits": per_split, "funnel": report.get("funnel", {}), "accounting": report.get("accounting", {}),
            "bad_unit_counts": report.get("bad_unit_counts", {}), "bad_units": report.get("bad_units", [])[:50],
            "tokenization": tokenization(report),
            "documents_in": report.get("documents_in"), "documents_written": report.get("documents_written")}


def tokenization(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per source: characters per token and the share of tokens that are byte-fallback pieces
    (`<0xNN>`), over the documents the per-document stages kept (before dedup and mixing). A high
    byte share (LLaMA's tokenizer spells many CJK characters as 3 bytes) is the evidence for
    extending the vocabulary before continued pretraining (Chinese-LLaMA-Alpaca)."""
    rows = []
    for src, t in report.get("tokenization", {}).items():
        n = t["tokens"]
        rows.append({"source": src, "chars": t["chars"], "tokens": n, "byte_tokens": t["byte_tokens"],
                     "chars_per_token": t["chars"] / n if n else None,
                     "byte_fallback_share": t["byte_tokens"] / n if n else None})
    return rows


_BYTE_MASKS: dict[str, np.ndarray] = {}


def byte_piece_mask(tok: Any) -> np.ndarray:
    """A boolean array over the vocabulary: True for SentencePiece byte-fallback pieces `<0xNN>`
    (cached per tokenizer file; a byte-level BPE has none: its bytes are ordinary pieces)."""
    key = f"{tok.path}:{tok.vocab_size}"
    if key not in _BYTE_MASKS:
        import re

        pat = re.compile(r"<0x[0-9A-Fa-f]{2}>")
        _BYTE_MASKS[key] = np.array([bool(pat.fullmatch(tok.piece(i))) for i in range(tok.vocab_size)], dtype=bool)
    return _BYTE_MASKS[key]


def sample_rows(root: str, n: int, seed: int = 0, split: str = "train") -> list[dict[str, Any]]:
    """Decode `n` random rows with document boundaries marked (⟦doc⟧ at each document start,
    ⟦cont⟧ where a row begins inside a document, ⟦pad×k⟧ for padding)."""
    from .tokenizer import build_tokenizer

    ds = ShardDataset(root)
    shards = ds.shards(split)
    total = sum(len(s) for s in shards)
    if total == 0:
        return []
    tok = build_tokenizer(root, ds.manifest)  # the build's own copy: works from any directory
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    starts = np.cumsum([0] + [len(s) for s in shards])
    out = []
    for g in picks:
        k = int(np.searchsorted(starts, g, side="right") - 1)
        sh, r = shards[k], int(g - starts[k])
        row = np.asarray(sh.tokens[r])
        b = sh.bounds
        segs = list(b.segments(r)) + [int(b.row_valid[r])]
        parts = []
        for i in range(len(segs) - 1):
            mark = "⟦cont⟧" if i == 0 and b.row_flags[r] & FLAG_CONTINUES else "⟦doc⟧"
            parts.append(mark + tok.decode(row[segs[i]: segs[i + 1]]))
        pad = ds.seq_len - int(b.row_valid[r])
        if pad:
            parts.append(f"⟦pad×{pad}⟧")
        out.append({"shard": os.path.relpath(sh.base, root), "row": r, "segments": len(segs) - 1,
                    "text": "".join(parts)})
    return out
