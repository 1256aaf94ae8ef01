"""Issue 34.18: a full disk while a leaderboard is written leaves the previous board files as they were, all of
them consistent with one another (every file goes to a temporary first; all are renamed only when all are
written)."""
from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path

from harness.cli import main
from harness.core.store import TrialStore
from test_hostile import record


class FullDisk(io.BufferedWriter):
    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_mid_board_leaves_the_previous_board_whole(tmp_path, monkeypatch, capsys):
    store = TrialStore(tmp_path)
    for method, seed, r1 in (("ms", 0, 0.5), ("ms", 1, 0.6), ("triplet", 0, 0.4)):
        store.write_record(record(method, seed, r1))
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    boards = tmp_path / "leaderboards"
    before = {p.name: p.read_bytes() for p in boards.iterdir()}
    assert {"e.csv", "e.md", "e.tex", "e.env.json", "e.recall_at_1.png"} <= set(before)
    store.write_record(record("triplet", 1, 0.9))  # the next board differs in every file

    mkstemp, fdopen, made = tempfile.mkstemp, os.fdopen, []

    def make_temp(*args, **kwargs):
        fd, name = mkstemp(*args, **kwargs)
        if Path(name).parent == boards:
            made.append(fd)
        return fd, name

    def open_fd(fd, mode="r", *args, **kwargs):  # the fourth board file meets a full disk
        return FullDisk(io.FileIO(fd, "wb")) if made[3:4] == [fd] else fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", make_temp)
    monkeypatch.setattr(os, "fdopen", open_fd)
    capsys.readouterr()
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in boards.iterdir()} == before
    monkeypatch.undo()
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 0
    assert (boards / "e.csv").read_bytes() != before["e.csv"] and (boards / "e.md").read_bytes() != before["e.md"]


def test_atomic_files_land_together_or_not_at_all(tmp_path):
    from harness.core.store import AtomicFiles

    (tmp_path / "a.txt").write_text("old a")
    try:
        with AtomicFiles() as files:
            files.write_text(tmp_path / "a.txt", "new a")
            files.write_binary(tmp_path / "b.bin", lambda f: f.write(b"new b"))
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old a"
    with AtomicFiles() as files:
        files.write_text(tmp_path / "a.txt", "new a")
        files.write_binary(tmp_path / "b.bin", lambda f: f.write(b"new b"))
        assert (tmp_path / "a.txt").read_text() == "old a"
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "b.bin").read_bytes() == b"new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]
