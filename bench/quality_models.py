"""Model-based quality filters on the labelled cleaning dev set (issue 19 item 4).

Trains, on ../shared text that is NOT in the dev set (every training document whose sha1 or
first 200 characters match a dev-set document is removed first - the OSCAR "original" and
"deduplicated" files share pages, the QA and C4 files are only partly labelled):

- a `quality_classifier` model (`corpus classifier train --kind quality` through
  `corpus.classifier.train`): positives laws, the infectious-disease textbook, medical Q&A,
  Wikipedia, PG-19 books, OpenWebText; negatives the unlabelled web pages (OSCAR zh, FlagData
  QA, C4);
- a `perplexity` model (`corpus lm train`, 5-gram characters) on the same positives;

then scores every keep/drop-labelled dev-set page and prints, per language: AUC (P(quality),
and minus the perplexity, against the keep label) and, at each threshold, bad-page recall
(labelled-drop pages the model would drop) and good-page false-drop (labelled-keep pages it
would drop).

    python bench/quality_models.py            # about 20 s on one core
    python bench/quality_models.py --mining   # mined-medical precision, before / after (issue 19 item 5)

`--mining` trains recipes/mine-medical.yaml's classifier twice - as it was (sources sampled in
proportion to their size, no length floor, threshold 0.5) and as the recipe now says (sources
balanced, `--min-chars 100`, stage `min_chars: 100`, threshold 0.9) - mines the recipe's web
sources and a fresh pool it never trains on (corpora/zh_modern_misc: web/news, abstracts, app
descriptions, reviews), and reports precision over the mined documents labelled by hand in
bench/data/mined_medical.jsonl (references, no text), with how many mined ones are unlabelled.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "data"))

import devset  # noqa: E402

D = os.path.join(devset.SHARED, "data")
POSITIVES = [  # (name, paths, reader options)
    ("laws_zh", [f"{D}/domain/lawrefbook_zh"], {"format": "md"}),
    ("textbook_zh", [f"{D}/domain/medicalgpt/pretrain/fever.txt"], {"txt_mode": "line"}),
    ("medqa_zh", [f"{D}/domain/medicalgpt/rag"], {}),
    ("wiki_en", [f"{D}/general/wikipedia_en/wiki_demo.txt"], {"txt_mode": "line"}),
    ("books_en", [f"{D}/general/pg19"], {"txt_mode": "paragraph", "format": "txt"}),
    ("owt_en", [f"{D}/general/openwebtext"], {}),
]
NEGATIVES = [
    ("oscar_zh", [f"{D}/general/oscar_zh/unshuffled_original_zh"], {"txt_mode": "paragraph"}),
    ("qa_web_zh", [f"{D}/general/flagdata_web_zh/qa_demo_input.jsonl"], {}),
    ("c4_en", [f"{D}/general/c4_en/c4_demo.jsonl"], {}),
]
THRESHOLDS = (0.2, 0.3, 0.5)  # P(quality) below which a page is dropped
PPL_QUANTILES = (0.9, 0.95, 0.99)  # drop above this quantile of held-out reference perplexity


def _clean_copy(name: str, paths: list[str], opts: dict, dev_keys: set[str], out_dir: str) -> tuple[str, int, int]:
    """The source's documents minus the dev set's, as JSONL (what the recipe then reads)."""
    from corpus.readers import read_documents
    from corpus.recipe import SourceConfig, expand_paths

    src = SourceConfig(name=name, paths=paths, **opts)
    out = os.path.join(out_dir, f"{name}.jsonl")
    kept = removed = 0
    with open(out, "w", encoding="utf-8") as f:
        for p in expand_paths(paths):
            for d in read_documents(p, src):
                if devset.sha1(d.text) in dev_keys or d.text[:200] in dev_keys:
                    removed += 1
                    continue
                f.write(json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False) + "\n")
                kept += 1
    return out, kept, removed


def _rates(bad_score: np.ndarray, y_keep: np.ndarray, drop: np.ndarray) -> tuple[float, float]:
    """(bad-page recall, good-page false-drop) of the decision `drop`."""
    return float(drop[~y_keep].mean()), float(drop[y_keep].mean())


def _cross_fit(dev: list[dict], tmp: str, folds: int = 5) -> np.ndarray:
    """P(keep) of each dev page from a quality model trained on the labelled pages of the other folds."""
    import xxhash

    from corpus.classifier import ClassifierConfig, features, load_model, scores_of, train
    from corpus.recipe import Recipe

    fold = np.array([xxhash.xxh64_intdigest(f"{r['ref']['file']}:{r['ref']['record']}".encode()) % folds for r in dev])
    out = np.zeros(len(dev))
    for k in range(folds):
        paths = {}
        for lab in ("keep", "drop"):
            paths[lab] = os.path.join(tmp, f"cv{k}_{lab}.jsonl")
            with open(paths[lab], "w", encoding="utf-8") as f:
                for i, r in enumerate(dev):
                    if fold[i] != k and r["label"] == lab:
                        f.write(json.dumps({"id": f"{r['ref']['file']}:{r['ref']['record']}", "text": r["text"]},
                                           ensure_ascii=False) + "\n")
        recipe = Recipe.model_validate({"name": f"cv{k}", "stages": [{"name": "normalize"}],
                                        "sources": [{"name": "keep", "kind": "domain", "paths": [paths["keep"]]},
                                                    {"name": "drop", "paths": [paths["drop"]]}]})
        model = os.path.join(tmp, f"cv{k}.bin")
        train(recipe, model, ClassifierConfig(val_ratio=0.05), kind="quality")
        sel = np.flatnonzero(fold == k)
        out[sel] = scores_of(load_model(model), [features(dev[i]["text"]) for i in sel], "quality")
    return out


def main() -> None:
    from corpus.classifier import ClassifierConfig, features, load_model, scores_of, train
    from corpus import lm as lmmod
    from corpus.recipe import Recipe

    t0 = time.time()
    dev = [r for r in devset.load() if r["label"] in ("keep", "drop") and r["lang"] in ("zh", "en")]
    keys = {devset.sha1(r["text"]) for r in dev} | {r["text"][:200] for r in dev}
    for r in devset.load():  # unsure/other pages are excluded from training too
        keys |= {devset.sha1(r["text"]), r["text"][:200]}
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for kind, group in (("domain", POSITIVES), ("general", NEGATIVES)):
            for name, paths, opts in group:
                path, n, gone = _clean_copy(name, paths, opts, keys, tmp)
                print(f"train source {name:12s} {kind:8s} {n:6d} docs ({gone} dev-set docs removed)")
                sources.append({"name": name, "kind": kind, "paths": [path]})
        recipe = Recipe.model_validate({"name": "quality-bench", "sources": sources,
                                        "stages": [{"name": "normalize"}, {"name": "min_length"}]})
        model = os.path.join(tmp, "quality.bin")
        card = train(recipe, model, ClassifierConfig(), kind="quality")
        vm = card["val_metrics"]
        print(f"quality model: trained on {card['train_docs']}, held-out AUC {vm['auc']:.4f}, ECE {vm['ece']:.3f}")
        lm_path = os.path.join(tmp, "lm.npz")
        lcard = lmmod.train(recipe, lm_path, order=5)
        print(f"perplexity model: {lcard['fit_docs']} docs, {lcard['fit_chars']:,} chars, "
              f"held-out reference perplexity p50 {lcard['held_out_perplexity']['p50']:.1f}")
        m = load_model(model)
        q = scores_of(m, [features(r["text"]) for r in dev], "quality")
        lm = lmmod.load(lm_path)
        ppl = np.array([lm.perplexity(r["text"]) for r in dev])
        quant = np.array([lm.quantile(x) for x in ppl])
        cv = _cross_fit(dev, tmp)
    from corpus.classifier import auc

    print(f"\ndev set: {len(dev)} keep/drop pages; drop = P(quality) < t, or perplexity above the q-quantile "
          "of held-out reference text")
    hdr = f"{'lang':4s} {'keep':>5s} {'drop':>5s} {'AUC q':>6s} {'AUC -ppl':>8s} {'AUC cv':>6s}"
    hdr += "".join(f"  q<{t}: rec/fd" for t in THRESHOLDS) + "".join(f"  ppl>p{int(x * 100)}: rec/fd" for x in PPL_QUANTILES)
    print(hdr)
    for lang in ("zh", "en"):
        sel = np.array([r["lang"] == lang for r in dev])
        y = np.array([r["label"] == "keep" for r in dev])[sel]
        qs, ps, qu = q[sel], ppl[sel], quant[sel]
        row = f"{lang:4s} {int(y.sum()):5d} {int((~y).sum()):5d} {auc(qs, y):6.3f} {auc(-ps, y):8.3f} {auc(cv[sel], y):6.3f}"
        for t in THRESHOLDS:
            rec, fd = _rates(qs, y, qs < t)
            row += f"  {rec:6.2f}/{fd:5.2f}"
        for x in PPL_QUANTILES:
            rec, fd = _rates(qu, y, qu > x)
            row += f"  {rec:10.2f}/{fd:5.2f}"
        print(row)
    print("AUC cv: the same quality_classifier trained on the dev set's own labels (keep vs drop pages),\n"
          f"5-fold cross-fitted by record hash: each page scored by a model that never saw it.\n{time.time() - t0:.0f} s")


MINING = {  # name: (ClassifierConfig overrides, threshold, min visible chars, labelled samples used)
    "before": ({"balance_sources": False}, 0.5, 20, ("web_baseline", "fresh_baseline")),
    "after": ({"balance_sources": True, "min_chars": 100}, 0.9, 100, ("web_baseline", "fresh_improved")),
}
POOLS = {"web": ["data/general/flagdata_web_zh/cleared1.jsonl", "data/general/flagdata_web_zh/qa_demo_input.jsonl"],
         "fresh": ["corpora/zh_modern_misc.jsonl.zst"]}


def mining() -> None:
    from corpus.classifier import ClassifierConfig, features, load_model, scores_of, train
    from corpus.recipe import Recipe

    labels = {}
    for line in open(os.path.join(HERE, "data", "mined_medical.jsonl"), encoding="utf-8"):
        r = json.loads(line)
        text = devset.text_of(r["ref"])
        if devset.sha1(text) != r["sha1"]:
            raise ValueError(f"{r['ref']} no longer has sha1 {r['sha1']}")
        labels[(r["ref"]["file"], r["ref"]["record"])] = (r["label"] == "medical", r["run"])
    recipe = Recipe.from_yaml(os.path.join(HERE, "..", "recipes", "mine-medical.yaml"))
    print(f"{'config':8s} {'pool':6s} {'mined':>6s} {'labelled':>8s} {'medical':>7s} {'precision':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (over, thr, min_chars, runs) in MINING.items():
            out = os.path.join(tmp, f"{name}.bin")
            train(recipe, out, ClassifierConfig(**over))
            m = load_model(out)
            for pool, files in POOLS.items():
                mined = []
                for f in files:
                    recs = devset.records(f)
                    vis = [len(r["text"]) - sum(r["text"].count(c) for c in " \n\t\u3000") for r in recs]
                    s = scores_of(m, [features(r["text"]) for r in recs])
                    mined += [(f, i) for i in range(len(recs)) if s[i] >= thr and vis[i] >= min_chars]
                # a labelled random sample of this configuration's mined set (plus the web pool, labelled whole)
                lab = [labels[k][0] for k in mined if k in labels and labels[k][1] in runs]
                prec = sum(lab) / len(lab) if lab else float("nan")
                print(f"{name:8s} {pool:6s} {len(mined):6d} {len(lab):8d} {sum(lab):7d} {prec:9.2f}")


if __name__ == "__main__":
    mining() if sys.argv[1:2] == ["--mining"] else main()
