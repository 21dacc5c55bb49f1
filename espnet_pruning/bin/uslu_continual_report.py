#!/usr/bin/env python3
"""Report of one continual-learning run: series (CSV, JSON), curves (PNG), table (MD).

See :mod:`espnet_pruning.reports.continual_report`. Outputs go to ``--out_dir``:
``series.csv``, ``series.json``, ``curves.png`` (or ``--figure``), ``report.md``,
``report.json``, all written atomically. ``report.md`` links the figure by
``--figure_link`` when the page that includes it lies elsewhere (``slu.sh`` puts it in
``exp/RESULTS.md``, the figure in ``exp/figures/``).

Example:
    python -m espnet_pruning.bin.uslu_continual_report --name asr --task asr_librispeech \\
        --new_data train_cl_asr --test_set test_er_iemocap:er_iemocap ... \\
        --system masked_q2:exp/uslu_multi_task_q2:exp/continual_asr/masked_q2 \\
        --system dense:exp/uslu_train_uslu:exp/continual_asr/dense \\
        --out_dir exp/continual_asr --figure exp/figures/continual_asr.png \\
        --figure_link figures/continual_asr.png
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.reports.continual_report import (
    ContinualSystem,
    collect_series,
    format_report,
)
from espnet_pruning.reports.plots import plot_forgetting_curves, write_series


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="name of the continual run")
    parser.add_argument("--task", required=True, help="the task with new data")
    parser.add_argument("--new_data", required=True, help="its training set")
    parser.add_argument("--test_set", action="append", default=[], help="SET:TASK")
    parser.add_argument(
        "--system", action="append", default=[], help="NAME:START_EXP:EXP"
    )
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        help="curves PNG (default OUT_DIR/curves.png)",
    )
    parser.add_argument(
        "--figure_link",
        default=None,
        help="path by which report.md links the figure (default: the figure's path)",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    """Collect, plot and write."""
    systems = [ContinualSystem.parse(s) for s in args.system]
    rows, tasks = collect_series(systems, args.test_set)
    write_series(rows, args.out_dir / "series.csv")
    atomic_write_text(args.out_dir / "series.json", json.dumps(rows, indent=1) + "\n")
    figure = args.figure or args.out_dir / "curves.png"
    plot_forgetting_curves(rows, figure, title=f"continual learning: {args.name}")
    text, summary = format_report(
        args.name,
        args.task,
        args.new_data,
        rows,
        tasks,
        figure=args.figure_link or str(figure),
    )
    atomic_write_text(args.out_dir / "report.md", text)
    atomic_write_text(
        args.out_dir / "report.json", json.dumps(summary, indent=1) + "\n"
    )
    print(text, end="")


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
