"""PARP and PARP-P: exact counts, zeroing, revival, lr = 0, PARP-P schedule (docs/methods.md §4)."""

import pytest
import torch
from pruning_testlib import tiny_whisper, whisper_batch, whisper_loss

from espnet_pruning.pruning.parp import (
    Parp,
    ParpHparams,
    magnitude_mask,
    parse_sparsities,
)
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names
from espnet_pruning.pruning.select import (
    num_to_prune,
    prune_global_magnitude,
    prune_layerwise_magnitude,
)


def _prunable(model):
    params = dict(model.named_parameters())
    return {n: params[n] for n in prunable_parameter_names(model, PruningScope())}


def _zeros(mask):
    return sum(int((~m).sum()) for m in mask.values())


def _train(model, weights, parp, updates, lr=1e-2, seed=1):
    """``updates`` AdamW steps on one tiny batch, PARP's hook after each."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    mel, tokens, targets = whisper_batch(model, seed=seed)
    masks = []
    for u in range(1, updates + 1):
        opt.zero_grad()
        whisper_loss(model(mel, tokens), targets).backward()
        opt.step()
        new = parp.after_update(u, weights)
        if new is not None:
            masks.append((u, {n: m.clone() for n, m in new.items()}))
            for n, m in new.items():  # pruned weights are exactly 0 at interval start
                assert torch.equal(weights[n][~m], torch.zeros(int((~m).sum())))
    return masks


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_every_re_prune_leaves_exactly_round_s_n_zeros(scope):
    model = tiny_whisper()
    weights = _prunable(model)
    hp = ParpHparams(target_sparsity=0.36, reprune_interval=2, scope=scope)
    parp = Parp(hp, total_updates=7)
    masks = [(0, parp.start(weights))] + _train(model, weights, parp, 7)
    assert [u for u, _ in masks] == [0, 2, 4, 6, 7]
    for _, mask in masks:
        if scope == "global":
            total = sum(w.numel() for w in weights.values())
            assert _zeros(mask) == num_to_prune(total, 0.36) == round(0.36 * total)
        else:
            for n, m in mask.items():
                assert int((~m).sum()) == num_to_prune(m.numel(), 0.36)
    # Training moved the mask: PARP adjusts, it does not keep m0.
    assert any(not torch.equal(masks[0][1][n], masks[-1][1][n]) for n in weights)


def test_the_initial_mask_is_magnitude_pruning_of_theta0():
    model = tiny_whisper()
    weights = _prunable(model)
    before = {n: w.detach().clone() for n, w in weights.items()}
    ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in before.items()}
    mask = Parp(ParpHparams(target_sparsity=0.5), 10).start(weights)
    expected = prune_global_magnitude(before, ones, 0.5)
    assert all(torch.equal(mask[n], expected[n]) for n in expected)
    for n, w in weights.items():
        assert torch.equal(w.detach(), before[n] * mask[n])
    layerwise = Parp(ParpHparams(target_sparsity=0.5, scope="layerwise"), 10)
    expected = prune_layerwise_magnitude(before, ones, 0.5)
    mask = layerwise.start({n: w.clone() for n, w in before.items()})
    assert all(torch.equal(mask[n], expected[n]) for n in expected)


def test_lr_zero_returns_the_mpi_mask():
    model = tiny_whisper()
    weights = _prunable(model)
    parp = Parp(ParpHparams(target_sparsity=0.6, reprune_interval=1), 3)
    m0 = {n: m.clone() for n, m in parp.start(weights).items()}
    masks = _train(model, weights, parp, 3, lr=0.0)
    assert len(masks) == 3
    for _, mask in masks:
        assert all(torch.equal(mask[n], m0[n]) for n in m0)  # IoU 1.0


def test_a_pruned_weight_that_grows_back_displaces_the_smallest_kept_one():
    w = {"a": torch.nn.Parameter(torch.tensor([[5.0, 1.0], [-3.0, 2.0]]))}
    w["b"] = torch.nn.Parameter(torch.tensor([0.25, -4.0, 1.5]))
    parp = Parp(ParpHparams(target_sparsity=3 / 7, reprune_interval=1), 1)
    mask = parp.start(w)
    assert mask["a"].tolist() == [[True, False], [True, True]]
    assert mask["b"].tolist() == [False, True, False]
    with torch.no_grad():
        w["b"][0] = -2.5  # revived: now larger than the kept 2.0
    mask = parp.after_update(1, w)
    assert mask["a"].tolist() == [[True, False], [True, False]]
    assert mask["b"].tolist() == [True, True, False]
    assert w["a"].tolist() == [[5.0, 0.0], [-3.0, 0.0]]
    assert w["b"].tolist() == [-2.5, -4.0, 0.0]


def test_the_result_is_the_last_mask_times_the_trained_weights():
    model = tiny_whisper()
    weights = _prunable(model)
    parp = Parp(ParpHparams(target_sparsity=0.36, reprune_interval=3), 4)
    parp.start(weights)
    last = _train(model, weights, parp, 4)[-1][1]
    trained = {n: w.detach().clone() for n, w in weights.items()}
    final = parp.finish(weights)
    for n in weights:
        assert torch.equal(final[n], last[n])
        assert torch.equal(weights[n].detach(), trained[n])  # already m ⊙ θ_N


def test_parp_p_sparsity_rises_stage_by_stage_to_the_target():
    model = tiny_whisper()
    weights = _prunable(model)
    total = sum(w.numel() for w in weights.values())
    hp = ParpHparams(target_sparsity=0.9, reprune_interval=1, schedule="0.6,0.8,0.9")
    parp = Parp(hp, total_updates=6)
    zeros = [_zeros(parp.start(weights))]
    zeros += [_zeros(m) for _, m in _train(model, weights, parp, 6)]
    expected = [num_to_prune(total, s) for s in (0.6, 0.6, 0.6, 0.8, 0.8, 0.9, 0.9)]
    assert zeros == expected
    assert zeros == sorted(zeros)


def test_an_initial_mask_can_be_given():
    w = {"w": torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0, 4.0]))}
    given = {"w": torch.tensor([True, False, True, False])}
    parp = Parp(ParpHparams(target_sparsity=0.5, reprune_interval=1), 1)
    assert parp.start(w, given)["w"].tolist() == given["w"].tolist()
    assert w["w"].tolist() == [1.0, 0.0, 3.0, 0.0]
    with pytest.raises(ValueError, match="exactly the pruned weights"):
        parp.start(w, {"v": given["w"]})


def test_magnitude_mask_chooses_from_all_weights_with_ties_by_name_and_index():
    w = {"b": torch.tensor([1.0, 1.0]), "a": torch.tensor([1.0, 2.0])}
    mask = magnitude_mask(w, ["a", "b"], 0.5)
    assert mask["a"].tolist() == [False, True]
    assert mask["b"].tolist() == [False, True]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_sparsity": 1.5}, "target_sparsity"),
        ({"reprune_interval": 0}, "reprune_interval"),
        ({"scope": "block"}, "scope"),
        ({"rounding": "up"}, "rounding"),
        ({"target_sparsity": 0.9, "schedule": "0.8,0.6,0.9"}, "not decrease"),
        ({"target_sparsity": 0.9, "schedule": "0.6,0.8"}, "end at target"),
        ({"schedule": "0.6;0.8"}, "comma-separated"),
    ],
)
def test_invalid_hyperparameters_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParpHparams(**kwargs)


def test_schedule_parsing():
    assert parse_sparsities("") == []
    assert parse_sparsities("0.6, 0.8,0.9") == [0.6, 0.8, 0.9]
