"""Notices that the Ray cluster's head node is gone, and ends the driver with one line on how to resume.

Without it, a driver whose head node died waits on Ray for a minute and then is ended by Ray's own
core worker with a page of C++ log lines. A daemon thread connects to the head's GCS port every
second; after :data:`LOST_AFTER` failed connections in a row it prints one line and exits with 1.
What finished is safe: records are written the moment a trial ends, epoch checkpoints after every
epoch, so ``--resume`` against a cluster started again loses nothing.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time

#: failed connections in a row (one a second) after which the head node counts as gone
LOST_AFTER = 3
#: exit status of a driver whose head node is gone
EXIT_HEAD_LOST = 1


def reachable(address: str, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def lost_line(address: str) -> str:
    return (f"the Ray head node ({address}) is gone: start the cluster again and run the same command "
            "with --resume (finished trials and epoch checkpoints are kept)")


def watch_head(address: str, interval: float = 1.0) -> threading.Event:
    """Start the daemon thread that ends this process once the head node at ``address`` is gone;
    setting the returned event stops it (before this process disconnects from Ray on purpose)."""
    stop = threading.Event()

    def loop() -> None:
        failures = 0
        while not stop.wait(interval):
            failures = 0 if reachable(address) else failures + 1
            if failures >= LOST_AFTER and not stop.is_set():
                print(lost_line(address), file=sys.stderr, flush=True)
                os._exit(EXIT_HEAD_LOST)

    threading.Thread(target=loop, name="head-watch", daemon=True).start()
    return stop
