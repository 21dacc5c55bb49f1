#!/usr/bin/env python3
"""Matched-pairs test (NIST MAPSSWE) between two systems' hypotheses on one test set.

See :mod:`espnet_pruning.scoring.significance`. Several comparisons can be given at once
(``--pair``); the results are printed as a markdown table and written as JSON.

Example:
    python -m espnet_pruning.bin.uslu_significance --metric wer \\
        --ref dump/raw/test_asr/text --hyp_a expA/decode_test_asr/1best_recog/text \\
        --hyp_b expB/decode_test_asr/1best_recog/text --name_a multi --name_b agnostic
    python -m espnet_pruning.bin.uslu_significance \\
        --pair "Q=2 asr:wer:REF:HYP_A:HYP_B" --pair ... --name_a multi --name_b agnostic \\
        --json sig.json --markdown sig.md
"""

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_write_text


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", choices=["wer", "accuracy"], default=None)
    parser.add_argument("--ref", type=Path, default=None)
    parser.add_argument("--hyp_a", type=Path, default=None)
    parser.add_argument("--hyp_b", type=Path, default=None)
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        help="LABEL:METRIC:REF:HYP_A:HYP_B (repeatable; instead of the four above)",
    )
    parser.add_argument("--name_a", default="A")
    parser.add_argument("--name_b", default="B")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    return parser


def comparisons(args: argparse.Namespace):
    """``(label, metric, ref, hyp_a, hyp_b)`` of every comparison asked for."""
    items = []
    for pair in args.pair:
        parts = pair.split(":")
        if len(parts) != 5:
            raise InputError(f"--pair {pair!r}: expected LABEL:METRIC:REF:HYP_A:HYP_B")
        label, metric, *paths = parts
        if metric not in ("wer", "accuracy"):
            raise InputError(f"--pair {pair!r}: metric must be wer or accuracy")
        items.append((label, metric, *map(Path, paths)))
    single = (args.metric, args.ref, args.hyp_a, args.hyp_b)
    if any(x is not None for x in single):
        if any(x is None for x in single):
            raise InputError("--metric, --ref, --hyp_a and --hyp_b go together")
        items.append((args.ref.parent.name, *single))
    if not items:
        raise InputError("nothing to compare: give --ref/--hyp_a/--hyp_b or --pair")
    return items


def run(args: argparse.Namespace) -> None:
    """Test every comparison; print and write the results."""
    from espnet_pruning.scoring import read_text
    from espnet_pruning.scoring.significance import matched_pairs, utterance_errors

    results = []
    for label, metric, ref, hyp_a, hyp_b in comparisons(args):
        _, ea, eb = utterance_errors(
            metric, read_text(ref), read_text(hyp_a), read_text(hyp_b)
        )
        r = matched_pairs(ea, eb)
        results.append(dict(label=label, metric=metric, **r.to_dict()))
    names = {"A": args.name_a, "B": args.name_b, "same": "neither"}
    lines = [
        f"|test set|metric|errors {args.name_a}|errors {args.name_b}|n|W|p|fewer errors|",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"|{r['label']}|{r['metric']}|{r['errors_a']}|{r['errors_b']}|{r['n']}|"
            f"{r['w']:.2f}|{r['p']:.3g}|{names[r['better']]}|"
        )
    text = "\n".join(lines) + "\n"
    if args.json:
        summary = dict(name_a=args.name_a, name_b=args.name_b, results=results)
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
