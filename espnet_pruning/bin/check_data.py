#!/usr/bin/env python3
"""Check a UniverSLU data directory before anything is trained on it.

Kaldi consistency and every audio file (complete 16-bit PCM WAV, mono, 16 kHz), then that
every ``prompt`` names a known task and ``utt2category`` agrees with it. Errors name the
file and line and exit with status 1.

Example:
    python -m espnet_pruning.bin.check_data --data_dir data/train
"""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.corpora.audio import WavError
from espnet_pruning.corpora.kaldi import DataDirError, validate_data_dir
from espnet_pruning.errors import DataError
from espnet_pruning.specifiers import TaskRegistry


def check(data_dir: Path, tasks: TaskRegistry, check_audio: bool = True) -> dict:
    """Validate ``data_dir``; returns the number of utterances per task."""
    try:
        validate_data_dir(data_dir, check_audio=check_audio)
    except (DataDirError, WavError) as e:
        raise DataError(str(e)) from e
    counts: dict = {}
    for task in tasks.tasks_of_prompts(
        data_dir / "prompt", data_dir / "utt2category"
    ).values():
        counts[task] = counts.get(task, 0) + 1
    return counts


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, action="append")
    parser.add_argument("--task_specifiers", default=None)
    parser.add_argument("--no_audio", action="store_true", help="skip the audio checks")
    return parser


def run(args: argparse.Namespace) -> None:
    """Check every directory."""
    tasks = TaskRegistry.load(args.task_specifiers)
    for d in args.data_dir:
        counts = check(d, tasks, check_audio=not args.no_audio)
        summary = ", ".join(f"{t} {n}" for t, n in counts.items())
        print(f"{d}: OK ({summary})", file=sys.stderr)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
