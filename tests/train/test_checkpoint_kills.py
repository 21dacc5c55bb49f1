"""Kill training at every checkpoint-write boundary and at random instants; the rerun
ends with the weights of an uninterrupted run, bit for bit.

Each run is a real process forked from the test (ESPnet and torch already imported, so
a run costs its training, not its imports) and killed with SIGKILL. In the child, the
test wraps ``torch.save`` (ESPnet's writes into the stage) and ``os.replace`` /
``os.link`` / ``os.symlink`` (the commit) to record every write of a ``.pth`` file and
to kill the process before it, inside it (the file half written) or after it.
"""

import json
import os
import random
from pathlib import Path

import pytest
import torch
from kill_testlib import run_forked
from tiny import make_data_dir, train_args, write_train_config

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import save_masks
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.train.checkpoints import STAGE

#: Seed of the random kill instants and of the boundary subset (printed).
SEED = int(os.environ.get("KILL_SEED", "15"))
N_RANDOM = 2
#: Boundaries run per test run (``KILL_POINTS=all``: every one, about 3x longer).
N_POINTS = os.environ.get("KILL_POINTS", "10")


def train(args, out):
    """``uslu_train --resume true`` of ``args`` into ``out``."""
    USLUTask.main(cmd=[*args, "--output_dir", str(out), "--resume", "true"])


def weights(out):
    """Everything the run leaves that must be bit-identical (tensors and links)."""
    got = {}
    for p in sorted(out.glob("*.pth")):
        if p.is_symlink():
            got[p.name] = os.readlink(p)
            continue
        state = torch.load(p, weights_only=True)
        if p.name == "checkpoint.pth":  # reporter holds wall-clock times
            state = {k: state[k] for k in ("model", "optimizers", "schedulers")}
        got[p.name] = state
    return got


def assert_same(a, b, where):
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    make_data_dir(root, "train", n_per_class=1, seed=0)  # 2 batches per epoch
    (root / "valid").symlink_to(tiny_data / "valid")
    config = write_train_config(root / "train.yaml", max_epoch=2, keep_nbest_models=2)
    args = train_args(root, Path("unused"), config, tiny_data / "tokens.txt")
    i = args.index("--output_dir")
    args = args[:i] + args[i + 2 :]
    out = root / "reference"
    events = root / "events.json"
    assert run_forked(lambda: train(args, out), events_file=events) == "finished"
    return dict(
        root=root,
        args=args,
        out=out,
        weights=weights(out),
        events=json.loads(events.read_text()),
    )


def kind(op, name):
    """The class of a write: the same code path writes every file of a class."""
    temp = name.endswith(".tmp-commit")
    if temp:
        name = name[1 : -len(".tmp-commit")]
    if name in ("latest.pth", "valid.loss.best.pth", "valid.loss.ave.pth"):
        return op, "link", temp
    for k in ("checkpoint", "epoch", "ave_"):
        if k in name:
            return op, k
    raise AssertionError(f"unexpected write {op} {name}")


def kill_points(events):
    """Before, inside (saves) and after the first write of every class, and of the
    last epoch's ``checkpoint.pth`` (the issue's case: written, links not yet)."""
    points, seen = [], set()
    for op, name, n in events:
        if kind(op, name) in seen and not (name == "checkpoint.pth" and n == 2):
            continue
        seen.add(kind(op, name))
        phases = ("before", "inside", "after") if op == "save" else ("before", "after")
        points += [(op, name, n, phase) for phase in phases]
    return points


def test_reference_writes_through_the_stage(reference):
    out, events = reference["out"], reference["events"]
    saves = [(name, n) for op, name, n in events if op == "save"]
    # ESPnet's saves of 2 epochs, then the average of the 2 best (all into the stage).
    assert saves == [
        ("checkpoint.pth", 1),
        ("1epoch.pth", 1),
        ("checkpoint.pth", 2),
        ("2epoch.pth", 1),
        ("valid.loss.ave_2best.pth", 1),
    ]
    assert not (out / STAGE).exists()
    assert not list(out.glob(".*"))
    assert os.readlink(out / "latest.pth") == "2epoch.pth"
    assert len(kill_points(events)) == 28


def test_killed_at_every_checkpoint_boundary_resumes_bit_identically(reference):
    """Boundaries of every kind of write: kill, rerun, compare. The issue's case (the
    last epoch's checkpoint.pth written, its epoch file and links not) always runs;
    a seeded sample of the rest."""
    points = kill_points(reference["events"])
    if N_POINTS != "all":
        must = [p for p in points if p[:3] == ("save", "checkpoint.pth", 2)]
        rest = [p for p in points if p not in must]
        sample = random.Random(SEED).sample(rest, int(N_POINTS) - len(must))
        points = [p for p in points if p in must or p in sample]
    print(f"KILL_SEED={SEED}: {len(points)} kill points: {points}")
    for i, point in enumerate(points):
        out = reference["root"] / f"boundary{i}"
        how = run_forked(lambda: train(reference["args"], out), kill=list(point))
        assert how == "killed", point
        assert run_forked(lambda: train(reference["args"], out)) == "finished", point
        assert_same(weights(out), reference["weights"], f"{point}")
        assert not list(out.glob(".*")), point  # no stage, no temp file left


def test_killed_at_random_instants_resumes_bit_identically(reference):
    rng = random.Random(SEED)
    instants = [round(rng.uniform(0.5, 6.0), 3) for _ in range(N_RANDOM)]
    print(f"KILL_SEED={SEED}: kills after {instants} s")
    for i, delay in enumerate(instants):
        out = reference["root"] / f"random{i}"
        run_forked(lambda: train(reference["args"], out), kill_after_s=delay)
        assert run_forked(lambda: train(reference["args"], out)) == "finished", delay
        assert_same(weights(out), reference["weights"], f"kill after {delay} s")


@pytest.mark.parametrize("damaged", ["checkpoint.pth", "1epoch.pth"])
def test_file_damaged_outside_our_writes_is_one_error_line(reference, damaged, capsys):
    """A committed file truncated by something else (a copy, a full disk): the rerun
    (``uslu_train``'s entry point) stops with one ERROR line naming the file and what
    to do, and changes nothing."""
    import shutil

    from espnet_pruning.bin import uslu_train

    out = reference["root"] / f"damaged-{damaged}"
    shutil.copytree(reference["out"], out, symlinks=True)
    with open(out / damaged, "r+b") as f:
        f.truncate(1000)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        uslu_train.main(
            [*reference["args"], "--output_dir", str(out), "--resume", "true"]
        )
    err = capsys.readouterr().err
    assert e.value.code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {out / damaged}: dama")
    assert errors[0].endswith("to train again from the first epoch")
    assert not (out / STAGE).exists() and (out / damaged).stat().st_size == 1000


@pytest.fixture(scope="module")
def continual_reference(tiny_data, tiny_trained, tmp_path_factory):
    """Masked continual learning (stage 17's masked system): one task's new data, the
    weights outside its mask frozen, and the n-best average whose frozen entries the
    trainer writes back exactly."""
    root = tmp_path_factory.mktemp("continual_kills")
    model, _ = USLUTask.build_model_from_file(tiny_trained / "config.yaml", None)
    masks = MaskSet.from_model(model, PruningScope(), ["er_iemocap"])
    g = torch.Generator().manual_seed(0)
    masks.set_mask(
        "er_iemocap",
        {n: torch.rand(s, generator=g) < 0.5 for n, s in masks.shapes.items()},
    )
    save_masks(masks, root / "masks")
    config = write_train_config(
        root / "continual.yaml",
        max_epoch=2,
        iterator_type="task",
        task_block_size=2,
        train_tasks=["er_iemocap"],
        optim="adamw",
        optim_conf=dict(lr=0.003, weight_decay=0.1),
        update_outside_mask="freeze",
        unmasked_update="freeze",
        keep_nbest_models=2,
    )
    args = train_args(tiny_data, Path("unused"), config, tiny_data / "tokens.txt")
    i = args.index("--output_dir")
    args = args[:i] + args[i + 2 :]
    args += ["--init_param", str(tiny_trained / "valid.loss.best.pth")]
    args += ["--mask_dir", str(root / "masks")]
    out, events = root / "reference", root / "events.json"
    assert run_forked(lambda: train(args, out), events_file=events) == "finished"
    return dict(
        root=root,
        args=args,
        weights=weights(out),
        events=json.loads(events.read_text()),
    )


def test_continual_learning_killed_at_its_last_writes_resumes_bit_identically(
    continual_reference,
):
    """The writes only continual learning makes: the averaged model (frozen entries
    written back) and the last epoch's checkpoint, killed before, inside and after."""
    ref = continual_reference
    points = [
        p
        for p in kill_points(ref["events"])
        if "ave_" in p[1] or (p[1] == "checkpoint.pth" and p[2] == 2)
    ]
    assert any("ave_" in p[1] for p in points) and len(points) >= 4, points
    for i, point in enumerate(points):
        out = ref["root"] / f"kill{i}"
        assert run_forked(lambda: train(ref["args"], out), kill=list(point)) == "killed"
        assert run_forked(lambda: train(ref["args"], out)) == "finished", point
        assert_same(weights(out), ref["weights"], f"{point}")
