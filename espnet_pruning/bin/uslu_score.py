#!/usr/bin/env python3
"""Score hypotheses against references with one of the task metrics.

Example:
    python -m espnet_pruning.bin.uslu_score --metric accuracy \\
        --ref data/test/text --hyp exp/decode/test/text --out_dir exp/decode/test/score

Prints the metric and writes ``OUT_DIR/result.json`` (written atomically); for ``wer`` the
trn files and sclite's report ``result.txt`` are kept in ``OUT_DIR`` too. Bad input ends
with one ``ERROR:`` line and exit status 1. Many decodings are scored in one process with
repeated ``--item METRIC:REF:HYP:OUT_DIR`` (instead of the four options).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from typeguard import typechecked

from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.scoring import METRICS, MetricResult, ScoringError, read_text

RESULT_JSON = "result.json"


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", choices=sorted(METRICS))
    parser.add_argument("--ref", type=Path, help="reference text file")
    parser.add_argument("--hyp", type=Path, help="hypothesis text file")
    parser.add_argument("--out_dir", type=Path, help="where result.json is written")
    parser.add_argument(
        "--item",
        action="append",
        default=[],
        help="METRIC:REF:HYP:OUT_DIR (repeatable; instead of the four above)",
    )
    return parser


def score_items(args: argparse.Namespace):
    """``(metric, ref, hyp, out_dir)`` of every scoring asked for."""
    items = []
    for item in args.item:
        parts = item.split(":")
        if len(parts) != 4 or parts[0] not in METRICS:
            raise ScoringError(
                f"--item {item!r}: expected METRIC:REF:HYP:OUT_DIR, METRIC one of "
                f"{sorted(METRICS)}"
            )
        items.append((parts[0], *map(Path, parts[1:])))
    single = (args.metric, args.ref, args.hyp, args.out_dir)
    if any(x is not None for x in single) or not items:
        if any(x is None for x in single):
            raise ScoringError("--metric, --ref, --hyp and --out_dir are required")
        items.append(single)
    return items


@typechecked
def write_json_atomic(path: Path, obj: Dict[str, Any]) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary sibling file and a rename.

    Args:
        path: Destination.
        obj: JSON-serialisable mapping.
    """
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@typechecked
def score_files(metric: str, ref: Path, hyp: Path, out_dir: Path) -> MetricResult:
    """Score ``hyp`` against ``ref`` and write ``out_dir/result.json``.

    Args:
        metric: A key of :data:`espnet_pruning.scoring.METRICS`.
        ref: Reference text file (``<uttid> <text>`` lines).
        hyp: Hypothesis text file.
        out_dir: Output directory (created if needed).

    Returns:
        The result.

    Raises:
        ScoringError: Bad input files (or sclite problems for ``wer``).
    """
    refs = read_text(ref)
    hyps = read_text(hyp)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScoringError(f"cannot create {out_dir}: {e.strerror or e}") from None
    try:
        result = METRICS[metric](refs, hyps, out_dir)
    except ScoringError as e:
        raise ScoringError(_where(e, (ref, refs), (hyp, hyps)) + str(e)) from None
    record = result.to_dict()
    record["ref"] = str(ref)
    record["hyp"] = str(hyp)
    write_json_atomic(out_dir / RESULT_JSON, record)
    return result


def _where(error: ScoringError, ref, hyp) -> str:
    """``FILE:LINE: `` of the utterance an error names, else both files."""
    if error.uttid is not None:
        path, texts = hyp if error.side == "hyp" else ref
        if error.uttid in texts:
            # read_text refuses blank lines, so file order gives the line number.
            return f"{path}:{list(texts).index(error.uttid) + 1}: "
    return f"scoring {hyp[0]} against {ref[0]}: "


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    try:
        items = score_items(args)
        for metric, ref, hyp, out_dir in items:
            result = score_files(metric, ref, hyp, out_dir)
            report(result, out_dir if len(items) > 1 else None)
    except ScoringError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)


def report(result: MetricResult, where: Optional[Path]) -> None:
    """Print the result (and warn about missing hypotheses)."""
    missing = result.details.get("n_missing", 0)
    note = f", {missing} hypotheses missing (scored as empty)" if missing else ""
    prefix = f"{where}: " if where is not None else ""
    print(f"{prefix}{result.name}: {result.value:.2f} (n={result.n}{note})")
    if missing:
        print(
            f"WARNING: {prefix}{missing} of {result.n} references have no hypothesis",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
