"""Shared entry-point behaviour: input errors end with one message and exit status 1."""

import logging
import sys
from typing import Callable, Optional, Sequence

from espnet_pruning.errors import InputError

#: Errors caused by the user's input; shown without a traceback. ``FileNotFoundError``
#: comes from ESPnet's own file handling (e.g. a missing data file).
INPUT_ERRORS = (InputError, FileNotFoundError)


def input_error_of(exc: BaseException) -> Optional[BaseException]:
    """The input error behind ``exc`` (also when wrapped, e.g. by a data-loader worker)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, INPUT_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def exit_on_input_error(fn: Callable[[], None]) -> None:
    """Run ``fn``; on an input error print ``ERROR: <message>`` and exit with status 1."""
    try:
        fn()
    except Exception as e:  # noqa: B902 - narrowed by input_error_of below
        err = input_error_of(e)
        if err is None:
            raise
        logging.getLogger(__name__).debug("input error", exc_info=True)
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)


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
