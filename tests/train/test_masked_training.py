"""MaskedTraining: the one owner of masks, update restriction and frozen scope."""

import pytest
import torch
from tiny import TINY_DIMS
from torch import nn

from espnet_pruning.pruning.apply import call_with_masks
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


@pytest.mark.parametrize(
    "optim, policy, unmasked",
    [
        ("adamw", "freeze", "allow"),  # frozen entries stay zero during the step
        ("adamw", "freeze", "freeze"),
        ("adam_l2", "freeze", "allow"),  # the step sees the real weights
        ("sgd_momentum", "allow", "allow"),  # pruned entries move and are re-read
    ],
)
def test_in_place_training_equals_out_of_place_bit_for_bit(optim, policy, unmasked):
    schedule = [["c"], ["a"], ["a"], ["b"], ["a", "b"], ["b"], ["c"], ["a"]]
    runs = []
    for in_place in (False, True):
        lin, ms = linear_and_masks()
        if optim == "adamw":
            opt = torch.optim.AdamW(lin.parameters(), lr=0.1, weight_decay=0.1)
        elif optim == "adam_l2":
            opt = torch.optim.Adam(lin.parameters(), lr=0.1, weight_decay=0.1)
        else:
            opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
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
