"""Several ESPnet training runs in one process, each resumable and skipped once done.

Algorithm 1 trains every task of a pruning round from θ0, and the single-task baseline
trains one model per task. Each of those is an ordinary ``uslu_train`` run (ESPnet's
``AbsTask.main``: Trainer, checkpoints, ``--resume``, DDP over ``--ngpu`` GPUs of one
node); running them in one process saves the interpreter start and imports per run, which
dominate on small models. A finished run leaves ``<output_dir>/.done``; a killed one is
resumed by ESPnet from its last epoch checkpoint (epochs are re-seeded, so the result is
the one of an uninterrupted run).

A finished run's ``checkpoint.pth`` holds, besides the weights already in its epoch
file, the optimizer state (twice the weights with Adam): only a resume needs it. The
driver's runs are many (one per task and round: seventy for Algorithm 1 with ten rounds
on UniverSLU-7), so once ``.done`` records the final epoch the file is deleted unless
the caller keeps it to extend the run later.
"""

import json
import logging
from pathlib import Path
from typing import List, Sequence

from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.train.checkpoints import (
    CHECKPOINT,
    check_torch_file,
    finished_epoch,
)

DONE = ".done"


class TrainArgsError(InputError):
    """Training arguments that the driver sets itself were given."""


@typechecked
def check_train_args(train_args: Sequence[str], reserved: Sequence[str]) -> None:
    """Refuse options the driver decides (e.g. ``--output_dir`` of each run).

    Raises:
        TrainArgsError: Naming the first reserved option found.
    """
    for arg in train_args:
        name = arg.split("=", 1)[0]
        if name in reserved:
            raise TrainArgsError(f"training option {name} is set by this command")


@typechecked
def run_training(
    train_args: Sequence[str], output_dir: Path, keep_checkpoint: bool = False
) -> Path:
    """Run ``uslu_train`` with ``train_args`` into ``output_dir`` unless done already.

    Args:
        train_args: ``uslu_train`` options (without ``--output_dir`` and ``--resume``).
        output_dir: The run's experiment directory.
        keep_checkpoint: Keep the finished run's ``checkpoint.pth`` (to continue it
            to more epochs after deleting ``.done``).

    Returns:
        ``output_dir``.
    """
    if (output_dir / DONE).is_file():
        logging.info(f"{output_dir}: done, skipped")
        return output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    cmd: List[str] = [*train_args, "--output_dir", str(output_dir), "--resume", "true"]
    logging.info(f"{output_dir}: training")
    USLUTask.main(cmd=cmd)
    epoch = finished_epoch(output_dir)
    atomic_write_text(output_dir / DONE, json.dumps({"epoch": epoch}) + "\n")
    if not keep_checkpoint:
        (output_dir / CHECKPOINT).unlink()
    return output_dir


@typechecked
def final_epoch(output_dir: Path) -> int:
    """The last epoch of a finished run: recorded in its ``.done``, or (a run of an
    older version, whose ``.done`` is empty) in its ``checkpoint.pth``.

    Raises:
        InputError: If neither records it.
    """
    done = output_dir / DONE
    text = done.read_text() if done.is_file() else ""
    if not text.strip():
        return finished_epoch(output_dir)
    try:
        epoch = json.loads(text)["epoch"]
    except (ValueError, KeyError, TypeError):
        epoch = None
    if not isinstance(epoch, int):
        raise InputError(f"{done}: records no epoch; delete it to train the run again")
    return epoch


@typechecked
def final_checkpoint(output_dir: Path) -> Path:
    """The weights after the last epoch of a finished run: ``{N}epoch.pth``.

    ``N`` is the :func:`final_epoch` the training recorded, not the target of the
    ``latest.pth`` link, so a link left behind by an older interrupted run cannot
    select other weights than the training produced.

    Raises:
        InputError: If the run has no complete final checkpoint.
    """
    epoch = final_epoch(output_dir)
    path = output_dir / f"{epoch}epoch.pth"
    if not path.is_file():
        raise InputError(
            f"{path}: missing, but the run records epoch {epoch}; delete "
            f"{output_dir} to train the run again"
        )
    check_torch_file(path)
    return path
