#!/usr/bin/env python3
"""Write the comparison of mask methods (one row per method and level) of a run.

See :mod:`espnet_pruning.reports.methods_table`. Outputs are written atomically.

Example:
    python -m espnet_pruning.bin.uslu_methods_table \\
        --method imp_lth:exp --method parp:exp/parp --cl_run asr \\
        --json exp/methods_table.json --markdown exp/methods_table.md
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.reports.methods_table import (
    MethodResults,
    build_methods_table,
    format_methods_markdown,
)


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--method",
        action="append",
        default=[],
        help="METHOD:DIR, the method's result directory (repeatable, in table order)",
    )
    parser.add_argument(
        "--cl_run",
        action="append",
        default=[],
        help="a continual-learning run whose forgetting is shown (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    return parser


def run(args: argparse.Namespace) -> None:
    """Build, print and write the table."""
    table = build_methods_table(
        [MethodResults.parse(m) for m in args.method], args.cl_run
    )
    text = format_methods_markdown(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(table, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print(text, end="")


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one message and exit status 1."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
