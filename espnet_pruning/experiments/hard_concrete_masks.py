"""HJ-Pruning as a mask finder: structured masks from Hard-Concrete gates (docs/methods.md §2).

Every task learns Hard-Concrete gates over Whisper's heads and FFN units jointly with
the weights (:mod:`espnet_pruning.train.hard_concrete_training`), the expected
sparsity of the gated structures held at the level's sparsity by the augmented
Lagrangian. ``mode: single_task`` (the paper's) trains each task on its own copy of θ0;
``multi_task`` trains all tasks in one run over shared weights, each with its own gates.
A task's mask removes the heads and units whose evaluation gate is 0: their
``query``/``key``/``value`` rows and ``out`` columns, their ``mlp.0`` rows and ``mlp.2``
columns (:func:`~espnet_pruning.pruning.structured.structured_mask`). Algorithm 2 then
trains θ0 under the masks (the paper's "fix the gates, remove the structures,
fine-tune"), and :func:`~espnet_pruning.pruning.structured.compile_masked` makes each
task's model physically smaller.

Layout of ``output_dir``::

    <task>/            single_task: the ESPnet run of that task (and its masks/)
    run/               multi_task: the one run of all tasks
    masks/             every task's structured mask
    report.json/.txt   sparsity, Param% One/All, overlap (pruning.report)
    hard_concrete.json the hyperparameters, mode and every task's kept heads and units

Every run is skipped when done and resumed when it was interrupted.
"""

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional, Sequence

from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import (
    finished_masks,
    merge_runs,
    task_runs,
    train_and_prune,
    write_mask_report,
)
from espnet_pruning.experiments.runs import (
    check_train_args,
    final_checkpoint,
    run_training,
)
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.hard_concrete import HardConcreteHparams
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.storage import load_masks, save_masks
from espnet_pruning.pruning.structured import kept_units_of_mask, structured_mask
from espnet_pruning.tasks.uslu import USLUTask

MODES = ("single_task", "multi_task")
RESERVED = (
    "--output_dir",
    "--resume",
    "--init_param",
    "--mask_dir",
    "--train_tasks",
    "--hard_concrete_conf",
    "--s3_router_conf",
    "--parp_conf",
    "--pathways_conf",
    "--update_only",
)
RUN = "run"


@typechecked
def gate_masks(masks: MaskSet, tasks: Sequence[str], checkpoint: Path) -> MaskSet:
    """Give ``tasks`` the structured masks of their evaluation gates in a run's
    checkpoint (in place).

    Returns:
        ``masks``.

    Raises:
        InputError: A checkpoint without the tasks' gates, or one that does not fit.
    """
    model, _ = USLUTask.build_model_from_file(None, checkpoint)
    gates = model.task_gates
    if gates is None:
        raise InputError(f"{checkpoint}: no Hard-Concrete gates (task_gates.*)")
    masks.check_compatible({k: tuple(v.shape) for k, v in model.state_dict().items()})
    for task in tasks:
        units = {name: z > 0 for name, z in gates.eval_gates(task).items()}
        masks.set_mask(task, structured_mask(model, units, masks.shapes))
    return masks


@typechecked
def find_hard_concrete_masks(
    init_param: Path,
    mask_dir: Path,
    output_dir: Path,
    train_args: Sequence[str],
    hparams: HardConcreteHparams,
    mode: str = "single_task",
    seed: int = 0,
    only_tasks: Optional[Sequence[str]] = None,
    task_agnostic: bool = False,
) -> Optional[Path]:
    """Find every task's structured mask with HJ-Pruning.

    Args:
        init_param: θ0, the trained dense model.
        mask_dir: A mask set naming the tasks and the pruned tensors.
        output_dir: See the module docstring.
        train_args: ``uslu_train`` options of each run (not the reserved ones).
        hparams: Gates and Lagrangian; ``target_sparsity`` is the level's.
        mode: ``single_task`` or ``multi_task``.
        seed: Seed of the initial ``log α`` draws.
        only_tasks: ``single_task``: run only these tasks, merge later.
        task_agnostic: ``single_task``: one run on all tasks' mixed data, its gates
            for every task (the baseline).

    Returns:
        The directory of the masks (None with ``only_tasks``).

    Raises:
        InputError: Bad masks, checkpoint, mode or options.
    """
    if mode not in MODES:
        raise InputError(f"hard_concrete: mode {mode!r} is not one of {MODES}")
    if mode == "multi_task" and (only_tasks is not None or task_agnostic):
        raise InputError(
            "hard_concrete multi_task trains every task in one run; run it without "
            "--tasks and --task_agnostic"
        )
    done = finished_masks(output_dir, "HJ-Pruning")
    if done is not None:
        return done
    out = output_dir / "masks"
    check_train_args(train_args, RESERVED)
    masks = load_masks(mask_dir)
    tasks = sorted(masks.tasks)
    logging.info(
        f"HJ-Pruning ({mode}): {', '.join(tasks)} at "
        f"{100 * hparams.target_sparsity:g} % expected {hparams.variant} sparsity of "
        "the heads and FFN units"
    )

    def conf_of(run_tasks: List[str]) -> str:
        return json.dumps({**asdict(hparams), "tasks": run_tasks, "seed": seed})

    if mode == "multi_task":
        run_dir = output_dir / RUN
        args = [*train_args, "--init_param", str(init_param), "--train_tasks", *tasks]
        run_training([*args, "--hard_concrete_conf", conf_of(tasks)], run_dir)
        gate_masks(masks, tasks, final_checkpoint(run_dir))
    else:
        runs = task_runs(tasks, task_agnostic, only_tasks, mask_dir)

        def args_of(run_tasks: List[str]) -> List[str]:
            args = [*train_args, "--init_param", str(init_param)]
            if task_agnostic:  # shuffled batches of all tasks, one gate set
                args += ["--iterator_type", "sequence"]
                return args + [
                    "--train_tasks",
                    *run_tasks,
                    "--hard_concrete_conf",
                    conf_of([run_tasks[0]]),
                ]
            return args + [
                "--train_tasks",
                *run_tasks,
                "--hard_concrete_conf",
                conf_of(run_tasks),
            ]

        def prune_run(before: MaskSet, run_tasks: List[str], ckpt: Path) -> MaskSet:
            gate_masks(before, run_tasks[:1] if task_agnostic else run_tasks, ckpt)
            for t in run_tasks[1:] if task_agnostic else []:
                before.set_mask(t, before.mask(run_tasks[0]))
            return before

        train_and_prune(runs, output_dir, mask_dir, args_of, prune_run)
        if only_tasks is not None:
            return None
        merge_runs(masks, runs, output_dir)
        run_dir = output_dir / runs[0][0]
    # The kept heads and units, read back from the masks (a model of the run's shapes).
    model, _ = USLUTask.build_model_from_file(run_dir / "config.yaml", None)
    kept = {
        t: {
            n: int(k.sum()) for n, k in kept_units_of_mask(model, masks.mask(t)).items()
        }
        for t in tasks
    }
    write_mask_report(masks, output_dir)
    atomic_write_text(
        output_dir / "hard_concrete.json",
        json.dumps(
            {
                **asdict(hparams),
                "mode": mode,
                "seed": seed,
                "task_agnostic": task_agnostic,
                "kept_units": kept,
            },
            indent=1,
        )
        + "\n",
    )
    save_masks(masks, out)
    return out
