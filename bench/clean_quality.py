"""Cleaning quality on the labelled dev set (`bench/data/clean_dev`, issue 19): how well a
recipe's per-document chain, or datatrove's FineWeb-style chain, agrees with hand labels.

    python bench/clean_quality.py [--recipe recipes/clean-zh-en.yaml] [--stages a,b,c] [--datatrove]
                                  [--labels 'zh_*.jsonl'] [--errors] [--json OUT]

Ours runs through `corpus.clean.Cleaner` - the code of `corpus clean`: the recipe's per-document
stages from the stage registry, with the `stage_overrides` of the recipe source whose paths hold
the page's file (a page of no recipe source gets the stages as written). Pages are read by the
project's reader when it yields the same text as the label's (so stages see the reader's
metadata, e.g. the URL); otherwise from the label's text. `--stages a,b,c` runs those stages in
that order instead (each with the recipe's parameters when the recipe has it, else defaults).

Per language and per source of the labels:
- pages: labelled keep / drop / unsure (unsure pages are counted, never scored);
- bad recall: labelled-drop pages the chain drops; false drop: labelled-keep pages it drops;
- line recall: labelled boilerplate lines of labelled-keep pages that the chain kept, removed;
  line precision: of the non-blank lines removed from those pages, the labelled boilerplate
  ones; content removed: the share of their content lines (non-blank, not boilerplate) removed.
Then a per-category table and, with `--errors`, the ids of false and missed drops with the
stage and reason (no page text).

`--datatrove` (bench-only: `pip install datatrove spacy`) runs datatrove's FineWeb chain -
GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter(filter_no_terminal_punct=False),
FineWebQualityFilter - on the same pages, with `language="cmn"` for CJK pages as FineWeb-2
configures it per language (decided by script, never by the label), and prints its numbers
beside ours (`ours | datatrove`). Its LanguageFilter needs a fastText model downloaded from a
hub at run time and is left out when that cannot load (the run says so). Lines datatrove's C4
filter removes are aligned by content (`corpus.stages.line_origins`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter, defaultdict
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench", "data"))

import devset  # noqa: E402  (bench/data/devset.py: the one loader of the labels)

METRICS = ("bad_recall", "false_drop", "line_recall", "line_precision", "content_removed")


# ---------------------------------------------------------------------------------------
# running the chains


def our_cleaner(recipe_path: str, stages: list[str] | None):
    from corpus.clean import Cleaner
    from corpus.recipe import Recipe, StageConfig

    recipe = Recipe.from_yaml(recipe_path)
    if stages:
        given = {s.name: s for s in recipe.stages}
        recipe = recipe.model_copy(update={"stages": [given.get(n, StageConfig(name=n)) for n in stages]})
        # overrides of stages no longer in the chain are dropped with them
        recipe = recipe.model_copy(update={"sources": [s.model_copy(update={"stage_overrides": {
            k: v for k, v in s.stage_overrides.items() if k in stages}}) for s in recipe.sources]})
    recipe.check_stages()
    return Cleaner(recipe)


class _Pages:
    """The dev-set pages as Documents: the reader's document when its text is the label's."""

    def __init__(self, cleaner):
        self.cleaner = cleaner
        self.by_file: dict[str, tuple[int | None, list | None]] = {}
        self.from_reader = 0

    def _read(self, file: str) -> tuple[int | None, list | None]:
        from corpus.document import Document
        from corpus.readers import FileReader
        from corpus.recipe import SourceConfig

        if file not in self.by_file:
            path = os.path.join(devset.SHARED, file)
            si = self.cleaner.source_of(path)
            recipe = self.cleaner.recipe
            src = recipe.sources[si] if si is not None else SourceConfig(name="devset", paths=[path])
            docs = [d for d in FileReader(path, os.path.basename(path), src, recipe.limits)
                    if isinstance(d, Document)]
            self.by_file[file] = (si, docs if len(docs) == len(devset.records(file)) else None)
        return self.by_file[file]

    def doc(self, row: dict):
        from corpus.document import Document
        from corpus.readers import clean_text

        si, docs = self._read(row["ref"]["file"])
        rid = f"{row['ref']['file']}:{row['ref']['record']}"
        name = self.cleaner.recipe.sources[si].name if si is not None else row["source"]
        if docs is not None:
            d = docs[row["ref"]["record"]]
            if d.text == clean_text(row["text"]) and d.text.count("\n") == row["text"].count("\n"):
                self.from_reader += 1
                return Document(rid, d.text, name, d.metadata), si
        return Document(rid, row["text"], name, {}), si


def run_ours(rows: list[dict], cleaner) -> tuple[list[dict], int]:
    pages = _Pages(cleaner)
    out = []
    for row in rows:
        doc, si = pages.doc(row)
        d = cleaner.decide(doc, si)
        out.append({"kept": d.kept, "removed": sorted(d.removed_lines()), "by_stage": d.removed,
                    "why": None if d.kept else f"{d.stage}:{d.reason}", "detail": d.detail})
    return out, pages.from_reader


def datatrove_chain() -> tuple[dict[str, list], list[str]]:
    from datatrove.pipeline import filters as dtf

    notes = []

    def chain(lang: str) -> list:
        return [("GopherRepetitionFilter", dtf.GopherRepetitionFilter(language=lang)),
                ("GopherQualityFilter", dtf.GopherQualityFilter(language=lang)),
                ("C4QualityFilter", dtf.C4QualityFilter(filter_no_terminal_punct=False, language=lang)),
                ("FineWebQualityFilter", dtf.FineWebQualityFilter(language=lang))]

    chains = {"eng": chain("eng"), "cmn": chain("cmn")}
    try:  # FineWeb's first filter; its fastText model comes from a hub, so offline it cannot load
        from datatrove.data import Document as DTDoc

        lf = dtf.LanguageFilter(languages=["en", "zh"])
        lf.filter(DTDoc(text="a test sentence in English", id="0"))
        for c in chains.values():
            c.insert(0, ("LanguageFilter", lf))
    except Exception as e:  # noqa: BLE001 - any failure to load the model means: run without it
        notes.append(f"datatrove LanguageFilter left out ({type(e).__name__}: {' '.join(str(e).split())[:120]})")
    return chains, notes


def run_datatrove(rows: list[dict]) -> tuple[list[dict], list[str]]:
    from datatrove.data import Document as DTDoc

    from corpus.document import Document
    from corpus.filters.text import is_cjk
    from corpus.stages import Trace

    chains, notes = datatrove_chain()
    out = []
    for row in rows:
        text = row["text"]
        doc = DTDoc(text=text, id=str(row["ref"]))
        tr = Trace.start(text)
        why = None
        for name, f in chains["cmn" if is_cjk(text) else "eng"]:
            before = doc.text
            r = f.filter(doc)
            ok, reason = (r, "") if isinstance(r, bool) else (r[0], r[1])
            if not ok:
                why = f"{name}:{reason}"
                break
            if doc.text != before:
                tr.step(name, Document("", before, ""), Document("", doc.text, ""))
        out.append({"kept": why is None, "removed": sorted({i for v in tr.removed.values() for i in v}),
                    "by_stage": tr.removed, "why": why, "detail": ""})
    return out, notes


# ---------------------------------------------------------------------------------------
# scoring


def score(rows: list[dict], res: list[dict]) -> dict[str, Any]:
    """The metrics over one group of pages (None where the group has nothing to score)."""
    c = Counter()
    for row, r in zip(rows, res):
        c[row["label"]] += 1
        if row["label"] == "drop":
            c["drop_dropped"] += not r["kept"]
        elif row["label"] == "keep":
            c["keep_dropped"] += not r["kept"]
            if r["kept"]:
                lines = row["text"].split("\n")
                bp = set(row.get("boilerplate_lines", []))
                content = {i for i, l in enumerate(lines) if l.strip()} - bp
                rm = set(r["removed"])
                c["bp"] += len(bp)
                c["bp_removed"] += len(bp & rm)
                c["removed"] += len(rm)
                c["content"] += len(content)
                c["content_removed"] += len(content & rm)

    def ratio(a: str, b: str) -> float | None:
        return c[a] / c[b] if c[b] else None

    return {"pages": len(rows), "keep": c["keep"], "drop": c["drop"], "unsure": c["unsure"],
            "bad_recall": ratio("drop_dropped", "drop"), "false_drop": ratio("keep_dropped", "keep"),
            "line_recall": ratio("bp_removed", "bp"), "line_precision": ratio("bp_removed", "removed"),
            "content_removed": ratio("content_removed", "content"),
            "counts": {k: c[k] for k in ("drop_dropped", "keep_dropped", "bp", "bp_removed", "removed",
                                         "content", "content_removed")}}


def groups(rows: list[dict]) -> dict[str, list[int]]:
    g: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        g[f"{r['lang']} (all)"].append(i)
    for i, r in enumerate(rows):
        g[f"{r['lang']} / {r['source']}"].append(i)
    g["all"] = list(range(len(rows)))
    return dict(sorted(g.items(), key=lambda kv: (kv[0] == "all", kv[0].split(" ")[0], "(all)" not in kv[0], kv[0])))


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[dict], results: dict[str, list[dict]]) -> tuple[str, dict]:
    names = list(results)
    head = f"{'group':34s} {'pages k/d/u':>13s} " + " ".join(f"{m:>{7 * len(names) + 3 * (len(names) - 1)}s}"
                                                           for m in METRICS)
    lines = [head, "-" * len(head)]
    js: dict[str, Any] = {}
    for g, idx in groups(rows).items():
        sub = [rows[i] for i in idx]
        sc = {n: score(sub, [results[n][i] for i in idx]) for n in names}
        s0 = sc[names[0]]
        cells = [" | ".join(f"{_f(sc[n][m]):>7s}" for n in names) for m in METRICS]
        w = 7 * len(names) + 3 * (len(names) - 1)
        lines.append(f"{g:34s} {s0['keep']:>4d}/{s0['drop']:>3d}/{s0['unsure']:>3d} " +
                     " ".join(f"{c:>{w}s}" for c in cells))
        js[g] = sc
    return "\n".join(lines), js


def category_table(rows: list[dict], results: dict[str, list[dict]]) -> tuple[str, dict]:
    names = list(results)
    cats: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r["label"] != "unsure":
            cats[(r["label"], r.get("category", "?"))].append(i)
    head = f"{'label':6s} {'category':18s} {'pages':>5s}  dropped by " + " | ".join(names)
    lines = [head, "-" * len(head)]
    js = {}
    for (lab, cat), idx in sorted(cats.items()):
        d = {n: sum(not results[n][i]["kept"] for i in idx) for n in names}
        what = "recall" if lab == "drop" else "false-drop"
        lines.append(f"{lab:6s} {cat:18s} {len(idx):5d}  " + " | ".join(
            f"{d[n]:3d} ({d[n] / len(idx):.2f})" for n in names) + f"  {what}")
        js[f"{lab}/{cat}"] = {"pages": len(idx), "dropped": d}
    return "\n".join(lines), js


def errors(rows: list[dict], res: list[dict], name: str) -> str:
    out = [f"{name}: false drops (labelled keep, dropped)"]
    for row, r in zip(rows, res):
        if row["label"] == "keep" and not r["kept"]:
            out.append(f"  {row['ref']['file']}:{row['ref']['record']}  {row['lang']} {row.get('category', '?'):12s} "
                       f"{r['why']}  {r['detail'][:80]}")
    out.append(f"{name}: missed drops (labelled drop, kept)")
    for row, r in zip(rows, res):
        if row["label"] == "drop" and r["kept"]:
            out.append(f"  {row['ref']['file']}:{row['ref']['record']}  {row['lang']} {row.get('category', '?')}")
    out.append(f"{name}: line errors on labelled-keep pages it kept (content lines removed, by stage; "
               "boilerplate lines kept)")
    for row, r in zip(rows, res):
        if row["label"] != "keep" or not r["kept"]:
            continue
        bp = set(row.get("boilerplate_lines", []))
        wrong = {st: [i for i in v if i not in bp] for st, v in r["by_stage"].items()}
        wrong = {st: v for st, v in wrong.items() if v}
        missed = sorted(bp - set(r["removed"]))
        if wrong or missed:
            out.append(f"  {row['ref']['file']}:{row['ref']['record']}  content removed {wrong or '-'}  "
                       f"boilerplate kept {missed or '-'}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=os.path.join(ROOT, "recipes", "clean-zh-en.yaml"))
    ap.add_argument("--stages", help="comma-separated stage names to run instead of the recipe's")
    ap.add_argument("--datatrove", action="store_true", help="also run datatrove's FineWeb chain")
    ap.add_argument("--labels", default="*.jsonl", help="glob of label files under bench/data/clean_dev")
    ap.add_argument("--errors", action="store_true", help="list false and missed drops (ids, stage, reason)")
    ap.add_argument("--json", dest="json_out", help="write every number as JSON here")
    a = ap.parse_args(argv)
    try:
        rows = devset.load(a.labels)
    except (ValueError, OSError, KeyError, IndexError) as e:
        print(f"error: --labels: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: --labels: no labels match {a.labels!r} under {devset.LABELS}", file=sys.stderr)
        return 2
    try:
        cleaner = our_cleaner(a.recipe, [s for s in a.stages.split(",") if s] if a.stages else None)
    except (ValueError, OSError) as e:
        print(f"error: {a.recipe}: {' '.join(str(e).split())[:300]}", file=sys.stderr)
        return 2
    ours, from_reader = run_ours(rows, cleaner)
    results = {"ours": ours}
    notes = [f"ours: {os.path.relpath(a.recipe, ROOT)}: " + " -> ".join(cleaner.stage_names),
             f"{from_reader}/{len(rows)} pages read by the project's reader (the rest from the label's text)"]
    if a.datatrove:
        try:
            results["datatrove"], dn = run_datatrove(rows)
        except ImportError as e:
            print(f"error: --datatrove: {e} (pip install datatrove spacy)", file=sys.stderr)
            return 2
        notes += ["datatrove: FineWeb chain (GopherRepetition, GopherQuality, C4Quality(no terminal-punct "
                  "filter), FineWebQuality), language=cmn for CJK pages"] + dn
    for n in notes:
        print(n)
    print(f"\n{len(rows)} labelled pages; cells: " + " | ".join(results) + "\n")
    t, js = table(rows, results)
    print(t)
    ct, cjs = category_table(rows, results)
    print("\n" + ct)
    if a.errors:
        for n, res in results.items():
            print("\n" + errors(rows, res, n))
    if a.json_out:
        with open(a.json_out, "w", encoding="utf-8") as f:
            json.dump({"labels": len(rows), "notes": notes, "groups": js, "categories": cjs,
                       "pages": [{"ref": r["ref"], "label": r["label"], "category": r.get("category"),
                                  **{n: {k: res[i][k] for k in ("kept", "why", "removed")} for n, res in results.items()}}
                                 for i, r in enumerate(rows)]}, f, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
