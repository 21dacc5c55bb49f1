#!/usr/bin/env python3
"""Create and prune the task-mask sets of a UniverSLU model (the steps of Algorithm 1).

Subcommands:

* ``init``: all-ones masks for the given tasks over the prunable parameters of a model
  (the scope comes from a YAML file of :class:`PruningScope` fields or the default);
* ``prune``: one pruning round of one task: its mask loses ``--fraction`` of its kept
  weights by magnitude of the weights in ``--model_file`` (trained under that mask);
  ``--task_agnostic`` gives every task the same new mask (task-agnostic pruning);
* ``merge``: a set whose task ``t`` comes from ``--take t=DIR`` and the rest from ``--base``;
* ``upgrade``: rewrite a version-1 mask set (no checksum, no scope) as the current format,
  after checking it covers exactly the prunable parameters of the config's model.

Every set is checked against the model it is used with: it must cover exactly the
model's prunable parameters under the scope it records.

Every output is written atomically; an existing output is left alone (the step is done).

Example:
    python -m espnet_pruning.bin.uslu_masks init --train_config exp/dense/config.yaml \\
        --output exp/masks/round0
    python -m espnet_pruning.bin.uslu_masks prune --mask_dir exp/masks/round0 \\
        --task ic_slurp --model_file exp/alg1/r1_ic_slurp/latest.pth \\
        --fraction 0.2 --output exp/alg1/r1_ic_slurp/masks
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import prune_tasks
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import PruningHparams
from espnet_pruning.pruning.storage import load_masks, save_masks, upgrade_masks
from espnet_pruning.tasks.uslu import USLUTask


def _exists(path: Path) -> bool:
    if (path / "manifest.json").is_file():
        print(f"{path}: exists, skipped", file=sys.stderr)
        return True
    return False


def cmd_init(args: argparse.Namespace) -> None:
    """All-ones masks over the model's prunable parameters."""
    if _exists(args.output):
        return
    model, train_args = USLUTask.build_unmasked_model(args.train_config)
    scope = _scope(args.scope_config)
    known = list(USLUTask.task_registry(train_args).names)
    tasks = args.tasks or known
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise InputError(
            f"--tasks: unknown task(s) {unknown}; the tasks of {args.train_config} "
            f"are {', '.join(known)}"
        )
    save_masks(MaskSet.from_model(model, scope, tasks), args.output)
    print(f"{args.output}: all-ones masks for {', '.join(tasks)}", file=sys.stderr)


def _scope(path: Optional[Path]):
    """The PruningScope of a YAML file (default scope if None)."""
    if path is None:
        return PruningScope()
    if not path.is_file():
        raise InputError(f"{path}: scope config not found")
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    try:
        return PruningScope.from_dict(conf)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None


def _model(train_config: Optional[Path], model_file: Optional[Path] = None):
    """The model of a training config (default: beside ``model_file``)."""
    if train_config is None:
        train_config = model_file.parent / "config.yaml"
        if not train_config.is_file():
            raise InputError(
                f"{train_config}: not found; give --train_config (the config.yaml of "
                f"the run that trained {model_file})"
            )
    return USLUTask.build_unmasked_model(train_config)[0]


def cmd_prune(args: argparse.Namespace) -> None:
    """One magnitude-pruning round of one task's mask."""
    if _exists(args.output):
        return
    masks = load_masks(args.mask_dir)
    if args.task not in masks.tasks:
        raise InputError(f"{args.mask_dir}: has no mask for task {args.task!r}")
    if not args.model_file.is_file():
        raise InputError(f"{args.model_file}: model file not found")
    masks.check_compatible(_model(args.train_config, args.model_file))
    hp = PruningHparams.from_args(args)
    others = [t for t in masks.tasks if t != args.task] if args.task_agnostic else []
    prune_tasks(masks, [args.task, *others], args.model_file, hp)
    save_masks(masks, args.output)
    print(
        f"{args.output}: {args.task} keeps {masks.kept(args.task)} of "
        f"{masks.numel()} ({100 * masks.density(args.task):.2f} %)",
        file=sys.stderr,
    )


def cmd_merge(args: argparse.Namespace) -> None:
    """Take each listed task's mask from its own set."""
    if _exists(args.output):
        return
    masks = load_masks(args.base)
    for item in args.take:
        task, sep, path = item.partition("=")
        if not sep:
            raise InputError(f"--take {item!r}: expected TASK=DIR")
        other = load_masks(path)
        for what in ("shapes", "scope", "n_model_params"):
            if getattr(other, what) != getattr(masks, what):
                raise InputError(
                    f"mask set {path}: its {what} differ from those of {args.base}; "
                    "sets of different models or scopes cannot be merged"
                )
        masks.set_mask(task, other.mask(task))
    save_masks(masks, args.output)


def cmd_upgrade(args: argparse.Namespace) -> None:
    """Rewrite a version-1 set with checksum and scope, checked against the model."""
    model = _model(args.train_config)
    out = upgrade_masks(args.mask_dir, model, _scope(args.scope_config), args.output)
    print(f"{out}: upgraded", file=sys.stderr)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="all-ones masks")
    p.add_argument("--train_config", type=Path, required=True)
    p.add_argument("--tasks", nargs="+", default=None, help="default: the run's tasks")
    p.add_argument("--scope_config", type=Path, default=None, help="PruningScope YAML")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(fn=cmd_init)
    p = sub.add_parser("prune", help="one pruning round of one task")
    p.add_argument("--mask_dir", type=Path, required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--model_file", type=Path, required=True)
    PruningHparams.add_args(p, group="pruning step")
    p.add_argument(
        "--task_agnostic", action="store_true", help="task-agnostic: one mask"
    )
    p.add_argument(
        "--train_config",
        type=Path,
        default=None,
        help="config of the model the masks are for (default: beside --model_file)",
    )
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(fn=cmd_prune)
    p = sub.add_parser("merge", help="combine per-task results of a round")
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--take", action="append", default=[], help="TASK=DIR")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(fn=cmd_merge)
    p = sub.add_parser("upgrade", help="version-1 set to the current format")
    p.add_argument("--mask_dir", type=Path, required=True)
    p.add_argument("--train_config", type=Path, required=True)
    p.add_argument("--scope_config", type=Path, default=None, help="PruningScope YAML")
    p.add_argument("--output", type=Path, default=None, help="default: in place")
    p.set_defaults(fn=cmd_upgrade)
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(levelname)s: %(message)s")
    exit_on_input_error(lambda: args.fn(args))


if __name__ == "__main__":
    main()
