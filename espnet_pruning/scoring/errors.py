"""The error every scorer raises for bad input."""

from espnet_pruning.errors import InputError


class ScoringError(InputError):
    """Hypotheses, references or the scoring tool are unusable.

    The message names the file and line (or the utterance id) at fault, so entry points
    print it without a traceback.
    """
