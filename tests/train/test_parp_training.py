"""PARP's epoch-start step in a training run: MPI before epoch 1, re-prunes by interval."""

import pytest
import torch
from whisper.model import ModelDimensions, Whisper

from espnet_pruning.pruning.parp import magnitude_mask
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names
from espnet_pruning.pruning.select import num_to_prune
from espnet_pruning.train.parp_training import (
    ParpConfError,
    parse_parp_conf,
    reprune_at_epoch_start,
)


def tiny_whisper() -> Whisper:
    torch.manual_seed(0)
    dims = ModelDimensions(80, 8, 16, 2, 2, 40, 6, 16, 2, 2)
    model = Whisper(dims)
    with torch.no_grad():  # Whisper leaves it uninitialised (torch.empty)
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    return model


def _weights(model, scope=PruningScope()):
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in prunable_parameter_names(model, scope)}


def test_epoch_one_zeroes_the_magnitude_mask_of_theta0():
    model = tiny_whisper()
    theta0 = {n: w.clone() for n, w in _weights(model).items()}
    mask = reprune_at_epoch_start(model, {"target_sparsity": 0.5}, 1, 3)
    expected = magnitude_mask(theta0, sorted(theta0), 0.5)
    total = sum(w.numel() for w in theta0.values())
    assert sum(int((~m).sum()) for m in mask.values()) == num_to_prune(total, 0.5)
    for n, w in _weights(model).items():
        assert torch.equal(mask[n], expected[n])
        assert torch.equal(w, theta0[n] * mask[n])
    # Parameters outside the pruning scope are untouched.
    assert torch.equal(
        model.decoder.positional_embedding, tiny_whisper().decoder.positional_embedding
    )


def test_later_epochs_re_prune_only_at_interval_ends():
    model = tiny_whisper()
    conf = {"target_sparsity": 0.36, "reprune_interval": 2}
    assert reprune_at_epoch_start(model, conf, 2, 5) is None  # 1 epoch done
    assert reprune_at_epoch_start(model, conf, 3, 5) is not None  # 2 done
    assert reprune_at_epoch_start(model, conf, 4, 5) is None


def test_parp_p_stages_follow_the_epochs():
    model = tiny_whisper()
    conf = {"target_sparsity": 0.8, "reprune_interval": 1, "schedule": "0.4,0.8"}
    total = sum(w.numel() for w in _weights(model).values())
    zeros = []
    for epoch in (1, 2, 3, 4):
        mask = reprune_at_epoch_start(model, conf, epoch, 4)
        zeros.append(sum(int((~m).sum()) for m in mask.values()))
    assert zeros == [num_to_prune(total, s) for s in (0.4, 0.4, 0.4, 0.8)]


def test_the_pruning_scope_decides_the_weights():
    model = tiny_whisper()
    scope = {"include_token_embedding": False}
    mask = reprune_at_epoch_start(
        model, {"target_sparsity": 0.5, "pruning_scope": scope}, 1, 1
    )
    assert sorted(mask) == sorted(_weights(model, PruningScope(**scope)))
    assert "decoder.token_embedding.weight" not in mask


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"target_sparsity": 2.0}, "target_sparsity"),
        ({"sparsity": 0.5}, r"unknown key\(s\) \['sparsity'\]"),
        ({"pruning_scope": {"include_everything": True}}, "include_everything"),
    ],
)
def test_a_bad_conf_is_one_named_error(conf, message):
    with pytest.raises(ParpConfError, match=f"parp_conf: .*{message}"):
        parse_parp_conf(conf)
