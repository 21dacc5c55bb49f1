"""uslu_masks: init, one pruning round per task, merge, task-agnostic, skip when done."""

import torch
from conftest import run_module

from espnet_pruning.pruning.storage import load_masks


def test_init_prune_merge(tiny_trained, tmp_path):
    r0 = tmp_path / "round0"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "init",
        "--train_config",
        str(tiny_trained / "config.yaml"),
        "--tasks",
        "er_iemocap",
        "ic_fsc",
        "--output",
        str(r0),
    )
    base = load_masks(r0)
    assert base.tasks == ("er_iemocap", "ic_fsc") or list(base.tasks) == [
        "er_iemocap",
        "ic_fsc",
    ]
    n = base.numel()
    assert base.kept("er_iemocap") == n

    model = str(tiny_trained / "valid.loss.best.pth")
    er = tmp_path / "er"
    proc = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "er_iemocap",
        "--model_file",
        model,
        "--fraction",
        "0.2",
        "--output",
        str(er),
    )
    pruned = load_masks(er)
    assert pruned.kept("er_iemocap") == n - round(0.2 * n)
    assert pruned.kept("ic_fsc") == n  # other tasks untouched
    assert "keeps" in proc.stderr

    # The magnitude order of the checkpoint's weights decides.
    state = torch.load(model, weights_only=True)
    m = pruned.mask("er_iemocap")
    kept = torch.cat([state[k].abs()[m[k]] for k in pruned.names])
    gone = torch.cat([state[k].abs()[~m[k]] for k in pruned.names])
    assert kept.min() >= gone.max()

    merged = tmp_path / "round1"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "merge",
        "--base",
        str(r0),
        "--take",
        f"er_iemocap={er}",
        "--output",
        str(merged),
    )
    assert load_masks(merged) == pruned

    agnostic = tmp_path / "agnostic"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "ic_fsc",
        "--model_file",
        model,
        "--all_tasks",
        "--output",
        str(agnostic),
    )
    ag = load_masks(agnostic)
    assert all(
        torch.equal(ag.mask("er_iemocap")[k], ag.mask("ic_fsc")[k]) for k in ag.names
    )

    again = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "er_iemocap",
        "--model_file",
        model,
        "--output",
        str(er),
    )
    assert "exists, skipped" in again.stderr


def test_bad_inputs(tiny_trained, tmp_path):
    proc = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(tmp_path / "none"),
        "--task",
        "x",
        "--model_file",
        "m.pth",
        "--output",
        str(tmp_path / "o"),
        check=False,
    )
    assert proc.returncode == 1 and "none does not exist" in proc.stderr
    r0 = tmp_path / "r0"
    run_module(
        "espnet_pruning.bin.uslu_masks",
        "init",
        "--train_config",
        str(tiny_trained / "config.yaml"),
        "--tasks",
        "ic_fsc",
        "--output",
        str(r0),
    )
    proc = run_module(
        "espnet_pruning.bin.uslu_masks",
        "prune",
        "--mask_dir",
        str(r0),
        "--task",
        "er_iemocap",
        "--model_file",
        "m.pth",
        "--output",
        str(tmp_path / "o"),
        check=False,
    )
    assert proc.returncode == 1 and "has no mask for task 'er_iemocap'" in proc.stderr
