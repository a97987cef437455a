"""The HTML report of a real build of ../shared/data, rendered in headless Chromium (Debian's
`chromium`, installed here when missing): not blank, every image loaded, no script errors;
the spam removals are in the funnel with their samples."""

import os
import shutil
import subprocess

import pytest

from conftest import LLAMA_TOKENIZER

CHAIN = ["fix_encoding", "normalize", "url_filter", "language", "line_corrections", "spam", "gopher_repetition",
         "gopher_quality", "pii", "exact_dedup", "minhash_dedup"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def _chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None and os.geteuid() == 0:  # the test setup installs Debian's chromium
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed and could not be installed (apt-get install chromium)")
    return exe


@pytest.fixture(scope="module")
def report(shared, tmp_path_factory):
    from corpus.build import build
    from corpus.recipe import Recipe
    from shards.report import make_report

    out = tmp_path_factory.mktemp("report_build")
    r = Recipe.model_validate({
        "sources": [{"name": "web_zh", "paths": [str(shared / "general/flagdata_web_zh")]},
                    {"name": "oscar_zh", "paths": [str(shared / "general/oscar_zh")], "txt_mode": "paragraph"},
                    {"name": "c4_en", "paths": [str(shared / "general/c4_en")]},
                    {"name": "law_zh", "kind": "domain", "paths": [str(shared / "domain/lawrefbook_zh/宪法")], "format": "md"}],
        "stages": [{"name": n} for n in CHAIN],
        "tokenizer": {"path": str(LLAMA_TOKENIZER)}, "packing": {"seq_len": 1024}})
    build(r, str(out))
    return out, make_report(str(out), str(out / "report.html"))


def test_report_content(report):
    out, path = report
    text = open(path, encoding="utf-8").read()
    assert "spam:spam_keywords" in text and "<mark>" in text  # spam removals with their offending lines
    assert "Near-duplicate clusters" in text and "Most frequent tokens" in text and "⟦doc⟧" in text
    assert 'src="http' not in text and "<link" not in text  # self-contained: no external assets
    assert 'src="data:image/png;base64,' in text


def test_report_renders_in_headless_chromium(report, tmp_path):
    out, path = report
    exe = _chromium()
    url = "file://" + os.path.abspath(path)
    dom = subprocess.run([exe, *FLAGS, "--virtual-time-budget=10000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    body = dom.stdout[dom.stdout.find("<body"):][:200]
    assert 'data-images-ok="true"' in body and 'data-errors="0"' in body, body
    n_img = int(body.split('data-images="')[1].split('"')[0])
    assert n_img >= 5
    shot = tmp_path / "shot.png"
    r = subprocess.run([exe, *FLAGS, "--window-size=1280,2400", f"--screenshot={shot}", url], capture_output=True,
                       text=True, timeout=120)
    assert shot.exists(), r.stderr[-1000:]
    import matplotlib.image as mpimg

    px = mpimg.imread(str(shot))
    assert px.shape[0] >= 2000 and px[..., :3].std() > 0.05  # not a blank page
    assert "Uncaught" not in r.stderr and "ERROR:CONSOLE" not in r.stderr
