"""Whisper weights and token list from an ESPnet experiment (``config.yaml`` + a ``.pth``).

ESPnet's stock ``whisper`` encoder and decoder (``OpenAIWhisperEncoder``/``Decoder``), and
ours, keep openai-whisper's modules under ``encoder.encoders.`` and ``decoder.decoders.``. A
decoder whose vocabulary ESPnet expanded with ``load_origin_token_embedding`` stores its token
embedding in two parts (``ori_emb``, ``add_emb``), joined here in row order.

The token list is the experiment's own, in its own order, so every embedding row keeps its
meaning. ESPnet's Whisper token lists (``whisper_export_vocabulary``) write the byte-level BPE
tokens with ``Ġ`` (GPT-2's encoding of a space) replaced by a space, and ESPnet strips each
line's end when it reads the list; our token lists keep ``Ġ``. So Whisper's own 50364 BPE and
special entries are checked against Whisper's vocabulary in that spelling and taken from it.

The attention head count is not stored in the weights. It comes from an openai-whisper
checkpoint of the same model (``dims_from``), or, for OpenAI's released model names in the
config (``whisper_model: medium``), from the fact that every released Whisper uses heads of
width 64.
"""

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import yaml
from typeguard import typechecked
from whisper.model import ModelDimensions

from espnet_pruning.fileio import read_yaml
from espnet_pruning.whisper.checkpoint import WhisperCheckpointError, load_whisper
from espnet_pruning.whisper.openai_format import whisper_state_from_espnet
from espnet_pruning.whisper.tokenizer import whisper_base_tokens

#: Head width of every Whisper model OpenAI released (tiny … large-v3, turbo).
RELEASED_HEAD_WIDTH = 64
#: Model names OpenAI released (``whisper.available_models()`` of openai-whisper 20250625).
RELEASED_MODELS = (
    "tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
    "large-v1", "large-v2", "large-v3", "large", "large-v3-turbo", "turbo",
)  # fmt: skip


def _read_config(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise WhisperCheckpointError(f"{path}: ESPnet experiment config not found")
    try:
        config = read_yaml(path)
    except (OSError, yaml.YAMLError) as e:
        raise WhisperCheckpointError(f"{path}: unreadable YAML: {e}") from e
    if not isinstance(config, dict) or "token_list" not in config:
        raise WhisperCheckpointError(
            f"{path}: no token_list; not an ESPnet experiment config.yaml"
        )
    return config


def _token_list(config: Dict[str, Any], config_path: Path) -> List[str]:
    """The experiment's token list (inline or a file) with Whisper's own BPE spelling."""
    tokens = config["token_list"]
    if isinstance(tokens, str):
        candidates = [Path(tokens), config_path.parent / Path(tokens).name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise WhisperCheckpointError(
                f"{config_path}: token_list file {tokens} not found "
                f"(also looked for {candidates[1]})"
            )
        tokens = [
            line.rstrip() for line in found.read_text(encoding="utf-8").splitlines()
        ]
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise WhisperCheckpointError(
            f"{config_path}: token_list is not a list of strings"
        )
    base = whisper_base_tokens()
    if len(tokens) < len(base):
        raise WhisperCheckpointError(
            f"{config_path}: token_list has {len(tokens)} entries; a Whisper token list "
            f"starts with Whisper's {len(base)} BPE and special tokens"
        )
    for i, ours in enumerate(base):
        # ESPnet writes Ġ as a space and strips each line's end when reading the list.
        if tokens[i] != ours and tokens[i] != ours.replace("Ġ", " ").rstrip():
            raise WhisperCheckpointError(
                f"{config_path}: token_list entry {i} is {tokens[i]!r}, Whisper's "
                f"multilingual vocabulary has {ours!r}; not a Whisper token list"
            )
    return base + tokens[len(base) :]


def _join_expanded_embedding(state: Dict[str, torch.Tensor]) -> None:
    base = "decoder.decoders.token_embedding."
    if base + "ori_emb.weight" in state:
        state[base + "weight"] = torch.cat(
            [state.pop(base + "ori_emb.weight"), state.pop(base + "add_emb.weight")]
        )


def _dims_of(
    state: Dict[str, torch.Tensor],
    n_audio_head: int,
    n_text_head: int,
) -> ModelDimensions:
    def n_layers(part: str) -> int:
        pattern = re.compile(rf"^{part}\.blocks\.(\d+)\.")
        return len({m.group(1) for k in state if (m := pattern.match(k))})

    conv1 = state["encoder.conv1.weight"]
    embedding = state["decoder.token_embedding.weight"]
    return ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=state["encoder.positional_embedding"].shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=n_audio_head,
        n_audio_layer=n_layers("encoder"),
        n_vocab=embedding.shape[0],
        n_text_ctx=state["decoder.positional_embedding"].shape[0],
        n_text_state=embedding.shape[1],
        n_text_head=n_text_head,
        n_text_layer=n_layers("decoder"),
    )


@typechecked
def whisper_from_espnet(
    config_path: Union[str, os.PathLike],
    model_file: Union[str, os.PathLike],
    dims_from: Optional[Union[str, os.PathLike]] = None,
) -> Tuple[ModelDimensions, Dict[str, torch.Tensor], List[str]]:
    """openai-whisper dims, ``model_state_dict`` and the token list of an ESPnet experiment.

    Args:
        config_path: The experiment's ``config.yaml`` (with ``token_list``).
        model_file: Its model (``valid.acc.ave.pth``, …): a state dict.
        dims_from: An openai-whisper checkpoint of the same architecture, for the head
            counts; not needed for OpenAI's released model names.

    Returns:
        ``(dims, state_dict, token_list)``; the token list has ``n_vocab`` entries.

    Raises:
        WhisperCheckpointError: A missing file or key, an unknown architecture without
            ``dims_from``, or a token list whose length differs from the embedding rows.
    """
    config_path, model_file = Path(config_path), Path(model_file)
    config = _read_config(config_path)
    tokens = _token_list(config, config_path)
    if not model_file.is_file():
        raise WhisperCheckpointError(f"{model_file}: model file not found")
    try:
        espnet_state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds of errors for bad files
        raise WhisperCheckpointError(f"{model_file}: unreadable model file: {e}") from e
    if not isinstance(espnet_state, dict):
        raise WhisperCheckpointError(f"{model_file}: not a state dict")
    _join_expanded_embedding(espnet_state)
    state = whisper_state_from_espnet(espnet_state, source=str(model_file))

    if dims_from is not None:
        reference = load_whisper(dims_from)
        n_audio_head, n_text_head = (
            reference.dims.n_audio_head,
            reference.dims.n_text_head,
        )
    else:
        name = (config.get("encoder_conf") or {}).get("whisper_model")
        if name not in RELEASED_MODELS:
            raise WhisperCheckpointError(
                f"{config_path}: encoder_conf.whisper_model is {name!r}, not one of "
                f"OpenAI's released models {list(RELEASED_MODELS)}; give the head counts "
                "with --dims_from <an openai-whisper .pt of the same architecture>"
            )
        n_audio_head = state["encoder.conv1.weight"].shape[0] // RELEASED_HEAD_WIDTH
        n_text_head = (
            state["decoder.token_embedding.weight"].shape[1] // RELEASED_HEAD_WIDTH
        )
    dims = _dims_of(state, n_audio_head, n_text_head)
    if dims_from is not None:
        wanted = dataclasses.replace(reference.dims, n_vocab=dims.n_vocab)
        if wanted != dims:
            raise WhisperCheckpointError(
                f"{model_file}: dims {dataclasses.asdict(dims)} differ from those of "
                f"{dims_from}: {dataclasses.asdict(reference.dims)}"
            )
    if len(tokens) != dims.n_vocab:
        raise WhisperCheckpointError(
            f"{config_path}: token_list has {len(tokens)} entries but the model's token "
            f"embedding has {dims.n_vocab} rows"
        )
    return dims, state, tokens
