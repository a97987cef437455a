"""The whole build on one core, ours beside datatrove's equivalent pipeline, same input, one run.

Input: one JSON Lines file of real text, written once and read by both: every record of the web
sources in ../shared/data (c4_en, dolma_commoncrawl_en, flagdata_web_zh, oscar_zh) and then
records of ../shared/corpora (en_wikipedia, zh_modern_misc, zh_medical, en_technical_docs) up to
`--mb` MB of UTF-8 text.

* ours: `corpus.build.build` with workers=1 on recipes/clean-zh-en.yaml's per-document chain +
  exact_dedup + minhash_dedup, tokenize (HF `tokenizers`, the LLaMA model converted to
  tokenizer.json, add_bos/add_eos) and pack into shards. Per-stage times: the same per-document
  stages applied to the same documents one stage at a time (outside the build, timed per stage).
* datatrove: JsonlReader -> LanguageFilter (fastText lid.176: the same .ftz our `language` stage
  reads, since its own download needs the network) -> GopherRepetitionFilter -> GopherQualityFilter
  -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter; then MinhashDedupSignature,
  MinhashDedupBuckets, MinhashDedupCluster, and JsonlReader -> MinhashDedupFilter ->
  DocumentTokenizer (same tokenizer.json, eos), each a LocalPipelineExecutor with 1 worker (1 task; the buckets step one per bucket).
  Its per-step times are its own stats. It has no exact-dedup stage in this chain (MinHash covers
  exact copies), no URL/PII/spam/encoding stages and no packing: it does less work than ours.

Both run in this process pinned to one core (RAYON_NUM_THREADS=1 for `tokenizers`).

    taskset -c 0 python bench/build.py [--mb 20] [--skip-datatrove]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")
CORPORA = os.path.join(ROOT, "..", "shared", "corpora")
WEB = ["general/c4_en/c4_demo.jsonl", "general/dolma_commoncrawl_en/*.jsonl*", "general/flagdata_web_zh/*.jsonl",
       "general/oscar_zh/*/*"]
FILL = ["en_wikipedia", "zh_modern_misc", "zh_medical", "en_technical_docs"]


def write_input(path: str, mb: float) -> tuple[int, int, list[str]]:
    """(documents, bytes of text) written to `path`, and the files they came from."""
    from corpus.readers import read_documents
    from corpus.recipe import SourceConfig

    files = [f for pat in WEB for f in sorted(glob.glob(os.path.join(DATA, pat))) if os.path.isfile(f)]
    files += [os.path.join(CORPORA, n + ".jsonl.zst") for n in FILL]
    n = size = 0
    used = []
    with open(path, "w", encoding="utf-8") as out:
        for f in files:
            if size >= mb * 1e6:
                break
            used.append(os.path.relpath(f, os.path.join(ROOT, "..")))
            mode = "paragraph" if "oscar_zh" in f else "file"  # as recipes/clean-zh-en.yaml reads OSCAR
            for d in read_documents([f], SourceConfig(name="in", paths=[f], txt_mode=mode)):
                out.write(json.dumps({"id": f"d{n}", "text": d.text}, ensure_ascii=False) + "\n")
                n += 1
                size += len(d.text.encode("utf-8"))
                if size >= mb * 1e6:
                    break
    return n, size, used


def ours(inp: str, tok_json: str, work: str) -> dict:
    from corpus.build import build, source_stages
    from corpus.readers import read_documents
    from corpus.recipe import Recipe
    from corpus.stages import Drop

    base = Recipe.from_yaml(os.path.join(ROOT, "recipes/clean-zh-en.yaml"))
    recipe = Recipe.model_validate({
        "name": "bench", "sources": [{"name": "web", "paths": [inp]}],
        "stages": [s.model_dump() for s in base.stages] + [{"name": "minhash_dedup"}],
        "tokenizer": {"path": tok_json}, "split": {"val_ratio": 0.0}, "workers": 1})
    t = time.perf_counter()
    build(recipe, os.path.join(work, "ours"))
    total = time.perf_counter() - t
    report = json.load(open(os.path.join(work, "ours", "build_report.json"), encoding="utf-8"))
    # per-stage: each per-document stage over the documents the previous one kept
    docs = list(read_documents([inp], recipe.sources[0], recipe.limits))
    stages = {}
    for st in source_stages(recipe)[0]:
        if st.is_global:
            continue
        t = time.perf_counter()
        nxt = []
        for d in docs:
            r = st.apply(d)
            if not isinstance(r, Drop):
                nxt.append(r)
        stages[st.name] = (time.perf_counter() - t, len(docs) - len(nxt))
        docs = nxt
    return {"seconds": total, "docs_out": report.get("documents", {}), "report_seconds": report.get("seconds"),
            "stages": stages}


def datatrove(inp: str, tok_json: str, work: str) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline import filters as dtf
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils import lid

    from corpus.filters.langid import lid_model_path

    from loguru import logger

    logger.remove()  # its per-step log is the same numbers, thousands of lines of them
    w = os.path.join(work, "dt")
    notes = []
    filters = [dtf.GopherRepetitionFilter(), dtf.GopherQualityFilter(), dtf.C4QualityFilter(filter_no_terminal_punct=False),
               dtf.FineWebQualityFilter()]
    try:
        lid.FT176LID.MODEL_URL = "file://" + os.path.abspath(lid_model_path())
        from datatrove.data import Document as DTDoc

        dtf.LanguageFilter(languages=["en", "zh"]).filter(DTDoc(text="a test sentence in English", id="0"))
        filters.insert(0, dtf.LanguageFilter(languages=["en", "zh"]))  # unloaded: the executor deep-copies it
    except Exception as e:  # noqa: BLE001 - without the model the filter is left out, and said so
        notes.append(f"LanguageFilter left out ({type(e).__name__}: {' '.join(str(e).split())[:120]})")
    from datatrove.utils.hashing import HashConfig

    # its default shingle hash (xxhash) passes str, which xxhash 4 refuses: sha1 (its other choice)
    cfg = MinhashConfig(hash_config=HashConfig(hash_fc="sha1"))
    notes.append("MinHash shingles hashed with sha1: datatrove's xxhash path passes str, refused by xxhash 4.x")
    steps = [
        ("read+filters+write", [JsonlReader(os.path.dirname(inp), glob_pattern=os.path.basename(inp)), *filters,
                                JsonlWriter(f"{w}/filtered")]),
        ("minhash signatures", [JsonlReader(f"{w}/filtered"), MinhashDedupSignature(f"{w}/sigs", config=cfg)]),
        ("minhash buckets", [MinhashDedupBuckets(f"{w}/sigs", f"{w}/buckets", config=cfg)]),
        ("minhash cluster", [MinhashDedupCluster(f"{w}/buckets", f"{w}/remove", config=cfg)]),
        ("minhash filter+tokenize", [JsonlReader(f"{w}/filtered"), MinhashDedupFilter(f"{w}/remove"),
                                     DocumentTokenizer(f"{w}/tokens", tokenizer_name_or_path=tok_json,
                                                       local_working_dir=f"{w}/tok_tmp", shuffle_documents=False)]),
    ]
    times, per_step = {}, {}
    for name, pipe in steps:
        t = time.perf_counter()
        tasks = cfg.num_buckets if name == "minhash buckets" else 1  # one task per bucket, run one after another
        stats = LocalPipelineExecutor(pipe, tasks=tasks, workers=1, logging_dir=f"{w}/logs/{name.split()[0]}_{len(times)}").run()
        times[name] = time.perf_counter() - t
        for s in getattr(stats, "stats", []):
            ts = getattr(s, "time_stats", None)
            if ts is not None and getattr(ts, "total", None) is not None:
                per_step[f"{name}: {s.name}"] = ts.total
    return {"seconds": sum(times.values()), "steps": times, "per_step": per_step, "notes": notes}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20.0)
    ap.add_argument("--skip-datatrove", action="store_true")
    a = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from shards.tokenizer import spm_to_tokenizer_json

    with tempfile.TemporaryDirectory() as work:
        inp = os.path.join(work, "input", "web.jsonl")
        os.makedirs(os.path.dirname(inp))
        n, size, used = write_input(inp, a.mb)
        tok_json = os.path.join(work, "tokenizer.json")
        spm_to_tokenizer_json(os.path.join(DATA, "tokenizers/llama/tokenizer.model"), tok_json)
        mb = size / 1e6
        print(f"input: {n:,} documents, {mb:.1f} MB of text from {', '.join(used)}")
        o = ours(inp, tok_json, work)
        print(f"ours      build --workers 1: {o['seconds']:7.1f} s  {mb / o['seconds']:6.2f} MB/s per core")
        print("  per-document stages, one pass each after the build (not a split of the build's time):")
        for k, (s, dropped) in o["stages"].items():
            print(f"    {k:<22} {s:7.2f} s  dropped {dropped:,}")
        if not a.skip_datatrove:
            d = datatrove(inp, tok_json, work)
            print(f"datatrove pipeline, 1 task:  {d['seconds']:7.1f} s  {mb / d['seconds']:6.2f} MB/s per core")
            for k, s in d["steps"].items():
                print(f"    {k:<30} {s:7.2f} s")
            for k, s in d["per_step"].items():
                print(f"      {k:<50} {s:7.2f} s")
            for note in d["notes"]:
                print("    note:", note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
