"""Pruning strategies: exact counts, ties, nesting, oracles.

Property numbers (``# P1``) are those of docs/pruning_pitfalls.md §9.
"""

import numpy as np
import pytest
import torch
import torch.nn.utils.prune as torch_prune
from pruning_testlib import tiny_whisper
from torch import nn

from espnet_pruning.pruning import select
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names
from espnet_pruning.pruning.select import (
    STRATEGIES,
    PruningHparams,
    num_to_prune,
    prune,
    prune_global_magnitude,
    prune_layerwise_magnitude,
    prune_random,
    prune_smallest,
)


def _prunable(model):
    params = dict(model.named_parameters())
    return {
        n: params[n].detach() for n in prunable_parameter_names(model, PruningScope())
    }


def _ones(weights):
    return {n: torch.ones(w.shape, dtype=torch.bool) for n, w in weights.items()}


def _oracle(weights, mask, k):
    """Brute force: prune the k smallest kept by (|w|, sorted-name position, flat index)."""
    names = sorted(mask)
    mag, tensor_pos, flat = [], [], []
    for i, n in enumerate(names):
        kept = mask[n].reshape(-1).numpy()
        idx = np.nonzero(kept)[0]
        mag.append(weights[n].double().abs().reshape(-1).numpy()[idx])
        tensor_pos.append(np.full(idx.size, i))
        flat.append(idx)
    mag, tensor_pos, flat = map(np.concatenate, (mag, tensor_pos, flat))
    order = np.lexsort((flat, tensor_pos, mag))[:k]
    out = {n: mask[n].clone().reshape(-1) for n in names}
    for j in order:
        out[names[tensor_pos[j]]][flat[j]] = False
    return {n: out[n].view(mask[n].shape) for n in names}


def _n_kept(mask):
    return sum(int(m.sum()) for m in mask.values())


@pytest.mark.parametrize(
    "n, fraction, rounding, expected",
    [
        (17, 0.4, "round", 7),
        (5, 0.5, "round", 2),  # half to even, like Python's round
        (7, 0.5, "round", 4),
        (15, 0.2, "ceil", 3),  # 0.2 is exactly 1/5: no float drift to 4
        (16, 0.2, "ceil", 4),
        (16, 0.2, "floor", 3),
        (0, 0.2, "round", 0),
        (10, 1.0, "round", 10),
        (10, 0.0, "ceil", 0),
    ],
)
def test_num_to_prune(n, fraction, rounding, expected):
    assert num_to_prune(n, fraction, rounding) == expected


@pytest.mark.parametrize(
    "args", [(-1, 0.2, "round"), (5, 1.5, "round"), (5, 0.2, "up")]
)
def test_num_to_prune_rejects(args):
    with pytest.raises(ValueError):
        num_to_prune(*args)


def test_hand_example():  # P4
    w = {
        "a": torch.tensor([[1.0, 2, 3, 4], [-4, -3, -2, -1]]),
        "b": torch.tensor([[0.0, 0.1, -2]]),
    }
    new = prune_smallest(w, _ones(w), 4)
    assert new["a"].tolist() == [[False, True, True, True], [True, True, True, False]]
    assert new["b"].tolist() == [[False, False, True]]
    # The same through the fraction interface: round(4/11 * 11) == 4.
    via_fraction = prune_global_magnitude(w, _ones(w), 4 / 11)
    assert all(torch.equal(via_fraction[n], new[n]) for n in w)


@pytest.mark.parametrize("fp16_valued", [False, True])
def test_exact_count_and_separation(fp16_valued):  # P1, P2
    weights = _prunable(tiny_whisper())
    if fp16_valued:
        # Whisper checkpoints are fp16: few distinct magnitudes, many ties.
        weights = {n: (w * 0.02).half().float() for n, w in weights.items()}
    mask = _ones(weights)
    n = _n_kept(mask)
    new = prune_global_magnitude(weights, mask, 0.2)
    assert n - _n_kept(new) == num_to_prune(n, 0.2, "round")
    pruned = torch.cat([weights[k].abs()[~new[k]] for k in weights])
    kept = torch.cat([weights[k].abs()[new[k]] for k in weights])
    assert pruned.max() <= kept.min()
    if fp16_valued:
        assert pruned.max() == kept.min()  # the threshold really is tied
        assert (
            len(
                torch.unique(torch.cat([w.abs().reshape(-1) for w in weights.values()]))
            )
            < n / 2
        )
    # Ties are broken by (sorted name, flat index): exactly the brute-force oracle.
    expected = _oracle(weights, mask, n - _n_kept(new))
    assert all(torch.equal(new[k], expected[k]) for k in weights)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_match_oracle(dtype):
    g = torch.Generator().manual_seed(3)
    weights = {
        "x": (torch.randn(37, 11, generator=g) * 0.05).to(dtype),
        "y": (torch.randn(101, generator=g) * 0.05).to(dtype),
    }
    mask = {
        "x": torch.rand(37, 11, generator=g) > 0.3,
        "y": torch.ones(101, dtype=torch.bool),
    }
    for k in (0, 1, 57, 200, _n_kept(mask)):
        new = prune_smallest(weights, mask, k)
        expected = _oracle(weights, mask, k)
        assert all(torch.equal(new[n], expected[n]) for n in weights), k


def test_chunk_boundaries_and_all_equal_weights(monkeypatch):
    # Tiny chunks: tie runs and the threshold straddle chunk and tensor boundaries.
    monkeypatch.setattr(select, "_CHUNK", 7)
    weights = {"a": torch.zeros(5, 6), "b": torch.zeros(13), "c": torch.ones(20)}
    weights["a"][2] = 1.0
    mask = _ones(weights)
    mask["a"][0, 1] = False
    for k in (1, 6, 21, 36, 40, 55):
        new = prune_smallest(weights, mask, k)
        expected = _oracle(weights, mask, k)
        assert all(torch.equal(new[n], expected[n]) for n in weights), k


def test_negative_zero_and_inf():
    w = {"a": torch.tensor([-0.0, 0.0, float("inf"), -float("inf"), 1e-45, -3.0])}
    new = prune_smallest(w, _ones(w), 3)
    assert new["a"].tolist() == [False, False, True, True, False, True]


def test_nan_rejected():
    w = {"a": torch.tensor([1.0, float("nan"), 2.0])}
    with pytest.raises(ValueError, match="'a' has NaN"):
        prune_smallest(w, _ones(w), 1)
    # A NaN that is already pruned does not matter.
    m = {"a": torch.tensor([True, False, True])}
    assert prune_smallest(w, m, 1)["a"].tolist() == [False, False, True]


def test_differential_oracle_torch_prune():  # P3
    model, twin = tiny_whisper(seed=4), tiny_whisper(seed=4)
    weights = _prunable(model)
    # Distinct magnitudes (random init has a few exact ties), same values in the twin.
    n = sum(w.numel() for w in weights.values())
    values = (torch.randperm(n, generator=torch.Generator().manual_seed(0)) + 1.0) / n
    twin_params = dict(twin.named_parameters())
    with torch.no_grad():
        start = 0
        for name, w in weights.items():
            signs = torch.where(torch.rand(w.shape) < 0.5, -1.0, 1.0)
            w.copy_(signs * values[start : start + w.numel()].view(w.shape))
            twin_params[name].copy_(w)
            start += w.numel()
    mags = torch.cat([w.abs().reshape(-1) for w in weights.values()])
    assert len(torch.unique(mags)) == mags.numel()  # distinct magnitudes
    k = 1234
    new = prune_smallest(weights, _ones(weights), k)
    modules = dict(twin.named_modules())
    targets = [(modules[n.rsplit(".", 1)[0]], "weight") for n in weights]
    torch_prune.global_unstructured(
        targets, pruning_method=torch_prune.L1Unstructured, amount=k
    )
    for (module, _), n in zip(targets, weights):
        assert torch.equal(module.weight_mask.bool(), new[n]), n


def test_nesting_and_density_over_five_rounds():  # P5
    g = torch.Generator().manual_seed(0)
    weights = {
        "w": torch.randn(200, 250, generator=g),
        "v": torch.randn(5000, generator=g),
    }
    mask = _ones(weights)
    n = _n_kept(mask)
    kept = n
    for k in range(1, 6):
        new = prune_global_magnitude(weights, mask, 0.2)
        assert all(bool((new[x] <= mask[x]).all()) for x in weights)  # nested
        kept -= num_to_prune(kept, 0.2, "round")
        assert _n_kept(new) == kept
        assert abs(kept / n - 0.8**k) < 1e-4
        mask = new
    assert abs(_n_kept(mask) / n - 0.32768) < 1e-4
    # Only kept weights compete: pruned weights grown large do not come back.
    weights = {x: w.abs() + 10 * (~mask[x]) for x, w in weights.items()}
    again = prune_global_magnitude(weights, mask, 0.2)
    assert all(bool((again[x] <= mask[x]).all()) for x in weights)


def test_global_threshold_differs_per_tensor_layerwise_does_not():
    g = torch.Generator().manual_seed(1)
    weights = {
        "small": 0.01 * torch.randn(1000, generator=g),
        "big": torch.randn(1000, generator=g),
    }
    glob = prune_global_magnitude(weights, _ones(weights), 0.5)
    assert int(glob["small"].sum()) < 100 and int(glob["big"].sum()) > 900
    layer = prune_layerwise_magnitude(weights, _ones(weights), 0.5)
    assert int(layer["small"].sum()) == 500 and int(layer["big"].sum()) == 500
    for x in weights:
        assert weights[x].abs()[~layer[x]].max() <= weights[x].abs()[layer[x]].min()


def test_fraction_of_total():
    w = {"w": torch.arange(1.0, 101.0)}
    m = {"w": w["w"] > 50}
    new = prune_global_magnitude(w, m, 0.2, fraction_of="total")
    assert int(new["w"].sum()) == 30 and not bool(new["w"][:70].any())


def test_inputs_not_mutated():
    weights = _prunable(tiny_whisper())
    copies = {n: w.clone() for n, w in weights.items()}
    mask = _ones(weights)
    prune_global_magnitude(weights, mask, 0.3)
    assert all(torch.equal(weights[n], copies[n]) for n in weights)
    assert all(bool(m.all()) for m in mask.values())


def test_random_control_keeps_per_tensor_counts():  # P18
    weights = _prunable(tiny_whisper())
    before = prune_global_magnitude(weights, _ones(weights), 0.2)
    after = prune_global_magnitude(weights, before, 0.2)
    rand = prune_random(before, after, torch.Generator().manual_seed(0))
    for n in weights:
        assert int(rand[n].sum()) == int(after[n].sum())
        assert bool((rand[n] <= before[n]).all())
    assert any(not torch.equal(rand[n], after[n]) for n in weights)
    same = prune_random(before, after, torch.Generator().manual_seed(0))
    assert all(torch.equal(same[n], rand[n]) for n in weights)
    other = prune_random(before, after, torch.Generator().manual_seed(1))
    assert any(not torch.equal(other[n], rand[n]) for n in weights)
    with pytest.raises(ValueError, match="cannot keep"):
        prune_random(after, before)


def test_registry_and_hparams():
    assert set(STRATEGIES) == {"global_magnitude", "layerwise_magnitude", "random"}
    weights = _prunable(tiny_whisper())
    mask = _ones(weights)
    n = _n_kept(mask)
    for name in STRATEGIES:
        new = prune(weights, mask, PruningHparams(strategy=name, fraction=0.2, seed=3))
        expected = (
            n - num_to_prune(n, 0.2)
            if name == "global_magnitude"
            else sum(m.numel() - num_to_prune(m.numel(), 0.2) for m in mask.values())
        )
        assert _n_kept(new) == expected, name
    for bad in (
        dict(strategy="magnitude"),
        dict(fraction=1.2),
        dict(rounding="nearest"),
        dict(seed=1.5),
        dict(fraction_of="all"),
    ):
        with pytest.raises(ValueError):
            PruningHparams(**bad)


def test_validation():
    w = {"a": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="no weights"):
        prune_smallest({}, {"a": torch.ones(2, 2, dtype=torch.bool)}, 1)
    with pytest.raises(ValueError, match="shape"):
        prune_smallest(w, {"a": torch.ones(4, dtype=torch.bool)}, 1)
    with pytest.raises(ValueError, match="cannot prune 5 of 4"):
        prune_smallest(w, {"a": torch.ones(2, 2, dtype=torch.bool)}, 5)
    with pytest.raises(ValueError, match="floating"):
        prune_smallest(
            {"a": torch.ones(2, 2, dtype=torch.long)}, {"a": torch.ones(2, 2)}, 1
        )
