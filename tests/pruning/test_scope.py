"""The pruning scope: which parameters masks cover (P6 of docs/pruning_pitfalls.md §9)."""

import pytest
import torch
from pruning_testlib import TwoLayer, tiny_whisper
from torch import nn

from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names


def _whisper_weight_names(n_layers=2):
    names = ["encoder.conv1.weight", "encoder.conv2.weight"]
    att = ["query", "key", "value", "out"]
    for i in range(n_layers):
        names += [f"encoder.blocks.{i}.attn.{a}.weight" for a in att]
        names += [f"encoder.blocks.{i}.mlp.{j}.weight" for j in (0, 2)]
        names += [f"decoder.blocks.{i}.attn.{a}.weight" for a in att]
        names += [f"decoder.blocks.{i}.cross_attn.{a}.weight" for a in att]
        names += [f"decoder.blocks.{i}.mlp.{j}.weight" for j in (0, 2)]
    return names


def test_tiny_whisper_default_scope_is_weight_matrices_and_token_embedding():
    names = prunable_parameter_names(tiny_whisper(), PruningScope())
    assert names == sorted(_whisper_weight_names() + ["decoder.token_embedding.weight"])
    assert len(names) == 2 + 2 * 6 + 2 * 10 + 1


def test_tied_embedding_can_be_left_dense():
    names = prunable_parameter_names(
        tiny_whisper(), PruningScope(include_token_embedding=False)
    )
    assert names == sorted(_whisper_weight_names())


def test_positional_embeddings_never_prunable_even_with_everything_on():
    scope = PruningScope(include_bias=True, include_layernorm=True)
    names = prunable_parameter_names(tiny_whisper(), scope)
    assert "decoder.positional_embedding" not in names
    assert "encoder.ln_post.weight" in names and "decoder.ln.bias" in names
    assert "encoder.conv1.bias" in names
    # Key projections have no bias in Whisper.
    assert "encoder.blocks.0.attn.key.bias" not in names
    # Even a scope that does not exclude it: a bare Parameter has no owning layer type.
    names = prunable_parameter_names(tiny_whisper(), PruningScope(exclude=()))
    assert "decoder.positional_embedding" not in names


def test_biases_and_layernorm_excluded_by_default():
    names = prunable_parameter_names(TwoLayer(), PruningScope())
    assert names == ["fc1.weight", "fc2.weight"]
    names = prunable_parameter_names(
        TwoLayer(), PruningScope(include_bias=True, include_layernorm=True)
    )
    assert names == [
        "fc1.bias",
        "fc1.weight",
        "fc2.bias",
        "fc2.weight",
        "norm.bias",
        "norm.weight",
    ]


def test_exclude_patterns_substring_and_fnmatch():
    model = tiny_whisper()
    names = prunable_parameter_names(
        model, PruningScope(exclude=("positional_embedding", "decoder.*.cross_attn.*"))
    )
    assert not any("cross_attn" in n for n in names)
    names = prunable_parameter_names(model, PruningScope(exclude=("conv",)))
    assert "encoder.conv1.weight" not in names


def test_shared_parameter_listed_once():
    a = nn.Linear(3, 3)
    model = nn.Sequential(a, nn.ReLU(), a)
    assert prunable_parameter_names(model, PruningScope()) == ["0.weight"]


def test_nothing_prunable_raises():
    with pytest.raises(ValueError, match="no prunable parameter"):
        prunable_parameter_names(nn.Sequential(nn.LayerNorm(3)), PruningScope())


def test_from_dict_and_back():
    scope = PruningScope.from_dict({"include_bias": True, "exclude": ["pos"]})
    assert scope.include_bias and scope.exclude == ("pos",)
    assert PruningScope.from_dict(scope.to_dict()) == scope
    assert PruningScope.from_dict(None) == PruningScope()
    with pytest.raises(ValueError, match="include_biases"):
        PruningScope.from_dict({"include_biases": True})
    with pytest.raises(ValueError, match="must be a bool"):
        PruningScope.from_dict({"include_bias": "yes"})
    with pytest.raises(ValueError, match="exclude"):
        PruningScope(exclude="positional_embedding")
