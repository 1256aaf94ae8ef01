"""``python -m harness report``: the static site of the committed omniglot28 and omniglot-cpu records, loaded
in a real headless Chromium (driven over the DevTools protocol) from disk, sorted by a header click and
photographed."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from harness.cli import main

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
                    ignore=shutil.ignore_patterns("study.db", "methods"))
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
    assert "83.51 ± 0.19" in page and "selection: " in page
    assert (site / "omniglot28" / "omniglot28.recall_at_1.png").stat().st_size > 1000
    bench = (site / "omniglot-cpu" / "index.html").read_text()
    assert "Benchmark protocol (manifest)" in bench and "trials_per_method" in bench
    assert "Significance against the baseline, amsoftmax" in bench and "Seeds for 1 point" in bench
    assert (site / "omniglot-cpu" / "benchmark.critical_difference.png").is_file()
    trial = next((site / "omniglot28").glob("proxyanchor-*-s0-*.html")).read_text()
    assert "<polyline" in trial and "&quot;embedding_dim&quot;: 512" in trial
    hostile = next((site / "omniglot28").glob("ms-*-s0-*.html")).read_text()
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in hostile and HOSTILE not in hostile


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
    assert browser.evaluate("document.querySelectorAll('.card a').length") == 2
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
    assert after[0] == "proxyanchor" and sorted(after) == sorted(before)  # 83.51 leads the measured rows
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "site.png").write_bytes(shot)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
