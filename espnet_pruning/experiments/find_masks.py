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

With ``rewind: none`` (IMP instead of LTH) a round after the first starts every task from
its own weights at the end of the previous round (``<round q-1>/<task>/``'s final
checkpoint) instead of θ0.

Every step is skipped when its output exists and resumes when it was interrupted, so a
killed round run again ends with the same masks.
"""

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

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
#: Where a round's runs start: θ0 (LTH, the paper's rewind) or the previous round's end (IMP).
REWINDS = ("theta0", "none")


@dataclass
class FindMasksHparams(PruningHparams):
    """Hyperparameters of Algorithm 1 that are not training options.

    The pruning step's (:class:`PruningHparams`: p, strategy, rounding, seed — the
    seed also orders the tasks) and:

    Args:
        task_agnostic: One mask for all tasks, found on their mixed data.
        rewind: ``theta0`` (every round from θ0) or ``none`` (IMP: from the task's
            weights after the previous round).
    """

    task_agnostic: bool = field(
        default=False,
        metadata={"help": "one mask for all tasks, found on their mixed data"},
    )
    rewind: str = field(
        default="theta0",
        metadata={
            "help": "where a round's runs start: theta0 (LTH, Algorithm 1) or none "
            "(IMP: the task's weights after the previous round)",
            "choices": REWINDS,
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.rewind not in REWINDS:
            raise ValueError(f"rewind must be one of {REWINDS}, got {self.rewind!r}")

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
def finished_masks(output_dir: Path, what: str) -> Optional[Path]:
    """``output_dir/masks`` when a mask finder already wrote it (logged as ``what``
    done), else None."""
    out = output_dir / "masks"
    if (out / "manifest.json").is_file():
        logging.info(f"{out}: exists, {what} done")
        return out
    return None


#: One training run of a mask finder: its directory name and the tasks given its mask.
Run = Tuple[str, List[str]]


@typechecked
def task_runs(
    tasks: Sequence[str],
    task_agnostic: bool,
    only_tasks: Optional[Sequence[str]],
    mask_dir: Path,
) -> List[Run]:
    """One run per task, or one task-agnostic run for all; ``only_tasks`` selects.

    Raises:
        InputError: ``only_tasks`` names no separate run.
    """
    runs = [(AGNOSTIC, list(tasks))] if task_agnostic else [(t, [t]) for t in tasks]
    if only_tasks is not None:
        unknown = sorted(set(only_tasks) - {r for r, _ in runs})
        if unknown:
            raise InputError(f"{mask_dir}: no separate run of task(s) {unknown}")
        runs = [r for r in runs if r[0] in only_tasks]
    return runs


@typechecked
def train_and_prune(
    runs: Sequence[Run],
    output_dir: Path,
    mask_dir: Path,
    args_of: Callable[[List[str]], List[str]],
    prune_run: Callable[[MaskSet, List[str], Path], MaskSet],
) -> None:
    """Train every run (skipped when done, resumed when interrupted), then give its
    tasks the masks ``prune_run`` takes from its final weights → ``<run>/masks``.

    Args:
        runs: The runs.
        output_dir: Their parent directory.
        mask_dir: The mask set each run's result starts from.
        args_of: The run's ``uslu_train`` options from its tasks.
        prune_run: ``(mask set, tasks, final checkpoint) -> mask set with those tasks'
            new masks``.
    """
    for name, tasks in runs:
        run_dir = output_dir / name
        pruned = run_dir / "masks"
        if (pruned / "manifest.json").is_file():
            continue
        run_training(args_of(list(tasks)), run_dir)
        result = prune_run(load_masks(mask_dir), list(tasks), final_checkpoint(run_dir))
        save_masks(result, pruned)
        logging.info(
            f"{pruned}: {name} keeps {result.kept(tasks[0])} of {result.numel()} "
            f"({100 * result.density(tasks[0]):.2f} %)"
        )


@typechecked
def merge_runs(masks: MaskSet, runs: Sequence[Run], output_dir: Path) -> MaskSet:
    """Every run's tasks' masks from ``<run>/masks`` into ``masks`` (in place)."""
    for name, tasks in runs:
        found = load_masks(output_dir / name / "masks")
        for task in tasks:
            masks.set_mask(task, found.mask(task))
    return masks


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
        init_param: θ0, the trained dense model (every run starts from it, or only
            round 1's with ``rewind: none``).
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
    done = finished_masks(output_dir, f"round {round_index}")
    if done is not None:
        return done
    out = output_dir / "masks"
    check_train_args(train_args, RESERVED)
    masks = load_masks(mask_dir)
    order = task_order(list(masks.tasks), hparams.seed, round_index)
    runs = task_runs(order, hparams.task_agnostic, only_tasks, mask_dir)
    logging.info(
        f"Algorithm 1 round {round_index}: {', '.join(r for r, _ in runs)} "
        f"(p = {hparams.fraction}, {hparams.strategy}) from {mask_dir}"
    )

    def start_of(tasks: List[str]) -> Path:
        if hparams.rewind == "theta0" or round_index == 1:
            return init_param
        # IMP: the same run's weights at the end of the previous round.
        previous = mask_dir.parent / (AGNOSTIC if hparams.task_agnostic else tasks[0])
        try:
            return final_checkpoint(previous)
        except InputError as e:
            raise InputError(
                f"rewind none needs the previous round's run: {e}"
            ) from None

    def args_of(tasks: List[str]) -> List[str]:
        args = [
            *train_args,
            "--init_param",
            str(start_of(tasks)),
            "--mask_dir",
            str(mask_dir),
        ]
        # Task-agnostic: shuffled batches of all the mask set's tasks, not task blocks.
        if hparams.task_agnostic:
            args += ["--iterator_type", "sequence"]
        return args + ["--train_tasks", *tasks]

    def prune_run(before: MaskSet, tasks: List[str], checkpoint: Path) -> MaskSet:
        return prune_tasks(before, tasks, checkpoint, hparams.pruning())

    train_and_prune(runs, output_dir, mask_dir, args_of, prune_run)
    if only_tasks is not None:
        return None
    merge_runs(masks, runs, output_dir)
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
