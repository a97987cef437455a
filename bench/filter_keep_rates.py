"""Keep rate of the default cleaning chain per real corpus of ../shared/data (and the demo's
People's Daily news), with drop reasons. Usage: python bench/filter_keep_rates.py"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corpus.readers import FileReader  # noqa: E402
from corpus.recipe import LimitsConfig, SourceConfig, expand_paths  # noqa: E402
from corpus.stages import Chain, build_stage  # noqa: E402

CHAIN = ["fix_encoding", "normalize", "url_filter", "language", "line_corrections", "spam", "gopher_repetition",
         "gopher_quality", "pii"]
D = os.environ.get("SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def corpora() -> list[tuple[str, str, dict]]:
    from corpus.demo import materialize

    demo = materialize()
    return [
        ("law_zh (laws, cases)", f"{D}/domain/lawrefbook_zh", {"format": "md"}),
        ("news_zh (People's Daily 1998)", str(demo / "domain_zh.jsonl"), {}),
        ("textbook_zh (fever.txt, paragraphs)", f"{D}/domain/medicalgpt/pretrain/fever.txt", {"txt_mode": "paragraph"}),
        ("finance_zh", f"{D}/domain/flagdata_finance_zh", {"text_key": "raw_content"}),
        ("web_zh (FlagData CCNet)", f"{D}/general/flagdata_web_zh/cleared1.jsonl", {}),
        ("oscar_zh", f"{D}/general/oscar_zh", {"txt_mode": "paragraph"}),
        ("c4_en", f"{D}/general/c4_en/c4_demo.jsonl", {}),
        ("c4_en, C4's own 15-word floor (recipe)", f"{D}/general/c4_en/c4_demo.jsonl",
         {"stage_overrides": {"gopher_quality": {"min_doc_words": 15}}}),
        ("wikipedia_en", f"{D}/general/wikipedia_en/wiki_demo.txt", {"txt_mode": "line"}),
        ("dolma_cc_en (raw CC)", f"{D}/general/dolma_commoncrawl_en", {}),
    ]


def main() -> None:
    print(f"{'corpus':40s} {'docs':>6s} {'kept':>6s} {'keep %':>7s} {'chars %':>7s} {'docs/s':>7s}  top drop reasons")
    for name, path, kw in corpora():
        src = SourceConfig(name="x", paths=[path], **kw)
        ov = src.stage_overrides
        ch = Chain([build_stage(n, ov.get(n) or {}) for n in CHAIN if ov.get(n) is not False])
        n = k = c_in = c_kept = 0
        t = time.perf_counter()
        for f in expand_paths([path]):
            for d in FileReader(f, os.path.basename(f), src, LimitsConfig()):
                if hasattr(d, "text"):
                    n += 1
                    c_in += len(d.text)
                    if ch(d) is not None:
                        k += 1
                        c_kept += len(d.text)  # the document's input size (transforms may shorten it)
        dt = time.perf_counter() - t
        drops: Counter = Counter()
        for s in ch.stats.values():
            drops.update(s.drops)
        top = ", ".join(f"{r}={c}" for r, c in drops.most_common(4))
        print(f"{name:40s} {n:6d} {k:6d} {100 * k / n:6.1f}% {100 * c_kept / c_in:6.1f}% {n / dt:7.0f}  {top}")


if __name__ == "__main__":
    main()
