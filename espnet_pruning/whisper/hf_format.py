"""Whisper weights from a Hugging Face transformers folder (``openai/whisper-*`` layout).

The folder holds ``config.json`` (``WhisperConfig``) and the weights as ``model.safetensors``
or ``pytorch_model.bin``, possibly sharded with an ``*.index.json``. Tensor names are those of
``WhisperForConditionalGeneration`` (``model.encoder.layers.N.self_attn.q_proj.weight``, …;
``proj_out.weight`` is the tied token embedding) or of ``WhisperModel`` (without ``model.``).
The renaming to openai-whisper's modules is one table per layer; nothing is reshaped.
"""

import json
import os
import re
from pathlib import Path
from typing import Dict, Tuple, Union

import safetensors.torch
import torch
from typeguard import typechecked
from whisper.model import ModelDimensions

from espnet_pruning.whisper.checkpoint import WhisperCheckpointError

#: transformers' name → openai-whisper's name, inside one encoder or decoder layer.
LAYER_NAMES = {
    "self_attn.q_proj": "attn.query",
    "self_attn.k_proj": "attn.key",
    "self_attn.v_proj": "attn.value",
    "self_attn.out_proj": "attn.out",
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn.q_proj": "cross_attn.query",
    "encoder_attn.k_proj": "cross_attn.key",
    "encoder_attn.v_proj": "cross_attn.value",
    "encoder_attn.out_proj": "cross_attn.out",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
    "final_layer_norm": "mlp_ln",
}
#: transformers' name → openai-whisper's name, outside the layers.
TOP_NAMES = {
    "encoder.conv1": "encoder.conv1",
    "encoder.conv2": "encoder.conv2",
    "encoder.embed_positions.weight": "encoder.positional_embedding",
    "encoder.layer_norm": "encoder.ln_post",
    "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
    "decoder.embed_positions.weight": "decoder.positional_embedding",
    "decoder.layer_norm": "decoder.ln",
}
_LAYER = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)$")

#: ``WhisperConfig`` key of each ``ModelDimensions`` field.
CONFIG_KEYS = {
    "n_mels": "num_mel_bins",
    "n_audio_ctx": "max_source_positions",
    "n_audio_state": "d_model",
    "n_audio_head": "encoder_attention_heads",
    "n_audio_layer": "encoder_layers",
    "n_vocab": "vocab_size",
    "n_text_ctx": "max_target_positions",
    "n_text_state": "d_model",
    "n_text_head": "decoder_attention_heads",
    "n_text_layer": "decoder_layers",
}


def _load_tensors(folder: Path) -> Dict[str, torch.Tensor]:
    """All tensors of the folder's weight files (single or sharded)."""
    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = folder / index_name
        files = (
            sorted(set(json.loads(index.read_text())["weight_map"].values()))
            if index.is_file()
            else ([single] if (folder / single).is_file() else [])
        )
        if files:
            break
    else:
        raise WhisperCheckpointError(
            f"{folder}: no model.safetensors or pytorch_model.bin; "
            "not a Hugging Face transformers model folder"
        )
    tensors: Dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        try:
            if name.endswith(".safetensors"):
                tensors.update(safetensors.torch.load_file(str(path)))
            else:
                tensors.update(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # safetensors and torch raise many kinds of errors
            raise WhisperCheckpointError(f"{path}: unreadable weight file: {e}") from e
    return tensors


def _openai_name(name: str) -> str:
    """openai-whisper's name of a transformers tensor name (``model.`` already stripped)."""
    m = _LAYER.match(name)
    if m:
        part, index, module, kind = m.groups()
        if module in LAYER_NAMES:
            return f"{part}.blocks.{index}.{LAYER_NAMES[module]}.{kind}"
        return ""
    for hf, openai in TOP_NAMES.items():
        if name == hf:
            return openai
        if name.startswith(hf + "."):
            return openai + name[len(hf) :]
    return ""


@typechecked
def whisper_from_hf(
    model_dir: Union[str, os.PathLike],
) -> Tuple[ModelDimensions, Dict[str, torch.Tensor]]:
    """openai-whisper dimensions and ``model_state_dict`` of a transformers Whisper folder.

    Args:
        model_dir: Folder with ``config.json`` and the weights.

    Returns:
        ``(dims, state_dict)`` in the files' dtype.

    Raises:
        WhisperCheckpointError: Not a Whisper config, a missing config key, an unknown
            tensor, or an output projection that is not the token embedding.
    """
    folder = Path(model_dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise WhisperCheckpointError(f"{config_path}: not found")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WhisperCheckpointError(f"{config_path}: unreadable JSON: {e}") from e
    if config.get("model_type") != "whisper":
        raise WhisperCheckpointError(
            f"{config_path}: model_type is {config.get('model_type')!r}, not 'whisper'"
        )
    missing = sorted({k for k in CONFIG_KEYS.values() if k not in config})
    if missing:
        raise WhisperCheckpointError(f"{config_path}: missing keys {missing}")
    dims = ModelDimensions(**{f: int(config[k]) for f, k in CONFIG_KEYS.items()})
    # openai-whisper's module has these fixed; another value cannot be represented.
    fixed = {
        "encoder_ffn_dim": 4 * dims.n_audio_state,
        "decoder_ffn_dim": 4 * dims.n_text_state,
        "activation_function": "gelu",
        "scale_embedding": False,
    }
    for key, value in fixed.items():
        if key in config and config[key] != value:
            raise WhisperCheckpointError(
                f"{config_path}: {key} is {config[key]!r}; openai-whisper's model has {value!r}"
            )

    state: Dict[str, torch.Tensor] = {}
    projection = None
    for name, tensor in _load_tensors(folder).items():
        short = name[len("model.") :] if name.startswith("model.") else name
        if short == "proj_out.weight":
            projection = tensor
            continue
        openai = _openai_name(short)
        if not openai:
            raise WhisperCheckpointError(
                f"{folder}: unknown tensor {name}; not a Whisper layout this reader knows"
            )
        state[openai] = tensor
    embedding = state.get("decoder.token_embedding.weight")
    if projection is not None and embedding is not None:
        if not torch.equal(projection, embedding):
            raise WhisperCheckpointError(
                f"{folder}: proj_out.weight differs from the token embedding; "
                "Whisper ties them"
            )
    return dims, state
