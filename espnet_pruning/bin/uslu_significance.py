#!/usr/bin/env python3
"""Matched-pairs test (NIST MAPSSWE) between two systems' hypotheses on one test set.

See :mod:`espnet_pruning.reports.significance`. Several comparisons can be given at once
(``--pair``); the results are printed as a markdown table (n, mean difference, W, p, the
system with fewer errors) and written as JSON. Every reference utterance needs a
hypothesis in both files (``--allow_missing`` scores a missing one as empty).

Example:
    python -m espnet_pruning.bin.uslu_significance --metric wer \\
        --ref dump/raw/test_asr/text --hyp_a expA/decode_test_asr/1best_recog/text \\
        --hyp_b expB/decode_test_asr/1best_recog/text \\
        --name_a multi --name_b agnostic --output_json sig.json
    python -m espnet_pruning.bin.uslu_significance \\
        --pair "Q=2 asr:wer:REF:HYP_A:HYP_B" --pair ... \\
        --name_a multi --name_b agnostic --json sig.json --markdown sig.md
"""

import argparse
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.reports.significance import (
    SMALL_SAMPLE,
    TooFewSegmentsError,
    matched_pairs,
    segment_errors,
)
from espnet_pruning.scoring import read_text

METRIC_CHOICES = ("wer", "accuracy")


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", choices=METRIC_CHOICES, default=None)
    parser.add_argument("--ref", type=Path, default=None, help="reference text file")
    parser.add_argument("--hyp_a", type=Path, default=None, help="system A's text")
    parser.add_argument("--hyp_b", type=Path, default=None, help="system B's text")
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        help="LABEL:METRIC:REF:HYP_A:HYP_B (repeatable; instead of the four above)",
    )
    parser.add_argument("--name_a", default="A")
    parser.add_argument("--name_b", default="B")
    parser.add_argument(
        "--segmentation",
        choices=("mapsswe", "utterance"),
        default="mapsswe",
        help="sc_stats' segments (default) or one segment per utterance",
    )
    parser.add_argument(
        "--allow_missing",
        action="store_true",
        help="score a reference without hypothesis as an empty hypothesis",
    )
    parser.add_argument("--output_json", "--json", dest="json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    return parser


def comparisons(args: argparse.Namespace) -> List[Tuple[str, str, Path, Path, Path]]:
    """``(label, metric, ref, hyp_a, hyp_b)`` of every comparison asked for."""
    items = []
    for pair in args.pair:
        parts = pair.split(":")
        if len(parts) != 5 or not all(parts):
            raise InputError(f"--pair {pair!r}: expected LABEL:METRIC:REF:HYP_A:HYP_B")
        label, metric, *paths = parts
        if metric not in METRIC_CHOICES:
            raise InputError(f"--pair {pair!r}: metric must be wer or accuracy")
        items.append((label, metric, *map(Path, paths)))
    single = (args.metric, args.ref, args.hyp_a, args.hyp_b)
    if any(x is not None for x in single):
        if any(x is None for x in single):
            raise InputError("--metric, --ref, --hyp_a and --hyp_b go together")
        items.append((args.ref.parent.name or str(args.ref), *single))
    if not items:
        raise InputError("nothing to compare: give --ref/--hyp_a/--hyp_b or --pair")
    return items


def read_inputs(
    ref: Path, hyps: Sequence[Path], allow_missing: bool
) -> Tuple[Dict[str, str], List[Dict[str, str]]]:
    """Read the reference and hypothesis files and check that their ids match.

    Raises:
        ScoringError: A file is missing or malformed (file and line named).
        InputError: A hypothesis id not in the reference (hypothesis file and line), or
            a reference id without hypothesis (reference file and line) unless
            ``allow_missing``.
    """
    refs = read_text(ref)
    ref_line = {u: i for i, u in enumerate(refs, 1)}  # read_text has no blank lines
    texts = []
    for hyp in hyps:
        texts.append(read_text(hyp))
        for line, uttid in enumerate(texts[-1], 1):
            if uttid not in refs:
                raise InputError(f"{hyp}:{line}: utterance {uttid!r} is not in {ref}")
        missing = [u for u in refs if u not in texts[-1]]
        if missing and not allow_missing:
            first = missing[0]
            raise InputError(
                f"{ref}:{ref_line[first]}: utterance {first!r} has no hypothesis in "
                f"{hyp} ({len(missing)} missing; --allow_missing scores them as empty)"
            )
    return refs, texts


def _fmt(x: Optional[float], spec: str) -> str:
    if x is None:
        return "-"
    return ("∞" if x > 0 else "-∞") if math.isinf(x) else format(x, spec)


def run(args: argparse.Namespace) -> None:
    """Test every comparison; print and write the results."""
    results = []
    for label, metric, ref, hyp_a, hyp_b in comparisons(args):
        refs, (hyps_a, hyps_b) = read_inputs(ref, (hyp_a, hyp_b), args.allow_missing)
        seg = segment_errors(metric, refs, hyps_a, hyps_b, args.segmentation)
        row = dict(
            label=label,
            metric=metric,
            segmentation=seg.segmentation,
            n_utterances=seg.n_utterances,
        )
        try:
            row.update(matched_pairs(seg.errors_a, seg.errors_b).to_dict(), note="")
        except TooFewSegmentsError as e:
            # One undefined comparison must not hide the others: flag it.
            row.update(
                n=len(seg.errors_a),
                errors_a=sum(seg.errors_a),
                errors_b=sum(seg.errors_b),
                mean=None,
                std=None,
                w=None,
                p=None,
                better=None,
                small_sample=True,
                note=str(e),
            )
        if row["small_sample"] and not row["note"]:
            row["note"] = f"fewer than {SMALL_SAMPLE} segments"
        results.append(row)
    names = {"A": args.name_a, "B": args.name_b, "same": "neither", None: "-"}
    lines = [
        f"|test set|metric|utterances|segments|errors {args.name_a}|"
        f"errors {args.name_b}|mean diff|W|p|fewer errors|note|",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"|{r['label']}|{r['metric']}|{r['n_utterances']}|{r['n']}|{r['errors_a']}|"
            f"{r['errors_b']}|{_fmt(r['mean'], '.3f')}|{_fmt(r['w'], '.2f')}|"
            f"{_fmt(r['p'], '.3g')}|{names[r['better']]}|{r['note']}|"
        )
    text = "\n".join(lines) + "\n"
    if args.json:
        summary = dict(
            name_a=args.name_a,
            name_b=args.name_b,
            segmentation=args.segmentation,
            results=results,
        )
        atomic_write_text(args.json, json.dumps(summary, indent=1) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, text)
    print(text, end="")


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
