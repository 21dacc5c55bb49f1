"""PARP as a mask finder: one ESPnet run per task on a copy of θ0 (docs/methods.md §4).

PARP lifts the mask (every weight trains), so it never runs on the shared weights: each
task trains its own copy of θ0 (``--init_param``) on its data with ``--parp_conf``
(:mod:`espnet_pruning.train.parp_training` re-prunes at epoch starts), and its mask is
the magnitude mask of the run's final weights at the target sparsity. Only the masks
leave this stage; Algorithm 2 then trains the shared θ0 under them, as for the core
method's masks. One run per task replaces Algorithm 1's Q rounds per task.

Layout of ``output_dir``::

    <task>/            the ESPnet run of that task
    task_agnostic/     instead, the one run on all tasks' mixed data (the baseline)
    <task>/masks/      the mask set with that task's PARP mask
    masks/             every task's PARP mask
    report.json/.txt   sparsity, Param% One/All, overlap (pruning.report)
    parp.json          the hyperparameters

Every step is skipped when its output exists and resumes when it was interrupted.
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional, Sequence

import torch
from typeguard import typechecked

from espnet_pruning.experiments.find_masks import (
    finished_masks,
    merge_runs,
    task_runs,
    train_and_prune,
    write_mask_report,
)
from espnet_pruning.experiments.runs import check_train_args
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.parp import ParpHparams, magnitude_mask
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import load_masks, save_masks

# Options each run gets from the driver.
RESERVED = (
    "--output_dir",
    "--resume",
    "--init_param",
    "--mask_dir",
    "--train_tasks",
    "--parp_conf",
)


@typechecked
def parp_mask(
    masks: MaskSet, tasks: List[str], checkpoint: Path, hparams: ParpHparams
) -> MaskSet:
    """Give ``tasks`` the PARP mask of a run's final weights (in place).

    Raises:
        InputError: A checkpoint that does not fit the masks.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    masks.check_compatible({k: tuple(v.shape) for k, v in state.items()})
    mask = magnitude_mask(
        state,
        list(masks.names),
        hparams.target_sparsity,
        hparams.scope,
        hparams.rounding,
    )
    for task in tasks:
        masks.set_mask(task, mask)
    return masks


@typechecked
def find_parp_masks(
    init_param: Path,
    mask_dir: Path,
    output_dir: Path,
    train_args: Sequence[str],
    hparams: ParpHparams,
    only_tasks: Optional[Sequence[str]] = None,
    task_agnostic: bool = False,
) -> Optional[Path]:
    """Find every task's mask with PARP (or PARP-P).

    Args:
        init_param: θ0, the trained dense model (every run starts from a copy).
        mask_dir: A mask set naming the tasks and the pruned tensors (its masks are
            not used: PARP starts from the magnitude mask of θ0).
        output_dir: See the module docstring.
        train_args: ``uslu_train`` options of each run (not the reserved ones).
        hparams: PARP's hyperparameters; ``reprune_interval`` counts epochs.
        only_tasks: Run only these tasks and leave the merge to a later call.
        task_agnostic: One run on the mixed data of all tasks, its mask for every
            task (the task-agnostic baseline).

    Returns:
        The directory of the masks (None when ``only_tasks`` is given).

    Raises:
        InputError: Bad masks, checkpoint or training options.
    """
    done = finished_masks(output_dir, "PARP")
    if done is not None:
        return done
    out = output_dir / "masks"
    check_train_args(train_args, RESERVED)
    masks = load_masks(mask_dir)
    runs = task_runs(sorted(masks.tasks), task_agnostic, only_tasks, mask_dir)
    scope = masks.scope if masks.scope is not None else PruningScope()
    conf = {**asdict(hparams), "pruning_scope": scope.to_dict()}
    logging.info(
        f"PARP: {', '.join(r for r, _ in runs)} at "
        f"{100 * hparams.target_sparsity:g} % sparsity "
        f"(re-prune every {hparams.reprune_interval} epoch(s)"
        + (f", schedule {hparams.schedule}" if hparams.schedule else "")
        + ")"
    )

    def args_of(tasks: List[str]) -> List[str]:
        args = [*train_args, "--init_param", str(init_param)]
        # Task-agnostic: shuffled batches of all tasks, as Algorithm 1's baseline.
        if task_agnostic:
            args += ["--iterator_type", "sequence"]
        return args + ["--train_tasks", *tasks, "--parp_conf", json.dumps(conf)]

    def prune_run(before: MaskSet, tasks: List[str], checkpoint: Path) -> MaskSet:
        return parp_mask(before, tasks, checkpoint, hparams)

    train_and_prune(runs, output_dir, mask_dir, args_of, prune_run)
    if only_tasks is not None:
        return None
    merge_runs(masks, runs, output_dir)
    write_mask_report(masks, output_dir)
    atomic_write_text(
        output_dir / "parp.json",
        json.dumps({**asdict(hparams), "task_agnostic": task_agnostic}, indent=1)
        + "\n",
    )
    save_masks(masks, out)
    return out
