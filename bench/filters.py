"""Our cleaning filters vs datatrove's on the same real documents, in one run: documents/s per
core of each filter and of the chain, and agreement of keep/drop decisions per filter.

    taskset -c 0 python bench/filters.py        (needs `pip install datatrove spacy`; not a dependency)
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
D = os.path.join(ROOT, "..", "shared", "data")

PAIRS = [("gopher_repetition", "GopherRepetitionFilter"), ("gopher_quality", "GopherQualityFilter"),
         ("c4_quality", "C4QualityFilter"), ("fineweb_quality", "FineWebQualityFilter")]


def corpora() -> dict[str, list[str]]:
    from corpus.demo import materialize
    from corpus.recipe import expand_paths

    en = [json.loads(l)["text"] for l in open(f"{D}/general/c4_en/c4_demo.jsonl", encoding="utf-8")]
    en += [l for l in open(f"{D}/general/wikipedia_en/wiki_demo.txt", encoding="utf-8") if l.strip()]
    for f in ("cc_en_head-0091.jsonl", "cc_en_head-0174.jsonl"):
        en += [json.loads(l)["text"] for l in open(f"{D}/general/dolma_commoncrawl_en/{f}", encoding="utf-8")]
    zh = [open(f, encoding="utf-8").read() for f in expand_paths([f"{D}/domain/lawrefbook_zh"])]
    zh += [json.loads(l)["text"] for l in open(materialize() / "domain_zh.jsonl", encoding="utf-8")][:300]
    return {"en": en, "zh": zh}


def _ours(name: str):
    """Our stage, with the rules defined the way datatrove defines them (for the agreement column)."""
    from corpus.stages import build_stage

    same = {"alpha_ratio_over_all_tokens": True, "bullets": ["•", "-"]} if name == "gopher_quality" else {}
    return build_stage(name, same)


def _theirs(name: str, lang: str):
    """datatrove's filter, told the language where it takes one."""
    from datatrove.pipeline import filters as dtf

    return getattr(dtf, name)(**({"language": "cmn"} if lang == "zh" and name != "GopherRepetitionFilter" else {}))


def main() -> None:
    from datatrove.data import Document as DTDoc

    from corpus.document import Document
    from corpus.stages import Drop

    rows = []
    for lang, docs in corpora().items():
        mb = sum(len(t.encode("utf-8")) for t in docs) / 1e6
        tot_ours = tot_dt = 0.0
        for ours_name, dt_name in PAIRS:
            ours, dt = _ours(ours_name), _theirs(dt_name, lang)
            t = time.perf_counter()
            a = [not isinstance(ours.apply(Document(str(i), x, "b")), Drop) for i, x in enumerate(docs)]
            t_o = time.perf_counter() - t
            t = time.perf_counter()
            b = []
            for i, x in enumerate(docs):
                r = dt.filter(DTDoc(text=x, id=str(i)))
                b.append(r if isinstance(r, bool) else r[0])
            t_d = time.perf_counter() - t
            tot_ours += t_o
            tot_dt += t_d
            agree = sum(x == y for x, y in zip(a, b)) / len(a)
            rows.append((lang, ours_name, len(docs), sum(a), sum(b), agree, len(docs) / t_o, len(docs) / t_d))
        rows.append((lang, "sum of the 4", len(docs), None, None, None, len(docs) / tot_ours, len(docs) / tot_dt))
        # the chain as a pipeline runs it: each document through the filters until one drops it
        ours_chain = [_ours(o) for o, _ in PAIRS]
        dt_chain = [_theirs(d, lang) for _, d in PAIRS]
        t = time.perf_counter()
        ka = 0
        for i, x in enumerate(docs):
            d = Document(str(i), x, "b")
            ka += all(not isinstance(st.apply(d), Drop) for st in ours_chain)
        t_o = time.perf_counter() - t
        t = time.perf_counter()
        kb = 0
        for i, x in enumerate(docs):
            d = DTDoc(text=x, id=str(i))
            kb += all((lambda r: r if isinstance(r, bool) else r[0])(f.filter(d)) for f in dt_chain)
        t_d = time.perf_counter() - t
        rows.append((lang, "chain (pipeline)", len(docs), ka, kb, None, len(docs) / t_o, len(docs) / t_d))
        print(f"{lang}: {len(docs)} documents, {mb:.1f} MB; chain: ours {mb / tot_ours:.2f} MB/s, datatrove {mb / tot_dt:.2f} MB/s")
    print(f"\n{'lang':4s} {'filter':18s} {'docs':>5s} {'kept ours':>9s} {'kept dt':>8s} {'agree':>7s} {'ours docs/s':>12s} "
          f"{'dt docs/s':>10s} {'speed-up':>8s}")
    for lang, name, n, ko, kd, ag, so, sd in rows:
        print(f"{lang:4s} {name:18s} {n:5d} {'' if ko is None else ko:>9} {'' if kd is None else kd:>8} "
              f"{'' if ag is None else f'{100 * ag:.1f}%':>7s} {so:12.0f} {sd:10.0f} {so / sd:7.1f}x")


if __name__ == "__main__":
    main()
