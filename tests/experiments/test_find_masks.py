"""Algorithm 1 through ESPnet's Trainer on a tiny model: rewind, nesting, exact counts,
task-agnostic masks, single-task runs, and a killed round resumed bit-identically."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from tiny import driver_train_args, task_run_config

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import (
    FindMasksHparams,
    find_masks_round,
    task_order,
)
from espnet_pruning.experiments.runs import (
    TrainArgsError,
    final_checkpoint,
    final_epoch,
    run_training,
)
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import num_to_prune
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.tasks.uslu import USLUTask

TASKS = ["asr_librispeech", "er_iemocap"]


@pytest.fixture(scope="module")
def setup(tiny_data, tiny_trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("find_masks")
    config = task_run_config(root / "alg1.yaml", 2)
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    save_masks(MaskSet.from_model(model, PruningScope(), TASKS), root / "round0")
    theta0 = tiny_trained / "valid.loss.best.pth"
    args = driver_train_args(tiny_data, config)
    hp = FindMasksHparams(fraction=0.2, seed=3)
    r1 = find_masks_round(theta0, root / "round0", root / "round1", args, hp, 1)
    r2 = find_masks_round(theta0, r1, root / "round2", args, hp, 2)
    return dict(root=root, theta0=theta0, args=args, hp=hp, r1=r1, r2=r2)


def test_masks_nest_and_keep_exact_counts(setup):  # P5
    m0 = load_masks(setup["root"] / "round0")
    m1, m2 = load_masks(setup["r1"]), load_masks(setup["r2"])
    n = m0.numel()
    k1 = n - num_to_prune(n, 0.2, "round")
    k2 = k1 - num_to_prune(k1, 0.2, "round")
    for task in TASKS:
        assert (m1.kept(task), m2.kept(task)) == (k1, k2)
        assert abs(m2.density(task) - 0.8**2) <= 1 / n  # (1 - p)^Q within rounding
        for name in m0.names:
            assert not (m2.mask(task)[name] & ~m1.mask(task)[name]).any()  # nested
    report = json.loads((setup["root"] / "round2" / "report.json").read_text())
    assert report["tasks"]["er_iemocap"]["n_kept"] == k2
    assert (setup["root"] / "round2" / "report.txt").is_file()
    log = json.loads((setup["root"] / "round2" / "find_masks.json").read_text())
    assert log["order"] == task_order(TASKS, 3, 2)


def test_each_task_rewinds_to_theta0(setup, tmp_path):  # P7
    """The task trained last in round 2 equals that task trained alone from θ0 with a
    fresh optimizer: nothing of the task trained before it carries over."""
    last = task_order(TASKS, 3, 2)[-1]
    alone = run_training(
        [
            *setup["args"],
            "--init_param",
            str(setup["theta0"]),
            "--mask_dir",
            str(setup["r1"]),
            "--train_tasks",
            last,
        ],
        tmp_path / "alone",
    )
    got = torch.load(setup["root"] / "round2" / last / "latest.pth", weights_only=True)
    ref = torch.load(alone / "latest.pth", weights_only=True)
    theta0 = torch.load(setup["theta0"], weights_only=True)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert any(not torch.equal(got[k], theta0[k]) for k in ref)  # it did train


def test_a_finished_run_keeps_its_weights_not_its_optimizer_state(setup, tmp_path):
    for task in TASKS:
        run = setup["root"] / "round1" / task
        assert json.loads((run / ".done").read_text()) == {"epoch": 2}
        assert not (run / "checkpoint.pth").exists()
        assert final_checkpoint(run) == run / "2epoch.pth"
    (tmp_path / ".done").write_text("{}\n")
    with pytest.raises(InputError, match=r"\.done: records no epoch"):
        final_epoch(tmp_path)
    (tmp_path / ".done").write_text("")  # an older version's: checkpoint.pth tells
    with pytest.raises(InputError, match="checkpoint.pth: missing"):
        final_epoch(tmp_path)


def test_rerun_skips_a_finished_round(setup, caplog):
    caplog.set_level("INFO")
    before = (setup["r2"] / "manifest.json").stat().st_mtime_ns
    find_masks_round(
        setup["theta0"],
        setup["r1"],
        setup["root"] / "round2",
        setup["args"],
        setup["hp"],
        2,
    )
    assert (setup["r2"] / "manifest.json").stat().st_mtime_ns == before
    assert "round 2 done" in caplog.text


def test_round_split_per_task_equals_the_sequential_round(setup, tmp_path):
    """One job per task (``--tasks``), then a job that only merges: the masks and each
    task's weights of the one-job round, and a merge job that trains nothing."""
    from espnet_pruning.bin.uslu_find_masks import main

    out = tmp_path / "round2"
    cmd = [
        "--round",
        "2",
        "--init_param",
        str(setup["theta0"]),
        "--mask_dir",
        str(setup["r1"]),
        "--output_dir",
        str(out),
        "--seed",
        "3",
        "--fraction",
        "0.2",
    ]
    for task in reversed(TASKS):  # any order: the tasks are independent
        main([*cmd, "--tasks", task, "--", *setup["args"]])
        assert (out / task / "masks" / "manifest.json").is_file()
    assert not (out / "masks").exists()  # not merged by a per-task job
    stamps = {t: (out / t / "latest.pth").stat().st_mtime_ns for t in TASKS}
    main([*cmd, "--", *setup["args"]])
    assert load_masks(out / "masks") == load_masks(setup["r2"])
    assert {t: (out / t / "latest.pth").stat().st_mtime_ns for t in TASKS} == stamps
    for task in TASKS:
        a = torch.load(out / task / "latest.pth", weights_only=True)
        b = torch.load(
            setup["root"] / "round2" / task / "latest.pth", weights_only=True
        )
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_round_split_refuses_unknown_tasks(setup, tmp_path):
    from espnet_pruning.errors import InputError

    with pytest.raises(InputError, match="no separate run of task"):
        find_masks_round(
            setup["theta0"],
            setup["root"] / "round0",
            tmp_path / "r",
            setup["args"],
            setup["hp"],
            1,
            only_tasks=["ic_slurp"],
        )


def test_task_agnostic_gives_one_mask(setup):
    hp = FindMasksHparams(fraction=0.2, seed=3, task_agnostic=True)
    out = find_masks_round(
        setup["theta0"],
        setup["root"] / "round0",
        setup["root"] / "agnostic1",
        setup["args"],
        hp,
        1,
    )
    masks = load_masks(out)
    a, b = (masks.mask(t) for t in TASKS)
    assert all(torch.equal(a[n], b[n]) for n in masks.names)
    assert (setup["root"] / "agnostic1" / "task_agnostic" / "latest.pth").is_file()
    assert not (setup["root"] / "agnostic1" / "er_iemocap").exists()


def test_reserved_training_options_are_refused(setup, tmp_path):
    with pytest.raises(TrainArgsError, match="--mask_dir"):
        find_masks_round(
            setup["theta0"],
            setup["root"] / "round0",
            tmp_path / "r",
            [*setup["args"], "--mask_dir", "x"],
            setup["hp"],
            1,
        )


def test_single_task_runs_do_not_share_weights(setup, tiny_data, tmp_path):
    from espnet_pruning.bin.uslu_train_tasks import main

    shared = [
        *setup["args"],
        "--init_param",
        str(setup["theta0"]),
        "--mask_dir",
        str(setup["r1"]),
    ]
    main(["--tasks", *TASKS, "--output_dir", str(tmp_path / "st"), "--", *shared])
    main(["--tasks", "er_iemocap", "--output_dir", str(tmp_path / "er"), "--", *shared])
    asr, er = (
        torch.load(tmp_path / "st" / t / "latest.pth", weights_only=True) for t in TASKS
    )
    er_alone = torch.load(
        tmp_path / "er" / "er_iemocap" / "latest.pth", weights_only=True
    )
    assert all(torch.equal(er[k], er_alone[k]) for k in er)  # own θ_t, no carry-over
    assert any(not torch.equal(er[k], asr[k]) for k in er)


def test_killed_round_resumes_bit_identically(setup, tmp_path):
    """Kill a real round while its first task trains; the rerun ends with the masks and
    weights of the uninterrupted run."""
    out = tmp_path / "round1"
    cmd = [
        sys.executable,
        "-m",
        "espnet_pruning.bin.uslu_find_masks",
        "--round",
        "1",
        "--init_param",
        str(setup["theta0"]),
        "--mask_dir",
        str(setup["root"] / "round0"),
        "--output_dir",
        str(out),
        "--seed",
        "3",
        "--",
        *setup["args"],
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = task_order(TASKS, 3, 1)[0]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not (out / first / "1epoch.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended early"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "masks").exists() and not (out / first / "2epoch.pth").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got, ref = load_masks(out / "masks"), load_masks(setup["r1"])
    assert got == ref
    for task in TASKS:
        a = torch.load(out / task / "latest.pth", weights_only=True)
        b = torch.load(
            setup["root"] / "round1" / task / "latest.pth", weights_only=True
        )
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_round_killed_after_a_checkpoint_write_prunes_the_final_weights(
    setup, tmp_path
):
    """The issue's case: a kill right after ESPnet wrote the last epoch's
    checkpoint.pth (its epoch file and latest.pth not yet); the rerun prunes the
    weights of the finished training, not of the epoch before."""
    from kill_testlib import run_forked

    out = tmp_path / "round1"

    def round1():
        find_masks_round(
            setup["theta0"],
            setup["root"] / "round0",
            out,
            setup["args"],
            setup["hp"],
            1,
        )

    assert run_forked(round1, kill=["save", "checkpoint.pth", 2, "after"]) == "killed"
    first = task_order(TASKS, 3, 1)[0]
    assert (out / first / "checkpoint.pth").is_file() and not (out / "masks").exists()
    assert run_forked(round1) == "finished"
    assert load_masks(out / "masks") == load_masks(setup["r1"])
