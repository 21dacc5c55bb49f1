"""Building openai-whisper models offline: from a local ``.pt`` file or explicit dimensions.

Nothing here downloads. A model comes either from an openai-whisper checkpoint file
(``{"dims": {...}, "model_state_dict": {...}}``) or from :class:`whisper.model.ModelDimensions`
with every parameter initialised (openai-whisper leaves the decoder positional embedding as
``torch.empty`` memory, which gives intermittent NaN gradients if trained from scratch).
"""

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from typeguard import typechecked
from whisper.model import AudioEncoder, ModelDimensions, TextDecoder, Whisper

from espnet_pruning.errors import InputError

#: Standard deviation used to initialise parameters openai-whisper leaves uninitialised.
POSITIONAL_EMBEDDING_STD = 0.01


class WhisperCheckpointError(InputError):
    """A Whisper checkpoint file is missing, unreadable or does not fit the config."""


@typechecked
def dims_from_dict(dims: Dict[str, Any], source: str = "dims") -> ModelDimensions:
    """Validate a mapping of Whisper dimensions and turn it into ``ModelDimensions``.

    Args:
        dims: Mapping with exactly the fields of ``ModelDimensions``.
        source: Name of the config key or file the mapping came from (for errors).

    Returns:
        The dimensions.

    Raises:
        WhisperCheckpointError: A field is missing, unknown or not a positive integer.
    """
    fields = [f.name for f in dataclasses.fields(ModelDimensions)]
    missing = [f for f in fields if f not in dims]
    unknown = [k for k in dims if k not in fields]
    if missing or unknown:
        raise WhisperCheckpointError(
            f"{source}: Whisper dimensions must have exactly the keys {fields}; "
            f"missing {missing}, unknown {unknown}"
        )
    for key in fields:
        value = dims[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise WhisperCheckpointError(
                f"{source}: {key} must be a positive integer, got {value!r}"
            )
    return ModelDimensions(**{k: dims[k] for k in fields})


@typechecked
def init_whisper_parameters(model: Whisper, seed: Optional[int] = None) -> Whisper:
    """Give the parameters openai-whisper leaves uninitialised a defined value.

    ``TextDecoder.positional_embedding`` is ``nn.Parameter(torch.empty(...))``; it is drawn
    from N(0, 0.01^2) here. Every other parameter is initialised by torch's module defaults.

    Args:
        model: A freshly constructed model.
        seed: Seed for a private generator (the global RNG is left alone) or None.

    Returns:
        The same model.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        pe = model.decoder.positional_embedding
        pe.copy_(torch.randn(pe.shape, generator=generator) * POSITIONAL_EMBEDDING_STD)
    return model


@typechecked
def load_whisper(
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    dims: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = None,
) -> Whisper:
    """Build a Whisper model from a local checkpoint file or from explicit dimensions.

    Args:
        checkpoint: Path to an openai-whisper ``.pt`` file. Read with ``weights_only=True``.
        dims: ``ModelDimensions`` fields. With a checkpoint, they must equal its dims.
        seed: Seed for initialising a model built from ``dims`` alone.

    Returns:
        The model, on CPU, in float32.

    Raises:
        WhisperCheckpointError: Neither given, file missing/unreadable, or dims mismatch.

    Examples:
        >>> model = load_whisper(dims=dict(n_mels=80, n_audio_ctx=1500, n_audio_state=64,
        ...     n_audio_head=2, n_audio_layer=2, n_vocab=51865, n_text_ctx=448,
        ...     n_text_state=64, n_text_head=2, n_text_layer=2))
    """
    if checkpoint is None and dims is None:
        raise WhisperCheckpointError(
            "Whisper model: give either 'checkpoint' (a local openai-whisper .pt file) "
            "or 'dims' (ModelDimensions); nothing is ever downloaded"
        )
    if checkpoint is None:
        model = Whisper(dims_from_dict(dims))
        return init_whisper_parameters(model, seed=seed).float()

    path = Path(checkpoint)
    if not path.is_file():
        raise WhisperCheckpointError(f"{path}: Whisper checkpoint file not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
        file_dims = dims_from_dict(dict(content["dims"]), source=str(path))
        state = content["model_state_dict"]
    except WhisperCheckpointError:
        raise
    except Exception as e:  # torch raises many kinds of errors for bad files
        raise WhisperCheckpointError(
            f"{path}: not a readable openai-whisper checkpoint "
            f"(expected a dict with 'dims' and 'model_state_dict'): {e}"
        ) from e
    if dims is not None:
        wanted = dims_from_dict(dims)
        if wanted != file_dims:
            diff = {
                f.name: (getattr(wanted, f.name), getattr(file_dims, f.name))
                for f in dataclasses.fields(ModelDimensions)
                if getattr(wanted, f.name) != getattr(file_dims, f.name)
            }
            raise WhisperCheckpointError(
                f"{path}: dims differ from the config (config, file): {diff}"
            )
    model = Whisper(file_dims)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WhisperCheckpointError(f"{path}: state dict does not fit its dims: {e}")
    return model.float()


@typechecked
def build_whisper_part(
    part: str,
    checkpoint: Optional[Union[str, os.PathLike]] = None,
    dims: Optional[Dict[str, Any]] = None,
    seed: Optional[int] = None,
) -> Union[AudioEncoder, TextDecoder]:
    """Build only Whisper's audio encoder or text decoder (weights from a file or fresh).

    Args:
        part: ``"encoder"`` or ``"decoder"``.
        checkpoint: Path to an openai-whisper ``.pt`` file.
        dims: ``ModelDimensions`` fields (checked against the file when both are given).
        seed: Seed for the decoder positional embedding of a model built from ``dims``.

    Returns:
        ``whisper.model.AudioEncoder`` or ``whisper.model.TextDecoder`` in float32.

    Raises:
        WhisperCheckpointError: As :func:`load_whisper`; also for an unknown ``part``.
    """
    if part not in ("encoder", "decoder"):
        raise WhisperCheckpointError(
            f"part must be 'encoder' or 'decoder', not {part!r}"
        )
    if checkpoint is not None:
        return getattr(load_whisper(checkpoint, dims), part)
    if dims is None:
        load_whisper(None, None)  # raises the uniform "give checkpoint or dims" error
    d = dims_from_dict(dims)
    if part == "encoder":
        return AudioEncoder(
            d.n_mels, d.n_audio_ctx, d.n_audio_state, d.n_audio_head, d.n_audio_layer
        ).float()
    decoder = TextDecoder(
        d.n_vocab, d.n_text_ctx, d.n_text_state, d.n_text_head, d.n_text_layer
    )
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        pe = decoder.positional_embedding
        pe.copy_(torch.randn(pe.shape, generator=generator) * POSITIONAL_EMBEDDING_STD)
    return decoder.float()
