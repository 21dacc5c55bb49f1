"""MaskedTraining: the one owner of masks, update restriction and frozen scope."""

import copy

import pytest
import torch
from tiny import TINY_DIMS
from torch import nn

from espnet_pruning.pruning.apply import call_with_masks
from espnet_pruning.pruning.in_place import InPlaceMasks
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.train.masked_training import MaskedTraining, MaskedTrainingError
from espnet_pruning.uslu.espnet_model import ESPnetUSLUModel
from espnet_pruning.whisper.decoder import WhisperDecoder
from espnet_pruning.whisper.encoder import WhisperEncoder
from espnet_pruning.whisper.tokenizer import WhisperTokenizer, build_token_list

MASK_A = torch.tensor([[True, False, False], [False, True, False]])
MASK_B = torch.tensor([[False, False, True], [False, True, False]])


def linear_and_masks():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    ms = MaskSet.ones(["a", "b", "c"], {"weight": (2, 3)})
    ms.set_mask("a", {"weight": MASK_A})
    ms.set_mask("b", {"weight": MASK_B})
    return lin, ms


def step(lin, training, opt, tasks):
    """One optimizer step over one batch of each task (gradient accumulation)."""
    for task in tasks:
        params = training.effective_parameters(lin, task)
        out = torch.func.functional_call(lin, params, (torch.ones(4, 3),))
        out.pow(2).sum().backward()
    opt.step()
    opt.zero_grad()


def test_effective_parameters_are_the_masked_weights():
    lin, ms = linear_and_masks()
    eff = MaskedTraining(ms).effective_parameters(lin, "a")
    assert list(eff) == ["weight"]
    assert torch.equal(eff["weight"], lin.weight.detach() * MASK_A)
    assert eff["weight"].requires_grad  # gradients flow back to the parameter


def test_step_is_restricted_to_the_union_of_the_accumulated_tasks():
    lin, ms = linear_and_masks()
    training = MaskedTraining(ms, update_outside_mask="freeze")
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.1)
    training.bind_optimizers(lin, [opt])
    step(lin, training, opt, ["c"])  # dense task: Adam moments everywhere
    before = lin.weight.detach().clone()
    step(lin, training, opt, ["a", "b"])
    moved = lin.weight.detach() != before
    assert torch.equal(moved, MASK_A | MASK_B)  # exactly the union moved
    before = lin.weight.detach().clone()
    step(lin, training, opt, ["a"])  # the window was cleared after the step
    assert torch.equal(lin.weight.detach() != before, MASK_A)


def test_allow_moves_entries_outside_the_mask_by_momentum():
    lin, ms = linear_and_masks()
    training = MaskedTraining(ms)  # update_outside_mask: allow
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.0)
    training.bind_optimizers(lin, [opt])
    step(lin, training, opt, ["c"])
    before = lin.weight.detach().clone()
    step(lin, training, opt, ["a"])
    assert bool((lin.weight.detach() != before)[~MASK_A].all())  # Adam's momentum
    assert training.frozen_scope() is None


def test_evaluation_batches_do_not_join_the_window():
    lin, ms = linear_and_masks()
    training = MaskedTraining(ms, update_outside_mask="freeze")
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    training.bind_optimizers(lin, [opt])
    lin.eval()
    training.effective_parameters(lin, "b")
    lin.train()
    before = lin.weight.detach().clone()
    step(lin, training, opt, ["a"])
    assert torch.equal(lin.weight.detach() != before, MASK_A)


@pytest.mark.parametrize("unmasked_update", ["allow", "freeze"])
def test_frozen_scope_is_the_union_of_the_train_tasks(unmasked_update):
    _, ms = linear_and_masks()
    training = MaskedTraining(
        ms, ["a", "b"], update_outside_mask="freeze", unmasked_update=unmasked_update
    )
    union, policy = training.frozen_scope()
    assert torch.equal(union["weight"], MASK_A | MASK_B) and policy == unmasked_update


def test_bad_settings_are_named_errors():
    _, ms = linear_and_masks()
    with pytest.raises(MaskedTrainingError, match="no mask for train task"):
        MaskedTraining(ms, ["a", "ner"])
    with pytest.raises(MaskedTrainingError, match="update_outside_mask: 'keep'"):
        MaskedTraining(ms, update_outside_mask="keep")
    with pytest.raises(MaskedTrainingError, match="no mask for task 'ner'"):
        MaskedTraining(ms).effective_parameters(nn.Linear(3, 2), "ner")


def test_model_forward_equals_the_whole_model_called_with_masked_weights():
    registry = TaskRegistry.load().subset(["ic_fsc", "er_iemocap"])
    tokens = build_token_list(registry.added_tokens())
    tok = WhisperTokenizer(tokens)
    torch.manual_seed(0)
    model = ESPnetUSLUModel(
        len(tokens),
        tokens,
        WhisperEncoder(whisper_dims=TINY_DIMS),
        WhisperDecoder(len(tokens), 32, whisper_dims=TINY_DIMS),
        {t.name: tok.tokens2ids(t.prompt) for t in registry},
    )
    ms = MaskSet.from_model(model, PruningScope(), registry.names)
    g = torch.Generator().manual_seed(1)
    ms.set_mask(
        "ic_fsc", {n: torch.rand(s, generator=g) < 0.5 for n, s in ms.shapes.items()}
    )
    prompt = torch.tensor([tok.tokens2ids(registry["ic_fsc"].prompt)] * 2)
    batch = dict(
        speech=torch.randn(2, 4000, generator=g),
        speech_lengths=torch.tensor([4000, 3000]),
        text=torch.cat([prompt, torch.tensor([[220, 50257], [220, -1]])], 1),
        text_lengths=torch.tensor([5, 4]),
        prompt=prompt,
        prompt_lengths=torch.tensor([3, 3]),
    )
    reference = call_with_masks(model, ms.mask("ic_fsc"), **batch)[0]
    model.masked_training = MaskedTraining(ms)
    model.masked_training.check_model(model, model.task_names)
    assert torch.equal(model(**batch)[0], reference)
    model.masked_training = None
    assert not torch.equal(model(**batch)[0], reference)  # the mask mattered


def _train(lin, training, opt, schedule, in_place):
    """Steps over ``schedule`` (tasks accumulated per step), masked in place or not."""
    x = torch.arange(12.0).reshape(4, 3) / 7
    for tasks in schedule:
        for task in tasks:
            if in_place:
                training.use_masks(lin, task)
                out = lin(x)
            else:
                params = training.effective_parameters(lin, task)
                out = torch.func.functional_call(lin, params, (x,))
            (out - 1).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()


def _optimizer(optim, lin):
    if optim.startswith("adamw"):
        return torch.optim.AdamW(
            lin.parameters(), lr=0.1, weight_decay=0.1, fused=optim == "adamw_fused"
        )
    if optim == "adam_l2":
        return torch.optim.Adam(lin.parameters(), lr=0.1, weight_decay=0.1)
    return torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)


SWITCHES = [["c"], ["a"], ["a"], ["b"], ["a", "b"], ["b"], ["c"], ["a"]]
# One mask from a fresh optimizer (continual learning): no re-zeroing until "b" comes.
ONE_MASK_FIRST = [["a"], ["a"], ["a"], ["b"], ["a"]]


@pytest.mark.parametrize(
    "optim, policy, unmasked, schedule",
    [
        ("adamw", "freeze", "allow", SWITCHES),  # frozen entries stay zero in the step
        ("adamw", "freeze", "freeze", SWITCHES),
        ("adamw_fused", "freeze", "allow", SWITCHES),  # advised (bench/README.md)
        ("adam_l2", "freeze", "allow", SWITCHES),  # the step sees the real weights
        ("sgd_momentum", "allow", "allow", SWITCHES),  # pruned entries move, re-read
        ("adamw", "freeze", "allow", ONE_MASK_FIRST),
        ("adamw_fused", "freeze", "allow", ONE_MASK_FIRST),
        ("sgd_momentum", "freeze", "allow", ONE_MASK_FIRST),
    ],
)
def test_in_place_training_equals_out_of_place_bit_for_bit(
    optim, policy, unmasked, schedule
):
    runs = []
    for in_place in (False, True):
        lin, ms = linear_and_masks()
        opt = _optimizer(optim, lin)
        training = MaskedTraining(
            ms, update_outside_mask=policy, unmasked_update=unmasked
        )
        training.bind_optimizers(lin, [opt])
        _train(lin, training, opt, schedule, in_place)
        state = {k: v.clone() for k, v in lin.state_dict().items()}  # real weights
        runs.append((state, opt.state_dict()["state"]))
    (ref, ref_opt), (got, got_opt) = runs
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    for i in ref_opt:
        for k, v in ref_opt[i].items():
            assert torch.equal(got_opt[i][k], v), (i, k)


def test_re_zeroing_is_skipped_only_while_one_mask_was_trained(monkeypatch):
    rezeroed = []
    monkeypatch.setattr(
        InPlaceMasks, "rezero", lambda self: rezeroed.append(self.task)
    )  # counts the calls; with the real method the results are equal (test above)
    lin, ms = linear_and_masks()
    opt = _optimizer("adamw", lin)
    training = MaskedTraining(ms, update_outside_mask="freeze")
    training.bind_optimizers(lin, [opt])
    _train(lin, training, opt, [["a"], ["a"]], in_place=True)
    assert rezeroed == []
    _train(lin, training, opt, [["b"], ["a"]], in_place=True)
    assert rezeroed == ["b", "a"]  # moments of b's entries after "a", and back
    # A loaded optimizer state has moments of unknown steps.
    lin, ms = linear_and_masks()
    training = MaskedTraining(ms, update_outside_mask="freeze")
    state = opt.state_dict()
    opt = _optimizer("adamw", lin)
    training.bind_optimizers(lin, [opt])
    opt.load_state_dict(state)
    _train(lin, training, opt, [["a"]], in_place=True)
    assert rezeroed == ["b", "a", "a"]


def test_a_loaded_optimizer_state_is_re_zeroed_bit_for_bit():
    runs = []
    for in_place in (False, True):
        lin, ms = linear_and_masks()
        opt = _optimizer("adamw", lin)
        first = MaskedTraining(ms, update_outside_mask="freeze")
        first.bind_optimizers(lin, [opt])
        _train(lin, first, opt, [["b"], ["b"]], in_place=False)
        first.restore()
        state = copy.deepcopy(opt.state_dict())
        lin2 = copy.deepcopy(lin)
        opt = _optimizer("adamw", lin2)
        training = MaskedTraining(ms, update_outside_mask="freeze")
        training.bind_optimizers(lin2, [opt])
        opt.load_state_dict(state)  # b's moments: non-zero at a's pruned entries
        _train(lin2, training, opt, [["a"], ["a"]], in_place)
        runs.append({k: v.clone() for k, v in lin2.state_dict().items()})
    for k in runs[0]:
        assert torch.equal(runs[1][k], runs[0][k]), k


def test_the_weights_read_during_a_task_block_are_the_real_ones():
    lin, ms = linear_and_masks()
    start = lin.weight.detach().clone()
    training = MaskedTraining(ms)
    training.use_masks(lin, "a")
    assert torch.equal(lin.weight.detach(), start * MASK_A)  # masked in place
    assert torch.equal(lin.state_dict()["weight"], start)  # restored for saving
    training.use_masks(lin, "a")
    lin.load_state_dict({"weight": start + 1, "bias": lin.bias.detach()})
    assert training._in_place.task is None  # nothing stale to write back later
    assert torch.equal(lin.weight.detach(), start + 1)


def test_tasks_sharing_a_mask_need_no_switch():
    lin, ms = linear_and_masks()
    ms.set_mask("c", {"weight": MASK_A})  # a and c: one task-agnostic mask
    training = MaskedTraining(ms, update_outside_mask="freeze")
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1)
    training.bind_optimizers(lin, [opt])
    before = lin.weight.detach().clone()
    training.use_masks(lin, "a")
    training.use_masks(lin, "c")
    assert training._in_place.task == "a"  # still applied: no restore, no re-apply
    lin(torch.ones(4, 3)).sum().backward()
    opt.step()
    assert torch.equal(lin.state_dict()["weight"] != before, MASK_A)


def test_every_optimizer_of_a_step_keeps_the_frozen_entries():
    lin, ms = linear_and_masks()
    start = lin.weight.detach().clone()
    training = MaskedTraining(ms, update_outside_mask="freeze")
    # The bias's optimizer steps first; the weight's (decoupled decay moves every
    # real value) must still see the batch's task and leave m_a's pruned entries.
    opts = [
        torch.optim.SGD([lin.bias], lr=0.1),
        torch.optim.AdamW([lin.weight], lr=0.1, weight_decay=0.5),
    ]
    training.bind_optimizers(lin, opts)
    for _ in range(2):
        training.use_masks(lin, "a")
        lin(torch.ones(4, 3)).sum().backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()
    real = lin.state_dict()["weight"]
    assert torch.equal(real[~MASK_A], start[~MASK_A])
    assert not torch.equal(real[MASK_A], start[MASK_A])


def test_a_step_without_masked_batches_sees_no_stale_window():
    lin, ms = linear_and_masks()
    training = MaskedTraining(ms, update_outside_mask="freeze")
    opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.5)
    training.bind_optimizers(lin, [opt])
    training.use_masks(lin, "a")
    lin(torch.ones(4, 3)).sum().backward()
    opt.step()
    opt.zero_grad()
    training.restore()  # a dense step of the same model: nothing is restricted
    before = lin.weight.detach().clone()
    lin(torch.ones(4, 3)).sum().backward()
    opt.step()
    assert bool((lin.weight.detach() != before)[~MASK_A].all())
