"""``python -m harness report``: the static site of the committed omniglot28 and omniglot-cpu records, loaded
in a real headless Chromium (driven over the DevTools protocol) from disk, sorted by a header click and
photographed."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.core.store import TrialStore
from harness.reporting.html import curves_svg, markdown

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "<script>document.title='owned'</script>"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site of a copy of two committed experiments (one a benchmark with its manifest)."""
    root = tmp_path_factory.mktemp("results")
    for experiment in ("omniglot28", "omniglot-cpu"):
        shutil.copytree(REPO / "results" / "runs" / experiment, root / "runs" / experiment)
    shutil.copytree(REPO / "results" / "benchmarks" / "omniglot-cpu", root / "benchmarks" / "omniglot-cpu",
                    ignore=shutil.ignore_patterns("study.db"))
    for search in (REPO / "results" / "searches").glob("omniglot-cpu.*"):  # the benchmark's search trials
        shutil.copytree(search, root / "searches" / search.name)
    for board in (REPO / "results" / "leaderboards").glob("omniglot28.*"):  # written by `leaderboard`
        (root / "leaderboards").mkdir(exist_ok=True)
        shutil.copy(board, root / "leaderboards" / board.name)
    shutil.copytree(REPO / "results" / "sweeps" / "omniglot", root / "sweeps" / "omniglot")
    for record in (REPO / "results" / "runs" / "omniglot").glob("*/record.json"):  # the sweep's records only
        if TrialStore.read_record_file(record).spec.role == "sweep":
            (root / "runs" / "omniglot" / record.parent.name).mkdir(parents=True)
            shutil.copy(record, root / "runs" / "omniglot" / record.parent.name / "record.json")
    record = next((root / "runs" / "omniglot28").glob("ms-*-s0-*/record.json"))
    data = json.loads(record.read_text())
    data["environment"]["host"] = HOSTILE  # text from a record is escaped on every page
    record.write_text(json.dumps(data))
    out = tmp_path_factory.mktemp("site")
    assert main(["report", "--results-dir", str(root), "--out", str(out)]) == 0
    return out


def test_pages_hold_the_leaderboard_tests_plots_protocol_and_trials(site: Path) -> None:
    index = (site / "index.html").read_text()
    assert 'href="omniglot28/index.html"' in index and 'href="omniglot-cpu/index.html"' in index
    page = (site / "omniglot28" / "index.html").read_text()
    # the committed board's proxyanchor row, in percent, as results/leaderboards/omniglot28.md prints it
    assert "83.49 ± 0.79" in page and "selection: " in page
    assert (site / "omniglot28" / "omniglot28.recall_at_1.png").stat().st_size > 1000
    bench = (site / "omniglot-cpu" / "index.html").read_text()
    assert "Benchmark protocol (manifest)" in bench and "trials_per_method" in bench
    assert "Significance against the baseline, amsoftmax" in bench and "Seeds for 1 point" in bench
    assert (site / "omniglot-cpu" / "benchmark" / "critical_difference.png").is_file()
    trial = next((site / "omniglot28").glob("proxyanchor-*-s0-*.html")).read_text()
    assert "<polyline" in trial and "&quot;embedding_dim&quot;: 512" in trial
    hostile = next((site / "omniglot28").glob("ms-*-s0-*.html")).read_text()
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in hostile and HOSTILE not in hostile


def test_every_search_and_sweep_has_a_page_with_its_figures_trials_best_and_protocol(site: Path) -> None:
    index = (site / "index.html").read_text()
    methods = ("amsoftmax", "contrastive", "jrd", "ms", "softtriple", "triplet")
    assert all(f'href="searches/omniglot-cpu.{m}.html"' in index for m in methods)
    assert 'href="sweeps/omniglot.html"' in index
    page = (site / "searches" / "omniglot-cpu.jrd.html").read_text()
    trials = pd.read_csv(REPO / "results" / "benchmarks" / "omniglot-cpu" / "methods" / "jrd" / "trials.csv")
    best = json.loads((REPO / "results" / "benchmarks" / "omniglot-cpu" / "methods" / "jrd" / "best.json").read_text())
    assert f"search of benchmark omniglot-cpu: 12 trials; best val_recall@1 {100 * best['value']:.2f} %" in index
    # the protocol, the best trial (Optuna's number, as trials.csv and the console give it) and the chosen values
    assert "<h2>Protocol</h2>" in page and "LogUniform(low=0.001, high=10.0)" in page and "val_recall@1" in page
    assert f'>trial {best["trial_number"]}</a>: val_recall@1 {100 * best["value"]:.2f} %' in page
    shown = f"alpha={best['params']['alpha']:.4g} sigma={best['params']['sigma']:.4g}"
    assert shown in page and str(best["params"]["alpha"]) not in page  # as the console prints it, not 17 digits
    for figure in ("history", "importances", "contour", "scatter"):
        assert f'src="omniglot-cpu.jrd/{figure}.png"' in page
        assert (site / "searches" / "omniglot-cpu.jrd" / f"{figure}.png").stat().st_size > 10_000
    numbers = re.findall(r'<tr><td class="num">(\d+)</td><td class="">COMPLETE</td>', page)
    assert [int(n) for n in numbers] == list(trials["number"])
    linked = re.findall(r'href="(omniglot-cpu.jrd/jrd-omniglot-val-[^"]+\.html)"', page)
    assert len(set(linked)) == len(trials) and all((site / "searches" / p).is_file() for p in linked)
    assert 'href="omniglot-cpu.jrd/trials.csv"' in page and 'href="omniglot-cpu.jrd/best.json"' in page
    sweep = (site / "sweeps" / "omniglot.html").read_text()
    assert 'src="omniglot/nir.flow_lr_multiplier.png"' in sweep and "<h2>nir: flow_lr_multiplier</h2>" in sweep
    rows = re.findall(r"<tr><td class=\"num\">([\d.]+)</td><td class=\"\">(best|)</td><td class=\"\">val</td>", sweep)
    assert rows == [("0.05", ""), ("0.5", "best"), ("5", ""), ("50", "")]  # 5 and 50 failed: never the best


def test_a_board_page_links_its_files_renders_the_benchmark_report_and_tabulates_the_environment(site: Path) -> None:
    page = (site / "omniglot28" / "index.html").read_text()
    for suffix in ("csv", "long.csv", "wide.csv", "md", "tex", "env.json", "recall_at_1.pdf", "recall_at_k.png"):
        assert f'href="files/omniglot28.{suffix}"' in page and (site / "omniglot28" / "files" / f"omniglot28.{suffix}").is_file()
    assert "{&#x27;" not in page and "{'" not in page  # no Python dict: the environment is tables
    assert re.search(r"<td[^>]*>faiss-cpu</td><td[^>]*>[\d.]+ \(\d+\)</td>", page)
    bench = (site / "omniglot-cpu" / "index.html").read_text()
    assert "![budget]" not in bench and '<img src="benchmark/budget.png" alt="budget" />' in bench
    report = pd.read_csv(REPO / "results" / "benchmarks" / "omniglot-cpu" / "report" / "leaderboard.csv")
    jrd = report.set_index("method").loc["jrd"]
    assert "<th>method</th>" in bench and f"<td>{jrd['mean']:.2f} ± {jrd['std']:.2f}</td>" in bench  # as a table
    assert 'href="../searches/omniglot-cpu.ms.html"' in bench and 'href="benchmark/report.md"' in bench


def test_curves_have_round_ticks_and_a_one_epoch_trial_stays_at_epoch_1() -> None:
    one = curves_svg([{"epoch": 1, "loss": 0.5, "val_recall@1": 0.8}])
    charts = one.split("</svg>")[:-1]
    assert len(charts) == 2 and "validation R@1 (%)" in charts[1]
    for chart in charts:
        x = [float(t) for t in re.findall(r'text-anchor="middle">([\d.]+)</text>', chart)]
        assert x == [1.0]  # no "epoch 2" for a trial of one epoch
        y = [float(t) for t in re.findall(r'text-anchor="end">([-\d.]+)</text>', chart)]
        value = 80 if "R@1" in chart else 0.5
        assert min(y) < value < max(y) and max(y) - min(y) <= 0.25 * value  # a band around the value, not value + 1
    history = [{"epoch": e, "loss": 1 / e, "val_recall@1": 0.5 + e / 40} for e in range(1, 13)]
    loss = curves_svg(history).split("</svg>")[0]
    y = [float(t) for t in re.findall(r'text-anchor="end">([-\d.]+)</text>', loss)]
    assert len(y) >= 3 and min(y) <= 1 / 12 and max(y) >= 1 and len(re.findall(r'stroke="#eaeef2"', loss)) == len(y)
    x = [float(t) for t in re.findall(r'text-anchor="middle">([\d.]+)</text>', loss)]
    assert len(x) >= 3 and all(t == int(t) and 1 <= t <= 12 for t in x)


def test_markdown_is_rendered_with_raw_html_escaped() -> None:
    text = markdown("# Report\n\n<script>alert(1)</script>\n\n![budget](budget.png) [x](javascript:alert(1))",
                    base="benchmark/")
    assert "<h1>Report</h1>" in text and "<script>" not in text and "&lt;script&gt;" in text
    assert 'src="benchmark/budget.png"' in text and 'href="javascript' not in text


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--results-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "s")]) == 2
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert main(["report", "--results-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "s")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: no ") for e in errors)


class DevTools:
    """A minimal DevTools-protocol client of one page of a headless Chromium."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect
        self.socket = connect(url, max_size=2 ** 26)
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression: str) -> object:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        for _ in range(100):
            if self.evaluate("document.readyState") == "complete":
                return
            time.sleep(0.1)
        raise AssertionError(f"{url} did not load")


@pytest.fixture
def browser(tmp_path: Path):
    if CHROMIUM is None:
        pytest.skip("no Chromium found (apt-get install chromium): the site is not tested in a browser")
    pytest.importorskip("websockets", reason="the DevTools client needs websockets (the dev extra)")
    profile = tmp_path / "profile"
    process = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                                f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.is_file() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        tools = DevTools(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        yield tools
        tools.socket.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_leaderboard_sorts_in_chromium_opened_from_disk(site: Path, browser: DevTools, tmp_path: Path) -> None:
    browser.open((site / "index.html").as_uri())
    assert browser.evaluate("document.querySelectorAll('#experiments .card a').length") == 2
    browser.open((site / "omniglot28" / "index.html").as_uri())
    rows = "Array.from(document.querySelectorAll('#leaderboard tbody tr')).map(r => r.cells[0].textContent)"
    before = browser.evaluate(rows)
    assert before[:5] == ["amsoftmax", "ms", "pixels", "proxyanchor", "triplet"]  # measured rows, by group
    header = ("(() => {const h = Array.from(document.querySelectorAll('#leaderboard th'))"
              ".find(h => h.textContent === 'R@1'); const b = h.getBoundingClientRect();"
              " return [b.x + b.width / 2, b.y + b.height / 2];})()")
    x, y = browser.evaluate(header)
    for _ in range(2):  # the first click sorts ascending, the second descending
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    after = browser.evaluate(rows)
    values = browser.evaluate("Array.from(document.querySelectorAll('#leaderboard tbody tr'))"
                              ".map(r => parseFloat(r.cells[Array.from(r.parentNode.parentNode.querySelectorAll('th'))"
                              ".findIndex(h => h.textContent === 'R@1')].textContent))")
    numbers = [v for v in values if v is not None]
    assert numbers == sorted(numbers, reverse=True) and after != before
    assert after[0] == "proxyanchor" and sorted(after) == sorted(before)  # 83.49 leads the measured rows
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "site.png").write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000


def test_search_and_benchmark_pages_show_their_figures_in_chromium(site: Path, browser: DevTools, tmp_path: Path) -> None:
    """Every image of a search page and of a benchmark's rendered report loads from disk (no broken link)."""
    images = ("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    for page, least in (("searches/omniglot-cpu.jrd.html", 4), ("omniglot-cpu/index.html", 4),
                        ("sweeps/omniglot.html", 1)):
        browser.open((site / page).as_uri())
        loaded = browser.evaluate(images)
        assert len(loaded) >= least and all(ok for _, ok in loaded), (page, loaded)
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / f"{Path(page).stem}.png").write_bytes(shot)
        assert len(shot) > 20_000
