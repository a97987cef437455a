"""`corpus` command line: build, stats, verify, dedup, classifier, tokenizer.

Every user error is one `error: <where>: <what is wrong>` line on stderr with exit status 2,
never a traceback; output to a pipe is not wrapped at 80 columns and long commands print a
plain progress line every REFINERY_PROGRESS_SECONDS (30) when not on a terminal
(shards/cliutil.py). `corpus build --input A B C` is `--input A --input B --input C`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from shards.cliutil import ErrorsAsMessages, UserError, check_build_dir, make_console, progress, reading

# every error of every command is one `error: <where>: <what>` line, exit 2 (shards/cliutil.py)
app = typer.Typer(help="Build, inspect and verify tokenized shard corpora for continued pretraining.",
                  no_args_is_help=True, add_completion=False, cls=ErrorsAsMessages)
console = make_console()  # not cut to 80 columns when piped


def _fmt(n: float | int | None) -> str:
    if n is None:
        return "-"
    if isinstance(n, float):
        return f"{n:.2f}"
    return f"{n:,}"


@app.command()
def build(
    recipe: Optional[list[str]] = typer.Argument(
        None, metavar="[RECIPE | PATH...]",
        help="a YAML recipe; or, with --input, more input paths: `--input A B C` is `--input A --input B "
             "--input C`; neither: the built-in demo corpus"),
    out: Path = typer.Option(..., "--out", "-o", help="output directory"),
    input: Optional[list[str]] = typer.Option(
        None, "--input", "-i", help="quick form: input paths (files, directories, globs), one source each; "
                                    "`--input A B C` or `--input A --input B`"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="worker processes"),
    seq_len: Optional[int] = typer.Option(None, "--seq-len"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="SentencePiece .model or tokenizer.json "
                                            "(no PAD token: rows are padded with EOS)"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    strict: bool = typer.Option(False, "--strict", help="the first unreadable unit is fatal"),
    restart: bool = typer.Option(False, "--restart", help="discard an interrupted build in --out"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty --out that is not a refinery build (its files are kept)"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto or ray://HOST:PORT"),
) -> None:
    """Build shards from a recipe, from --input paths, or (neither) from the built-in demo corpus."""
    from corpus.build import build as run_build, quick_recipe
    from corpus.demo import demo_recipe
    from corpus.recipe import Recipe

    positional = list(recipe or [])
    if input:
        # typer options take one value each: the words after `--input A` arrive as positionals
        yaml_like = [x for x in positional if x.lower().endswith((".yaml", ".yml"))]
        if yaml_like:
            raise UserError("build", f"give a recipe ({yaml_like[0]}) or --input paths, not both")
        inputs = list(input) + positional
        source = "--input"
    elif len(positional) > 1:
        raise UserError("build", f"one recipe, not {len(positional)} ({' '.join(positional[:3])}); "
                                 "several input paths go after --input")
    else:
        source = positional[0] if positional else "demo recipe"
    with reading(source):
        if input:
            r = quick_recipe(inputs)
        elif positional:
            r = _load_recipe(positional[0])
        else:
            console.print("[bold]no recipe or --input: building the built-in demo corpus[/]")
            r = demo_recipe()
    given = {k: v for k, v in (("workers", workers), ("seed", seed), ("packing.seq_len", seq_len),
                                ("tokenizer.path", tokenizer), ("limits.strict", True if strict else None))
             if v is not None}  # `is not None`: `--seq-len 0` is refused by validation, not ignored
    if given:
        d = r.model_dump()
        for key, v in given.items():
            *head, last = key.split(".")
            sub = d
            for h in head:
                sub = sub[h]
            sub[last] = v
        flags = {"workers": "--workers", "seed": "--seed", "packing.seq_len": "--seq-len",
                 "tokenizer.path": "--tokenizer", "limits.strict": "--strict"}
        with reading(source, {k: f for k, f in flags.items() if k in given}):
            r = Recipe.model_validate(d)
    _check_recipe(r, source, "--tokenizer" if tokenizer else None)
    if executor not in ("local", "ray"):
        raise UserError("--executor", f"local or ray (got {executor!r})")
    from corpus.executor import make_executor

    with progress(console, "read+clean+tokenize") as prog:
        def on_plan(total: int, done: int) -> None:
            prog.update(total=total, completed=done)
            if done:
                console.print(f"resuming: {done}/{total} units already done")

        def on_unit(sm: dict) -> None:
            prog.advance()

        ex = make_executor(executor, r.workers, address)
        res = run_build(r, str(out), ex, restart=restart, on_unit=on_unit, on_plan=on_plan, force=force)
    _summary(res.manifest, res.report)


def _load_recipe(path: str):
    """A recipe file, every problem with it one `error: <file>: ...` line."""
    from corpus.recipe import Recipe, RecipeError

    if not os.path.exists(path):
        raise UserError(path, "no such recipe file")
    with reading(path):
        try:
            return Recipe.from_yaml(path)
        except RecipeError as e:
            raise UserError(path, str(e).removeprefix(f"{path}: ")) from None


def _check_recipe(r, source: str, tokenizer_flag: str | None) -> None:
    """What validation alone cannot see, checked before anything is written: stage names and
    parameters, and a tokenizer that loads and has the special tokens the recipe asks for."""
    from corpus.recipe import RecipeError

    try:
        r.check_stages()
    except RecipeError as e:
        raise UserError(source, str(e)) from None
    for i, src in enumerate(r.sources):
        for p in src.paths:
            if not any(c in p for c in "*?[") and not os.path.lexists(p):
                raise UserError("--input" if source == "--input" else f"{source}: sources[{i}] ({src.name}).paths",
                                f"{p}: no such file or directory")
    where = tokenizer_flag or f"{source}: tokenizer.path"
    path = r.tokenizer.path
    if path is not None and not os.path.isfile(path):
        raise UserError(where, f"{path}: no such tokenizer file" if not os.path.exists(path) else
                        f"{path}: not a file (give the .model or tokenizer.json itself)")
    from shards.tokenizer import load_tokenizer

    try:
        tok = load_tokenizer(path)
    except Exception as e:  # noqa: BLE001 - sentencepiece/tokenizers raise bare RuntimeError/Exception
        raise UserError(where, f"{path}: not a SentencePiece .model or Hugging Face tokenizer.json "
                               f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    for flag, tid, name in ((r.tokenizer.add_bos, tok.bos_id, "BOS"), (r.tokenizer.add_eos, tok.eos_id, "EOS")):
        if flag and tid < 0:
            raise UserError(where, f"the tokenizer has no {name} token; set tokenizer.add_{name.lower()}: false "
                                   "in the recipe (or give a tokenizer that has one)")
    if tok.pad_id < 0:
        if tok.eos_id < 0:
            raise UserError(where, "the tokenizer has no PAD and no EOS token to pad rows with")
        # the documented choice (README, docs/reliability.md): pad with EOS, recorded as pad_id
        console.print(f"note: the tokenizer has no PAD token; rows are padded with EOS (id {tok.eos_id}), "
                      "recorded as pad_id in the manifest")


def _summary(m: dict, rep: dict) -> None:
    t = Table(title=f"build summary ({rep.get('seconds', '?')} s)")
    for c in ("source", "split", "docs", "tokens", "rows", "pad %", "target", "realised"):
        t.add_column(c, justify="right" if c not in ("source", "split") else "left")
    for src, ps in m["per_source"].items():
        for sp in ("train", "val"):
            s = ps[sp]
            cap = s["rows"] * m["seq_len"]
            t.add_row(src, sp, _fmt(s["unique_docs"]), _fmt(s["tokens"]), _fmt(s["rows"]),
                      f"{100 * s['pad_tokens'] / cap:.2f}" if cap else "-",
                      f"{ps['target_share']:.3f}" if sp == "train" and ps.get("target_share") else "-",
                      f"{ps['realised_share']:.3f}" if sp == "train" else "-")
    console.print(t)
    bad = rep.get("bad_unit_counts", {})
    acc = rep.get("accounting", {})
    ok = all(c["ok"] for c in acc.values())
    console.print(f"documents in {rep.get('documents_in'):,} → written {rep.get('documents_written'):,}; "
                  f"accounting {'[green]ok[/]' if ok else '[red]FAILED[/]'}; "
                  f"unreadable units: {sum(bad.values())} {dict(bad) if bad else ''}")


@app.command()
def stats(
    dirs: list[Path] = typer.Argument(..., help="one build directory, or two to compare"),
    json_out: bool = typer.Option(False, "--json", help="print JSON for machines"),
    sample: int = typer.Option(0, "--sample", help="decode N random rows with document boundaries"),
    seed: int = typer.Option(0, "--seed"),
    report: Optional[Path] = typer.Option(None, "--report", help="write a self-contained HTML report here"),
) -> None:
    """What was built and what every stage removed (the funnel); two dirs are compared."""
    from shards.stats import collect, sample_rows

    if len(dirs) > 2:
        raise UserError("stats", f"one build directory, or two to compare, not {len(dirs)}")
    for d in dirs:
        check_build_dir(str(d))
    if sample < 0:
        raise UserError("--sample", f"a number of rows >= 0 (got {sample})")
    data = [collect(str(d)) for d in dirs]
    if report:
        from shards.report import make_report

        make_report(str(dirs[0]), str(report))
        console.print(f"report written to {report}")
    if sample:
        for d, x in zip(dirs, data):
            x["samples"] = sample_rows(str(d), sample, seed)
    if json_out:
        print(json.dumps(data[0] if len(data) == 1 else data, ensure_ascii=False, indent=1))
        return
    for d, x in zip(dirs, data):
        _print_stats(x)
    if len(data) == 2:
        _compare(data[0], data[1])


def _compare(a: dict, b: dict) -> None:
    t = Table(title=f"A = {a['root']}  vs  B = {b['root']}  (train)")
    for c in ("source", "docs A", "docs B", "tokens A", "tokens B", "Δ tokens %"):
        t.add_column(c)
    ra = {r["source"]: r for r in a["splits"]["train"]}
    rb = {r["source"]: r for r in b["splits"]["train"]}
    for s in _merge_order(list(ra), list(rb)):  # recipe order, not alphabetical
        x, y = ra.get(s, {}), rb.get(s, {})
        ta, tb = x.get("tokens", 0), y.get("tokens", 0)
        t.add_row(s, _fmt(x.get("unique_docs")), _fmt(y.get("unique_docs")), _fmt(ta), _fmt(tb),
                  f"{100 * (tb - ta) / ta:+.1f}" if ta else "-")
    console.print(t)
    fa = {(s, r["stage"]): r for s, rows in a["funnel"].items() for r in rows}
    fb = {(s, r["stage"]): r for s, rows in b["funnel"].items() for r in rows}
    t = Table(title="funnel: documents out of each stage, A vs B")
    for c in ("source", "stage", "A", "B"):
        t.add_column(c)
    # pipeline order: each source's stages as the builds ran them (a stage only B has goes
    # where B ran it), never sorted by name
    for src in _merge_order(list(a["funnel"]), list(b["funnel"])):
        stages = _merge_order([r["stage"] for r in a["funnel"].get(src, [])],
                              [r["stage"] for r in b["funnel"].get(src, [])])
        for st in stages:
            k = (src, st)
            t.add_row(src, st, _fmt(fa.get(k, {}).get("docs_out")), _fmt(fb.get(k, {}).get("docs_out")))
    console.print(t)


def _merge_order(xs: list[str], ys: list[str]) -> list[str]:
    """xs, with the items only ys has inserted after the item that precedes them in ys."""
    out = list(dict.fromkeys(xs))
    at = 0
    for y in ys:
        if y in out:
            at = out.index(y) + 1
        else:
            out.insert(at, y)
            at += 1
    return out


def _spark(h: list[int]) -> str:
    """A histogram as one line of block characters."""
    top = max(h) or 1
    return "".join(" ▁▂▃▄▅▆▇█"[min(8, round(8 * v / top))] for v in h)


def _print_stats(x: dict) -> None:
    console.rule(f"[bold]{x['root']}[/]  seq_len={x['seq_len']} dtype={x['dtype']} "
                 f"tokenizer={x['tokenizer']['file']} (vocab {x['tokenizer']['vocab_size']})")
    for split, rows in x["splits"].items():
        t = Table(title=f"{split}")
        for c in ("source", "kind", "docs", "tokens", "rows", "pad %", "continued rows", "tokens/doc p50/p90/max",
                  "target", "realised"):
            t.add_column(c)
        for r in rows:
            p = r["doc_token_percentiles"]
            t.add_row(r["source"], r["kind"], _fmt(r["unique_docs"]), _fmt(r["tokens"]), _fmt(r["rows"]),
                      f"{r['pad_pct']:.2f}", _fmt(r["row_continuations"]),
                      f"{p.get('p50', '-')}/{p.get('p90', '-')}/{p.get('max', '-')}",
                      f"{r['target_share']:.3f}" if r["target_share"] else "-",
                      f"{r['realised_share']:.3f}" if r["realised_share"] is not None else "-")
        console.print(t)
    t = Table(title="funnel: documents per stage, drops by reason")
    for c in ("source", "stage", "in", "out", "dropped", "reasons"):
        t.add_column(c)
    for src, stages in x["funnel"].items():
        for st in stages:
            drops = st.get("drops", {})
            reasons = ", ".join(f"{k}={v}" for k, v in drops.items())
            if st.get("bad_units"):
                reasons = "unreadable units: " + ", ".join(f"{k}={v}" for k, v in st["bad_units"].items())
            if st.get("score_hist"):
                reasons = (reasons + "; " if reasons else "") + "score 0→1 " + _spark(st["score_hist"])
            t.add_row(src, st["stage"], _fmt(st["docs_in"]), _fmt(st["docs_out"]), _fmt(sum(drops.values())), reasons)
    console.print(t)
    if x.get("tokenization"):  # evidence for (not) extending the vocabulary (shards/stats.py tokenization)
        t = Table(title="tokenization of the kept documents: characters per token, byte-fallback <0xNN> pieces")
        for c in ("source", "characters", "tokens", "chars/token", "byte-fallback %"):
            t.add_column(c)
        for r in x["tokenization"]:
            t.add_row(r["source"], _fmt(r["chars"]), _fmt(r["tokens"]), _fmt(r["chars_per_token"]),
                      "-" if r["byte_fallback_share"] is None else f"{100 * r['byte_fallback_share']:.2f}")
        console.print(t)
    for s in x.get("samples", []):
        console.rule(f"{s['shard']} row {s['row']} ({s['segments']} segments)")
        console.print(s["text"][:1500], markup=False)


@app.command()
def verify(root: Path = typer.Argument(..., help="build directory")) -> None:
    """Check every checksum and invariant; exit 1 naming the first bad file and offset (warnings only: 0)."""
    from shards.verify import is_warning, verify as run_verify

    if not root.is_dir():
        raise UserError(str(root), "no such build directory" if not root.exists() else "not a directory")
    problems = run_verify(str(root))
    warnings = [p for p in problems if is_warning(p)]
    bad = [p for p in problems if not is_warning(p)]
    for p in bad:
        console.print(f"[red]BAD[/] {p}")
    for p in warnings:
        console.print(f"[yellow]WARNING[/] {p}")
    if bad:
        raise typer.Exit(1)  # a damaged build: 1, not 2 (that is for usage errors)
    # warning-level problems (e.g. an old manifest without a checksum) do not fail verify
    console.print(f"[green]OK[/] {root}: all shards match the manifest"
                  + (f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})" if warnings else ""))


classifier_app = typer.Typer(help="Domain classifier (fastText): train on a recipe's domain vs general "
                               "sources; the `domain_classifier` stage mines general sources with it.",
                               no_args_is_help=True)
app.add_typer(classifier_app, name="classifier")


@classifier_app.command("train")
def classifier_train(
    recipe: Path = typer.Argument(..., help="YAML recipe with kind: domain and kind: general sources"),
    out: Path = typer.Option(..., "--out", "-o", help="model file (.bin); its card goes to OUT.json"),
    max_docs: int = typer.Option(100_000, "--max-docs", help="sampled documents per label"),
    epoch: int = typer.Option(10, "--epoch"),
    dim: int = typer.Option(32, "--dim"),
    lr: float = typer.Option(0.2, "--lr"),
    word_ngrams: int = typer.Option(2, "--word-ngrams"),
    val_ratio: float = typer.Option(0.1, "--val-ratio"),
    threads: int = typer.Option(1, "--threads", help=">1 trains faster but not reproducibly"),
    raw: bool = typer.Option(False, "--raw", help="skip the recipe's cleaning stages before sampling"),
    seed: int = typer.Option(1234, "--seed"),
    kind: str = typer.Option("domain", "--kind", help="domain (domain_classifier) | quality (quality_classifier)"),
    positive: list[str] = typer.Option(None, "--positive", help="a quality reference source by name "
                                       "(repeatable; default: the kind: domain sources)"),
    min_chars: int = typer.Option(0, "--min-chars", help="do not sample documents shorter than this"),
) -> None:
    """Train a classifier: `kind: domain` sources vs `kind: general` ones (--kind domain), or the
    quality reference sources vs the web sources (--kind quality)."""
    from corpus.classifier import ClassifierConfig, train

    flags = {"max_docs_per_label": "--max-docs", "epoch": "--epoch", "dim": "--dim", "lr": "--lr",
             "word_ngrams": "--word-ngrams", "val_ratio": "--val-ratio", "threads": "--threads", "seed": "--seed"}
    flags["min_chars"] = "--min-chars"
    if kind not in ("domain", "quality"):
        raise UserError("--kind", f"{kind!r} is not one of: domain, quality")
    with reading("classifier train", flags):
        cfg = ClassifierConfig(max_docs_per_label=max_docs, epoch=epoch, dim=dim, lr=lr, word_ngrams=word_ngrams,
                               val_ratio=val_ratio, threads=threads, clean=not raw, seed=seed, min_chars=min_chars)
    r = _load_recipe(str(recipe))
    with progress(console, "reading + sampling") as prog:
        try:
            card = train(r, str(out), cfg, on_file=lambda f: prog.update(info=str(f)), kind=kind,  # type: ignore[arg-type]
                         positives=positive or None)
        except ValueError as e:
            raise UserError(str(recipe), f"cannot train: {' '.join(str(e).split())}") from None
    t = Table(title=f"{kind} classifier → {out} ({card['bytes'] / 2**20:.1f} MiB, {card['seconds']} s)")
    for c in ("label", "documents seen", "trained on"):
        t.add_column(c)
    for lab in card["labels"]:
        t.add_row(lab, _fmt(card["documents_seen"][lab]), _fmt(card["train_docs"][lab]))
    console.print(t)
    sk = card["skipped"]
    console.print(f"not used: {sum(sk['unreadable'].values())} unreadable units {sk['unreadable'] or ''}, "
                  f"{sum(sk['cleaned_out'].values())} documents dropped by the cleaning stages, "
                  f"{sk['no_features']} without text features (details in {out}.json)")
    m = card["val_metrics"]
    if m:
        a, b = card["labels"]
        t = Table(title=f"held-out documents: {m['n']} ({m[a]} {a}, {m[b]} {b}), threshold 0.5")
        for k in ("accuracy", "precision", "recall", "f1", "auc", "ece"):
            t.add_column(k)
        t.add_row(*(f"{m[k]:.4f}" for k in ("accuracy", "precision", "recall", "f1", "auc", "ece")))
        console.print(t)
        t = Table(title=f"calibration (held out): observed share of {a} per score bin")
        for c in ("score", "docs", "mean score", f"share {a}"):
            t.add_column(c)
        for row in m["reliability"]:
            t.add_row(row["bin"], _fmt(row["n"]), f"{row['mean_score']:.3f}", f"{row['positive_rate']:.3f}")
        console.print(t)


lm_app = typer.Typer(help="Character n-gram language model for the `perplexity` stage.", no_args_is_help=True)
app.add_typer(lm_app, name="lm")


@lm_app.command("train")
def lm_train(
    recipe: Path = typer.Argument(..., help="YAML recipe whose reference sources the model is fitted on"),
    out: Path = typer.Option(..., "--out", "-o", help="model file (.npz); its card goes to OUT.json"),
    order: int = typer.Option(5, "--order", min=1, max=8, help="n-gram order in characters"),
    max_docs: int = typer.Option(20_000, "--max-docs", min=10, help="sampled reference documents"),
    positive: list[str] = typer.Option(None, "--positive", help="a reference source by name "
                                       "(repeatable; default: the kind: domain sources)"),
    seed: int = typer.Option(1234, "--seed"),
) -> None:
    """Fit the `perplexity` stage's model on reference text; print its held-out perplexity quantiles."""
    from corpus.lm import train as lm_fit

    r = _load_recipe(str(recipe))
    with progress(console, "reading + fitting") as prog:
        try:
            card = lm_fit(r, str(out), order=order, max_docs=max_docs, positives=positive or None, seed=seed,
                          on_file=lambda f: prog.update(info=str(f)))
        except ValueError as e:
            raise UserError(str(recipe), f"cannot fit: {' '.join(str(e).split())}") from None
    t = Table(title=f"{order}-gram character LM → {out} ({card['bytes'] / 2**20:.1f} MiB, {card['seconds']} s)")
    for c in ("reference sources", "fit docs", "fit chars", "held out", *card["held_out_perplexity"]):
        t.add_column(c)
    t.add_row(", ".join(card["reference_sources"]), _fmt(card["fit_docs"]), _fmt(card["fit_chars"]),
              _fmt(card["held_out_docs"]), *(f"{v:.1f}" for v in card["held_out_perplexity"].values()))
    console.print(t)
    console.print(f"buckets: head ≤ {card['bucket_cuts'][0]:.1f} < middle ≤ {card['bucket_cuts'][1]:.1f} < tail")


@classifier_app.command("score")
def classifier_score(
    model: Path = typer.Argument(..., help="model from `corpus classifier train`"),
    inputs: list[str] = typer.Argument(None, help="files/dirs/globs to score (any readable format); none: stdin lines"),
    text_key: Optional[str] = typer.Option(None, "--text-key"),
    txt_mode: str = typer.Option("file", "--txt-mode", help="file | paragraph | line"),
    top: int = typer.Option(5, "--top", help="show the N highest- and lowest-scoring documents"),
) -> None:
    """P(domain) of documents: a summary per file and the extremes (to choose a threshold)."""
    from corpus.classifier import domain_scores, features, load_model
    from corpus.readers import read_documents
    from corpus.recipe import SourceConfig, expand_paths

    if not model.is_file():
        raise UserError(str(model), "no such model file (from `corpus classifier train`)")
    try:
        m = load_model(str(model))
    except (ValueError, RuntimeError) as e:  # fastText's loader on a file that is not a model
        raise UserError(str(model), f"not a fastText model ({' '.join(str(e).split())[:200]})") from None
    from corpus.classifier import positive_label

    rows: list[tuple[float, str, str]] = []
    t = Table(title=f"P({positive_label(m)}) under {model.name}")
    for c in ("file", "docs", "mean", "p10", "p50", "p90", "≥ 0.5"):
        t.add_column(c)
    if not inputs:
        texts = [l.rstrip("\n") for l in sys.stdin if l.strip()]
        groups = [("<stdin>", [(f"stdin:{i + 1}", x) for i, x in enumerate(texts)])]
    else:
        src = SourceConfig(name="score", paths=list(inputs), text_key=text_key, txt_mode=txt_mode)  # type: ignore[arg-type]
        groups = [(p, [(d.id, d.text) for d in read_documents(p, src)]) for p in expand_paths(list(inputs))]
    import time

    import numpy as np

    t0, n_docs = time.perf_counter(), 0
    for name, docs in groups:
        if not docs:
            continue
        s = domain_scores(m, [features(x) for _, x in docs])
        n_docs += len(docs)
        q = np.percentile(s, [10, 50, 90])
        t.add_row("/".join(Path(name).parts[-2:]), _fmt(len(docs)), f"{s.mean():.3f}", *(f"{v:.3f}" for v in q), f"{(s >= 0.5).mean():.1%}")
        rows += [(float(v), i, x) for v, (i, x) in zip(s, docs)]
    dt = time.perf_counter() - t0
    console.print(t)
    console.print(f"scored {n_docs:,} documents in {dt:.2f} s ({n_docs / max(dt, 1e-9):,.0f} documents/s, "
                  "featurising included, reading not")
    rows.sort(key=lambda r: -r[0])
    for title, part in (("highest", rows[:top]), ("lowest", rows[::-1][:top])):
        console.rule(title)
        for v, i, x in part:
            console.print(f"{v:.3f}  {i}  {x[:120]!r}", markup=False)


tokenizer_app = typer.Typer(help="Tokenizer utilities.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("convert")
def tokenizer_convert(
    model: Path = typer.Argument(..., help="SentencePiece BPE tokenizer.model (LLaMA-style)"),
    out: Path = typer.Option(..., "--out", "-o", help="tokenizer.json to write (tokenizer_config.json beside it)"),
    check: Optional[list[Path]] = typer.Option(None, "--check", help="files whose text must encode identically"),
) -> None:
    """SentencePiece `tokenizer.model` → Hugging Face `tokenizer.json` with identical ids."""
    from corpus.readers import read_documents
    from corpus.recipe import SourceConfig
    from shards.tokenizer import Tokenizer, spm_to_tokenizer_json

    if not model.is_file():
        raise UserError(str(model), "no such SentencePiece model file")
    try:
        res = spm_to_tokenizer_json(str(model), str(out))
    except RuntimeError as e:  # sentencepiece on a file that is not a model
        raise UserError(str(model), f"not a SentencePiece model ({' '.join(str(e).split())[:200]})") from None
    console.print(f"wrote {out}: {res['vocab_size']:,} pieces, {res['merges']:,} merges")
    if check:
        a, b = Tokenizer(str(model)), Tokenizer(str(out))
        src = SourceConfig(name="check", paths=[str(c) for c in check])
        texts = [d.text for d in read_documents([str(c) for c in check], src)]
        bad = sum(not (len(x) == len(y) and (x == y).all()) for x, y in zip(a.encode_batch(texts), b.encode_batch(texts)))
        console.print(f"{len(texts) - bad:,} of {len(texts):,} documents encode identically")
        if bad:
            raise typer.Exit(1)



@app.command()
def dedup(
    inputs: list[str] = typer.Argument(None, help="input files, directories or globs"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="writes kept.jsonl.zst and clusters.jsonl"),
    explain: bool = typer.Option(False, "--explain", help="print the LSH S-curve for the parameters and exit"),
    ngram: int = typer.Option(3, "--ngram"),
    num_perm: int = typer.Option(120, "--num-perm"),
    bands: int = typer.Option(40, "--bands"),
    rows: int = typer.Option(3, "--rows"),
    jaccard: float = typer.Option(0.6, "--jaccard", help="min exact shingle Jaccard of a candidate pair"),
    containment: float = typer.Option(0.9, "--containment", help="... or min containment of the smaller (0: off)"),
    prefer: str = typer.Option("first", "--prefer", help="which copy survives: first | newest | longest"),
    text_key: Optional[str] = typer.Option(None, "--text-key"),
) -> None:
    """MinHash LSH near-duplicate removal on its own (the build's `minhash_dedup` code path)."""
    from corpus.dedup import MinHashDedup, dedup_files, explain_table

    if explain:
        console.print(explain_table(bands, rows, jaccard, containment))
        return
    if not inputs or out is None:
        raise UserError("dedup", "give INPUT... and --out (or --explain)")
    with reading("dedup", {"ngram": "--ngram", "num_perm": "--num-perm", "bands": "--bands", "rows": "--rows",
                           "jaccard": "--jaccard", "containment": "--containment", "prefer": "--prefer"}):
        from pydantic import ValidationError

        try:
            st = MinHashDedup(ngram=ngram, num_perm=num_perm, bands=bands, rows=rows, jaccard=jaccard,
                              containment=containment, prefer=prefer)
        except ValidationError:
            raise
        except ValueError as e:  # parameters that are valid alone but not together (bands x rows)
            raise UserError("dedup", " ".join(str(e).split())) from None
    res = dedup_files(list(inputs), str(out), st, text_key)
    t = Table(title="corpus dedup")
    for k in ("documents", "kept", "near_duplicates", "clusters_with_duplicates"):
        t.add_row(k, f"{res[k]:,}")
    console.print(t)
    if res["bad_units"]:
        console.print(f"[yellow]{len(res['bad_units'])} unreadable units[/] (first: {res['bad_units'][0]})")


@app.command()
def clean(
    inputs: Optional[list[str]] = typer.Argument(None, help="input files, directories or globs (none: the recipe's sources)"),
    recipe: str = typer.Option(..., "--recipe", "-r", help="the YAML recipe whose per-document stages run"),
    out: Path = typer.Option(..., "--out", "-o", help="writes kept.jsonl, dropped.jsonl, clean_summary.json"),
    source: Optional[str] = typer.Option(None, "--source", help="read INPUT... as this recipe source "
                                         "(its format, keys and stage_overrides); default: one source per input"),
) -> None:
    """Per-document decisions of a recipe's cleaning chain (global stages such as dedup are not run)."""
    from corpus.clean import check_out, clean as run_clean, inputs_recipe

    r = _load_recipe(recipe)
    if inputs:
        try:
            r = inputs_recipe(r, list(inputs), source)
        except ValueError as e:
            raise UserError("--source", str(e)) from None
    elif source:
        raise UserError("--source", "names the recipe source to read INPUT... as; give INPUT paths too")
    _check_recipe_paths(r, recipe if not inputs else "clean")
    try:
        r.check_stages()
    except ValueError as e:  # RecipeError, ValidationError
        raise UserError(recipe, " ".join(str(e).split())) from None
    try:
        check_out(str(out))
    except ValueError as e:
        raise UserError("--out", str(e)) from None
    with progress(console, "clean") as prog:
        sm = run_clean(r, str(out), on_doc=lambda d: prog.advance())
    t = Table(title=f"corpus clean -> {out}")
    for c in ("source", "docs", "kept", "dropped", "kept with lines removed", "top drop reasons"):
        t.add_column(c, justify="left" if c in ("source", "top drop reasons") else "right")
    for name, s in sm["per_source"].items():
        top = sorted(s["drops"].items(), key=lambda kv: -kv[1])[:3]
        t.add_row(name, _fmt(s["docs"]), _fmt(s["kept"]), _fmt(s["dropped"]), _fmt(s["docs_with_lines_removed"]),
                  ", ".join(f"{k} {v}" for k, v in top))
    console.print(t)
    if sm["skipped_stages"]:
        console.print(f"not run (they decide over the whole corpus): {', '.join(sm['skipped_stages'])}")
    if sm["bad_unit_counts"]:
        console.print(f"[yellow]unreadable units[/]: {sm['bad_unit_counts']}")


def _check_recipe_paths(r, where: str) -> None:
    for i, src in enumerate(r.sources):
        for p in src.paths:
            if not any(c in p for c in "*?[") and not os.path.lexists(p):
                raise UserError(where if where == "clean" else f"{where}: sources[{i}] ({src.name}).paths",
                                f"{p}: no such file or directory")


def main() -> None:  # pragma: no cover
    app()


# last: every command above must be registered before `python -m corpus.cli` runs the app
if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
