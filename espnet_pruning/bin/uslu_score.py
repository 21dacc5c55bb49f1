#!/usr/bin/env python3
"""Score hypotheses against references with one of the task metrics.

Example:
    python -m espnet_pruning.bin.uslu_score --metric accuracy \\
        --ref data/test/text --hyp exp/decode/test/text --out_dir exp/decode/test/score

Prints the metric and writes ``OUT_DIR/result.json`` (written atomically); for ``wer`` the
trn files and sclite's report ``result.txt`` are kept in ``OUT_DIR`` too. Bad input ends
with one ``ERROR:`` line and exit status 1. Many decodings are scored in one process with
repeated ``--item METRIC[+FIGURE...]:REF:HYP:OUT_DIR`` (instead of the four options).

``--figures`` (or ``+FIGURE`` in an item) scores figures beside the metric, e.g.
``slurp_intent`` (SLURP's scenario and action accuracy); they are kept in ``result.json``
under ``details``. References without a hypothesis are skipped by default, as SLURP's
official scorer does (``--missing empty`` scores them as empty hypotheses); their number
is printed and kept in ``result.json`` (``details.n_missing``) either way.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from typeguard import typechecked

from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.reports.figures import report_figures
from espnet_pruning.scoring import METRICS, MetricResult, ScoringError, read_text
from espnet_pruning.scoring.registry import FIGURES
from espnet_pruning.scoring.text import MISSING_POLICIES, apply_missing_policy

RESULT_JSON = "result.json"


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", choices=sorted(METRICS))
    parser.add_argument("--ref", type=Path, help="reference text file")
    parser.add_argument("--hyp", type=Path, help="hypothesis text file")
    parser.add_argument("--out_dir", type=Path, help="where result.json is written")
    parser.add_argument(
        "--figures",
        nargs="+",
        default=[],
        choices=sorted(FIGURES),
        help="figures scored beside --metric",
    )
    parser.add_argument(
        "--item",
        action="append",
        default=[],
        help="METRIC[+FIGURE...]:REF:HYP:OUT_DIR (repeatable; instead of the options "
        "above)",
    )
    parser.add_argument(
        "--missing",
        choices=MISSING_POLICIES,
        default="skip",
        help="references without a hypothesis: skip them (SLURP's official scorer) or "
        "score them as empty hypotheses (default: %(default)s)",
    )
    return parser


def score_items(args: argparse.Namespace):
    """``(metric, figures, ref, hyp, out_dir)`` of every scoring asked for."""
    items = []
    for item in args.item:
        parts = item.split(":")
        names = parts[0].split("+")
        if (
            len(parts) != 4
            or names[0] not in METRICS
            or any(f not in FIGURES for f in names[1:])
        ):
            raise ScoringError(
                f"--item {item!r}: expected METRIC[+FIGURE...]:REF:HYP:OUT_DIR, METRIC "
                f"one of {sorted(METRICS)}, FIGURE one of {sorted(FIGURES)}"
            )
        items.append((names[0], tuple(names[1:]), *map(Path, parts[1:])))
    single = (args.metric, args.ref, args.hyp, args.out_dir)
    if any(x is not None for x in single) or not items:
        if any(x is None for x in single):
            raise ScoringError("--metric, --ref, --hyp and --out_dir are required")
        items.append((args.metric, tuple(args.figures), *single[1:]))
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
def score_files(
    metric: str,
    ref: Path,
    hyp: Path,
    out_dir: Path,
    figures: Sequence[str] = (),
    missing: str = "skip",
) -> MetricResult:
    """Score ``hyp`` against ``ref`` and write ``out_dir/result.json``.

    Args:
        metric: A key of :data:`espnet_pruning.scoring.METRICS`.
        ref: Reference text file (``<uttid> <text>`` lines).
        hyp: Hypothesis text file.
        out_dir: Output directory (created if needed).
        figures: Keys of :data:`espnet_pruning.scoring.registry.FIGURES`, each scored
            into ``details[<name>]``.
        missing: ``skip`` or ``empty``
            (:func:`espnet_pruning.scoring.text.apply_missing_policy`).

    Returns:
        The result; ``n`` counts the scored utterances, ``details`` has ``n_missing``
        (references without a hypothesis) and ``missing`` (the policy).

    Raises:
        ScoringError: Bad input files (or sclite problems for ``wer``).
    """
    all_refs = read_text(ref)
    hyps = read_text(hyp)
    refs, missing_ids = apply_missing_policy(all_refs, hyps, missing)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScoringError(f"cannot create {out_dir}: {e.strerror or e}") from None
    try:
        result = METRICS[metric](refs, hyps, out_dir)
    except ScoringError as e:
        raise ScoringError(_where(e, (ref, refs), (hyp, hyps)) + str(e)) from None
    for name in figures:
        result.details[name] = FIGURES[name](refs, hyps)
    result.details["n_missing"] = len(missing_ids)
    result.details["missing"] = missing
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
        for metric, figures, ref, hyp, out_dir in items:
            result = score_files(metric, ref, hyp, out_dir, figures, args.missing)
            report(result, out_dir if len(items) > 1 else None)
    except ScoringError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)


def report(result: MetricResult, where: Optional[Path]) -> None:
    """Print the result with its figures (and warn about missing hypotheses)."""
    missing = result.details.get("n_missing", 0)
    skipped = result.details.get("missing") == "skip"
    how = "skipped" if skipped else "scored as empty"
    note = f", {missing} hypotheses missing ({how})" if missing else ""
    prefix = f"{where}: " if where is not None else ""
    figures = "".join(
        f", {k} {v:.2f}" for k, v in report_figures(result.to_dict()).items()
    )
    print(f"{prefix}{result.name}: {result.value:.2f} (n={result.n}{note}){figures}")
    if missing:
        total = result.n + missing if skipped else result.n
        print(
            f"WARNING: {prefix}{missing} of {total} references have no hypothesis "
            f"({how})",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
