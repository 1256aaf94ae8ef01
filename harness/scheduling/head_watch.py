"""Ends a driver whose Ray head node is lost with one line saying how to ``--resume``.

When a cluster's head node dies, Ray ends a driver attached to the head's raylet at once (its core
worker exits the process: no Python handler runs), and leaves a driver attached to another node's
raylet retrying the head for a long time. So a driver that joined a cluster through ``--address``
starts this watcher (``python -m harness.scheduling.head_watch PID HOST:PORT ARGS...``, in a session
of its own, writing to the driver's stderr). It looks at the driver and at the head's GCS port;
once the port has refused connections for :data:`LOST_AFTER_S` seconds in a row while the driver
ran (or as the driver ended without stopping the watcher), it kills the driver if it still waits,
and prints one line naming the exact command to run again with ``--resume`` once the cluster is
back. Nothing is lost: finished records and epoch checkpoints are in the driver's results folder.
A driver that ends normally stops the watcher first.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import psutil

#: seconds the head's port must stay unreachable before the driver is given up
LOST_AFTER_S = 10.0
#: seconds between two looks at the driver and the head
POLL_S = 0.5


def resume_command(argv: list[str]) -> str:
    """The command line that continues ``python -m harness <argv>``: the same arguments with ``--resume``."""
    return shlex.join(["python", "-m", "harness", *argv, *([] if "--resume" in argv else ["--resume"])])


def reachable(address: str) -> bool:
    """Whether something accepts connections at ``host:port``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=POLL_S):
            return True
    except OSError:
        return False


def start(gcs_address: str) -> subprocess.Popen:
    """Start the watcher of this driver and of the head at ``gcs_address``; terminate it when the command ends."""
    return subprocess.Popen([sys.executable, "-m", "harness.scheduling.head_watch", str(os.getpid()),
                             gcs_address, *sys.argv[1:]], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(driver_pid: int, gcs_address: str, argv: list[str]) -> bool:
    """Watch until the driver ends or the head is lost; whether the head was lost (the line printed).
    A driver that ended without stopping the watcher was ended by Ray: the head is given
    :data:`LOST_AFTER_S` to show that it is gone (its port closes) or not."""
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return False
    lost_since, ended_at = None, None
    while True:
        alive = running(driver)
        now = time.monotonic()
        ended_at = ended_at or (None if alive else now)
        if reachable(gcs_address):
            lost_since = None
            if ended_at is not None and now - ended_at >= LOST_AFTER_S:
                return False
        else:
            lost_since = lost_since or now
            if not alive or now - lost_since >= LOST_AFTER_S:
                break
        time.sleep(POLL_S)
    if alive:
        driver.kill()
    print(f"error: the Ray head node at {gcs_address} is lost; once the cluster runs again, "
          f"run: {resume_command(argv)}", file=sys.stderr, flush=True)
    return True


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the driver ended normally: nothing to say
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3:])
