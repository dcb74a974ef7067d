"""Stopping processes we started: politely first, then for sure."""

from __future__ import annotations

import contextlib
from typing import Any


def stop(procs: list[Any], grace_s: float) -> None:
    """SIGTERM each psutil.Process, then SIGKILL those still alive after `grace_s`."""
    import psutil  # only when something is stopped

    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
