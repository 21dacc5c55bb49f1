#!/usr/bin/env python3
"""Print a task specifier (or one field of it) for shell scripts.

Example:
    python -m espnet_pruning.bin.task_info --task ic_slurp --field metric   # accuracy
    # accuracy+slurp_intent (uslu_score's METRIC[+FIGURE...]):
    python -m espnet_pruning.bin.task_info --task ic_slurp --field score
"""

import argparse
import json
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.specifiers import TaskRegistry


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task_specifiers", default=None, help="user YAML (optional)")
    parser.add_argument("--task", default=None, help="task name; all tasks if omitted")
    parser.add_argument(
        "--field",
        default=None,
        choices=[
            "prompt",
            "target",
            "metric",
            "labels",
            "description",
            "figures",
            "score",
        ],
        help="print only this field",
    )
    return parser


def show(args: argparse.Namespace) -> None:
    """Print the requested information."""
    tasks = TaskRegistry.load(args.task_specifiers)
    if args.task is None:
        print("\n".join(tasks.names))
        return
    spec = tasks[args.task]
    if args.field is None:
        print(json.dumps(tasks.subset([args.task]).to_dict()["tasks"], indent=2))
    elif args.field in ("prompt", "labels", "figures"):
        print(" ".join(getattr(spec, args.field)))
    elif args.field == "score":  # uslu_score's METRIC[+FIGURE...] field of --item
        print("+".join((spec.metric, *spec.figures)))
    else:
        print(getattr(spec, args.field))


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: show(args))


if __name__ == "__main__":
    main()
