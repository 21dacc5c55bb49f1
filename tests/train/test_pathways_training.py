"""Dynamic ASR Pathways in masked training: the masks a schedule gives are installed
between steps, training equals a hand-written loop bit for bit, state files round-trip.
"""

import pytest
import torch
from torch import nn

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.pathways import DynamicPathways, DynamicPathwaysHparams
from espnet_pruning.train.checkpoints import CheckpointError
from espnet_pruning.train.masked_training import MaskedTraining, MaskedTrainingError
from espnet_pruning.train.pathways_training import (
    PathwaysConfError,
    PathwaysSchedule,
    drop_old_states,
    parse_pathways_conf,
    read_state,
    state_epochs,
)

TASKS = ["a", "b", "c"]
HP = DynamicPathwaysHparams(
    target_sparsity=0.5, adapt_interval=2, prune_interval=3, prune_fraction=0.125
)
# Steps of one task each, in blocks, as the task iterator gives them.
ORDER = ["a", "a", "b", "b", "b", "c", "a", "a", "c", "c", "b", "a"]


def start_masks() -> MaskSet:
    g = torch.Generator().manual_seed(3)
    masks = MaskSet.ones(TASKS, {"weight": (4, 8)})
    for t in TASKS:  # 24 of 32 kept (25 % sparsity), a different draw per task
        keep = torch.zeros(32, dtype=torch.bool)
        keep[torch.randperm(32, generator=g)[:24]] = True
        masks.set_mask(t, {"weight": keep.reshape(4, 8)})
    return masks


def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(8, 4)


def optimizer(name, lin):
    if name == "adamw":
        return torch.optim.AdamW(lin.parameters(), lr=0.05, weight_decay=0.1)
    return torch.optim.SGD(lin.parameters(), lr=0.05, momentum=0.9)


X = torch.arange(24.0).reshape(3, 8) / 11


def loss_of(out, task):
    return (out - TASKS.index(task)).pow(2).sum()


@pytest.mark.parametrize("policy", ["allow", "freeze"])
@pytest.mark.parametrize("optim", ["adamw", "sgd_momentum"])
def test_training_under_a_schedule_equals_a_hand_written_loop(policy, optim):
    """In place, through MaskedTraining and the schedule's hook, against: forward
    with ``W ⊙ m_{z,r}``, the step, (freeze: entries outside ``m_{z,r}`` put back),
    then the schedule on the real weights."""
    lin = linear()
    opt = optimizer(optim, lin)
    schedule = PathwaysSchedule(start_masks(), HP)
    training = MaskedTraining(schedule.training_mask_set(), update_outside_mask=policy)
    training.set_schedule(schedule)
    training.bind_optimizers(lin, [opt])
    for task in ORDER:
        training.use_masks(lin, task)
        loss_of(lin(X), task).backward()
        opt.step()
        opt.zero_grad()
    training.restore()

    ref = linear()
    ref_opt = optimizer(optim, ref)
    masks = start_masks()
    dp = DynamicPathways({t: masks.mask(t) for t in TASKS}, HP)
    for step, task in enumerate(ORDER, 1):
        m = dp.training_mask(task)["weight"]
        params = {"weight": ref.weight * m, "bias": ref.bias}
        loss_of(torch.func.functional_call(ref, params, (X,)), task).backward()
        before = ref.weight.detach().clone()
        ref_opt.step()
        ref_opt.zero_grad()
        if policy == "freeze":
            with torch.no_grad():
                ref.weight[~m] = before[~m]
        dp.after_step(step, task, {"weight": ref.weight.detach()})

    assert dp.n_adaptations == 6 and dp.n_prunes == 2  # the masks did change
    assert torch.equal(lin.weight, ref.weight) and torch.equal(lin.bias, ref.bias)
    for t in TASKS:
        assert torch.equal(schedule.pathways.mask(t)["weight"], dp.mask(t)["weight"])
        got = training.masks.mask(t)["weight"]
        assert torch.equal(got, dp.training_mask(t)["weight"])
    kept = [int(dp.mask(t)["weight"].sum()) for t in TASKS]
    assert kept == [16, 16, 16]  # 24 → 20 → 16 = the target, 50 % of 32


def test_with_freeze_the_frozen_scope_is_that_of_the_start_masks():
    schedule = PathwaysSchedule(start_masks(), HP)
    training = MaskedTraining(
        schedule.training_mask_set(), update_outside_mask="freeze"
    )
    training.set_schedule(schedule)
    union = training.frozen_scope()[0]["weight"]
    assert bool(union.all())  # with the residual every entry trains
    subset = MaskedTraining(
        schedule.training_mask_set(), train_tasks=["a"], update_outside_mask="freeze"
    )
    with pytest.raises(MaskedTrainingError, match="trains every task"):
        subset.set_schedule(schedule)


def test_replace_masks_refuses_unknown_tasks_and_bad_masks():
    training = MaskedTraining(start_masks())
    with pytest.raises(MaskedTrainingError, match=r"task\(s\) \['z'\]"):
        training.replace_masks({"z": {"weight": torch.ones(4, 8, dtype=torch.bool)}})
    before = training.masks.mask("a")["weight"].clone()
    with pytest.raises(ValueError):
        training.replace_masks(
            {
                "a": {"weight": torch.zeros(4, 8, dtype=torch.bool)},
                "b": {"weight": torch.ones(3, 8, dtype=torch.bool)},
            }
        )
    assert torch.equal(training.masks.mask("a")["weight"], before)  # all or nothing


def test_a_step_without_a_batch_is_a_named_error():
    lin = linear()
    opt = optimizer("adamw", lin)
    schedule = PathwaysSchedule(start_masks(), HP)
    training = MaskedTraining(schedule.training_mask_set())
    training.set_schedule(schedule)
    training.bind_optimizers(lin, [opt])
    with pytest.raises(MaskedTrainingError, match="without a batch"):
        opt.step()


def test_state_files_round_trip_bit_packed(tmp_path):
    schedule = PathwaysSchedule(start_masks(), HP)
    w = {"weight": linear().weight.detach()}
    for step, task in enumerate(ORDER[:6], 1):
        schedule.after_step(step, task, w)
    path = schedule.save(tmp_path, 3)
    assert path.name == "pathways.3.state"
    state = read_state(path)
    assert state["epoch"] == 3 and state["last_step"] == 6
    assert state["n_adaptations"] == 3 and state["n_prunes"] == 2
    fresh = PathwaysSchedule(start_masks(), HP)
    fresh.load(tmp_path, 3)
    assert fresh.last_step == 6
    for t in TASKS:
        assert torch.equal(
            fresh.pathways.mask(t)["weight"], state["masks"][t]["weight"]
        )
        assert torch.equal(
            fresh.pathways.mask(t)["weight"], schedule.pathways.mask(t)["weight"]
        )
    # 1 bit per weight per task (4 bytes for 32 weights), not a bool tensor.
    raw = torch.load(path, weights_only=True)["packed_masks"]
    assert {t: tuple(b.shape) for t, b in raw.items()} == {t: (4,) for t in TASKS}

    with pytest.raises(CheckpointError, match=r"pathways\.4\.state: missing"):
        fresh.load(tmp_path, 4)
    other = MaskSet.ones(TASKS, {"weight": (8, 4)})
    with pytest.raises(CheckpointError, match="another run"):
        PathwaysSchedule(other, HP).load(tmp_path, 3)
    (tmp_path / "pathways.5.state").write_bytes(b"partial")
    with pytest.raises(CheckpointError, match="damaged or partial"):
        fresh.load(tmp_path, 5)


def test_old_state_files_are_dropped(tmp_path):
    schedule = PathwaysSchedule(start_masks(), HP)
    for epoch in (1, 2, 3, 4):
        schedule.save(tmp_path, epoch)
        drop_old_states(tmp_path, epoch)
    assert list(state_epochs(tmp_path)) == [3, 4]


def test_bad_conf_is_one_named_error():
    assert parse_pathways_conf({"adapt_interval": 5}).adapt_interval == 5
    with pytest.raises(PathwaysConfError, match=r"unknown key\(s\) \['n'\]"):
        parse_pathways_conf({"n": 5})
    with pytest.raises(PathwaysConfError, match="adapt_interval must be an int"):
        parse_pathways_conf({"adapt_interval": -1})
