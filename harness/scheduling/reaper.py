"""Ends, with a harness command, the processes it started, however the command ends.

A command that starts its own Ray starts this watcher (``python -m harness.scheduling.reaper PID``,
in a session of its own). While the command runs, the watcher records every process descended
from it (its process id with its start time: all of them started by this command, Ray's GCS,
raylet, dashboard, agents and workers among them). Once the command is gone (finished, or killed
with ``kill -9``, after which Ray's dashboard and runtime-env agents would live on), it waits a
moment for Ray's own shutdown and then kills those recorded processes that still run. No process
is chosen by its name, and none the command did not start is touched: a recorded process id that
now belongs to a newer process (another start time) is left alone.
"""
from __future__ import annotations

import sys
import time

import psutil

#: seconds between two looks at the command's descendants
POLL_S = 0.5
#: seconds left to Ray's own clean-up once the command has ended
GRACE_S = 2.0


def descendants(process: psutil.Process) -> dict[int, float]:
    """``{pid: start time}`` of every process descended from ``process`` (empty once it has ended)."""
    found = {}
    try:
        children = process.children(recursive=True)
    except psutil.Error:
        return found
    for child in children:
        try:
            found[child.pid] = child.create_time()
        except psutil.Error:
            continue
    return found


def end(recorded: dict[int, float]) -> list[int]:
    """Kill the recorded processes that still run (same id and start time); their ids."""
    killed = []
    for pid, started in recorded.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                process.kill()
                killed.append(pid)
        except psutil.Error:
            continue
    return killed


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(command_pid: int) -> list[int]:
    """Record the descendants of ``command_pid`` until it ends, then end those still running."""
    try:
        command = psutil.Process(command_pid)
    except psutil.Error:
        return []
    recorded: dict[int, float] = {}
    while running(command):
        recorded.update(descendants(command))
        recorded.pop(psutil.Process().pid, None)
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    return end(recorded)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
