"""The base of every error caused by a user's input (files, configs, data).

Command-line tools show these as one ``ERROR: <message>`` line and exit with status 1;
any other exception is a bug and keeps its traceback. The module is import-light so
that tools can catch input errors without importing torch.
"""


class InputError(ValueError):
    """A file, config key or data item is invalid; the message names it."""


class DataError(InputError):
    """An utterance or data file cannot be used; the message names the file or utterance."""
