#!/usr/bin/env python3
"""Figures of a run: task overlap (Figure 3), per-layer sparsity, forgetting curves, and
the overlap of kept heads and FFN units (structured masks).

See :mod:`espnet_pruning.reports.plots`. The series of ``forgetting`` is a CSV with the
header ``system,step,task,metric,value`` or a JSON list of such objects (``.json``).

Example:
    python -m espnet_pruning.bin.uslu_plots overlap --mask_dir M --output fig3.png \\
        --label er_iemocap=ER --label asr_librispeech=ASR
    python -m espnet_pruning.bin.uslu_plots layers --mask_dir M --output layers.png
    python -m espnet_pruning.bin.uslu_plots forgetting --series s.csv --output fig2.png
    python -m espnet_pruning.bin.uslu_plots structures --mask_dir M \
        --train_config exp/uslu_train_uslu/config.yaml --output structures.png
"""

import argparse
from pathlib import Path
from typing import Dict, Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import InputError
from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.pruning.structured import structure_overlap
from espnet_pruning.reports import plots
from espnet_pruning.tasks.uslu import USLUTask


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    for name, what in (("overlap", "Figure 3"), ("layers", "per-layer sparsity")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--mask_dir", type=Path, required=True)
        p.add_argument("--output", type=Path, required=True)
        p.add_argument("--title", default=None)
        if name == "overlap":
            p.add_argument(
                "--label",
                action="append",
                default=[],
                help="TASK=LABEL: show TASK as LABEL (repeatable)",
            )
    p = sub.add_parser(
        "structures",
        help="overlap of the tasks' kept heads and FFN units (structured masks)",
    )
    p.add_argument("--mask_dir", type=Path, required=True)
    p.add_argument(
        "--train_config",
        type=Path,
        required=True,
        help="config.yaml of a training run of the model (its structures)",
    )
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--title", default=None)
    p = sub.add_parser("forgetting", help="Figure 2 from a series CSV or JSON")
    p.add_argument("--series", type=Path, required=True)
    p.add_argument("--title", default=None)
    p.add_argument("--output", type=Path, required=True)
    return parser


def parse_labels(items: Sequence[str]) -> Dict[str, str]:
    """``TASK=LABEL`` items as a dict."""
    labels = {}
    for item in items:
        task, sep, label = item.partition("=")
        if not sep or not task or not label:
            raise InputError(f"--label {item!r}: expected TASK=LABEL")
        labels[task] = label
    return labels


def run(args: argparse.Namespace) -> None:
    """Draw the figure."""
    if args.figure == "forgetting":
        rows = plots.read_series(args.series)
        plots.plot_forgetting_curves(rows, args.output, title=args.title)
    elif args.figure == "overlap":
        labels = parse_labels(args.label)
        masks = load_masks(args.mask_dir)
        unknown = sorted(set(labels) - set(masks.tasks))
        if unknown:
            raise InputError(
                f"--label for unknown tasks {unknown}; tasks: {masks.tasks}"
            )
        kwargs = {} if args.title is None else {"title": args.title}
        plots.plot_overlap_heatmap(masks, args.output, task_labels=labels, **kwargs)
    elif args.figure == "structures":
        model, _ = USLUTask.build_unmasked_model(args.train_config)
        try:
            overlap = structure_overlap(model, load_masks(args.mask_dir))
        except ValueError as e:
            raise InputError(f"{args.mask_dir}: {e}") from None
        title = args.title or "Overlap of kept heads and FFN units between tasks"
        plots.plot_overlap_heatmap(overlap, args.output, title=title)
    else:
        kwargs = {} if args.title is None else {"title": args.title}
        plots.plot_layer_sparsity(load_masks(args.mask_dir), args.output, **kwargs)
    print(args.output)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
