"""Shared fixtures: tiny generated data and a tiny trained model (built once per session)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402

# Torch work in tests runs on one thread: CI has two cores and parallel runs slow everything.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_module(module: str, *args: str, check: bool = True, timeout: int = 600):
    """Run ``python -m module args`` in a subprocess; returns the CompletedProcess."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{module} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


def run_torchrun(module: str, *args: str, nproc: int = 2):
    """``torchrun --nproc_per_node nproc -m module args`` on a free local port (gloo)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(port),
            "-m",
            module,
            *args,
            "--multiprocessing_distributed",
            "false",
            "--dist_backend",
            "gloo",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """train/valid dirs of three tasks plus the token list."""
    root = tmp_path_factory.mktemp("tiny_data")
    tiny.make_data_dir(root, "train", n_per_class=4, seed=0)
    tiny.make_data_dir(root, "valid", n_per_class=1, seed=1)
    run_module(
        "espnet_pruning.bin.uslu_token_list",
        "--data_dir",
        str(root / "train"),
        "--output",
        str(root / "tokens.txt"),
    )
    return root


@pytest.fixture(scope="session")
def tiny_trained(tiny_data, tmp_path_factory) -> Path:
    """A tiny model trained through ESPnet's Trainer (experiment directory)."""
    out = tmp_path_factory.mktemp("tiny_exp") / "exp"
    config = tiny.write_train_config(out.parent / "train.yaml", max_epoch=12)
    proc = run_module(
        "espnet_pruning.bin.uslu_train",
        *tiny.train_args(tiny_data, out, config, tiny_data / "tokens.txt"),
    )
    (out / "train.log").write_text(proc.stderr)
    return out


@pytest.fixture(scope="session")
def tiny_er_masks(tiny_trained, tmp_path_factory) -> Path:
    """A mask set over the tiny model in which ER's subnetwork keeps 64 % of the
    prunable weights (the other tasks' masks are dense)."""
    from espnet_pruning.pruning.masks import MaskSet
    from espnet_pruning.pruning.scope import PruningScope
    from espnet_pruning.pruning.select import prune_global_magnitude
    from espnet_pruning.pruning.storage import save_masks
    from espnet_pruning.specifiers import TaskRegistry
    from espnet_pruning.tasks.uslu import USLUTask

    model, _ = USLUTask.build_model_from_file(
        tiny_trained / "config.yaml", tiny_trained / "valid.loss.best.pth"
    )
    ms = MaskSet.from_model(model, PruningScope(), TaskRegistry.load().names)
    params = dict(model.named_parameters())
    w = {n: params[n].detach() for n in ms.names}
    ms.set_mask("er_iemocap", prune_global_magnitude(w, ms.mask("er_iemocap"), 0.36))
    return save_masks(ms, tmp_path_factory.mktemp("er_masks") / "masks")
