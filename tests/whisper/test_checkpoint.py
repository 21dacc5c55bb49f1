"""Building Whisper offline from a .pt file or from dimensions."""

import dataclasses

import pytest
import torch
from tiny import TINY_DIMS
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.whisper.checkpoint import (
    WhisperCheckpointError,
    build_whisper_part,
    load_whisper,
)


def save_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**TINY_DIMS))
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    torch.save(
        {
            "dims": dataclasses.asdict(model.dims),
            "model_state_dict": model.state_dict(),
        },
        path,
    )
    return model


def test_from_dims_every_parameter_initialised():
    torch.manual_seed(0)
    model = load_whisper(dims=TINY_DIMS, seed=3)
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    pe = model.decoder.positional_embedding
    assert pe.abs().max() < 0.1 and pe.std() > 0.005  # N(0, 0.01^2), not torch.empty
    again = load_whisper(dims=TINY_DIMS, seed=3).decoder.positional_embedding
    assert torch.equal(pe, again)


def test_from_checkpoint_file(tmp_path):
    ref = save_checkpoint(tmp_path / "tiny.pt")
    model = load_whisper(tmp_path / "tiny.pt")
    for (n1, p1), (n2, p2) in zip(ref.state_dict().items(), model.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    enc = build_whisper_part("encoder", tmp_path / "tiny.pt", dims=TINY_DIMS)
    assert torch.equal(enc.conv1.weight, ref.encoder.conv1.weight)


def test_missing_file(tmp_path):
    with pytest.raises(
        WhisperCheckpointError, match="nope.pt: Whisper checkpoint file not found"
    ):
        load_whisper(tmp_path / "nope.pt")


def test_dims_differ_from_config(tmp_path):
    save_checkpoint(tmp_path / "tiny.pt")
    with pytest.raises(
        WhisperCheckpointError, match=r"tiny.pt: dims differ .*n_text_layer"
    ):
        load_whisper(tmp_path / "tiny.pt", dims={**TINY_DIMS, "n_text_layer": 3})


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(WhisperCheckpointError, match="junk.pt: not a readable"):
        load_whisper(tmp_path / "junk.pt")


@pytest.mark.parametrize(
    "dims, message",
    [
        (
            {k: v for k, v in TINY_DIMS.items() if k != "n_mels"},
            r"missing \['n_mels'\]",
        ),
        ({**TINY_DIMS, "n_layers": 2}, r"unknown \['n_layers'\]"),
        ({**TINY_DIMS, "n_text_head": 0}, "n_text_head must be a positive integer"),
    ],
)
def test_bad_dims(dims, message):
    with pytest.raises(WhisperCheckpointError, match=message):
        load_whisper(dims=dims)


def test_neither_given():
    with pytest.raises(WhisperCheckpointError, match="nothing is ever downloaded"):
        load_whisper()
