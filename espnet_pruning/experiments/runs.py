"""Several ESPnet training runs in one process, each resumable and skipped once done.

Algorithm 1 trains every task of a pruning round from θ0, and the single-task baseline
trains one model per task. Each of those is an ordinary ``uslu_train`` run (ESPnet's
``AbsTask.main``: Trainer, checkpoints, ``--resume``, DDP over ``--ngpu`` GPUs of one
node); running them in one process saves the interpreter start and imports per run, which
dominate on small models. A finished run leaves ``<output_dir>/.done``; a killed one is
resumed by ESPnet from its last epoch checkpoint (epochs are re-seeded, so the result is
the one of an uninterrupted run).
"""

import logging
from pathlib import Path
from typing import List, Sequence

from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.train.checkpoints import check_torch_file, finished_epoch

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
def run_training(train_args: Sequence[str], output_dir: Path) -> Path:
    """Run ``uslu_train`` with ``train_args`` into ``output_dir`` unless done already.

    Args:
        train_args: ``uslu_train`` options (without ``--output_dir`` and ``--resume``).
        output_dir: The run's experiment directory.

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
    (output_dir / DONE).touch()
    return output_dir


@typechecked
def final_checkpoint(output_dir: Path) -> Path:
    """The weights after the last epoch of a finished run: ``{N}epoch.pth``.

    ``N`` is the epoch recorded in the run's ``checkpoint.pth``, not the target of the
    ``latest.pth`` link, so a link left behind by an older interrupted run cannot
    select other weights than the training produced.

    Raises:
        InputError: If the run has no complete final checkpoint.
    """
    epoch = finished_epoch(output_dir)
    path = output_dir / f"{epoch}epoch.pth"
    if not path.is_file():
        raise InputError(
            f"{path}: missing, but {output_dir / 'checkpoint.pth'} records epoch "
            f"{epoch}; delete {output_dir} to train the run again"
        )
    check_torch_file(path)
    return path
