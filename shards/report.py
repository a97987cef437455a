"""`corpus stats DIR --report report.html`: one self-contained HTML file (matplotlib plots
embedded as PNG data URIs, no external assets) showing what a build holds and what every stage
removed, with samples of what was removed and why."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from typing import Any

import numpy as np

from .dataset import ShardDataset
from .stats import collect, sample_rows


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _funnel_plot(funnel: dict) -> str:
    import matplotlib.pyplot as plt

    n = len(funnel)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.2 + 0.45 * max(len(v) for v in funnel.values()) * n), squeeze=False)
    for ax, (src, stages) in zip(axes[:, 0], funnel.items()):
        names = [s["stage"] for s in stages]
        outs = [s["docs_out"] for s in stages]
        ax.barh(names[::-1], outs[::-1], color="#4c78a8")
        for i, v in enumerate(outs[::-1]):
            ax.text(v, i, f" {v:,}", va="center", fontsize=8)
        ax.set_title(f"{src}: documents remaining after each stage", fontsize=10)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _png(fig)


def _score_plot(funnel: dict) -> str:
    """Histograms of stage scores (language ID, domain classifier) over every document the stage saw."""
    import matplotlib.pyplot as plt

    series = [(src, s["stage"], s["score_hist"]) for src, stages in funnel.items() for s in stages
              if s.get("score_hist")]
    if not series:
        return ""
    stages = sorted({st for _, st, _ in series})
    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 3.4), squeeze=False)
    for ax, st in zip(axes[0], stages):
        for src, name, h in series:
            if name == st:
                x = (np.arange(len(h)) + 0.5) / len(h)
                ax.step(x, h, where="mid", label=src)
        ax.set_title(f"{st}: score of every document it saw", fontsize=10)
        ax.set_xlabel("score")
        ax.set_ylabel("documents")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return "<h2>Stage scores</h2>" + _png(fig)


def _hist_plot(report: dict) -> str:
    if not report.get("histograms"):
        return "<p>no length histograms in this build report</p>"
    return _png(_hist_fig(report))


def _hist_fig(report: dict):
    import matplotlib.pyplot as plt

    hists, bins = report["histograms"], report.get("length_bins", [])
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    x = np.arange(len(bins))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (src, h) in enumerate(hists.items()):
        c = colours[i % len(colours)]  # one colour per source: before solid, after dashed
        axes[0].step(x, h["chars_in"], where="mid", color=c, label=f"{src} before cleaning")
        axes[0].step(x, h["chars_out"], where="mid", color=c, linestyle="--", label=f"{src} after")
        axes[1].step(x, h["tokens"], where="mid", color=c, label=src)
    labels = [f"{b:,}" if b < 10**6 else f"{b // 10**6}M" for b in bins]
    for ax, t in zip(axes, ("document length, characters", "document length, tokens (kept documents)")):
        ax.set_xticks(x[::3], labels[::3], fontsize=7, rotation=45)
        ax.set_title(t, fontsize=10)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _bar(labels: list[str], values: list[float], title: str, xlabel: str = "") -> str:
    return _png(_bar_fig(labels, values, title, xlabel))


def _bar_fig(labels: list[str], values: list[float], title: str, xlabel: str = ""):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.3 * len(labels)))
    ax.barh(labels[::-1], values[::-1], color="#f58518")
    for i, v in enumerate(values[::-1]):  # the number at the end of each bar
        ax.text(v, i, f" {v:,}" if isinstance(v, int) else f" {v:.2f}", va="center", fontsize=8)
    ax.margins(x=0.12)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def _marked_row(text: str) -> str:
    t = html.escape(text)
    return (t.replace("⟦doc⟧", '<span class="b doc">⟦doc⟧</span>').replace("⟦cont⟧", '<span class="b cont">⟦cont⟧</span>')
            .replace("⟦pad", '<span class="b pad">⟦pad').replace("⟧", "⟧</span>") if "⟦pad" in t else
            t.replace("⟦doc⟧", '<span class="b doc">⟦doc⟧</span>').replace("⟦cont⟧", '<span class="b cont">⟦cont⟧</span>'))


REMOVED_PREFIX = "removed_lines__"  # rejected/removed_lines__STAGE.jsonl: lines removed from kept documents


def _sample_files(root: str, removed: bool) -> list[str]:
    d = os.path.join(root, "rejected")
    if not os.path.isdir(d):
        return []
    return [os.path.join(d, f) for f in sorted(os.listdir(d))
            if f.endswith(".jsonl") and f.startswith(REMOVED_PREFIX) == removed]


def _samples(files: list[str], per_source: int, title: Any, empty: str) -> str:
    """Samples grouped by reason (or stage), then source, at most `per_source` of each source;
    marked lines highlighted; a source selector shows one source at a time."""
    out, sources = [], set()
    for path in files:
        rows = [json.loads(l) for l in open(path, encoding="utf-8")]
        by_src: dict[str, list[dict]] = {}
        for r in rows:
            by_src.setdefault(r.get("source", "?"), []).append(r)
        out.append(f"<h3>{html.escape(title(os.path.basename(path)[:-6]))}</h3>")
        for src, rs in sorted(by_src.items()):
            sources.add(src)
            for r in rs[:per_source]:
                bad = set(r.get("lines") or [])
                lines = r["text"].split("\n")[:80]
                body = "\n".join(f"<mark>{html.escape(l)}</mark>" if i in bad else html.escape(l)
                                 for i, l in enumerate(lines))
                out.append(f'<div class="sample" data-source="{html.escape(src)}"><div class="meta">'
                           f'[{html.escape(src)}] {html.escape(r["id"])} — {html.escape(r.get("detail", ""))}'
                           f'</div><pre>{body}</pre></div>')
    if not out:
        return f"<p>{empty}</p>"
    opts = "".join(f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in sorted(sources))
    sel = ('<p>source: <select class="srcsel" onchange="var v=this.value, p=this.parentNode.parentNode;'
           "Array.prototype.forEach.call(p.querySelectorAll('.sample[data-source]'),function(e){"
           "e.style.display=(v===''||e.getAttribute('data-source')===v)?'':'none';});\">"
           f'<option value="">all sources</option>{opts}</select></p>')
    return f"<div>{sel}{''.join(out)}</div>"


def _rejected(root: str, per_reason: int = 3) -> str:
    return _samples(_sample_files(root, False), per_reason, lambda n: n.replace("__", ":"),
                    "no rejected samples (no stage dropped anything)")


def _removed_lines(root: str, per_stage: int = 3) -> str:
    return _samples(_sample_files(root, True), per_stage, lambda n: n.removeprefix(REMOVED_PREFIX),
                    "no stage removed lines from the documents it kept")


def _tokenization(st: dict) -> str:
    rows = st.get("tokenization", [])
    if not rows:
        return "<p>not recorded by this build</p>"
    return _table([[r["source"], f"{r['chars']:,}", f"{r['tokens']:,}",
                    "-" if r["chars_per_token"] is None else f"{r['chars_per_token']:.2f}",
                    "-" if r["byte_fallback_share"] is None else f"{100 * r['byte_fallback_share']:.2f}"]
                   for r in rows], ["source", "characters", "tokens", "characters / token", "byte-fallback tokens %"])


# families matplotlib may find for Chinese labels: Debian's fonts-noto-cjk, fonts-wqy-microhei,
# fonts-wqy-zenhei, fonts-arphic-*, and the common desktop ones
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Serif CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN", "SimHei",
                "Microsoft YaHei", "PingFang SC", "Heiti SC")
CJK_FILES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
             "/usr/share/fonts/truetype/arphic/uming.ttc")


def use_cjk_font() -> str | None:
    """Put the first CJK font found in front of matplotlib's sans-serif list, so that Chinese
    source names, stages and pieces render instead of tofu boxes; None (and nothing changed)
    when the machine has none (`apt-get install fonts-wqy-microhei` or `fonts-noto-cjk`)."""
    import matplotlib
    from matplotlib import font_manager

    for f in CJK_FILES:  # a font installed after matplotlib built its cache is not known yet
        if os.path.exists(f):
            try:
                font_manager.fontManager.addfont(f)
            except (OSError, RuntimeError, ValueError):
                pass
    have = {f.name for f in font_manager.fontManager.ttflist}
    name = next((n for n in CJK_FAMILIES if n in have), None)
    if name is not None:  # per-glyph fallback needs named families: Latin from DejaVu, the rest from the CJK font
        matplotlib.rcParams["font.family"] = ["DejaVu Sans", name, "sans-serif"]
    return name


def top_tokens(root: str, k: int = 30, max_rows: int = 4096) -> list[tuple[int, str, int]]:
    """Most frequent token ids over (a sample of) the train rows, excluding padding."""
    from .tokenizer import build_tokenizer

    ds = ShardDataset(root)
    counts = np.zeros(ds.tokenizer["vocab_size"], np.int64)
    left = max_rows
    for sh in ds.shards("train"):
        n = min(left, len(sh))
        for r in range(n):
            v = int(sh.bounds.row_valid[r])
            counts += np.bincount(np.asarray(sh.tokens[r, :v]), minlength=len(counts))[: len(counts)]
        left -= n
        if left <= 0:
            break
    tok = build_tokenizer(root, ds.manifest)  # the build's own copy: works from any directory
    top = np.argsort(-counts)[:k]
    return [(int(i), tok.piece(int(i)), int(counts[i])) for i in top if counts[i]]


def make_report(root: str, out_html: str, samples: int = 5) -> str:
    """Write the HTML report of a build directory; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    use_cjk_font()
    st = collect(root)
    rp = os.path.join(root, "build_report.json")
    report = json.load(open(rp, encoding="utf-8")) if os.path.exists(rp) else {}
    parts: list[str] = [f"<h1>refinery build report</h1><p><code>{html.escape(os.path.abspath(root))}</code> — "
                        f"seq_len {st['seq_len']}, {st['dtype']}, tokenizer {html.escape(st['tokenizer']['file'])} "
                        f"(vocab {st['tokenizer']['vocab_size']:,}), documents in {st['documents_in']:,} → "
                        f"written {st['documents_written']:,}</p>"]
    for split, rows in st["splits"].items():
        parts.append(f"<h2>{split}</h2>" + _table(
            [[r["source"], r["kind"], f"{r['unique_docs']:,}", f"{r['tokens']:,}", f"{r['rows']:,}", f"{r['pad_pct']:.2f}",
              "-" if r["target_share"] is None else f"{r['target_share']:.3f}",
              "-" if r["realised_share"] is None else f"{r['realised_share']:.3f}"] for r in rows],
            ["source", "kind", "docs", "tokens", "rows", "pad %", "target share", "realised share"]))
    parts.append("<h2>Funnel</h2>" + _funnel_plot(st["funnel"]))
    drops = [[src, s["stage"], reason, f"{n:,}"] for src, stages in st["funnel"].items() for s in stages
             for reason, n in s.get("drops", {}).items()]
    parts.append(_table(drops, ["source", "stage", "reason", "documents"]) if drops else "<p>nothing dropped</p>")
    parts.append(_score_plot(st["funnel"]))
    parts.append("<h2>Document lengths</h2>" + _hist_plot(report))
    langs: dict[str, int] = {}
    for h in report.get("histograms", {}).values():
        for k, v in h.get("languages", {}).items():
            langs[k] = langs.get(k, 0) + v
    if langs:
        top = sorted(langs.items(), key=lambda x: -x[1])[:15]
        parts.append("<h2>Languages (kept documents)</h2>" + _bar([k for k, _ in top], [v for _, v in top],
                                                                   "documents per fastText language"))
    cpath = os.path.join(root, "dedup_clusters.jsonl")
    if os.path.exists(cpath):
        sizes: dict[str, int] = {}
        for l in open(cpath, encoding="utf-8"):
            c = json.loads(l)["cluster"]
            sizes[c] = sizes.get(c, 0) + 1
        hist: dict[int, int] = {}
        for v in sizes.values():
            hist[v] = hist.get(v, 0) + 1
        ks = sorted(hist)
        parts.append("<h2>Near-duplicate clusters</h2>" + _bar([f"size {k}" for k in ks], [hist[k] for k in ks],
                                                               "clusters by size (MinHash LSH)", "clusters"))
    waste = [(f"{r['source']} / {split}", r["pad_pct"]) for split, rows in st["splits"].items() for r in rows if r["rows"]]
    mode = ShardDataset(root).manifest["packing"]["mode"]
    parts.append("<h2>Packing waste</h2>" + _bar([w[0] for w in waste], [w[1] for w in waste],
                                                  f"padding tokens, % of rows (mode: {mode})", "%"))
    parts.append("<h2>Characters per token and byte fallback (per source)</h2><p>over the documents the "
                 "per-document stages kept; byte-fallback tokens are <code>&lt;0xNN&gt;</code> pieces: a high share "
                 "means the tokenizer spells these characters byte by byte (a case for extending the vocabulary)</p>"
                 + _tokenization(st))
    tt = top_tokens(root)
    parts.append("<h2>Most frequent tokens (train)</h2>" + _table([[i, p, f"{c:,}"] for i, p, c in tt],
                                                                  ["id", "piece", "count"]))
    parts.append("<h2>Random rows, decoded</h2><p>⟦doc⟧ a document starts, ⟦cont⟧ the row continues a document, "
                 "⟦pad×k⟧ padding</p>")
    for s in sample_rows(root, samples, seed=0):
        parts.append(f'<div class="sample"><div class="meta">{html.escape(s["shard"])} row {s["row"]}, '
                     f'{s["segments"]} segments</div><pre>{_marked_row(s["text"][:3000])}</pre></div>')
    parts.append("<h2>Rejected samples (offending lines marked; at most 3 per reason and source)</h2>"
                 + _rejected(root))
    parts.append("<h2>Lines removed from kept documents (marked; at most 3 per stage and source)</h2>"
                 + _removed_lines(root))
    bad = st.get("bad_units", [])
    if bad:
        parts.append("<h2>Unreadable units</h2>" + _table([[b["file"], b["line"], b["offset"], b["reason"], b["detail"]]
                                                            for b in bad], ["file", "line", "offset", "reason", "detail"]))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>refinery report</title>
<script>
window.__errors = [];
window.addEventListener('error', function (e) {{ window.__errors.push(String(e.message || e.type)); }}, true);
window.addEventListener('load', function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-errors', String(window.__errors.length));
}});
</script>
<style>
body {{ font-family: sans-serif; margin: 24px; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
pre {{ white-space: pre-wrap; background: #f7f7f7; padding: 8px; font-size: 12px; max-height: 360px; overflow: auto; }}
mark {{ background: #ffd54f; }} .b {{ font-weight: bold; }} .doc {{ color: #2e7d32; }} .cont {{ color: #1565c0; }}
.pad {{ color: #999; }} .meta {{ font-size: 12px; color: #555; }} img {{ max-width: 100%; }}
</style></head><body>{''.join(parts)}</body></html>"""
    with open(out_html, "w", encoding="utf-8") as f:
        f.write(doc)
    return out_html
