"""Sparsity, Param% and overlap reports from the masks.

Property numbers (``# P16``) are those of docs/pruning_pitfalls.md §9.
"""

import json

import pytest
import torch
from pruning_testlib import tiny_whisper

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.report import (
    format_report,
    full_report,
    layer_key,
    overlap_matrix,
    param_percent_all,
    param_percent_one,
    sparsity_report,
    union_ratio,
)
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import prune_global_magnitude


def _hand():
    # 10 masked weights, 20 parameters in the model (10 never pruned).
    shapes = {"enc.blocks.0.w": (2, 3), "enc.blocks.1.w": (4,)}
    masks = {
        "a": {
            "enc.blocks.0.w": torch.tensor([[1, 1, 1], [1, 0, 0]]),
            "enc.blocks.1.w": torch.tensor([1, 1, 0, 0]),
        },
        "b": {
            "enc.blocks.0.w": torch.tensor([[1, 1, 0], [0, 0, 1]]),
            "enc.blocks.1.w": torch.tensor([0, 1, 1, 0]),
        },
    }
    return MaskSet(shapes, masks, n_model_params=20)


def test_sparsity_report_exact_counts():
    r = sparsity_report(_hand(), "a")
    assert (r["n_total"], r["n_kept"]) == (10, 6)
    assert r["density"] == pytest.approx(0.6) and r["sparsity"] == pytest.approx(0.4)
    assert r["per_tensor"]["enc.blocks.0.w"] == {
        "numel": 6,
        "kept": 4,
        "density": 4 / 6,
    }
    assert r["per_layer"]["enc.blocks.1"] == {"numel": 4, "kept": 2, "density": 0.5}


def test_param_percent_formulas():
    ms = _hand()
    assert param_percent_one(ms, "a") == pytest.approx(100 * (6 + 10) / 20)
    assert param_percent_one(ms, "b") == pytest.approx(100 * (5 + 10) / 20)
    # union: blocks.0 has 5 of 6, blocks.1 has 3 of 4.
    assert param_percent_all(ms, "multi_task") == pytest.approx(100 * (8 + 10) / 20)
    assert param_percent_all(ms, "single_task") == pytest.approx(80 + 75)
    with pytest.raises(ValueError, match="one shared mask"):
        param_percent_all(ms, "task_agnostic")
    shared = MaskSet(ms.shapes, {"x": ms.mask("a"), "y": ms.mask("a")}, 20)
    assert param_percent_all(shared, "task_agnostic") == pytest.approx(80.0)
    with pytest.raises(ValueError, match="mode"):
        param_percent_all(ms, "all")
    with pytest.raises(ValueError, match="n_model_params"):
        param_percent_one(MaskSet(ms.shapes, {"a": ms.mask("a")}), "a")


def test_overlap_and_union():
    ms = _hand()
    ov = overlap_matrix(ms)
    # intersection 3 (blocks.0: 2, blocks.1: 1), union 8.
    assert ov["overall"] == [[1.0, 3 / 8], [3 / 8, 1.0]]
    assert ov["per_tensor"]["enc.blocks.0.w"][0][1] == pytest.approx(2 / 5)
    assert ov["per_tensor"]["enc.blocks.1.w"][1][0] == pytest.approx(1 / 3)
    assert overlap_matrix(ms, include_unprunable=True)["overall"][0][
        1
    ] == pytest.approx(13 / 18)
    assert union_ratio(ms) == pytest.approx(0.8)
    assert union_ratio(ms, include_unprunable=True) == pytest.approx(18 / 20)


def test_counts_come_from_masks_not_zero_weights():  # P16
    model = tiny_whisper()
    with torch.no_grad():
        model.encoder.blocks[0].mlp[0].weight[:5].zero_()  # natural zeros, kept
    ms = MaskSet.from_model(model, PruningScope(), ["t"])
    assert sparsity_report(ms, "t")["n_kept"] == ms.numel()
    params = dict(model.named_parameters())
    ms.set_mask("t", prune_global_magnitude(params, ms.mask("t"), 0.2))
    r = sparsity_report(ms, "t")
    zeros = sum(int((params[n] == 0).sum()) for n in ms.names)
    assert zeros == 5 * 16
    assert r["n_total"] - r["n_kept"] == round(0.2 * ms.numel())
    assert r["n_kept"] != ms.numel() - zeros  # weight-based counting would differ
    # The shared weights were not zeroed by pruning.
    assert int((params["decoder.token_embedding.weight"] == 0).sum()) == 0


def test_paper_like_numbers_on_tiny_whisper():
    model = tiny_whisper()
    ms = MaskSet.from_model(model, PruningScope(), ["er", "ic", "asr"])
    params = {n: p.detach() for n, p in model.named_parameters()}
    for i, t in enumerate(ms.tasks):
        w = {n: params[n] + 0.05 * i * torch.randn_like(params[n]) for n in ms.names}
        m = ms.mask(t)
        for _ in range(2):
            m = prune_global_magnitude(w, m, 0.2)
        ms.set_mask(t, m)
    n_un = ms.n_model_params - ms.numel()
    for t in ms.tasks:
        assert ms.density(t) == pytest.approx(0.64, abs=1e-4)
        assert param_percent_one(ms, t) == pytest.approx(
            100 * (ms.kept(t) + n_un) / ms.n_model_params
        )
    multi = param_percent_all(ms, "multi_task")
    assert max(param_percent_one(ms, t) for t in ms.tasks) <= multi <= 100
    ov = overlap_matrix(ms)["overall"]
    assert all(ov[i][i] == 1.0 for i in range(3)) and ov[0][1] == ov[1][0] < 1.0


def test_full_report_is_json_and_formats():
    ms = _hand()
    rep = full_report(ms)
    again = json.loads(json.dumps(rep))
    assert again["param_percent"]["one"]["a"] == pytest.approx(80.0)
    assert again["param_percent"]["all"]["task_agnostic"] is None
    text = format_report(again)
    assert "Param% One" in text and "multi_task 90.00" in text
    assert "overlap" in text and "37.50" in text
    assert "enc.blocks.0" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(("a ", "b "))]
    assert lines and len({len(ln) for ln in lines[:2]}) == 1  # aligned columns
    assert "enc.blocks.0.w" in format_report(rep, tasks=["b"], per_tensor=True)
    assert full_report(MaskSet(ms.shapes, {"a": ms.mask("a")}))["param_percent"] is None


def test_layer_key():
    assert layer_key("encoder.blocks.3.attn.query.weight") == "encoder.blocks.3"
    assert (
        layer_key("encoder.encoders.blocks.12.mlp.0.weight")
        == "encoder.encoders.blocks.12"
    )
    assert layer_key("decoder.token_embedding.weight") == "decoder.token_embedding"
    assert layer_key("w") == "w"
