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

from typing import List, Optional, Sequence, Tuple

import torch
from espnet2.legacy.nets.batch_beam_search import BatchBeamSearch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.whisper.decoder import WhisperDecoder


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


@typechecked
def greedy_search(
    decoder: WhisperDecoder,
    memory: torch.Tensor,
    primer: Sequence[int],
    eos: int,
    max_tokens: int = 224,
) -> List[int]:
    """Greedy decoding of one utterance with the cached decoder (beam search of width 1).

    What a recipe's ``beam_size: 1`` runs, without a trained model's configuration: e.g.
    the zero-shot decoding of a pretrained Whisper with its own prompt.

    Args:
        decoder: The decoder.
        memory: Encoder output of one utterance (T, D).
        primer: Tokens before the output (``<|startoftranscript|> … <|notimestamps|>``).
        eos: End token (``<|endoftext|>``).
        max_tokens: Most output tokens (openai-whisper samples at most 224).

    Returns:
        The output token ids, without the primer and the end token.
    """
    search = WhisperBeamSearch(
        n_text_ctx=decoder.n_text_ctx,
        scorers=dict(decoder=decoder),
        weights=dict(decoder=1.0),
        beam_size=1,
        vocab_size=decoder.decoders.token_embedding.num_embeddings,
        sos=primer[0],
        eos=eos,
        token_list=None,
        pre_beam_score_key="full",
        hyp_primer=list(primer),
    )
    hyps = search(x=memory, maxlenratio=-float(max_tokens), minlenratio=0.0)
    ids = hyps[0].yseq.tolist()[len(primer) :]
    return ids[:-1] if ids and ids[-1] == eos else ids
