"""Dynamic ASR Pathways as a mask finder through ESPnet's Trainer on a tiny model:
exact counts at the target, a resumed run equal to an uninterrupted one, degenerate
settings equal to Algorithm 2, and bad options refused.
"""

import json

import pytest
import torch
from tiny import driver_train_args, task_run_config

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.mask_methods import pathways_hparams
from espnet_pruning.experiments.pathways_masks import find_pathways_masks
from espnet_pruning.experiments.runs import TrainArgsError, run_training
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.pathways import DynamicPathwaysHparams, shared_start
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import num_to_prune
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.train.pathways_training import (
    PathwaysConfError,
    read_state,
    state_epochs,
)

TASKS = ["asr_librispeech", "er_iemocap"]
HP = DynamicPathwaysHparams(
    target_sparsity=0.36, adapt_interval=3, prune_interval=4, prune_fraction=0.1
)


@pytest.fixture(scope="module")
def setup(tiny_data, tiny_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("pathways")
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    scope = PruningScope(include_token_embedding=False)
    save_masks(MaskSet.from_model(model, scope, TASKS), root / "round0")
    theta0 = tiny_trained / "valid.loss.best.pth"
    args = driver_train_args(tiny_data, task_run_config(root / "run.yaml", 2))
    out = find_pathways_masks(theta0, root / "round0", root / "dp", args, HP, 0.2)
    return dict(root=root, theta0=theta0, args=args, out=out)


def test_masks_are_at_the_target_in_every_tensor_and_differ_by_task(setup):
    masks = load_masks(setup["out"])
    start = load_masks(setup["root"] / "dp" / "start_masks")
    theta0 = torch.load(setup["theta0"], weights_only=True)
    expected_start = shared_start({n: theta0[n] for n in masks.names}, TASKS, 0.2, HP)
    for task in TASKS:
        for name, m in masks.mask(task).items():
            n = m.numel()
            assert int(m.sum()) == n - num_to_prune(n, 0.36), (task, name)
            assert torch.equal(start.mask(task)[name], expected_start[task][name])
            assert int(start.mask(task)[name].sum()) == n - num_to_prune(n, 0.2)
    a, b = (masks.mask(t) for t in TASKS)
    assert any(not torch.equal(a[n], b[n]) for n in masks.names)
    info = json.loads((setup["root"] / "dp" / "pathways.json").read_text())
    run = info["run"]
    assert run["adaptations"] == run["steps"] // 3 > 0
    assert run["prune_steps"] + info["prune_steps_after_run"] == 2  # 20 → 30 → 36 %
    assert info["init_sparsity"] == 0.2 and info["target_sparsity"] == 0.36
    final = read_state(setup["root"] / "dp" / "run" / "pathways.2.state")
    assert final["last_step"] == run["steps"]
    assert info["prune_steps_after_run"] == 0  # the schedule reached the target
    for task in TASKS:
        got = masks.mask(task)
        assert all(torch.equal(final["masks"][task][n], got[n]) for n in got)
    report = json.loads((setup["root"] / "dp" / "report.json").read_text())
    assert report["tasks"]["er_iemocap"]["n_kept"] == masks.kept("er_iemocap")


def _run_args(setup, conf, mask_dir):
    return [
        "--init_param",
        str(setup["theta0"]),
        "--mask_dir",
        str(mask_dir),
        "--train_tasks",
        *TASKS,
        *(["--pathways_conf", json.dumps(conf)] if conf is not None else []),
    ]


def test_a_resumed_run_equals_the_uninterrupted_one(setup, tiny_data, tmp_path):
    """One epoch, then the same directory continued to two: weights, masks and step
    counters equal those of the driver's uninterrupted run bit for bit."""
    from dataclasses import asdict

    start = setup["root"] / "dp" / "start_masks"
    args = _run_args(setup, asdict(HP), start)
    one = task_run_config(tmp_path / "one.yaml", 1)
    run_training(
        [*driver_train_args(tiny_data, one), *args],
        tmp_path / "run",
        keep_checkpoint=True,
    )
    (tmp_path / "run" / ".done").unlink()
    assert list(state_epochs(tmp_path / "run")) == [1]
    run_training([*setup["args"], *args], tmp_path / "run")
    ref_dir = setup["root"] / "dp" / "run"
    got = torch.load(tmp_path / "run" / "2epoch.pth", weights_only=True)
    ref = torch.load(ref_dir / "2epoch.pth", weights_only=True)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    a = read_state(tmp_path / "run" / "pathways.2.state")
    b = read_state(ref_dir / "pathways.2.state")
    assert (a["last_step"], a["n_adaptations"], a["n_prunes"]) == (
        b["last_step"],
        b["n_adaptations"],
        b["n_prunes"],
    )
    for task in TASKS:
        assert all(
            torch.equal(a["masks"][task][n], m) for n, m in b["masks"][task].items()
        )


def test_without_events_and_residual_it_is_algorithm_2(setup, tiny_data, tmp_path):
    """Fixed masks (no adaptation, no pruning, no residual) train exactly as
    ``--mask_dir`` alone does (docs/methods.md §3)."""
    masks = load_masks(setup["root"] / "round0")
    theta0 = torch.load(setup["theta0"], weights_only=True)
    g = torch.Generator().manual_seed(0)
    for task in TASKS:
        masks.set_mask(
            task,
            {n: torch.rand(theta0[n].shape, generator=g) < 0.7 for n in masks.names},
        )
    save_masks(masks, tmp_path / "masks")
    one = task_run_config(tmp_path / "one.yaml", 1)
    fixed = dict(adapt_interval=0, prune_interval=0, residual=False)
    for name, conf in (("plain", None), ("pathways", fixed)):
        args = _run_args(setup, conf, tmp_path / "masks")
        run_training([*driver_train_args(tiny_data, one), *args], tmp_path / name)
    got = torch.load(tmp_path / "pathways" / "1epoch.pth", weights_only=True)
    ref = torch.load(tmp_path / "plain" / "1epoch.pth", weights_only=True)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    theta0_moved = [k for k in ref if not torch.equal(ref[k], theta0[k])]
    assert theta0_moved  # it trained


def test_a_finished_search_is_skipped_and_bad_options_refused(
    setup, tiny_data, tmp_path, caplog
):
    caplog.set_level("INFO")
    before = (setup["out"] / "manifest.json").stat().st_mtime_ns
    again = find_pathways_masks(
        setup["theta0"], setup["root"] / "round0", setup["root"] / "dp", [], HP, 0.2
    )
    assert again == setup["out"]
    assert (setup["out"] / "manifest.json").stat().st_mtime_ns == before
    assert "Dynamic Pathways done" in caplog.text
    call = (setup["theta0"], setup["root"] / "round0", tmp_path / "other")
    for option in ("--pathways_conf", "--mask_dir", "--s3_router_conf"):
        with pytest.raises(TrainArgsError, match=option):
            find_pathways_masks(*call, [*setup["args"], option, "x"], HP, 0.2)
    with pytest.raises(InputError, match="without --tasks"):
        find_pathways_masks(*call, setup["args"], HP, 0.2, only_tasks=["er_iemocap"])
    with pytest.raises(InputError, match="no task-agnostic"):
        find_pathways_masks(*call, setup["args"], HP, 0.2, task_agnostic=True)
    with pytest.raises(InputError, match=r"init_sparsity 0.5 must be in \[0, "):
        find_pathways_masks(*call, setup["args"], HP, 0.5)
    # A bad --pathways_conf, or one without --mask_dir: one named error, no training.
    start = setup["root"] / "dp" / "start_masks"
    bad = _run_args(setup, {"adapt_intervall": 3}, start)
    with pytest.raises(PathwaysConfError, match=r"\['adapt_intervall'\]"):
        run_training([*setup["args"], *bad], tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoint.pth").exists()
    with pytest.raises(PathwaysConfError, match="needs --mask_dir"):
        run_training(
            [*setup["args"], "--pathways_conf", '{"adapt_interval": 3}'],
            tmp_path / "bad2",
        )


def test_pathways_options_come_from_the_level_and_the_method_config():
    hp, s0 = pathways_hparams(0.2, 5, {"adapt_interval": 7, "granularity": "block"})
    assert (hp.target_sparsity, hp.adapt_interval, hp.granularity, s0) == (
        0.67232,
        7,
        "block",
        0.2,
    )
    assert pathways_hparams(0.2, 1, {})[1] == 0.2
    assert pathways_hparams(0.2, 2, {"init_sparsity": 0.0})[1] == 0.0
    with pytest.raises(InputError, match=r"\['target_sparsity'\] not allowed"):
        pathways_hparams(0.2, 2, {"target_sparsity": 0.5})
    with pytest.raises(InputError, match="init_sparsity 'x': a number"):
        pathways_hparams(0.2, 2, {"init_sparsity": "x"})
