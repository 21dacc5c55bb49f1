"""The error every scorer raises for bad input."""

from typing import Optional

from espnet_pruning.errors import InputError


class ScoringError(InputError):
    """Hypotheses, references or the scoring tool are unusable.

    The message names the file and line (or the utterance id) at fault, so entry points
    print it without a traceback.

    Args:
        message: What is wrong.
        uttid: The utterance at fault, if one is (the entry point turns it into the
            file and line number).
        side: ``"ref"`` or ``"hyp"``: the file ``uttid`` is looked up in.
    """

    def __init__(
        self, message: str, uttid: Optional[str] = None, side: Optional[str] = None
    ):
        super().__init__(message)
        self.uttid = uttid
        self.side = side
