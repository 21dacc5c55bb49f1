"""ESPnet's batch beam search bounded by Whisper's text context.

Whisper's decoder has ``n_text_ctx`` positions (448 for the released models). ESPnet
derives the maximum output length from the encoder length (``maxlenratio: 0``) or a fixed
count, neither of which knows that bound; a hypothesis that keeps going (a looping model)
would run past the positional embedding. Here the maximum output length is never more
than ``n_text_ctx`` minus the primer, so the longest decoder input is ``n_text_ctx - 1``
tokens. A hypothesis that reaches the bound ends there like any hypothesis at ESPnet's
maximum length: ``<|endoftext|>`` is appended and it is ranked by its score with the
others.
"""

from typing import List, Optional, Tuple

from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch

from espnet_pruning.errors import InputError


class WhisperBeamSearch(BatchBeamSearch):
    """``BatchBeamSearch`` whose output length is bounded by Whisper's text context.

    Args:
        n_text_ctx: Whisper's text context (the decoder's positional embedding length).
        *args: As ``BatchBeamSearch``.
        **kwargs: As ``BatchBeamSearch`` (``hyp_primer`` counts against the context).

    Raises:
        InputError: The primer leaves no room for a single output token.
    """

    def __init__(self, *args, n_text_ctx: int, **kwargs):
        self.n_text_ctx = n_text_ctx
        super().__init__(*args, **kwargs)
        self._check_primer()

    @property
    def max_output_length(self) -> int:
        """Most tokens a hypothesis may add to the primer."""
        return self.n_text_ctx - self._primer_length()

    def _check_primer(self) -> None:
        if self.max_output_length < 1:
            raise InputError(
                f"a primer of {self._primer_length()} tokens leaves no room in "
                f"Whisper's text context of {self.n_text_ctx} tokens"
            )

    def set_hyp_primer(self, hyp_primer: Optional[List[int]] = None) -> None:
        """Set the primer (e.g. another task's prompt); it must leave room to decode."""
        super().set_hyp_primer(hyp_primer)
        self._check_primer()

    def _length_bounds(
        self, inp_lengths: List[int], maxlenratio: float, minlenratio: float
    ) -> Tuple[List[int], List[int]]:
        """ESPnet's bounds, the maximum capped at what the text context leaves."""
        maxlens, minlens = BatchBeamSearch._length_bounds(
            inp_lengths, maxlenratio, minlenratio
        )
        maxlens = [min(n, self.max_output_length) for n in maxlens]
        # A hypothesis ended at the bound must still count as long enough.
        minlens = [min(m, n - 1) for m, n in zip(minlens, maxlens)]
        return maxlens, minlens
