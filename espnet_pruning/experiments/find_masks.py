"""Algorithm 1 of the paper, one pruning round: train each task from θ0, prune its mask.

For every task t (in a seeded random order, as the paper's line 3 picks them):

1. train f(X, s_t; m_t ⊙ θ) on D_t with ESPnet's Trainer, starting from θ0
   (``--init_param``) with a fresh optimizer, scheduler and AMP scaler: this *is* the
   rewind of line 8, since nothing but θ0 and the masks carries over between runs;
2. prune a fraction p of m_t's remaining weights by global magnitude of the trained
   weights (:func:`espnet_pruning.pruning.select.prune`).

Because every task restarts from θ0, the tasks of a round are independent and their
order changes nothing but the log. Task-agnostic pruning (the Table 1 baseline) trains
once on the mixed data of all tasks under their one shared mask and gives every task
the pruned mask.

Layout of a round's directory (``output_dir``)::

    <task>/            the ESPnet run of that task (config.yaml, checkpoints, logs)
    task_agnostic/     instead, the one run of task-agnostic pruning (all tasks' data)
    <task>/masks/      the mask set with that task's mask pruned
    masks/             the round's result: every task's pruned mask
    report.json/.txt   sparsity, Param% One/All, overlap (pruning.report)

Every step is skipped when its output exists and resumes when it was interrupted, so a
killed round run again ends with the same masks.
"""

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.runs import (
    check_train_args,
    final_checkpoint,
    run_training,
)
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.report import format_report, full_report
from espnet_pruning.pruning.select import PruningHparams, prune
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.pruning.systems import SystemKind

# Options each run of a round gets from the driver.
RESERVED = ("--output_dir", "--resume", "--init_param", "--mask_dir", "--train_tasks")
# The one run of a task-agnostic round (its directory name).
AGNOSTIC = SystemKind.TASK_AGNOSTIC.value


@dataclass
class FindMasksHparams(PruningHparams):
    """Hyperparameters of Algorithm 1 that are not training options.

    The pruning step's (:class:`PruningHparams`: p, strategy, rounding, seed — the
    seed also orders the tasks) and:

    Args:
        task_agnostic: One mask for all tasks, found on their mixed data.
    """

    task_agnostic: bool = field(
        default=False,
        metadata={"help": "one mask for all tasks, found on their mixed data"},
    )

    def pruning(self) -> PruningHparams:
        """The selection hyperparameters of one pruning step."""
        return PruningHparams(
            **{f.name: getattr(self, f.name) for f in fields(PruningHparams)}
        )


@typechecked
def task_order(tasks: Sequence[str], seed: int, round_index: int) -> List[str]:
    """The seeded random order in which a round visits the tasks."""
    rng = np.random.RandomState([seed, round_index])
    return [tasks[i] for i in rng.permutation(len(tasks))]


@typechecked
def prune_tasks(
    masks: MaskSet,
    tasks: Sequence[str],
    checkpoint: Path,
    hparams: PruningHparams,
) -> MaskSet:
    """Prune ``tasks[0]``'s mask by the weights of ``checkpoint``; give it to ``tasks``.

    Args:
        masks: The mask set before this step (modified in place and returned).
        tasks: Tasks receiving the new mask (one task, or all for task-agnostic).
        checkpoint: ESPnet model file (a state dict) trained under the mask.
        hparams: Selection hyperparameters.

    Raises:
        InputError: A task without a mask, or a checkpoint that does not fit.
    """
    missing = [t for t in tasks if t not in masks.tasks]
    if missing:
        raise InputError(f"the mask set has no task(s) {missing}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    masks.check_compatible({k: tuple(v.shape) for k, v in state.items()})
    new = prune({n: state[n] for n in masks.names}, masks.mask(tasks[0]), hparams)
    for task in tasks:
        masks.set_mask(task, new)
    return masks


@typechecked
def write_mask_report(masks: MaskSet, directory: Path) -> None:
    """``report.json`` and ``report.txt`` of a mask set (written atomically)."""
    report = full_report(masks)
    atomic_write_text(directory / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(directory / "report.txt", format_report(report))


@typechecked
def find_masks_round(
    init_param: Path,
    mask_dir: Path,
    output_dir: Path,
    train_args: Sequence[str],
    hparams: FindMasksHparams,
    round_index: int,
    only_tasks: Optional[Sequence[str]] = None,
) -> Optional[Path]:
    """Run one round of Algorithm 1.

    Args:
        init_param: θ0, the trained dense model (every run starts from it).
        mask_dir: The masks before this round (all ones before round 1).
        output_dir: The round's directory (see the module docstring).
        train_args: ``uslu_train`` options of each run (config, data, token list,
            ``--ngpu`` ...; not the reserved ones set here).
        hparams: Pruning hyperparameters.
        round_index: 1-based round number (seeds the task order).
        only_tasks: Train and prune only these tasks and leave the merge to a later
            call without them: one job per task, since the tasks are independent.

    Returns:
        The directory of the round's masks (None when ``only_tasks`` is given).

    Raises:
        InputError: Bad masks, checkpoint or training options.
    """
    out = output_dir / "masks"
    if (out / "manifest.json").is_file():
        logging.info(f"{out}: exists, round {round_index} done")
        return out
    check_train_args(train_args, RESERVED)
    masks = load_masks(mask_dir)
    order = task_order(list(masks.tasks), hparams.seed, round_index)
    runs = [(AGNOSTIC, order)] if hparams.task_agnostic else [(t, [t]) for t in order]
    if only_tasks is not None:
        unknown = sorted(set(only_tasks) - {r for r, _ in runs})
        if unknown:
            raise InputError(f"{mask_dir}: no separate run of task(s) {unknown}")
        runs = [r for r in runs if r[0] in only_tasks]
    logging.info(
        f"Algorithm 1 round {round_index}: {', '.join(r for r, _ in runs)} "
        f"(p = {hparams.fraction}, {hparams.strategy}) from {mask_dir}"
    )
    for name, tasks in runs:
        run_dir = output_dir / name
        pruned = run_dir / "masks"
        if (pruned / "manifest.json").is_file():
            continue
        args = [
            *train_args,
            "--init_param",
            str(init_param),
            "--mask_dir",
            str(mask_dir),
        ]
        # Task-agnostic: shuffled batches of all the mask set's tasks, not task blocks.
        if hparams.task_agnostic:
            args += ["--iterator_type", "sequence"]
        args += ["--train_tasks", *tasks]
        run_training(args, run_dir)
        result = prune_tasks(
            load_masks(mask_dir), tasks, final_checkpoint(run_dir), hparams.pruning()
        )
        save_masks(result, pruned)
        logging.info(
            f"{pruned}: {name} keeps {result.kept(tasks[0])} of {result.numel()} "
            f"({100 * result.density(tasks[0]):.2f} %)"
        )
    if only_tasks is not None:
        return None
    for name, tasks in runs:
        pruned = load_masks(output_dir / name / "masks")
        for task in tasks:
            masks.set_mask(task, pruned.mask(task))
    write_mask_report(masks, output_dir)
    atomic_write_text(
        output_dir / "find_masks.json",
        json.dumps(
            {"round": round_index, "order": order, "hparams": asdict(hparams)}, indent=1
        )
        + "\n",
    )
    save_masks(masks, out)
    return out
