"""PARP as a mask finder through ESPnet's Trainer on a tiny model: exact counts, the
epoch-start re-prunes, a resumed run equal to an uninterrupted one, and a rerun skipped.
"""

import json
import logging
from dataclasses import asdict

import pytest
import torch
from tiny import driver_train_args, task_run_config

from espnet_pruning.experiments.parp_masks import find_parp_masks
from espnet_pruning.experiments.runs import TrainArgsError, run_training
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.parp import ParpHparams, magnitude_mask
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import num_to_prune
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.tasks.uslu import USLUTask

TASKS = ["asr_librispeech", "er_iemocap"]


@pytest.fixture(scope="module")
def setup(tiny_data, tiny_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("parp")
    config = task_run_config(root / "parp.yaml", 2)
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    # Without the token embedding: its rows of tokens the tiny data never use get no
    # gradient and would hold the global threshold, so no mask could move.
    scope = PruningScope(include_token_embedding=False)
    save_masks(MaskSet.from_model(model, scope, TASKS), root / "round0")
    theta0 = tiny_trained / "valid.loss.best.pth"
    args = driver_train_args(tiny_data, config)
    hp = ParpHparams(target_sparsity=0.36, reprune_interval=1)
    log = logging.FileHandler(root / "parp.log")
    log.setLevel(logging.INFO)
    logger = logging.getLogger()
    level = logger.level
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    try:
        out = find_parp_masks(theta0, root / "round0", root / "parp", args, hp)
    finally:
        logger.removeHandler(log)
        logger.setLevel(level)
        log.close()
    return dict(root=root, theta0=theta0, args=args, hp=hp, out=out)


def test_every_task_gets_a_mask_with_exactly_round_s_n_zeros(setup):
    masks = load_masks(setup["out"])
    n = masks.numel()
    theta0 = torch.load(setup["theta0"], weights_only=True)
    mpi = magnitude_mask(theta0, list(masks.names), 0.36)
    for task in TASKS:
        assert masks.kept(task) == n - num_to_prune(n, 0.36)
        final = torch.load(
            setup["root"] / "parp" / task / "2epoch.pth", weights_only=True
        )
        expected = magnitude_mask(final, list(masks.names), 0.36)
        got = masks.mask(task)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        # Training adjusted the task-agnostic start (PARP's point) ...
        assert any(not torch.equal(got[k], mpi[k]) for k in mpi)
    # ... differently per task: the runs did not share weights.
    a, b = (masks.mask(t) for t in TASKS)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    report = json.loads((setup["root"] / "parp" / "report.json").read_text())
    assert report["tasks"]["er_iemocap"]["n_kept"] == masks.kept("er_iemocap")
    assert json.loads((setup["root"] / "parp" / "parp.json").read_text()) == {
        "target_sparsity": 0.36,
        "reprune_interval": 1,
        "scope": "global",
        "rounding": "round",
        "schedule": "",
        "task_agnostic": False,
    }


def test_the_epoch_starts_prune_theta0_then_the_trained_weights(setup):
    """Epoch 1 trains from m0 ⊙ θ0 (MPI) and epoch 2 from m1 ⊙ θ_1: both visible in
    the training log of the run."""
    log = (setup["root"] / "parp.log").read_text()
    n = load_masks(setup["out"]).numel()
    pruned = f"{num_to_prune(n, 0.36)} of {n} weights pruned (36.00 %)"
    for epoch in (1, 2):  # once per task
        assert log.count(f"PARP before epoch {epoch}: {pruned}") == 2


def test_a_resumed_run_equals_the_uninterrupted_one(setup, tiny_data, tmp_path):
    """One epoch, then the same directory continued to two: the re-prune before epoch
    2 reads only checkpoint 1, so the weights are those of the two-epoch run."""
    scope = load_masks(setup["out"]).scope.to_dict()
    conf = json.dumps({**asdict(setup["hp"]), "pruning_scope": scope})
    args = [
        "--init_param",
        str(setup["theta0"]),
        "--train_tasks",
        "er_iemocap",
        "--parp_conf",
        conf,
    ]
    one = task_run_config(tmp_path / "one.yaml", 1)
    run_training(
        [*driver_train_args(tiny_data, one), *args],
        tmp_path / "run",
        keep_checkpoint=True,
    )
    (tmp_path / "run" / ".done").unlink()
    run_training([*setup["args"], *args], tmp_path / "run")
    got = torch.load(tmp_path / "run" / "2epoch.pth", weights_only=True)
    ref = torch.load(
        setup["root"] / "parp" / "er_iemocap" / "2epoch.pth", weights_only=True
    )
    assert all(torch.equal(got[k], ref[k]) for k in ref)


def test_a_finished_search_is_skipped_and_reserved_options_refused(setup, caplog):
    caplog.set_level("INFO")
    before = (setup["out"] / "manifest.json").stat().st_mtime_ns
    find_parp_masks(
        setup["theta0"],
        setup["root"] / "round0",
        setup["root"] / "parp",
        setup["args"],
        setup["hp"],
    )
    assert (setup["out"] / "manifest.json").stat().st_mtime_ns == before
    assert "PARP done" in caplog.text
    with pytest.raises(TrainArgsError, match="--parp_conf"):
        find_parp_masks(
            setup["theta0"],
            setup["root"] / "round0",
            setup["root"] / "other",
            [*setup["args"], "--parp_conf", "{}"],
            setup["hp"],
        )
