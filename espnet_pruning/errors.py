"""The base of every error caused by a user's input (files, configs, data).

Command-line tools show these as one ``ERROR: <message>`` line and exit with status 1;
any other exception is a bug and keeps its traceback. The module is import-light so
that tools can catch input errors without importing torch. It is the bottom layer, so
any module with a ``__main__`` (corpus preparation, the tools in ``bin/``) can end on an
input error with :func:`exit_on_input_error`.
"""

import logging
import sys
from typing import Callable, Optional


class InputError(ValueError):
    """A file, config key or data item is invalid; the message names it."""


class DataError(InputError):
    """An utterance or data file cannot be used; the message names the file or utterance."""


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
