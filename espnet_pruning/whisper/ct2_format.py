"""Whisper weights from a CTranslate2 (faster-whisper) model folder.

A CTranslate2 ``model.bin`` (binary version 6) is a container of named variables: a header
(version, spec name, spec revision), then per variable its name, shape, data type and bytes,
then aliases (``decoder/projection/weight`` → ``decoder/embeddings/weight``: Whisper's output
layer is its token embedding). The Whisper spec differs from openai-whisper's module layout in
three ways undone here: self-attention query/key/value are one fused ``linear_0`` (and
cross-attention key/value one fused ``linear_1``); key projections carry a bias, always zero,
that openai-whisper's ``key`` Linear does not have; layer norms are ``gamma``/``beta``.
"""

import os
import re
import struct
from pathlib import Path
from typing import BinaryIO, Dict, Tuple, Union

import torch
from typeguard import typechecked
from whisper.model import ModelDimensions

from espnet_pruning.whisper.checkpoint import WhisperCheckpointError

#: ``model.bin`` binary version this reader understands.
BINARY_VERSION = 6
#: CTranslate2's data type ids (``include/ctranslate2/types.h``).
DTYPES = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}


def _read(f: BinaryIO, fmt: str, source: str) -> int:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise WhisperCheckpointError(f"{source}: truncated CTranslate2 model file")
    return struct.unpack("<" + fmt, data)[0]


def _read_string(f: BinaryIO, source: str) -> str:
    n = _read(f, "H", source)
    data = f.read(n)
    if len(data) != n or not data.endswith(b"\0"):
        raise WhisperCheckpointError(f"{source}: truncated CTranslate2 model file")
    return data[:-1].decode("utf-8")


@typechecked
def read_ct2_model(
    path: Union[str, os.PathLike],
) -> Tuple[str, int, Dict[str, torch.Tensor]]:
    """Read every variable of a CTranslate2 ``model.bin``; aliases resolve to their target.

    Args:
        path: The ``model.bin`` file.

    Returns:
        ``(spec name, spec revision, {variable name: tensor})``.

    Raises:
        WhisperCheckpointError: Missing, truncated or of another binary version.
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise WhisperCheckpointError(f"{path}: CTranslate2 model file not found")
    variables: Dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        version = _read(f, "I", source)
        if version != BINARY_VERSION:
            raise WhisperCheckpointError(
                f"{path}: CTranslate2 binary version {version}; "
                f"this reader knows version {BINARY_VERSION}"
            )
        spec = _read_string(f, source)
        revision = _read(f, "I", source)
        for _ in range(_read(f, "I", source)):
            name = _read_string(f, source)
            shape = [_read(f, "I", source) for _ in range(_read(f, "B", source))]
            type_id = _read(f, "B", source)
            n_bytes = _read(f, "I", source)
            if type_id not in DTYPES:
                raise WhisperCheckpointError(
                    f"{path}: variable {name} has unknown data type id {type_id}"
                )
            data = bytearray(f.read(n_bytes))
            if len(data) != n_bytes:
                raise WhisperCheckpointError(
                    f"{path}: truncated CTranslate2 model file (in {name})"
                )
            tensor = torch.frombuffer(data, dtype=DTYPES[type_id]) if data else None
            if tensor is None or tensor.numel() != (
                torch.Size(shape).numel() if shape else 1
            ):
                raise WhisperCheckpointError(
                    f"{path}: variable {name}: {n_bytes} bytes do not fit shape {shape}"
                )
            variables[name] = tensor.reshape(shape)
        for _ in range(_read(f, "I", source)):
            alias = _read_string(f, source)
            target = _read_string(f, source)
            if target not in variables:
                raise WhisperCheckpointError(
                    f"{path}: alias {alias} names unknown variable {target}"
                )
            variables[alias] = variables[target]
    return spec, revision, variables


def _count_layers(variables: Dict[str, torch.Tensor], part: str) -> int:
    pattern = re.compile(rf"^{part}/layer_(\d+)/")
    indices = {int(m.group(1)) for k in variables if (m := pattern.match(k))}
    if indices != set(range(len(indices))):
        raise WhisperCheckpointError(f"{part} layers are not numbered 0…n-1: {indices}")
    return len(indices)


class _Take:
    """Pops variables by name; a missing one is an error naming the file and variable."""

    def __init__(self, variables: Dict[str, torch.Tensor], source: str):
        self.variables = dict(variables)
        self.source = source

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.variables:
            raise WhisperCheckpointError(
                f"{self.source}: variable {name} is missing (not a CTranslate2 Whisper model?)"
            )
        return self.variables.pop(name)


def _linear(take: _Take, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = take(f"{src}/weight")
    out[f"{dst}.bias"] = take(f"{src}/bias")


def _layer_norm(take: _Take, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = take(f"{src}/gamma")
    out[f"{dst}.bias"] = take(f"{src}/beta")


def _split_fused(
    take: _Take, src: str, dsts: Tuple[str, ...], out: Dict[str, torch.Tensor]
) -> None:
    """Split a fused projection (rows q|k|v or k|v) into openai-whisper's Linears."""
    weight, bias = take(f"{src}/weight"), take(f"{src}/bias")
    n = len(dsts)
    if weight.shape[0] % n or bias.shape[0] != weight.shape[0]:
        raise WhisperCheckpointError(
            f"{take.source}: {src} has shape {tuple(weight.shape)}, not {n} fused projections"
        )
    for dst, w, b in zip(dsts, weight.chunk(n), bias.chunk(n)):
        out[f"{dst}.weight"] = w
        if dst.endswith(".key"):
            # openai-whisper's key projection has no bias; CTranslate2 stores zeros.
            if torch.count_nonzero(b):
                raise WhisperCheckpointError(
                    f"{take.source}: {src}/bias has a non-zero key part; "
                    "openai-whisper's key projection has no bias"
                )
        else:
            out[f"{dst}.bias"] = b


def _block(
    take: _Take, src: str, dst: str, cross: bool, out: Dict[str, torch.Tensor]
) -> None:
    _layer_norm(take, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln", out)
    _split_fused(
        take,
        f"{src}/self_attention/linear_0",
        (f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"),
        out,
    )
    _linear(take, f"{src}/self_attention/linear_1", f"{dst}.attn.out", out)
    if cross:
        _layer_norm(take, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln", out)
        _linear(take, f"{src}/attention/linear_0", f"{dst}.cross_attn.query", out)
        _split_fused(
            take,
            f"{src}/attention/linear_1",
            (f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"),
            out,
        )
        _linear(take, f"{src}/attention/linear_2", f"{dst}.cross_attn.out", out)
    _layer_norm(take, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln", out)
    _linear(take, f"{src}/ffn/linear_0", f"{dst}.mlp.0", out)
    _linear(take, f"{src}/ffn/linear_1", f"{dst}.mlp.2", out)


#: Spec settings a Whisper model must have (anything else is another architecture).
_FIXED = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}


@typechecked
def whisper_from_ct2(
    model_dir: Union[str, os.PathLike],
) -> Tuple[ModelDimensions, Dict[str, torch.Tensor]]:
    """openai-whisper dimensions and ``model_state_dict`` of a CTranslate2 Whisper folder.

    Args:
        model_dir: Folder with ``model.bin`` (as written by CTranslate2's converters and
            shipped by faster-whisper), or the ``model.bin`` file itself.

    Returns:
        ``(dims, state_dict)`` in the file's dtype (fp16 for released models).

    Raises:
        WhisperCheckpointError: Not a Whisper spec, quantized weights, a missing variable,
            or a variable left over (an unknown layout), naming the file and variable.
    """
    path = Path(model_dir)
    if path.is_dir():
        path = path / "model.bin"
    source = str(path)
    spec, revision, variables = read_ct2_model(path)
    if spec != "WhisperSpec":
        raise WhisperCheckpointError(f"{path}: a {spec} model, not WhisperSpec")
    quantized = sorted(k for k in variables if k.endswith("weight_scale"))
    if quantized:
        raise WhisperCheckpointError(
            f"{path}: quantized weights ({quantized[0]}, …) cannot be imported exactly; "
            "convert the model with --quantization float16 or float32"
        )
    for name, value in _FIXED.items():
        if name in variables and int(variables[name]) != value:
            raise WhisperCheckpointError(
                f"{path}: {name} = {int(variables[name])}; Whisper has {value}"
            )
    take = _Take(variables, source)
    out: Dict[str, torch.Tensor] = {}
    n_audio_layer = _count_layers(variables, "encoder")
    n_text_layer = _count_layers(variables, "decoder")
    n_audio_head = int(take("encoder/num_heads"))
    n_text_head = int(take("decoder/num_heads"))

    out["encoder.positional_embedding"] = take("encoder/position_encodings/encodings")
    _linear(take, "encoder/conv1", "encoder.conv1", out)
    _linear(take, "encoder/conv2", "encoder.conv2", out)
    for i in range(n_audio_layer):
        _block(take, f"encoder/layer_{i}", f"encoder.blocks.{i}", False, out)
    _layer_norm(take, "encoder/layer_norm", "encoder.ln_post", out)

    out["decoder.token_embedding.weight"] = take("decoder/embeddings/weight")
    projection = take("decoder/projection/weight")
    if not torch.equal(projection, out["decoder.token_embedding.weight"]):
        raise WhisperCheckpointError(
            f"{path}: decoder/projection/weight differs from the token embedding; "
            "Whisper ties them"
        )
    out["decoder.positional_embedding"] = take("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        _block(take, f"decoder/layer_{i}", f"decoder.blocks.{i}", True, out)
    _layer_norm(take, "decoder/layer_norm", "decoder.ln", out)

    # Scalars that describe the spec (and the alignment heads, which openai-whisper sets
    # from its own table) carry no weights.
    left = sorted(
        k
        for k, v in take.variables.items()
        if (v.dim() > 0 or k.count("/") > 1) and not k.endswith("/alignment_heads")
    )
    if left:
        raise WhisperCheckpointError(
            f"{path}: unknown variables {left[:5]}; not a Whisper layout this reader knows"
        )
    conv1 = out["encoder.conv1.weight"]
    embedding = out["decoder.token_embedding.weight"]
    dims = ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=out["encoder.positional_embedding"].shape[0],
        n_audio_state=conv1.shape[0],
        n_audio_head=n_audio_head,
        n_audio_layer=n_audio_layer,
        n_vocab=embedding.shape[0],
        n_text_ctx=out["decoder.positional_embedding"].shape[0],
        n_text_state=embedding.shape[1],
        n_text_head=n_text_head,
        n_text_layer=n_text_layer,
    )
    return dims, {k: v.clone() for k, v in out.items()}
