"""Ctrl-C and SIGTERM for the commands that train.

The first signal raises KeyboardInterrupt in the main thread, where training runs: the stage
unwinds leaving its work directory and last checkpoint for a resume, and Prefect stops its
temporary server on the way out. A second signal does not wait for that: it kills every child
process (server, launcher, W&B writer) and exits at once. Whatever is left at exit is killed too.
"""

from __future__ import annotations

import atexit
import os
import signal

import psutil

from core import processes

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def install() -> None:
    """Handle SIGINT and SIGTERM in this process. Set explicitly because a shell starts a background
    job with SIGINT ignored, and Python then never raises KeyboardInterrupt: Ctrl-C did nothing."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            kill_children()
            os._exit(EXIT_INTERRUPTED)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Registered before Prefect starts its server, so it runs after Prefect's own stop at exit.
    atexit.register(kill_children)


def kill_children(grace_s: float = 5.0) -> list[int]:
    """Terminate every descendant of this process, then kill those still alive after `grace_s`;
    returns their pids."""
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    processes.stop(children, grace_s)
    return [c.pid for c in children]
