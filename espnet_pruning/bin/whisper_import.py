#!/usr/bin/env python3
"""Import Whisper weights into an openai-whisper checkpoint (``dims`` + ``model_state_dict``).

Sources:
    ct2      a CTranslate2 / faster-whisper folder (``model.bin`` + ``config.json``)
    hf       a Hugging Face transformers folder (``config.json`` + ``model.safetensors``)
    espnet   an ESPnet experiment: SRC is its ``config.yaml``, ``--model_file`` its ``.pth``;
             the experiment's token list is written too, in the experiment's order
    openai   an openai-whisper ``.pt`` (re-written, e.g. in another dtype)

The output loads with ``whisper.load_model(OUTPUT)`` (strict keys) and with our encoder and
decoder (``whisper_checkpoint: OUTPUT``). It is written atomically. Every problem (unknown
layout, missing tensor, wrong shape, token missing from the token list) is one ``ERROR:``
line naming the file and tensor or token, with exit status 1.

Examples:
    python -m espnet_pruning.bin.whisper_import --from ct2 faster-whisper-base/ \\
        --output downloads/whisper/base.pt
    python -m espnet_pruning.bin.whisper_import --from espnet exp/universlu/config.yaml \\
        --model_file exp/universlu/valid.acc.ave.pth --output universlu.pt \\
        --token_list universlu_tokens.txt --task_specifiers universlu_tasks.yaml
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.specifiers import TaskRegistry
from espnet_pruning.whisper.checkpoint import WhisperCheckpointError, load_whisper
from espnet_pruning.whisper.ct2_format import whisper_from_ct2
from espnet_pruning.whisper.espnet_format import whisper_from_espnet
from espnet_pruning.whisper.hf_format import whisper_from_hf
from espnet_pruning.whisper.openai_format import (
    check_whisper_state,
    save_whisper_checkpoint,
)
from espnet_pruning.whisper.tokenizer import (
    TokenListError,
    added_tokens_of,
    check_tokens_present,
)

DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "keep": None}


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--from",
        dest="source_format",
        required=True,
        choices=("ct2", "hf", "espnet", "openai"),
        help="format of SRC",
    )
    parser.add_argument("src", type=Path, help="folder, config.yaml or .pt to import")
    parser.add_argument("--output", required=True, type=Path, help="output .pt")
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default="keep",
        help="dtype of the written weights (keep: as in SRC)",
    )
    parser.add_argument(
        "--model_file", type=Path, default=None, help="espnet: the model .pth"
    )
    parser.add_argument(
        "--dims_from",
        type=Path,
        default=None,
        help="espnet: an openai-whisper .pt of the same architecture (head counts); "
        "not needed for OpenAI's released model names",
    )
    parser.add_argument(
        "--token_list",
        type=Path,
        default=None,
        help="espnet: where to write the experiment's token list "
        "(default: OUTPUT with _tokens.txt in place of .pt)",
    )
    parser.add_argument(
        "--task_specifiers",
        default=None,
        help="espnet: YAML of task specifiers whose prompt and label tokens must all be in "
        "the token list (default: the built-in ones)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="espnet: check only these tasks of the specifiers",
    )
    return parser


def check_specifier_tokens(
    token_list: List[str],
    specifiers: Optional[str],
    tasks: Optional[Sequence[str]],
    source: str,
) -> None:
    """Every prompt, separator and declared label token must be in the token list."""
    registry = TaskRegistry.load(specifiers)
    if tasks:
        unknown = [t for t in tasks if t not in registry]
        if unknown:
            raise WhisperCheckpointError(
                f"--tasks: unknown task(s) {unknown}; known: {registry.names}"
            )
        registry = registry.subset(tasks)
    required = registry.added_tokens() + [t for task in registry for t in task.prompt]
    try:
        check_tokens_present(token_list, required, source)
    except TokenListError as e:
        raise TokenListError(
            f"{e}. Write task specifiers with the model's own tokens (--task_specifiers) "
            "or check fewer tasks (--tasks)"
        ) from e


def import_whisper(args: argparse.Namespace) -> None:
    """Read SRC, write the checkpoint (and for ESPnet the token list)."""
    token_list = None
    if args.source_format == "ct2":
        dims, state = whisper_from_ct2(args.src)
    elif args.source_format == "hf":
        dims, state = whisper_from_hf(args.src)
    elif args.source_format == "openai":
        model = load_whisper(args.src)
        dims, state = model.dims, model.state_dict()
    else:
        if args.model_file is None:
            raise WhisperCheckpointError("--from espnet needs --model_file <the .pth>")
        dims, state, token_list = whisper_from_espnet(
            args.src, args.model_file, args.dims_from
        )
        added_tokens_of(token_list, source=str(args.src))
        check_specifier_tokens(
            token_list, args.task_specifiers, args.tasks, str(args.src)
        )
    check_whisper_state(dims, state, str(args.src))
    save_whisper_checkpoint(args.output, dims, state, dtype=DTYPES[args.dtype])
    logging.info("wrote %s (%s)", args.output, dims)
    if token_list is not None:
        path = args.token_list or args.output.with_name(
            args.output.stem + "_tokens.txt"
        )
        atomic_write_text(path, "".join(t + "\n" for t in token_list))
        logging.info("wrote %s (%d tokens)", path, len(token_list))


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point."""
    logging.basicConfig(level="INFO", format="%(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    exit_on_input_error(lambda: import_whisper(args))


if __name__ == "__main__":
    main()
