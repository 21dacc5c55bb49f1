#!/usr/bin/env python3
"""One ESPnet training run per task, in one job: the single-task pruning baseline.

The paper's single-task pruning runs Algorithm 2 "independently for each task by
employing θ_t": each task gets its own copy of the weights, trained on its data only
(``--train_tasks t``) into ``<output_dir>/<task>/``. Options after ``--`` are
``uslu_train``'s and are shared by all runs (e.g. ``--init_param``, ``--mask_dir``).
Finished runs are skipped and an interrupted one resumes.

Example:
    python -m espnet_pruning.bin.uslu_train_tasks --tasks er_iemocap ic_slurp \\
        --output_dir exp/uslu_single_task_q2 -- --config conf/train_masked.yaml \\
        --init_param exp/uslu_train_uslu/valid.acc.best.pth \\
        --mask_dir exp/find_masks/multi_task/round2/masks ...
"""

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import run_logged
from espnet_pruning.experiments.runs import check_train_args, run_training


def get_parser() -> argparse.ArgumentParser:
    """Command-line options (training options follow ``--``)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    return parser


def run(args: argparse.Namespace) -> None:
    """Train every task's model in turn."""
    train_args = (
        args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    )
    check_train_args(train_args, ("--output_dir", "--resume", "--train_tasks"))
    for task in args.tasks:
        run_training([*train_args, "--train_tasks", task], args.output_dir / task)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one message and exit status 1."""
    args = get_parser().parse_args(cmd)
    run_logged(lambda: run(args))


if __name__ == "__main__":
    main()
