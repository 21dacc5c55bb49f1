#!/usr/bin/env python3
"""Write Table 1 (dense vs multi-task, single-task and task-agnostic pruning) of a run.

See :mod:`espnet_pruning.reports.pruning_table`. Outputs are written atomically.

Example:
    python -m espnet_pruning.bin.uslu_pruning_table --dense exp/uslu_train_uslu \\
        --test_set test_er_iemocap:er_iemocap \\
        --system multi_task:2:exp/uslu_multi_task_q2:exp/find_masks/multi_task/round2/masks \\
        --json exp/pruning_table.json --markdown exp/pruning_table.md
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.reports.pruning_table import (
    System,
    build_table,
    format_markdown,
    format_table2,
)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dense", type=Path, required=True, help="θ0's experiment")
    parser.add_argument("--test_set", action="append", default=[], help="SET:TASK")
    parser.add_argument(
        "--system", action="append", default=[], help="KIND:Q:EXP:MASK_DIR"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument(
        "--table2_level", type=int, default=None, help="also Table 2's shape at this Q"
    )
    parser.add_argument("--table2_markdown", type=Path, default=None)
    return parser


def run(args: argparse.Namespace) -> None:
    """Build, print and write the table."""
    table = build_table(
        args.dense, args.test_set, [System.parse(s) for s in args.system]
    )
    text = format_markdown(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(table, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print(text, end="")
    if args.table2_level is not None:
        text2 = format_table2(table, args.table2_level)
        if args.table2_markdown:
            atomic_write_text(args.table2_markdown, text2)
        print("\n" + text2, end="")


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
