"""The reaper ends what a harness command started, by the process ids it recorded, and nothing else: not
another program's processes, however they are named (an orphaned ``ray::IDLE`` of the same user among them),
and not a newer process that took a recorded id."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from harness.scheduling import reaper

#: a stand-in for a harness command: it starts one child (as a command starts Ray's processes), prints its id
COMMAND = ("import subprocess, time; child = subprocess.Popen(['sleep', '60']); "
           "print(child.pid, flush=True); time.sleep(60)")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def orphan_named_like_ray(folder: Path) -> int:
    """Another program's orphaned Ray worker: a process of this user named ``ray::IDLE`` (as Ray titles its
    idle workers) whose parent has exited."""
    program = folder / "ray::IDLE"
    program.symlink_to(shutil.which("sleep"))
    out = subprocess.run(["bash", "-c", f"'{program}' 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                         text=True, check=True, stdin=subprocess.DEVNULL)
    pid = int(out.stdout.split()[0])
    # the background job is a forked bash until it execs the program: wait for the exec, not a fixed time
    deadline = time.time() + 60
    while psutil.Process(pid).name() != "ray::IDLE" and time.time() < deadline:
        time.sleep(0.05)
    assert psutil.Process(pid).name() == "ray::IDLE" and psutil.Process(pid).ppid() != os.getpid()
    return pid


def test_a_killed_command_loses_its_children_and_nobody_elses_processes(tmp_path, monkeypatch):
    other = orphan_named_like_ray(tmp_path)
    seen_child = threading.Event()
    looked = reaper.descendants

    def descendants_noting_the_child(process: psutil.Process) -> dict[int, float]:
        found = looked(process)
        if child in found:
            seen_child.set()
        return found

    monkeypatch.setattr(reaper, "descendants", descendants_noting_the_child)
    command = subprocess.Popen([sys.executable, "-c", COMMAND], stdout=subprocess.PIPE, text=True)
    try:
        child = int(command.stdout.readline())
        ended: list[int] = []
        watcher = threading.Thread(target=lambda: ended.extend(reaper.watch(command.pid)))
        watcher.start()
        assert seen_child.wait(timeout=60)      # the watcher has recorded the command's child
        command.kill()                          # kill -9: the child is orphaned, as Ray's agents would be
        command.wait()
        assert alive(child)
        watcher.join(timeout=30)
        assert ended == [child] and wait_gone(child, 5), "the command's own child outlived it"
        assert alive(other), "a process the command did not start was ended"
    finally:
        if alive(other):
            psutil.Process(other).kill()
        if command.poll() is None:
            command.kill()


def test_a_recorded_id_now_held_by_a_newer_process_is_left_alone():
    newer = subprocess.Popen(["sleep", "60"])
    try:
        started = psutil.Process(newer.pid).create_time()
        assert reaper.end({newer.pid: started - 5.0}) == []   # recorded: an older process under the same id
        assert alive(newer.pid)
        assert reaper.end({newer.pid: started}) == [newer.pid]
        assert newer.wait(timeout=5) == -9                   # ended by SIGKILL
    finally:
        if newer.poll() is None:
            newer.kill()
        newer.wait()
