"""The mini recipe through a real one-node Slurm (cmd_backend=slurm, ESPnet's slurm.pl).

A shorter configuration than test_mini_uslu's runs every stage through Slurm: every job an
sbatch job, decoding as job arrays, one job per task of a pruning round and per continual
system at once. A task's job is cancelled with scancel in the middle of the pruning round
and the stage run again; a job with a bad config must fail its stage naming its log.
Meanwhile the local backend (run.pl: a round's tasks in one job) trains the same from the
same data (stages 1-5 copied): tables, masks and weights must be equal. 677 s on an idle
2-core machine (2026-12-02), with the masked training cancel it had then; 1402 s once under
the load of other test suites (load average 8-12).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from test_mini_uslu import ROOT, scratch_recipe

from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.specifiers import TaskRegistry

SLURM_LOCAL = ROOT / "tools" / "installers" / "slurm_local.sh"
TASKS = TaskRegistry.load().names
SHORTER = [
    "--local_data_opts",
    "--n_train 2 --n_valid 1 --n_test 1 --n_cl 2",
    "--train_args",
    "--max_epoch 2 --batch_size 8",
    "--prune_levels",
    "1",
    "--train_threads",
    "1",
    "--prune_baselines",
    "",
    "--cl_runs",
    "asr:asr_librispeech:train_cl_asr:valid_cl_asr",
    "--cl_systems",
    "masked dense",
]
ROUND = Path("exp/find_masks/multi_task/round1")
CL_SYSTEMS = ("masked_q1", "dense")


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory):
    """A running one-node cluster (tools/installers/slurm_local.sh), stopped afterwards."""
    if not (ROOT / "tools" / "espnet").is_dir():
        pytest.skip("make -C tools first")
    cluster = tmp_path_factory.mktemp("slurm")
    try:
        start = subprocess.run(
            ["bash", str(SLURM_LOCAL), "start", str(cluster)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if start.returncode == 2:
            pytest.skip(start.stderr.strip().splitlines()[-1])
        assert start.returncode == 0, start.stdout + start.stderr
        yield cluster / "slurm.conf"
    finally:
        subprocess.run(["bash", str(SLURM_LOCAL), "stop", str(cluster)], timeout=120)


def slurm_env(conf: Path) -> dict:
    return dict(os.environ, cmd_backend="slurm", SLURM_CONF=str(conf))


STARTED = []  # recipe runs of this module, ended if a test fails


def start_recipe(recipe: Path, env: dict, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in env.items() if not k.startswith("VIRTUAL_ENV")}
    proc = subprocess.Popen(
        ["./run.sh", *SHORTER, *args],
        cwd=recipe,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    STARTED.append(proc)
    return proc


@pytest.fixture
def end_runs():
    """SIGTERM to every recipe run still going when the test ends (slurm.pl then
    cancels its jobs); runs that finished are left alone."""
    yield
    for proc in STARTED:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    STARTED.clear()


def job_id(log: Path) -> str:
    """The Slurm job id slurm.pl's job wrote into its log (empty while it has not)."""
    m = (
        re.search(r"^# SLURM_JOB_ID=(\d+)$", log.read_text(), re.M)
        if log.is_file()
        else None
    )
    return m.group(1) if m else ""


def cancel_one(proc, env, candidates, ready, timeout=900) -> Path:
    """scancel the job of the first candidate for which ``ready(run, log)`` holds;
    ``candidates``: (run dir, log) pairs. Returns the cancelled job's log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "stage ended before a job could be cancelled"
        for run, log in candidates:
            jid = job_id(log)
            # scancel fails for a job that has already ended: try the next one.
            if jid and ready(run, log):
                if subprocess.run(["scancel", jid], env=env).returncode == 0:
                    return log
        time.sleep(0.05)
    raise AssertionError("no job to cancel")


def starting(run: Path, log: Path) -> bool:
    """The job runs (slurm.pl's header is in its log) and has not begun training."""
    return not (run / "config.yaml").exists()


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=3600)
    return out


def state_dict(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    x, y = state_dict(a), state_dict(b)
    assert sorted(x) == sorted(y)
    assert all(torch.equal(x[k], y[k]) for k in x), f"{a} != {b}"


def accounting(log: Path) -> tuple:
    """(begin, end) epoch seconds that slurm.pl wrote into a job's log."""
    text = log.read_text()
    begin = int(re.search(r"# Accounting: begin_time=(\d+)", text).group(1))
    end = int(re.search(r"# Accounting: end_time=(\d+)", text).group(1))
    return begin, end


def test_mini_recipe_through_slurm(slurm_conf, end_runs, tmp_path):
    recipe = scratch_recipe(tmp_path / "slurm")
    env = slurm_env(slurm_conf)
    out = finish(start_recipe(recipe, env, "--stop_stage", "5"))
    assert "Successfully finished" in out, out[-4000:]

    # Reference: the local backend from the same data, uninterrupted, beside the Slurm run
    # (which spends much of its time in slurm.pl's polling).
    local = scratch_recipe(tmp_path / "local")
    for d in (
        "data",
        "dump",
        "downloads",
        "exp/uslu_stats",
        "exp/uslu_stats_train_cl_asr",
    ):
        shutil.copytree(recipe / d, local / d, symlinks=True)
    local_env = {k: v for k, v in os.environ.items() if k != "cmd_backend"}
    ref = start_recipe(local, local_env, "--stage", "6", "--stop_stage", "17")

    out = finish(start_recipe(recipe, env, "--stage", "6", "--stop_stage", "9"))
    assert "Successfully finished" in out, out[-4000:]

    # A task's job of Algorithm 1 cancelled while it starts: the stage fails naming its
    # log; run again, the round resumes (finished tasks skipped, the cancelled one run).
    proc = start_recipe(recipe, env, "--stage", "10", "--stop_stage", "10")
    runs = [(recipe / ROUND / t, recipe / ROUND / f"find_masks.{t}.log") for t in TASKS]
    cancelled = cancel_one(proc, env, runs, starting)
    out = finish(proc)
    assert proc.returncode != 0
    assert str(cancelled.relative_to(recipe)) in out, out[-3000:]
    out = finish(start_recipe(recipe, env, "--stage", "10", "--stop_stage", "10"))
    assert "Successfully finished" in out, out[-4000:]
    # One job per task, side by side (the node has CPUs for two 1-thread jobs).
    spans = sorted(accounting(recipe / ROUND / f"find_masks.{t}.log") for t in TASKS)
    assert any(b < e for (_, e), (b, _) in zip(spans, spans[1:])), spans

    # The rest (training resumed after a kill from its last checkpoint: the kill tests of
    # tests/train/test_checkpoint_kills.py; a cancelled job costs slurm.pl over a minute of
    # polling before the stage fails).
    out = finish(start_recipe(recipe, env, "--stage", "11"))
    assert "Successfully finished" in out, out[-4000:]

    # Every job went through sbatch; decoding as job arrays; logs where ESPnet puts them.
    logs = [p for p in recipe.rglob("*.log") if "# Accounting:" in p.read_text()]
    assert len(logs) > 30
    assert all("# SLURM_JOB_ID=" in p.read_text() for p in logs)
    for n in (1, 2):
        log = recipe / "exp" / "uslu_train_uslu" / "decode_logs" / f"decode.{n}.log"
        assert f"# SLURM_ARRAY_TASK_ID={n}" in log.read_text()

    # Tables, masks and weights equal those of the local run.
    out, _ = ref.communicate(timeout=3600)
    assert ref.returncode == 0, out[-4000:]
    for table in ("uslu_train_uslu/results.json", "pruning_table.json"):
        a = json.loads((local / "exp" / table).read_text())
        b = json.loads((recipe / "exp" / table).read_text())
        assert a == b, table
    assert load_masks(recipe / ROUND / "masks") == load_masks(local / ROUND / "masks")
    for model in (
        "uslu_train_uslu/valid.acc.best.pth",
        "uslu_multi_task_q1/valid.acc.best.pth",
        *(f"continual_asr/{s}/{e}epoch.pth" for s in CL_SYSTEMS for e in (1, 2)),
    ):
        assert_same_weights(local / "exp" / model, recipe / "exp" / model)

    # A job that fails (bad config): the stage fails and names the job's log.
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: no_such_encoder\n")
    proc = start_recipe(
        recipe, env, "--stage", "6", "--stop_stage", "6", "--train_config", str(bad)
    )
    out = finish(proc)
    assert proc.returncode != 0
    assert "exp/uslu_bad/train.log" in out, out[-3000:]
    assert "no_such_encoder" in (recipe / "exp" / "uslu_bad" / "train.log").read_text()
