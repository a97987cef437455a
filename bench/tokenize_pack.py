"""Tokenize + pack + write throughput per core on the same real text, in one run:

* ours: SentencePiece batch encode to numpy + the Numba concat packer + ShardWriter (.bin/.idx/.bnd)
* bare SentencePiece encode loop (the ceiling for any SentencePiece-based pipeline)
* HF `tokenizers` encode_batch + numpy concatenate (Megatron preprocess_data style)
* a nanoGPT-style loop (python lists of ids, np.array(...).tofile)
and the packing step alone: our kernel vs numpy concatenate + reshape, in GB/s of output.

    taskset -c 0 python bench/tokenize_pack.py [--tokenizer PATH] [--mb 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data")


def load_texts(mb: float) -> list[str]:
    from corpus.demo import materialize

    texts = []
    for line in open(os.path.join(SHARED, "general/c4_en/c4_demo.jsonl"), encoding="utf-8"):
        texts.append(json.loads(line)["text"])
    texts += [l for l in open(os.path.join(SHARED, "general/wikipedia_en/wiki_demo.txt"), encoding="utf-8") if l.strip()]
    for line in open(materialize() / "domain_zh.jsonl", encoding="utf-8"):
        texts.append(json.loads(line)["text"])
    out, size, i = [], 0, 0
    while size < mb * 1e6:
        t = texts[i % len(texts)]
        out.append(t)
        size += len(t.encode("utf-8"))
        i += 1
    return out


def bench(fn, *a):
    t = time.perf_counter()
    n = fn(*a)
    return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(SHARED, "tokenizers/llama/tokenizer.model"))
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--seq-len", type=int, default=2048)
    a = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = "1"  # one core for HF tokenizers too (read when its pool starts)
    import sentencepiece as spm

    from kernels.pack import ConcatPacker
    from shards.format import ShardWriter

    texts = load_texts(a.mb)
    mbytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    sp = spm.SentencePieceProcessor(model_file=a.tokenizer)
    L = a.seq_len
    results = []

    def ours() -> int:
        packer = ConcatPacker(L, 1, 2, 2, np.uint16)
        with tempfile.TemporaryDirectory() as d:
            w = ShardWriter(d, "bench", L, np.uint16, 1 << 20, 0)
            n = 0
            for i in range(0, len(texts), 1024):
                arrs = sp.encode(texts[i: i + 1024], out_type="numpy", num_threads=1)
                lens = np.fromiter((len(x) for x in arrs), np.int64, len(arrs))
                offs = np.zeros(len(arrs) + 1, np.int64)
                np.cumsum(lens, out=offs[1:])
                rows = packer.add(np.concatenate(arrs), offs)
                w.write(rows.rows, rows.row_valid, rows.row_flags, rows.seg_ptr, rows.seg_start)
                n += int(offs[-1])
            rows = packer.finish()
            w.write(rows.rows, rows.row_valid, rows.row_flags, rows.seg_ptr, rows.seg_start)
            w.close()
        return n

    def bare_sp() -> int:
        return sum(len(sp.encode(t)) for t in texts)

    def nanogpt() -> int:
        ids: list[int] = []
        for t in texts:
            x = sp.encode(t)
            x.append(2)
            ids.extend(x)
        with tempfile.TemporaryFile() as f:
            np.array(ids, dtype=np.uint16).tofile(f)
        return len(ids)

    ours()  # compile the Numba kernel outside the timing
    for name, fn in (("ours: spm batch + Numba pack + shard write", ours), ("bare SentencePiece encode loop", bare_sp),
                     ("nanoGPT-style loop (+ tofile)", nanogpt)):
        n, dt = bench(fn)
        results.append((name, n / dt, mbytes / dt))
    try:
        from tokenizers import Tokenizer as HFTokenizer

        from shards.tokenizer import spm_to_tokenizer_json

        tj = os.path.join(tempfile.mkdtemp(), "tokenizer.json")
        spm_to_tokenizer_json(a.tokenizer, tj)  # identical ids (tests/test_readers.py)
        hf = HFTokenizer.from_file(tj)

        def hf_np() -> int:
            n = 0
            chunks = []
            for i in range(0, len(texts), 1024):
                enc = hf.encode_batch(texts[i: i + 1024], add_special_tokens=False)
                chunks.append(np.concatenate([np.array(e.ids + [2], np.uint16) for e in enc]))
                n += sum(len(e.ids) for e in enc)
            np.concatenate(chunks)
            return n

        n, dt = bench(hf_np)
        results.append(("HF tokenizers encode_batch + numpy (Megatron-style)", n / dt, mbytes / dt))
    except Exception as e:
        results.append((f"HF tokenizers: not run ({str(e)[:40]})", float("nan"), float("nan")))
    try:  # datatrove's DocumentTokenizer (bench-only dependency) on the same tokenizer.json
        from datatrove.data import Document as DTDoc
        from datatrove.pipeline.tokens import DocumentTokenizer

        def datatrove_tok() -> int:
            with tempfile.TemporaryDirectory() as d:
                st = DocumentTokenizer(d, tokenizer_name_or_path=tj, eos_token="</s>", shuffle_documents=False,
                                       batch_size=1024)
                out = st.run(DTDoc(text=t, id=str(i)) for i, t in enumerate(texts))
                for _ in out or ():  # a generator in some versions, None in others
                    pass
                size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs
                           if f.endswith(".ds"))
            return size // 2 - len(texts)  # uint16 tokens minus one EOS per document

        n, dt = bench(datatrove_tok)
        results.append(("datatrove DocumentTokenizer (same tokenizer.json)", n / dt, mbytes / dt))
    except Exception as e:
        results.append((f"datatrove: not run ({type(e).__name__}: {str(e)[:40]})", float("nan"), float("nan")))

    # packing alone
    rng = np.random.default_rng(0)
    lens = rng.integers(50, 3000, 20000)
    toks = rng.integers(3, 32000, int(lens.sum())).astype(np.int32)
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    pk = ConcatPacker(L, 1, 2, 2, np.uint16)
    pk.add(toks[:1000], np.array([0, 1000]))
    pk = ConcatPacker(L, 1, 2, 2, np.uint16)
    _, dt_k = bench(lambda: len(pk.add(toks, offs)))

    def numpy_pack() -> int:
        parts = []
        for d in range(len(lens)):
            parts.append(np.array([1], np.int32))
            parts.append(toks[offs[d]: offs[d + 1]])
            parts.append(np.array([2], np.int32))
        flat = np.concatenate(parts).astype(np.uint16)
        n = len(flat) // L * L
        return len(flat[:n].reshape(-1, L))

    _, dt_n = bench(numpy_pack)

    def numpy_insert() -> int:
        # fully vectorised: EOS of doc d and BOS of doc d+1 inserted at the same index, in that order
        pos = np.concatenate([offs[1:], offs[:-1]])
        vals = np.concatenate([np.full(len(lens), 2), np.full(len(lens), 1)])
        flat = np.insert(toks, pos, vals).astype(np.uint16)
        n = len(flat) // L * L
        return len(flat[:n].reshape(-1, L))

    _, dt_i = bench(numpy_insert)
    out_gb = (len(toks) + 2 * len(lens)) * 2 / 1e9
    print(f"\ntext: {mbytes:.1f} MB real mixed en/zh, tokenizer {os.path.basename(a.tokenizer)}, seq_len {L}, 1 core\n")
    print(f"{'pipeline':55s} {'tokens/s':>12s} {'MB/s':>8s}")
    for name, tps, mbs in results:
        print(f"{name:55s} {tps:12,.0f} {mbs:8.2f}")
    print(f"\n{'packing only':55s} {'GB/s':>12s}")
    print(f"{'ours: Numba concat kernel (rows + boundaries)':55s} {out_gb / dt_k:12.2f}")
    print(f"{'numpy: per-doc concatenate + astype + reshape':55s} {out_gb / dt_n:12.2f}")
    print(f"{'numpy: vectorised np.insert + astype + reshape':55s} {out_gb / dt_i:12.2f}")


if __name__ == "__main__":
    main()
