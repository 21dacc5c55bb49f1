"""The mask set: validation, counts, names.

Property numbers (``# P14``) are those of docs/pruning_pitfalls.md §9.
"""

import copy
import pickle

import pytest
import torch
from pruning_testlib import tiny_whisper

from espnet_pruning.pruning.masks import MaskError, MaskSet
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names

SHAPES = {"b": (3,), "a": (2, 2)}


def test_ones_counts_and_sorted_names():
    ms = MaskSet.ones(["asr", "ic"], SHAPES, n_model_params=10)
    assert ms.names == ("a", "b")
    assert ms.tasks == ("asr", "ic")
    assert ms.shapes == {"a": (2, 2), "b": (3,)}
    assert ms.numel() == 7 and ms.kept("asr") == 7 and ms.density("ic") == 1.0
    assert all(m.dtype == torch.bool for m in ms.mask("asr").values())


def test_from_model_counts_all_parameters():
    model = tiny_whisper()
    ms = MaskSet.from_model(model, PruningScope(), ["er", "ic", "asr"])
    assert list(ms.names) == prunable_parameter_names(model, PruningScope())
    assert ms.n_model_params == sum(p.numel() for p in model.parameters())
    assert ms.numel() < ms.n_model_params
    ms.check_compatible(model)
    # Masks are not attached to the model (P11): state_dict keys unchanged.
    assert set(model.state_dict()) == set(tiny_whisper().state_dict())


def test_set_mask_converts_01_and_counts():
    ms = MaskSet.ones(["t"], SHAPES)
    ms.set_mask(
        "t", {"a": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "b": torch.tensor([1, 0, 1])}
    )
    assert ms.kept("t") == 4 and ms.kept_per_tensor("t") == {"a": 2, "b": 2}
    assert ms.mask("t")["a"].dtype == torch.bool
    assert ms.density("t") == pytest.approx(4 / 7)


@pytest.mark.parametrize(
    "mask, match",
    [
        ({"a": torch.ones(2, 2)}, r"missing \['b'\]"),
        (
            {"a": torch.ones(2, 2), "b": torch.ones(3), "c": torch.ones(1)},
            r"unexpected \['c'\]",
        ),
        ({"a": torch.ones(2, 3), "b": torch.ones(3)}, r"'a' has shape \(2, 3\)"),
        ({"a": torch.full((2, 2), 0.5), "b": torch.ones(3)}, "'a'.*other than 0 and 1"),
        (
            {"a": torch.ones(2, 2), "b": torch.tensor([2, 0, 1])},
            "'b'.*other than 0 and 1",
        ),
    ],
)
def test_validation_errors_name_the_tensor(mask, match):  # P14
    ms = MaskSet.ones(["t"], SHAPES)
    before = copy.deepcopy(ms)
    with pytest.raises(MaskError, match=match):
        ms.set_mask("t", mask)
    assert ms == before  # P15: a bad mask changes nothing


@pytest.mark.parametrize("task", ["", "a b", "x/y", "..", "é"])
def test_bad_task_names(task):
    with pytest.raises(MaskError, match="invalid task name"):
        MaskSet.ones([task], SHAPES)


def test_add_remove_and_unknown_task():
    ms = MaskSet.ones(["a.1", "B-2_x"], SHAPES)
    with pytest.raises(MaskError, match="exists already"):
        ms.add_task("a.1")
    ms.add_task("c", {"a": torch.zeros(2, 2), "b": torch.zeros(3)})
    assert ms.kept("c") == 0
    ms.remove_task("c")
    with pytest.raises(MaskError, match="no mask for task 'c'"):
        ms.mask("c")


def test_n_model_params_cannot_be_below_numel():
    with pytest.raises(MaskError, match="n_model_params"):
        MaskSet.ones(["t"], SHAPES, n_model_params=3)


def test_check_compatible_lists_mismatches():
    ms = MaskSet.ones(["t"], SHAPES)
    ms.check_compatible({"a": (2, 2), "b": (3,), "extra": (9,)})
    with pytest.raises(
        MaskError, match=r"missing tensors \['b'\].*a: mask \(2, 2\) vs \(4,\)"
    ):
        ms.check_compatible({"a": (4,)})


def test_equality_to_and_pickle():
    a = MaskSet.ones(["t"], SHAPES, 10)
    b = MaskSet.ones(["t"], SHAPES, 10)
    assert a == b
    b.set_mask("t", {"a": torch.eye(2), "b": torch.ones(3)})
    assert a != b
    assert a != MaskSet.ones(["t"], SHAPES, 11)
    assert a.to("cpu") == a and a.to("cpu") is not a
    assert pickle.loads(pickle.dumps(a)) == a


def test_masks_are_not_module_state():
    model = tiny_whisper()
    keys = set(model.state_dict())
    n_buffers = len(list(model.buffers()))
    MaskSet.from_model(model, PruningScope(), ["t"])
    assert set(model.state_dict()) == keys and len(list(model.buffers())) == n_buffers


def test_masks_take_one_bit_per_weight_and_task_in_memory():
    ms = MaskSet.ones(["a", "b", "c"], {"w": (3, 7), "v": (16,)})  # 21 + 16 bits
    assert ms.nbytes == 3 * (3 + 2)
    m = torch.rand(3, 7, generator=torch.Generator().manual_seed(0)) < 0.5
    ms.set_mask("b", {"w": m, "v": torch.zeros(16)})
    got = ms.mask("b")
    assert torch.equal(got["w"], m) and got["w"].dtype == torch.bool
    assert ms.kept("b") == int(m.sum()) and ms.nbytes == 15


def test_all_ones_tasks_are_packed_like_an_explicit_mask():
    shapes = {"w": (3, 7), "v": (16,), "u": (1,)}  # 21, 16 and 1 bits: padding differs
    made = MaskSet.ones(["a"], shapes)
    given = MaskSet(
        shapes, {"a": {n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()}}
    )
    assert made == given  # the same bits, zero padding included
    assert made.kept("a") == 38 and made.packed_bits("a", "w").tolist() == [
        255,
        255,
        248,
    ]
    assert made.packed_bits("a", "u").tolist() == [128]
