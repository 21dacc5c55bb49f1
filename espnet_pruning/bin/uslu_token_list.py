#!/usr/bin/env python3
"""Write the Whisper token list with the added tokens of the tasks and the data.

The added tokens are the prompt tokens of every task, the entity separators, the declared
labels, and the labels/entity tags found in the given data directories (``text`` plus
``prompt``), in a deterministic order (see ``TaskRegistry.added_tokens``). The output is
written atomically; ``added_tokens.txt`` beside it lists the added tokens (ids 50364+).

Example:
    python -m espnet_pruning.bin.uslu_token_list --data_dir data/train \\
        --output data/token_list/tokens.txt
"""

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import DataError
from espnet_pruning.fileio import atomic_write_text, read_kaldi_map
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.whisper.tokenizer import (
    FIRST_ADDED_ID,
    added_tokens_of,
    check_tokens_present,
    read_token_list,
    write_token_list,
)


def task_texts(data_dir: Path, tasks: TaskRegistry) -> Iterator[Tuple[str, str]]:
    """``(task, text)`` of every utterance of a data dir (task from its prompt)."""
    texts = read_kaldi_map(data_dir / "text")
    prompts = read_kaldi_map(data_dir / "prompt")
    for uid, text in texts.items():
        if uid not in prompts:
            raise DataError(f"{data_dir / 'prompt'}: no prompt for utterance {uid}")
        try:
            task = tasks.task_of_prompt(prompts[uid])
        except ValueError as e:
            raise DataError(f"{data_dir / 'prompt'}: utterance {uid}: {e}") from e
        yield task, text


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_dir",
        action="append",
        default=[],
        type=Path,
        help="Kaldi data dir with text and prompt (repeatable)",
    )
    parser.add_argument(
        "--task_specifiers",
        default=None,
        help="YAML file extending the built-in task specifiers",
    )
    parser.add_argument("--output", type=Path, help="tokens.txt to write")
    parser.add_argument(
        "--check",
        type=Path,
        default=None,
        help="instead of writing, check that this token list (e.g. one imported with "
        "whisper_import --from espnet) has every prompt and label token of the data",
    )
    return parser


def write(args: argparse.Namespace) -> List[str]:
    """Collect added tokens and write the token list; returns the added tokens."""
    tasks = TaskRegistry.load(args.task_specifiers)
    pairs = [p for d in args.data_dir for p in task_texts(d, tasks)]
    added = tasks.added_tokens(pairs)
    write_token_list(args.output, added)
    atomic_write_text(
        args.output.with_name("added_tokens.txt"), "".join(t + "\n" for t in added)
    )
    print(
        f"{args.output}: {len(added)} added tokens at ids "
        f"{FIRST_ADDED_ID}..{FIRST_ADDED_ID + len(added) - 1}",
        file=sys.stderr,
    )
    return added


def check(args: argparse.Namespace) -> None:
    """Check an existing token list against the tokens the data and the tasks need."""
    tasks = TaskRegistry.load(args.task_specifiers)
    pairs = [p for d in args.data_dir for p in task_texts(d, tasks)]
    token_list = read_token_list(args.check)
    added_tokens_of(token_list, source=str(args.check))
    check_tokens_present(token_list, tasks.added_tokens(pairs), str(args.check))
    print(
        f"{args.check}: has every prompt and label token of the data", file=sys.stderr
    )


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    parser = get_parser()
    args = parser.parse_args(cmd)
    if (args.output is None) == (args.check is None):
        parser.error("give exactly one of --output and --check")
    exit_on_input_error(lambda: check(args) if args.check else write(args))


if __name__ == "__main__":
    main()
