"""Whisper audio encoder as an ESPnet ``AbsEncoder`` (raw waveform in, states out)."""

import os
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.specaug.specaug import SpecAug
from typeguard import typechecked
from whisper.audio import HOP_LENGTH, N_FFT, N_SAMPLES, mel_filters

from espnet_pruning.whisper.checkpoint import build_whisper_part


class WhisperEncoder(AbsEncoder):
    """Whisper's encoder with ESPnet's ``OpenAIWhisperEncoder`` parameter names.

    The openai-whisper ``AudioEncoder`` lives at ``self.encoders`` so parameters are named
    ``encoders.conv1.weight``, ``encoders.blocks.0.attn.query.weight``, … exactly as in
    ESPnet; ``encoders.positional_embedding`` is a (non-trainable) buffer.

    Args:
        input_size: Unused; ESPnet passes the frontend size (raw audio, 1).
        dropout_rate: Dropout between blocks (Whisper itself uses none).
        whisper_checkpoint: Local openai-whisper ``.pt`` file.
        whisper_dims: ``ModelDimensions`` fields, for a model without a file (or to check it).
        use_specaug: Apply ESPnet's SpecAug to the log-mel features in training.
        specaug_conf: Keyword arguments of ``SpecAug``.
        do_pad_trim: Pad or trim audio to 30 s as Whisper's original inference does.
    """

    @typechecked
    def __init__(
        self,
        input_size: int = 1,
        dropout_rate: float = 0.0,
        whisper_checkpoint: Optional[Union[str, os.PathLike]] = None,
        whisper_dims: Optional[Dict[str, Any]] = None,
        use_specaug: bool = False,
        specaug_conf: Optional[Dict[str, Any]] = None,
        do_pad_trim: bool = False,
    ):
        super().__init__()
        self.encoders = build_whisper_part("encoder", whisper_checkpoint, whisper_dims)
        self.n_mels = self.encoders.conv1.in_channels
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.specaug = SpecAug(**(specaug_conf or {})) if use_specaug else None
        self.do_pad_trim = do_pad_trim

    def output_size(self) -> int:
        """Dimension of the encoder output."""
        return self.encoders.ln_post.normalized_shape[-1]

    def log_mel_spectrogram(
        self, audio: torch.Tensor, ilens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Whisper's log-mel features of a padded batch of waveforms (B, T) → (B, n_mels, F)."""
        window = torch.hann_window(N_FFT, device=audio.device)
        stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
        # Whisper drops the last STFT frame.
        magnitudes = stft[..., :-1].abs() ** 2
        mel = mel_filters(audio.device, self.n_mels) @ magnitudes
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(
            log_spec, log_spec.flatten(1).max(dim=-1)[0][:, None, None] - 8.0
        )
        olens = ilens // HOP_LENGTH if ilens is not None else None
        return (log_spec + 4.0) / 4.0, olens

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Encode a padded batch of raw waveforms.

        Args:
            xs_pad: Waveforms (B, T) at 16 kHz.
            ilens: Lengths in samples (B,).
            prev_states: Unused.

        Returns:
            Encoder states (B, F', D), their lengths (B,), None.
        """
        if self.do_pad_trim:
            if xs_pad.size(1) > N_SAMPLES:
                xs_pad = xs_pad[:, :N_SAMPLES]
            else:
                xs_pad = F.pad(xs_pad, (0, N_SAMPLES - xs_pad.size(1)))
        feats, feats_lens = self.log_mel_spectrogram(xs_pad, ilens)
        if self.specaug is not None and self.training:
            feats, feats_lens = self.specaug(feats.transpose(1, 2), feats_lens)
            feats = feats.transpose(1, 2)

        enc = self.encoders
        x = F.gelu(enc.conv1(feats))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        max_pos = enc.positional_embedding.size(0)
        # Audio beyond Whisper's context (30 s) does not fit the positional embedding.
        x = x[:, :max_pos, :]
        x = (x + enc.positional_embedding[: x.size(1)]).to(x.dtype)
        x = self.dropout(x)
        for layer, block in enumerate(enc.blocks):
            x = block(x)
            if layer < len(enc.blocks) - 1:
                x = self.dropout(x)
        x = enc.ln_post(x)

        conv2 = enc.conv2
        olens = 1 + (feats_lens - conv2.kernel_size[0] + 2 * conv2.padding[0]) // (
            conv2.stride[0]
        )
        return x, torch.clamp(olens, max=max_pos), None
