"""Dynamic ASR Pathways as a mask finder: one multi-task ESPnet run (docs/methods.md §3).

Tasks take the role of languages. Every task starts from the same magnitude mask of
θ0 at ``init_sparsity`` (θ0 is the multi-task model, so this is the paper's LAP start,
:func:`~espnet_pruning.pruning.pathways.shared_start`); one run on a copy of θ0 then
trains all tasks with ``--pathways_conf``
(:mod:`espnet_pruning.train.pathways_training`): a batch of task ``z`` trains
``m_{z,r}``, masks adapt every ``adapt_interval`` steps and are pruned towards the
level's sparsity every ``prune_interval`` steps. The run's final ``m_z`` are the masks;
if the run ended above the target, the remaining prune steps are taken on its final
weights (counted in ``pathways.json``). Algorithm 2 then trains the shared θ0 under the
masks, as for every method.

Layout of ``output_dir``::

    start_masks/       the shared start mask of every task
    run/               the ESPnet run (pathways.<epoch>.state: its masks per epoch)
    masks/             every task's final mask
    report.json/.txt   sparsity, Param% One/All, overlap (pruning.report)
    pathways.json      the hyperparameters, the start sparsity and the run's events

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
    final_epoch,
    run_training,
)
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.pathways import (
    DynamicPathways,
    DynamicPathwaysHparams,
    shared_start,
)
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.train.pathways_training import STATE_FILE, read_state

# Options the run gets from the driver (and the methods it excludes).
RESERVED = (
    "--output_dir",
    "--resume",
    "--init_param",
    "--mask_dir",
    "--train_tasks",
    "--pathways_conf",
    "--s3_router_conf",
    "--parp_conf",
    "--update_only",
)

#: The run's directory under ``output_dir``.
RUN = "run"


@typechecked
def find_pathways_masks(
    init_param: Path,
    mask_dir: Path,
    output_dir: Path,
    train_args: Sequence[str],
    hparams: DynamicPathwaysHparams,
    init_sparsity: float,
    only_tasks: Optional[Sequence[str]] = None,
    task_agnostic: bool = False,
) -> Path:
    """Find every task's mask with Dynamic ASR Pathways in one run.

    Args:
        init_param: θ0, the trained dense model (the run trains a copy).
        mask_dir: A mask set naming the tasks and the pruned tensors (its masks are
            not used).
        output_dir: See the module docstring.
        train_args: ``uslu_train`` options of the run (not the reserved ones).
        hparams: The schedule; ``target_sparsity`` is the level's.
        init_sparsity: s0 of the shared start mask (at most the target).
        only_tasks: Not supported (one run trains every task): must be None.
        task_agnostic: Not supported (the method is per task): must be False.

    Returns:
        The directory of the masks.

    Raises:
        InputError: Bad masks, checkpoint or options.
    """
    if only_tasks is not None:
        raise InputError(
            "dynamic_pathways trains every task in one run; run it without --tasks"
        )
    if task_agnostic:
        raise InputError("dynamic_pathways has no task-agnostic variant")
    if not 0.0 <= init_sparsity <= hparams.target_sparsity:
        raise InputError(
            f"dynamic_pathways: init_sparsity {init_sparsity} must be in [0, "
            f"target_sparsity {hparams.target_sparsity}]"
        )
    done = finished_masks(output_dir, "Dynamic Pathways")
    if done is not None:
        return done
    out = output_dir / "masks"
    check_train_args(train_args, RESERVED)
    masks = load_masks(mask_dir)
    tasks = sorted(masks.tasks)
    theta0 = torch.load(init_param, map_location="cpu", weights_only=True)
    masks.check_compatible({k: tuple(v.shape) for k, v in theta0.items()})
    start_dir = output_dir / "start_masks"
    if not (start_dir / "manifest.json").is_file():
        weights = {n: theta0[n] for n in masks.names}
        start = MaskSet(
            masks.shapes,
            shared_start(weights, tasks, init_sparsity, hparams),
            masks.n_model_params,
            masks.scope,
        )
        save_masks(start, start_dir)
    logging.info(
        f"Dynamic Pathways: {', '.join(tasks)} from one magnitude mask of θ0 at "
        f"{100 * init_sparsity:g} % to {100 * hparams.target_sparsity:g} % "
        f"(adapt every {hparams.adapt_interval}, prune every "
        f"{hparams.prune_interval} steps)"
    )
    run_dir = output_dir / RUN
    args = [*train_args, "--init_param", str(init_param)]
    args += ["--mask_dir", str(start_dir), "--train_tasks", *tasks]
    args += ["--pathways_conf", json.dumps(asdict(hparams))]
    run_training(args, run_dir)

    state = read_state(run_dir / STATE_FILE.format(epoch=final_epoch(run_dir)))
    pathways = DynamicPathways(state["masks"], hparams)
    pathways.load_state_dict(state)
    events = dict(
        steps=pathways.last_step,
        adaptations=pathways.n_adaptations,
        prune_steps=pathways.n_prunes,
    )
    # A run too short for its schedule: the remaining prune steps on its final weights.
    final = torch.load(final_checkpoint(run_dir), map_location="cpu", weights_only=True)
    extra = pathways.prune_to_target({n: final[n] for n in masks.names})
    if extra:
        logging.warning(
            f"{run_dir}: ended above the target sparsity; {extra} prune step(s) taken "
            "on its final weights (a shorter prune_interval reaches it in the run)"
        )
    for task in tasks:
        masks.set_mask(task, pathways.mask(task))
        logging.info(
            f"{out}: {task} keeps {masks.kept(task)} of {masks.numel()} "
            f"({100 * masks.density(task):.2f} %)"
        )
    write_mask_report(masks, output_dir)
    atomic_write_text(
        output_dir / "pathways.json",
        json.dumps(
            {
                **asdict(hparams),
                "init_sparsity": init_sparsity,
                "run": events,
                "prune_steps_after_run": extra,
            },
            indent=1,
        )
        + "\n",
    )
    save_masks(masks, out)
    return out
