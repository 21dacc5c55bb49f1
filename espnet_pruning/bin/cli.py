"""Shared entry-point behaviour: input errors end with one message and exit status 1."""

import logging
from typing import Callable, Optional, Sequence

from espnet_pruning.errors import exit_on_input_error


def run_task_main(task, cmd: Optional[Sequence[str]] = None) -> None:
    """``task.main(cmd=cmd)`` with :func:`exit_on_input_error`."""
    exit_on_input_error(lambda: task.main(cmd=cmd))


def run_logged(fn: Callable[[], None]) -> None:
    """:func:`exit_on_input_error` with INFO logging in ESPnet's format (drivers)."""
    logging.basicConfig(
        level="INFO",
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    exit_on_input_error(fn)
