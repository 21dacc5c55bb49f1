"""S3-Router as a mask finder: one ESPnet run of every task's scores over θ0 (docs/methods.md §5).

S3-Router never trains the shared weights: θ0 (``--init_param``) stays frozen and every
task learns only its own scores (:mod:`espnet_pruning.train.s3_router_training`). The
tasks are therefore independent, and one multi-task run trains them all (``--train_tasks``
= the mask set's tasks; use the task iterator, ``--iterator_type task``, so every batch
is of one task). Each task's mask is the top-k of its final scores at the level's kept
fraction ``1 − sparsity``, taken per tensor or globally over the routed weights as the
hyperparameters say; tensors of the mask set that are not routed (e.g. attention with
``modules: ffn``, the token embedding) keep all-ones masks, so the sparsity is that of
the routed weights. Algorithm 2 then trains the shared θ0 under the masks, as for every
method (or the masks are used on the frozen θ0 directly: S3-Router's own setting).

Layout of ``output_dir``::

    run/               the ESPnet run (scores in score_router.* of its checkpoints)
    masks/             every task's mask
    report.json/.txt   sparsity, Param% One/All, overlap (pruning.report)
    s3_router.json     the hyperparameters

The run is skipped when done and resumed (ESPnet ``--resume``) when it was interrupted.
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import (
    finished_masks,
    write_mask_report,
)
from espnet_pruning.experiments.runs import (
    check_train_args,
    final_checkpoint,
    run_training,
)
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.s3_router import S3RouterHparams, topk_masks
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.train.s3_router_training import ROUTER, scores_from_state

# Options the run gets from the driver (and the methods it excludes).
RESERVED = (
    "--output_dir",
    "--resume",
    "--init_param",
    "--mask_dir",
    "--train_tasks",
    "--s3_router_conf",
    "--parp_conf",
    "--update_only",
)

#: The run's directory under ``output_dir``.
RUN = "run"


@typechecked
def s3_router_mask(
    masks: MaskSet, tasks: Sequence[str], checkpoint: Path, hparams: S3RouterHparams
) -> MaskSet:
    """Give ``tasks`` the top-k masks of their scores in a run's checkpoint (in place).

    Args:
        masks: The mask set (its tensors and tasks).
        tasks: The tasks to set.
        checkpoint: A model state dict with ``score_router.*`` entries.
        hparams: The run's hyperparameters (``keep_ratio`` and ``scope`` are used).

    Returns:
        ``masks``, every tensor a routed task does not route set to all ones.

    Raises:
        InputError: A checkpoint without the tasks' scores, or scores that do not fit
            the mask set.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model_state = {k: v for k, v in state.items() if not k.startswith(ROUTER + ".")}
    masks.check_compatible({k: tuple(v.shape) for k, v in model_state.items()})
    for task in tasks:
        try:
            scores = scores_from_state(state, task)
        except InputError as e:
            raise InputError(f"{checkpoint}: {e}") from None
        outside = sorted(set(scores) - set(masks.names))
        if outside:
            raise InputError(
                f"{checkpoint}: task {task} routes {outside[:3]}, which the mask set "
                "does not prune"
            )
        routed = topk_masks(
            {n: s.float() for n, s in scores.items()}, hparams.keep_ratio, hparams.scope
        )
        mask = {
            n: (
                routed[n]
                if n in routed
                else torch.ones(masks.shapes[n], dtype=torch.bool)
            )
            for n in masks.names
        }
        masks.set_mask(task, mask)
    return masks


@typechecked
def find_s3_router_masks(
    init_param: Path,
    mask_dir: Path,
    output_dir: Path,
    train_args: Sequence[str],
    hparams: S3RouterHparams,
    only_tasks: Optional[Sequence[str]] = None,
    task_agnostic: bool = False,
) -> Path:
    """Find every task's mask with S3-Router (or S3-Router-P) in one run.

    Args:
        init_param: θ0, the trained dense model (frozen during the run).
        mask_dir: A mask set naming the tasks and the pruned tensors (its masks are
            not used; its scope is the run's ``pruning_scope``).
        output_dir: See the module docstring.
        train_args: ``uslu_train`` options of the run (not the reserved ones).
        hparams: S3-Router's hyperparameters; ``keep_ratio`` is the level's.
        only_tasks: Not supported (one run trains every task): must be None.
        task_agnostic: Not supported: must be False.

    Returns:
        The directory of the masks.

    Raises:
        InputError: Bad masks, checkpoint or training options, ``only_tasks`` or
            ``task_agnostic``.
    """
    if only_tasks is not None:
        raise InputError(
            "s3_router trains every task's scores in one run; run it without --tasks"
        )
    if task_agnostic:
        raise InputError("s3_router has no task-agnostic variant (one score set each)")
    done = finished_masks(output_dir, "S3-Router")
    if done is not None:
        return done
    out = output_dir / "masks"
    check_train_args(train_args, RESERVED)
    masks = load_masks(mask_dir)
    tasks = sorted(masks.tasks)
    scope = masks.scope if masks.scope is not None else PruningScope()
    conf = {**asdict(hparams), "pruning_scope": scope.to_dict(), "tasks": tasks}
    logging.info(
        f"S3-Router: {', '.join(tasks)} keep {100 * hparams.keep_ratio:g} % of the "
        f"{hparams.modules} weights ({hparams.init} init, {hparams.scope})"
    )
    run_dir = output_dir / RUN
    args = [*train_args, "--init_param", str(init_param)]
    args += ["--train_tasks", *tasks, "--s3_router_conf", json.dumps(conf)]
    run_training(args, run_dir)
    s3_router_mask(masks, tasks, final_checkpoint(run_dir), hparams)
    for task in tasks:
        logging.info(
            f"{out}: {task} keeps {masks.kept(task)} of {masks.numel()} "
            f"({100 * masks.density(task):.2f} %)"
        )
    write_mask_report(masks, output_dir)
    atomic_write_text(
        output_dir / "s3_router.json", json.dumps(asdict(hparams), indent=1) + "\n"
    )
    save_masks(masks, out)
    return out
