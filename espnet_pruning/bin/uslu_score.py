#!/usr/bin/env python3
"""Score hypotheses against references with one of the task metrics.

Example:
    python -m espnet_pruning.bin.uslu_score --metric accuracy \\
        --ref data/test/text --hyp exp/decode/test/text --out_dir exp/decode/test/score

Prints the metric and writes ``OUT_DIR/result.json`` (written atomically); for ``wer`` the
trn files and sclite's report ``result.txt`` are kept in ``OUT_DIR`` too. Bad input ends
with one ``ERROR:`` line and exit status 1.
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
    parser.add_argument("--metric", required=True, choices=sorted(METRICS))
    parser.add_argument("--ref", required=True, type=Path, help="reference text file")
    parser.add_argument("--hyp", required=True, type=Path, help="hypothesis text file")
    parser.add_argument(
        "--out_dir", required=True, type=Path, help="where result.json is written"
    )
    return parser


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
    result = METRICS[metric](refs, hyps, out_dir)
    record = result.to_dict()
    record["ref"] = str(ref)
    record["hyp"] = str(hyp)
    write_json_atomic(out_dir / RESULT_JSON, record)
    return result


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    try:
        result = score_files(args.metric, args.ref, args.hyp, args.out_dir)
    except ScoringError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
    missing = result.details.get("n_missing", 0)
    note = f", {missing} hypotheses missing (scored as empty)" if missing else ""
    print(f"{result.name}: {result.value:.2f} (n={result.n}{note})")
    if missing:
        print(
            f"WARNING: {missing} of {result.n} references have no hypothesis",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
