#!/usr/bin/env python3
"""Create and prune the task-mask sets of a UniverSLU model (the steps of Algorithm 1).

Subcommands:

* ``init``: all-ones masks for the given tasks over the prunable parameters of a model
  (the scope comes from a YAML file of :class:`PruningScope` fields or the default);
* ``prune``: one pruning round of one task: its mask loses ``--fraction`` of its kept
  weights by magnitude of the weights in ``--model_file`` (trained under that mask);
  ``--all_tasks`` gives every task the same new mask (task-agnostic pruning);
* ``merge``: a set whose task ``t`` comes from ``--take t=DIR`` and the rest from ``--base``.

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


def _exists(path: Path) -> bool:
    if (path / "manifest.json").is_file():
        print(f"{path}: exists, skipped", file=sys.stderr)
        return True
    return False


def cmd_init(args: argparse.Namespace) -> None:
    """All-ones masks over the model's prunable parameters."""
    from espnet_pruning.pruning.masks import MaskSet
    from espnet_pruning.pruning.scope import PruningScope
    from espnet_pruning.tasks.uslu import USLUTask

    if _exists(args.output):
        return
    model, train_args = USLUTask.build_model_from_file(args.train_config, None)
    scope = PruningScope()
    if args.scope_config:
        with open(args.scope_config) as f:
            scope = PruningScope.from_dict(yaml.safe_load(f) or {})
    tasks = args.tasks or list(USLUTask.task_registry(train_args).names)
    from espnet_pruning.pruning.storage import save_masks

    save_masks(MaskSet.from_model(model, scope, tasks), args.output)
    print(f"{args.output}: all-ones masks for {', '.join(tasks)}", file=sys.stderr)


def cmd_prune(args: argparse.Namespace) -> None:
    """One magnitude-pruning round of one task's mask."""
    from espnet_pruning.pruning.select import PruningHparams
    from espnet_pruning.pruning.storage import load_masks, save_masks
    from espnet_pruning.train.find_masks import prune_tasks

    if _exists(args.output):
        return
    masks = load_masks(args.mask_dir)
    if args.task not in masks.tasks:
        raise InputError(f"{args.mask_dir}: has no mask for task {args.task!r}")
    if not args.model_file.is_file():
        raise InputError(f"{args.model_file}: model file not found")
    hp = PruningHparams(
        strategy=args.strategy,
        fraction=args.fraction,
        rounding=args.rounding,
        seed=args.seed,
    )
    others = [t for t in masks.tasks if t != args.task] if args.all_tasks else []
    prune_tasks(masks, [args.task, *others], args.model_file, hp)
    save_masks(masks, args.output)
    print(
        f"{args.output}: {args.task} keeps {masks.kept(args.task)} of "
        f"{masks.numel()} ({100 * masks.density(args.task):.2f} %)",
        file=sys.stderr,
    )


def cmd_merge(args: argparse.Namespace) -> None:
    """Take each listed task's mask from its own set."""
    from espnet_pruning.pruning.storage import load_masks, save_masks

    if _exists(args.output):
        return
    masks = load_masks(args.base)
    for item in args.take:
        task, sep, path = item.partition("=")
        if not sep:
            raise InputError(f"--take {item!r}: expected TASK=DIR")
        masks.set_mask(task, load_masks(path).mask(task))
    save_masks(masks, args.output)


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
    p.add_argument("--fraction", type=float, default=0.2, help="paper: p = 0.2")
    p.add_argument("--strategy", default="global_magnitude")
    p.add_argument("--rounding", default="round", choices=["round", "ceil", "floor"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all_tasks", action="store_true", help="task-agnostic: one mask")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(fn=cmd_prune)
    p = sub.add_parser("merge", help="combine per-task results of a round")
    p.add_argument("--base", type=Path, required=True)
    p.add_argument("--take", action="append", default=[], help="TASK=DIR")
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(fn=cmd_merge)
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(levelname)s: %(message)s")
    exit_on_input_error(lambda: args.fn(args))


if __name__ == "__main__":
    main()
