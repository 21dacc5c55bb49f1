#!/usr/bin/env python3
"""One level of a mask method (Algorithm 1's round by default) as one job.

With ``--mask_method imp_lth`` (the default) every task is trained from θ0 under its
current mask with ESPnet's Trainer (the options after ``--`` are ``uslu_train``'s), then
a fraction p of its mask is pruned by global magnitude
(:mod:`espnet_pruning.experiments.find_masks`); ``random`` prunes at random. ``parp`` and
``parp_p`` train every task from θ0 with PARP and take its mask at the level's sparsity
``1 − (1 − p)^Q`` (:mod:`espnet_pruning.experiments.parp_masks`; options from
``--method_config``). ``s3_router`` and ``s3_router_p`` train every task's scores over
the frozen θ0 in one run and take the top-k of each task's scores
(:mod:`espnet_pruning.experiments.s3_router_masks`). ``dynamic_pathways`` trains all
tasks in one run from a shared magnitude mask of θ0, the masks adapting and shrinking to
the level's sparsity (:mod:`espnet_pruning.experiments.pathways_masks`). Run it again
after a kill: finished tasks are skipped, an interrupted training resumes. The tasks of a
level are independent, so a level can be split: one job per task with ``--tasks TASK``,
then one job without ``--tasks`` that finds every task done and only merges the masks
(not S3-Router or Dynamic Pathways: their one run trains all tasks).

Example (round 2 of the mini recipe):
    python -m espnet_pruning.bin.uslu_find_masks --round 2 \\
        --init_param exp/uslu_train_uslu/valid.acc.best.pth \\
        --mask_dir exp/find_masks/multi_task/round1/masks \\
        --output_dir exp/find_masks/multi_task/round2 \\
        --fraction 0.2 -- --config conf/find_masks.yaml --token_list tokens.txt ...
"""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml

from espnet_pruning.bin.cli import run_logged
from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import FindMasksHparams
from espnet_pruning.experiments.mask_methods import MASK_METHODS, find_level_masks


def get_parser() -> argparse.ArgumentParser:
    """Command-line options (training options follow ``--``)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--round", type=int, required=True, help="1-based round = level Q"
    )
    parser.add_argument("--init_param", type=Path, required=True, help="θ0 (.pth)")
    parser.add_argument(
        "--mask_dir",
        type=Path,
        required=True,
        help="masks of the level before (per-round methods) or of level 0",
    )
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument(
        "--mask_method",
        default="imp_lth",
        choices=sorted(MASK_METHODS),
        help="; ".join(f"{m.name}: {m.summary}" for m in MASK_METHODS.values()),
    )
    parser.add_argument(
        "--method_config",
        type=Path,
        default=None,
        help="YAML of the method's own options (parp, parp_p: reprune_interval in "
        "epochs, scope; s3_router, s3_router_p: modules, init, scope, seed, "
        "init_scale; dynamic_pathways: init_sparsity, adapt_interval, prune_interval, "
        "prune_fraction, prune_fraction_of, granularity, block_shape, scope, residual)",
    )
    FindMasksHparams.add_args(parser, group="Algorithm 1")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="only train and prune these tasks (no merge of the round's masks)",
    )
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    return parser


def run(args: argparse.Namespace) -> None:
    """Check the inputs, then run the round."""
    if not args.init_param.is_file():
        raise InputError(f"{args.init_param}: θ0 model file not found")
    train_args = (
        args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    )
    try:
        hparams = FindMasksHparams.from_args(args)
    except ValueError as e:
        raise InputError(str(e)) from e
    method_conf = {}
    if args.method_config is not None:
        try:
            method_conf = yaml.safe_load(args.method_config.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"{args.method_config}: cannot read: {e}") from None
        if not isinstance(method_conf, dict):
            raise InputError(f"{args.method_config}: not a mapping of options")
    out = find_level_masks(
        args.mask_method,
        args.init_param,
        args.mask_dir,
        args.output_dir,
        train_args,
        hparams,
        args.round,
        method_conf=method_conf,
        only_tasks=args.tasks,
    )
    if out is None:
        print(f"{args.output_dir}: round {args.round} of {args.tasks}", file=sys.stderr)
    else:
        print(f"{out}: masks of round {args.round}", file=sys.stderr)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one message and exit status 1."""
    args = get_parser().parse_args(cmd)
    run_logged(lambda: run(args))


if __name__ == "__main__":
    main()
