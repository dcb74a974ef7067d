"""User errors (a bad recipe, override, data file, model path or a full disk) against bugs.

A user error's message names the file, key or line and what was expected: it is the whole story,
so it is shown without a traceback, in the terminal and in the Prefect logs. A bug keeps its
traceback. `R1_DEBUG=1` (or `r1 --debug`) keeps every traceback.
"""

from __future__ import annotations

import logging
import os

from core.config import RecipeError
from core.modeling import ModelError
from core.runstore import DiskSpaceError
from data.sources import DataError

USER_ERRORS: tuple[type[BaseException], ...] = (RecipeError, DataError, ModelError, DiskSpaceError)
DEBUG_ENV = "R1_DEBUG"
# The loggers Prefect's engine reports a failed task or flow on (with exc_info).
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")


def debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def user_error(exc: BaseException | None) -> BaseException | None:
    """The user error that caused `exc` (itself or a cause: a stage wraps its failure), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__
    return None


class QuietUserErrors(logging.Filter):
    """Drops the traceback from log records about a user error or an interrupt (Ctrl-C, SIGTERM):
    Prefect logs a failure with its traceback once per task and once per flow, which buried the
    one-line message."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not debug() and (user_error(exc) or isinstance(exc, KeyboardInterrupt)):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_prefect_tracebacks() -> None:
    """Install QuietUserErrors on Prefect's run loggers (once)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietUserErrors) for f in logger.filters):
            logger.addFilter(QuietUserErrors())
