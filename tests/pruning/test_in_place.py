"""Masks written into the weights in place for a task block, values set aside."""

import copy

import pytest
import torch
from pruning_testlib import random_mask, tiny_whisper, whisper_batch, whisper_loss

from espnet_pruning.pruning.apply import call_with_masks
from espnet_pruning.pruning.in_place import InPlaceMasks
from espnet_pruning.pruning.masks import MaskError, MaskSet
from espnet_pruning.pruning.scope import PruningScope


def _setup():
    model = tiny_whisper(0)
    ms = MaskSet.from_model(model, PruningScope(), ["a", "b"])
    params = dict(model.named_parameters())
    ms.set_mask("a", random_mask({n: params[n] for n in ms.names}, 0.5, seed=1))
    ms.set_mask("b", random_mask({n: params[n] for n in ms.names}, 0.3, seed=2))
    return model, ms


def test_forward_and_accumulated_gradients_equal_the_out_of_place_path():
    model, ms = _setup()
    twin = copy.deepcopy(model)
    mel, tokens, targets = whisper_batch(model)
    masks = InPlaceMasks(dict(model.named_parameters()))
    masks.apply("a", ms.mask("a"))
    for half in (slice(0, 1), slice(1, 2)):  # two batches accumulated
        out = model(mel[half], tokens[half])
        ref = call_with_masks(twin, ms.mask("a"), mel[half], tokens[half])
        assert torch.equal(out, ref)  # the tied embedding is masked in both uses
        whisper_loss(out, targets[half]).backward()
        whisper_loss(ref, targets[half]).backward()
    ref_params = dict(twin.named_parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, ref_params[n].grad), n


def test_restore_gives_back_every_value_and_the_block_state_is_compact():
    model, ms = _setup()
    start = copy.deepcopy(model.state_dict())
    masks = InPlaceMasks(dict(model.named_parameters()))
    masks.apply("a", ms.mask("a"))
    pruned = ms.numel() - ms.kept("a")
    assert masks.set_aside_bytes == 4 * pruned  # float32 values
    # ... in one allocation (views of one buffer), not one per tensor
    storages = {v.untyped_storage().data_ptr() for _, v in masks._pruned.values()}
    assert len(storages) == 1
    assert (
        next(iter(masks._pruned.values()))[1].untyped_storage().nbytes() == 4 * pruned
    )
    params = dict(model.named_parameters())
    for n, m in ms.mask("a").items():
        assert int((params[n].detach()[~m] != 0).sum()) == 0
        assert torch.equal(params[n].detach()[m], start[n][m])
    masks.apply("b", ms.mask("b"))  # a task switch restores "a" first
    assert masks.task == "b"
    assert masks.set_aside_bytes == 4 * (ms.numel() - ms.kept("b"))
    masks.restore()
    assert masks.task is None and masks.set_aside_bytes == 0
    for n, v in model.state_dict().items():
        assert torch.equal(v, start[n]), n
    model(*whisper_batch(model)[:2]).sum().backward()  # the gradient hooks are gone
    assert all(bool((p.grad != 0).any()) for n, p in params.items() if n in ms.names)


def test_rezero_keeps_and_regather_rereads_the_set_aside_values():
    lin = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    masks = InPlaceMasks(dict(lin.named_parameters()))
    masks.apply("t", {"weight": torch.tensor([[True, False, False]])})
    assert lin.weight.tolist() == [[1.0, 0.0, 0.0]]
    masks.unzero()
    assert lin.weight.tolist() == [[1.0, 2.0, 3.0]]
    with torch.no_grad():
        lin.weight.add_(10.0)  # e.g. an optimizer step
    masks.rezero()
    assert lin.weight.tolist() == [[11.0, 0.0, 0.0]]
    masks.unzero()
    assert lin.weight.tolist() == [[11.0, 2.0, 3.0]]  # the values set aside
    with torch.no_grad():
        lin.weight.add_(10.0)
    masks.regather()
    assert lin.weight.tolist() == [[21.0, 0.0, 0.0]]
    masks.restore()
    assert lin.weight.tolist() == [[21.0, 12.0, 13.0]]


def test_a_mask_set_and_its_unpacked_masks_give_the_same_block():
    model, ms = _setup()
    twin = copy.deepcopy(model)
    InPlaceMasks(dict(model.named_parameters())).apply("a", ms)
    InPlaceMasks(dict(twin.named_parameters())).apply("a", ms.mask("a"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, twin.state_dict()[k])


def test_a_bad_mask_changes_nothing():
    model, ms = _setup()
    masks = InPlaceMasks(dict(model.named_parameters()))
    masks.apply("a", ms.mask("a"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(MaskError, match="unknown parameters"):
        masks.apply("b", {"nope": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(MaskError, match="no mask for task 'c'"):
        masks.apply("c", ms)
    assert masks.task == "a"
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])


def test_a_parameter_without_gradient_is_masked_too():
    lin = torch.nn.Linear(2, 1, bias=False).requires_grad_(False)
    masks = InPlaceMasks(dict(lin.named_parameters()))
    masks.apply("a", {"weight": torch.tensor([[True, False]])})
    assert lin.weight[0, 1].item() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masks_apply_in_every_dtype(dtype):
    lin = torch.nn.Linear(3, 2, bias=False).to(dtype)
    start = lin.weight.detach().clone()
    mask = torch.tensor([[True, False, True], [False, True, True]])
    masks = InPlaceMasks(dict(lin.named_parameters()))
    masks.apply("a", {"weight": mask})
    assert torch.equal(lin.weight.detach(), start * mask)
    lin(torch.ones(1, 3, dtype=dtype)).sum().backward()
    assert torch.equal(lin.weight.grad, mask.to(dtype))
    masks.restore()
    assert torch.equal(lin.weight.detach(), start)
