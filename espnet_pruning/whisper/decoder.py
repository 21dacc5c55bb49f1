"""Whisper text decoder as an ESPnet ``AbsDecoder`` and beam-search scorer."""

import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.legacy.nets.scorer_interface import BatchScorerInterface
from typeguard import typechecked

from espnet_pruning.whisper.checkpoint import WhisperCheckpointError, build_whisper_part


class WhisperDecoder(AbsDecoder, BatchScorerInterface):
    """Whisper's decoder with ESPnet's ``OpenAIWhisperDecoder`` parameter names.

    The openai-whisper ``TextDecoder`` lives at ``self.decoders`` (``decoders.token_embedding``,
    ``decoders.positional_embedding``, ``decoders.blocks.N.*``, ``decoders.ln``). The output
    layer is tied to the token embedding: logits are ``ln(x) @ token_embedding.weight.T``.

    Args:
        vocab_size: Size of the token list; must equal Whisper's ``n_vocab`` (51865 for the
            multilingual models) so that a pretrained embedding keeps its meaning.
        encoder_output_size: Encoder width (checked against the decoder's cross-attention).
        dropout_rate: Dropout between blocks (Whisper itself uses none).
        whisper_checkpoint: Local openai-whisper ``.pt`` file.
        whisper_dims: ``ModelDimensions`` fields, for a model without a file.
        seed: Seed of the decoder positional embedding of a model built from dims.
    """

    @typechecked
    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        dropout_rate: float = 0.0,
        whisper_checkpoint: Optional[Union[str, os.PathLike]] = None,
        whisper_dims: Optional[Dict[str, Any]] = None,
        seed: Optional[int] = 0,
    ):
        super().__init__()
        self.decoders = build_whisper_part(
            "decoder", whisper_checkpoint, whisper_dims, seed=seed
        )
        n_vocab = self.decoders.token_embedding.num_embeddings
        if vocab_size != n_vocab:
            raise WhisperCheckpointError(
                f"token list has {vocab_size} entries but the Whisper decoder has "
                f"n_vocab={n_vocab}; write the token list for this model "
                "(python -m espnet_pruning.bin.uslu_token_list)"
            )
        cross_in = self.decoders.blocks[0].cross_attn.key.in_features
        if cross_in != encoder_output_size:
            raise WhisperCheckpointError(
                f"decoder cross-attention expects width {cross_in}, "
                f"encoder gives {encoder_output_size}"
            )
        self.dropout = torch.nn.Dropout(dropout_rate)

    def _logits(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        dec = self.decoders
        x = dec.token_embedding(tokens) + dec.positional_embedding[: tokens.size(1)]
        x = self.dropout(x).to(memory.dtype)
        for layer, block in enumerate(dec.blocks):
            x = block(x, memory, mask=dec.mask)
            if layer < len(dec.blocks) - 1:
                x = self.dropout(x)
        x = dec.ln(x)
        return (x @ dec.token_embedding.weight.to(x.dtype).transpose(0, 1)).float()

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits.

        Args:
            hs_pad: Encoder states (B, T, D).
            hlens: Their lengths (B,). Whisper attends to all frames.
            ys_in_pad: Input token ids (B, L).
            ys_in_lens: Their lengths (B,).

        Returns:
            Logits (B, L, V) and ``ys_in_lens``.
        """
        return self._logits(ys_in_pad, hs_pad), ys_in_lens

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Any]]:
        """Log-probabilities of the next token for a batch of prefixes (no cache)."""
        logp = torch.log_softmax(self._logits(ys, xs)[:, -1], dim=-1)
        return logp, [None] * ys.size(0)

    def score(
        self, ys: torch.Tensor, state: Any, x: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        """Log-probabilities of the next token for one prefix."""
        logp, _ = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp.squeeze(0), None
