"""openai-whisper's checkpoint format, and the mapping to the parameter names of our model.

An openai-whisper checkpoint is a ``torch.save``'d dict ``{"dims": {...}, "model_state_dict":
{...}}`` whose state dict holds ``encoder.*`` and ``decoder.*`` tensors of
``whisper.model.Whisper`` (the output layer is the token embedding; ``alignment_heads`` is not
persistent). Our ESPnet components keep ESPnet's names: the encoder's tensors sit under
``encoder.encoders.`` and the decoder's under ``decoder.decoders.`` of an ESPnet model.
"""

import dataclasses
import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import torch
from typeguard import typechecked
from whisper.model import AudioEncoder, ModelDimensions, TextDecoder

from espnet_pruning.fileio import atomic_open
from espnet_pruning.whisper.checkpoint import WhisperCheckpointError

#: Prefix of each openai-whisper part inside an ESPnet model's state dict.
ESPNET_PREFIXES = {"encoder.": "encoder.encoders.", "decoder.": "decoder.decoders."}


@typechecked
def whisper_state_from_espnet(
    state: Mapping[str, torch.Tensor], source: str = "ESPnet state dict"
) -> Dict[str, torch.Tensor]:
    """openai-whisper's ``model_state_dict`` from an ESPnet model's state dict.

    Tensors outside the Whisper encoder and decoder (an ESPnet CTC head, say) are ignored.

    Args:
        state: State dict with ``encoder.encoders.*`` and ``decoder.decoders.*`` tensors.
        source: Name of the file it came from (for errors).

    Returns:
        The state dict with openai-whisper's names (same tensor objects).

    Raises:
        WhisperCheckpointError: The encoder or the decoder is absent.
    """
    out: Dict[str, torch.Tensor] = {}
    for whisper_prefix, espnet_prefix in ESPNET_PREFIXES.items():
        part = {
            whisper_prefix + k[len(espnet_prefix) :]: v
            for k, v in state.items()
            if k.startswith(espnet_prefix)
        }
        if not part:
            raise WhisperCheckpointError(
                f"{source}: no tensor named {espnet_prefix}*; not an ESPnet Whisper model"
            )
        out.update(part)
    return out


@typechecked
def espnet_state_from_whisper(
    state: Mapping[str, torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """The inverse of :func:`whisper_state_from_espnet` (same tensor objects).

    Raises:
        WhisperCheckpointError: A tensor outside ``encoder.`` and ``decoder.``.
    """
    out: Dict[str, torch.Tensor] = {}
    for k, v in state.items():
        prefix = next((p for p in ESPNET_PREFIXES if k.startswith(p)), None)
        if prefix is None:
            raise WhisperCheckpointError(
                f"{k}: not an openai-whisper encoder or decoder tensor"
            )
        out[ESPNET_PREFIXES[prefix] + k[len(prefix) :]] = v
    return out


@typechecked
def check_whisper_state(
    dims: ModelDimensions, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Check that a state dict is exactly a ``Whisper(dims)`` state dict.

    Raises:
        WhisperCheckpointError: Naming ``source`` and the first missing, unexpected or
            mis-shaped tensors.
    """
    d = dims
    with torch.device("meta"):  # shapes only, no memory
        encoder = AudioEncoder(
            d.n_mels, d.n_audio_ctx, d.n_audio_state, d.n_audio_head, d.n_audio_layer
        )
        decoder = TextDecoder(
            d.n_vocab, d.n_text_ctx, d.n_text_state, d.n_text_head, d.n_text_layer
        )
    reference = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    reference.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    if missing or unexpected:
        raise WhisperCheckpointError(
            f"{source}: does not fit openai-whisper's model for dims {dataclasses.asdict(dims)}; "
            f"missing tensors {missing[:5]}{' …' if len(missing) > 5 else ''}, "
            f"unexpected tensors {unexpected[:5]}{' …' if len(unexpected) > 5 else ''}"
        )
    for name, ref in reference.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise WhisperCheckpointError(
                f"{source}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"openai-whisper's model needs {tuple(ref.shape)}"
            )


@typechecked
def save_whisper_checkpoint(
    path: Union[str, os.PathLike],
    dims: ModelDimensions,
    state: Mapping[str, torch.Tensor],
    dtype: Optional[torch.dtype] = None,
) -> None:
    """Write an openai-whisper checkpoint that ``whisper.load_model(path)`` loads strictly.

    The file is written to a temporary sibling, flushed and renamed, so a reader sees the
    whole file or the previous one.

    Args:
        path: Output ``.pt`` file.
        dims: Model dimensions.
        state: openai-whisper ``model_state_dict`` (checked against ``dims`` first).
        dtype: Cast floating-point tensors to this dtype (e.g. ``torch.float16``, as
            OpenAI's released checkpoints are); None keeps them.

    Raises:
        WhisperCheckpointError: The state dict does not fit ``dims``.
    """
    path = Path(path)
    check_whisper_state(dims, state, str(path))
    tensors = {
        k: (
            v.detach().to(dtype)
            if dtype is not None and v.is_floating_point()
            else v.detach()
        )
        .contiguous()
        .cpu()
        for k, v in state.items()
    }
    content = {"dims": dataclasses.asdict(dims), "model_state_dict": tensors}
    with atomic_open(path, binary=True) as f:
        torch.save(content, f)
