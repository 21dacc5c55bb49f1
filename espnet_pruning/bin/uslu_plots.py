#!/usr/bin/env python3
"""Figures of a run: task overlap heatmap (Figure 3), per-layer sparsity, forgetting curves.

Example:
    python -m espnet_pruning.bin.uslu_plots overlap --mask_dir M --output fig3.png
    python -m espnet_pruning.bin.uslu_plots layers --mask_dir M --output layers.png
    python -m espnet_pruning.bin.uslu_plots forgetting --series s.csv --output fig2.png
"""

import argparse
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    for name, what in (("overlap", "Figure 3"), ("layers", "per-layer sparsity")):
        p = sub.add_parser(name, help=what)
        p.add_argument("--mask_dir", type=Path, required=True)
        p.add_argument("--output", type=Path, required=True)
    p = sub.add_parser("forgetting", help="Figure 2 from a series CSV")
    p.add_argument("--series", type=Path, required=True)
    p.add_argument("--title", default=None)
    p.add_argument("--output", type=Path, required=True)
    return parser


def run(args: argparse.Namespace) -> None:
    """Draw the figure."""
    from espnet_pruning.pruning.storage import load_masks
    from espnet_pruning.scoring import plots

    if args.figure == "forgetting":
        rows = plots.read_series(args.series)
        plots.plot_forgetting_curves(rows, args.output, title=args.title)
    elif args.figure == "overlap":
        plots.plot_overlap_heatmap(load_masks(args.mask_dir), args.output)
    else:
        plots.plot_layer_sparsity(load_masks(args.mask_dir), args.output)
    print(args.output)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
