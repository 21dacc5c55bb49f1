"""Whisper text decoder as an ESPnet ``AbsDecoder`` and beam-search scorer.

Beam search scores one new token per step: the self-attention keys/values of the prefix
are cached (:class:`SelfAttentionCache`) and the cross-attention keys/values over the
encoder output are computed once per utterance (:class:`EncoderMemory`); both travel in
ESPnet's beam-search states (:class:`WhisperDecoderState`) and follow the beams.
"""

import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.legacy.nets.scorer_interface import BatchScorerInterface
from typeguard import typechecked

from espnet_pruning.whisper.checkpoint import WhisperCheckpointError, build_whisper_part


def _headless(attn: torch.nn.Module) -> bool:
    """Whether an attention module has no heads (all pruned; it outputs its bias)."""
    return not hasattr(attn, "query")


def _project(attn: torch.nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """``attn.key(x)`` or ``attn.value(x)``; (B, T, 0) for a headless attention."""
    if _headless(attn):
        return x[..., :0]
    return getattr(attn, name)(x)


class EncoderMemory:
    """Cross-attention keys and values of every decoder layer over a batch of encoder outputs.

    Computed once per utterance (batch) and shared by all hypotheses of the beam search.

    Args:
        keys: Per layer, (B, T, D).
        values: Per layer, (B, T, D).
        key_mask: (B, 1, 1, T), True on real frames, or None when no frame is padding.
    """

    def __init__(
        self,
        keys: List[torch.Tensor],
        values: List[torch.Tensor],
        key_mask: Optional[torch.Tensor],
    ):
        self.keys, self.values, self.key_mask = keys, values, key_mask

    @property
    def n_utt(self) -> int:
        """Number of utterances (B)."""
        return self.keys[0].size(0)


class SelfAttentionCache:
    """Self-attention keys and values of the prefixes of one decoding step.

    ``kv[2 l]``/``kv[2 l + 1]`` are layer ``l``'s keys/values, (N, L, D) for N hypotheses
    of L tokens. A hypothesis' state points at one row, so ESPnet's beam search reorders
    the cache with the beams by selecting states; the rows are gathered in one
    ``index_select`` per tensor at the next step.
    """

    def __init__(self, kv: List[torch.Tensor]):
        self.kv = kv

    def __len__(self) -> int:
        return self.kv[0].size(0)


class WhisperDecoderState:
    """One hypothesis' decoder state: the shared encoder memory and its cache row."""

    __slots__ = ("memory", "cache", "row")

    def __init__(
        self,
        memory: EncoderMemory,
        cache: Optional[SelfAttentionCache] = None,
        row: int = 0,
    ):
        self.memory, self.cache, self.row = memory, cache, row


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

    # ------------------------------------------------------------- beam search
    @property
    def n_text_ctx(self) -> int:
        """Whisper's text context: the longest token sequence the decoder can take."""
        return self.decoders.positional_embedding.size(0)

    def _memory(
        self, xs: torch.Tensor, key_mask: Optional[torch.Tensor] = None
    ) -> EncoderMemory:
        blocks = self.decoders.blocks
        # A cross-attention without heads (a compiled structured-pruned model) attends
        # to nothing: an empty memory keeps the layer indexing.
        return EncoderMemory(
            [_project(b.cross_attn, "key", xs) for b in blocks],
            [_project(b.cross_attn, "value", xs) for b in blocks],
            key_mask,
        )

    def batch_init_state(
        self, x: torch.Tensor, xs_lengths: Optional[torch.Tensor] = None
    ) -> WhisperDecoderState:
        """Cross-attention keys/values of the encoder output, shared by all hypotheses.

        Args:
            x: Encoder output of one utterance (T, D) or a batch (B, T, D).
            xs_lengths: Valid frames of each utterance of a batch (B,); padding frames
                are never attended to.

        Returns:
            The initial state (no prefix cached yet).
        """
        if x.dim() == 2:
            x = x.unsqueeze(0)
        key_mask = None
        if xs_lengths is not None and bool((xs_lengths < x.size(1)).any()):
            frames = torch.arange(x.size(1), device=x.device)
            key_mask = (frames[None, :] < xs_lengths.to(x.device)[:, None])[
                :, None, None, :
            ]
        return WhisperDecoderState(self._memory(x, key_mask))

    def init_state(self, x: torch.Tensor) -> WhisperDecoderState:
        """Initial state of one utterance (T, D) (non-batch beam search)."""
        return self.batch_init_state(x)

    def _past(
        self, ys: torch.Tensor, states: List[WhisperDecoderState]
    ) -> Optional[List[torch.Tensor]]:
        # The cached keys/values of each hypothesis' prefix, in hypothesis order, or None
        # when the prefix has to be run (first step, or states of another origin).
        cache = states[0].cache
        if cache is None or any(s.cache is None for s in states):
            return None
        if all(s.cache is cache for s in states):
            rows = [s.row for s in states]
            if rows == list(range(len(cache))):
                past = cache.kv
            else:
                index = torch.tensor(rows, device=ys.device)
                past = [t.index_select(0, index) for t in cache.kv]
        else:
            past = [
                torch.stack([s.cache.kv[j][s.row] for s in states])
                for j in range(len(cache.kv))
            ]
        return past if past[0].size(1) == ys.size(1) - 1 else None

    def _cross_attention(
        self,
        attn: torch.nn.Module,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        if key_mask is None:
            return attn.qkv_attention(q, k, v)[0]
        heads = attn.n_head

        def split(t):
            return t.view(*t.shape[:2], heads, -1).permute(0, 2, 1, 3)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v), key_mask)
        return out.permute(0, 2, 1, 3).flatten(start_dim=2)

    def _step(
        self,
        tokens: torch.Tensor,
        offset: int,
        memory: EncoderMemory,
        past: Optional[List[torch.Tensor]],
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        # Hidden states of ``tokens`` at positions offset.. (N, l, D) given the cached
        # prefix, and the keys/values of prefix + tokens for the next step.
        dec = self.decoders
        n, length = tokens.shape
        if offset + length > self.n_text_ctx:
            raise ValueError(
                f"a prefix of {offset + length} tokens exceeds Whisper's text context "
                f"({self.n_text_ctx}); bound the search by it"
            )
        n_utt = memory.n_utt
        if n % n_utt:
            raise ValueError(f"{n} hypotheses do not divide over {n_utt} utterances")
        x = (
            dec.token_embedding(tokens)
            + dec.positional_embedding[offset : offset + length]
        )
        x = self.dropout(x).to(memory.keys[0].dtype)
        kv = []
        for layer, block in enumerate(dec.blocks):
            attn = block.attn
            h = block.attn_ln(x)
            k, v = _project(attn, "key", h), _project(attn, "value", h)
            if past is not None:
                k = torch.cat([past[2 * layer], k], dim=1)
                v = torch.cat([past[2 * layer + 1], v], dim=1)
            kv += [k, v]
            if _headless(attn):
                x = x + attn(h)[0]
            else:
                # Whisper's causal mask; a single new token attends to the whole prefix.
                q = attn.query(h)
                x = x + attn.out(attn.qkv_attention(q, k, v, dec.mask)[0])
            cross = block.cross_attn
            h = block.cross_attn_ln(x)
            if _headless(cross):
                x = x + cross(h)[0]
            else:
                # The hypotheses of one utterance share its memory: their queries are
                # attended together, (N, l, H) -> (B, N / B * l, H), utterance-major
                # (H = D, or fewer with pruned heads).
                q = cross.query(h)
                q = q.reshape(n_utt, -1, q.size(-1))
                a = self._cross_attention(
                    cross, q, memory.keys[layer], memory.values[layer], memory.key_mask
                )
                x = x + cross.out(a.reshape(n, length, -1))
            x = x + block.mlp(block.mlp_ln(x))
            if layer < len(dec.blocks) - 1:
                x = self.dropout(x)
        return x, kv

    def batch_score(
        self,
        ys: torch.Tensor,
        states: List[Any],
        xs: torch.Tensor,
        xs_mask: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, List[WhisperDecoderState]]:
        """Log-probabilities of the next token for a batch of prefixes.

        Only the newest token of each prefix runs through the layers; the keys/values
        of the earlier ones come from the states.

        Args:
            ys: Prefixes (N, L).
            states: Per hypothesis, a :class:`WhisperDecoderState` (from
                :meth:`batch_init_state` or a previous call) or None (no cache: the
                encoder memory is computed from ``xs``).
            xs: Encoder output per hypothesis (N, T, D); used only without states.
            xs_mask: Valid frames of ``xs`` (N, 1, T); used only without states.

        Returns:
            Log-probabilities (N, V) and the state of each hypothesis.
        """
        if not states or states[0] is None:
            key_mask = None if xs_mask is None else xs_mask[:, None].bool()
            states = [WhisperDecoderState(self._memory(xs, key_mask))] * ys.size(0)
        memory = states[0].memory
        past = self._past(ys, states)
        if past is None:
            x, kv = self._step(ys, 0, memory, None)
        else:
            x, kv = self._step(ys[:, -1:], ys.size(1) - 1, memory, past)
        dec = self.decoders
        h = dec.ln(x[:, -1])
        logits = (h @ dec.token_embedding.weight.to(h.dtype).transpose(0, 1)).float()
        cache = SelfAttentionCache(kv)
        new_states = [WhisperDecoderState(memory, cache, i) for i in range(len(cache))]
        return torch.log_softmax(logits, dim=-1), new_states

    def score(
        self, ys: torch.Tensor, state: Any, x: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        """Log-probabilities of the next token for one prefix (L,) given ``x`` (T, D)."""
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp.squeeze(0), states[0]


class FullPrefixScorer(BatchScorerInterface):
    """Scores with no cache: the whole prefix through every layer at every step.

    The decoder's scoring before the cache existed; kept as the reference the cached
    scorer is tested and benchmarked against (same log-probabilities, slower).

    Args:
        decoder: The decoder whose teacher-forced ``forward`` is used.
    """

    def __init__(self, decoder: WhisperDecoder):
        self.decoder = decoder

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Any]]:
        """Log-probabilities of the next token for a batch of prefixes."""
        logits = self.decoder(xs, None, ys, None)[0][:, -1]
        return torch.log_softmax(logits, dim=-1), [None] * ys.size(0)

    def score(
        self, ys: torch.Tensor, state: Any, x: torch.Tensor
    ) -> Tuple[torch.Tensor, Any]:
        """Log-probabilities of the next token for one prefix."""
        logp, _ = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp.squeeze(0), None
