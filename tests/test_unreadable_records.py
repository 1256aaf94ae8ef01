"""Issue 34 (9, 10, 11): a record that cannot be trusted (random bytes, nested too deeply, a field of the wrong
type, metrics edited by hand) is skipped with a warning naming its file by every command that reads records,
as a truncated one is: ``leaderboard``, ``run --resume``, ``report`` and ``reproduce`` each still do their work
on the other records."""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.record import RecordError
from harness.core.store import TrialStore

RUN = ["run", "--dataset", "digits", "--executor", "local", "--no-progress"]


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory) -> Path:
    """A results folder with two finished digits trials (pixels, no training; triplet, one epoch)."""
    results = tmp_path_factory.mktemp("unreadable") / "results"
    assert main([*RUN, "--methods", "pixels,triplet", "--epochs", "1", "--results-dir", str(results)]) == 0
    return results


def damaged(record: dict, how: str) -> bytes:
    """The bytes of ``record`` damaged as ``how`` says."""
    if how == "random bytes":
        return os.urandom(64) + b"\xf3\xff"
    if how == "nested too deeply":
        return b"[" * 100_000 + b"]" * 100_000
    record = json.loads(json.dumps(record))
    if how == "epoch as text":
        record["history"] = [{**record["history"][0], "epoch": "one"}]
    elif how == "history of numbers":
        record["history"] = [record["history"][0], 5, None]
    elif how == "wall time as text":
        record["wall_time_s"] = "abc"
    elif how == "metrics edited":
        record["metrics"]["recall@1"] = min(1.0, record["metrics"]["recall@1"] + 0.482)
    return json.dumps(record).encode()


CASES = {"random bytes": "not UTF-8 text (byte 0x", "nested too deeply": "nested too deeply to be a record",
         "epoch as text": "history is [{", "history of numbers": "history is [{",
         "wall time as text": "wall_time_s is 'abc', not float",
         "metrics edited": "its metrics do not match their checksum (metrics_sha256)"}


@pytest.mark.parametrize("how", CASES)
def test_every_command_skips_an_untrustworthy_record_naming_it(how, two_trials, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(two_trials, results)
    store = TrialStore(results)
    files = {r.spec.method: path for path, r in store.records()}
    bad = files["triplet"]
    bad.write_bytes(damaged(json.loads(bad.read_text()), how))
    with pytest.raises(RecordError, match=re.escape(f"{bad}: {CASES[how]}")):
        TrialStore.read_record_file(bad)
    capsys.readouterr()

    commands = {
        "leaderboard": ["leaderboard", "--results-dir", str(results)],
        "report": ["report", "--results-dir", str(results), "--out", str(tmp_path / "site")],
        "reproduce": ["reproduce", str(results / "runs"), "--out", str(tmp_path / "scratch"), "--no-progress"],
        "run --resume": [*RUN, "--methods", "pixels", "--resume", "--results-dir", str(results)],
    }
    skipped = f"skipping trial record {bad}: {CASES[how]}"
    for name, argv in commands.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(argv) == 0, name
        err = capsys.readouterr().err
        assert "Traceback" not in err and "error:" not in err, (name, err)
        said = [str(w.message) for w in caught] + err.splitlines()
        assert sum(skipped in line for line in said) == 1, (name, said)  # named once, not once per reader
    assert (tmp_path / "site" / "index.html").is_file()
    board = (results / "leaderboards" / "digits.md").read_text()
    assert "pixels" in board and "triplet" not in board
