#!/usr/bin/env python3
"""Decode a data set with a trained UniverSLU model and one task's prompt.

Writes ESPnet-style outputs: ``<output_dir>/<n>best_recog/{text,token,token_int,score}``.
Hypotheses never contain prompt tokens.

Example:
    python -m espnet_pruning.bin.uslu_inference --task ic_slurp \\
        --train_config exp/uslu/config.yaml --model_file exp/uslu/valid.acc.best.pth \\
        --data_path_and_name_and_type dump/raw/test_ic_slurp/wav.scp,speech,sound \\
        --output_dir exp/uslu/decode_test_ic_slurp --beam_size 1
"""

import argparse
import logging
from typing import Optional, Sequence

from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from tqdm import tqdm

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.uslu.speech2text import Speech2Text


def get_parser() -> config_argparse.ArgumentParser:
    """Command-line options (also readable from ``--config decode.yaml``)."""
    parser = config_argparse.ArgumentParser(
        description="Decode with a UniverSLU model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--log_level",
        default="INFO",
        choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"),
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32"])
    parser.add_argument("--num_workers", type=int, default=0)
    group = parser.add_argument_group("Input data")
    group.add_argument(
        "--data_path_and_name_and_type",
        type=str2triple_str,
        required=True,
        action="append",
    )
    group.add_argument("--key_file", type=str_or_none, default=None)
    group.add_argument("--allow_variable_data_keys", type=str2bool, default=True)
    group = parser.add_argument_group("Model")
    group.add_argument("--train_config", required=True, help="config.yaml of training")
    group.add_argument("--model_file", required=True, help="checkpoint .pth")
    group.add_argument("--task", required=True, help="task name (its prompt is used)")
    group.add_argument(
        "--mask_dir",
        type=str_or_none,
        default=None,
        help="decode the task's subnetwork of this mask set",
    )
    group = parser.add_argument_group("Beam search")
    group.add_argument("--batch_size", type=int, default=1, choices=[1])
    group.add_argument("--nbest", type=int, default=1)
    group.add_argument("--beam_size", type=int, default=1, help="1: greedy search")
    group.add_argument("--penalty", type=float, default=0.0)
    group.add_argument(
        "--maxlenratio",
        type=float,
        default=0.0,
        help="0: encoder length; <0: at most -maxlenratio tokens",
    )
    group.add_argument("--minlenratio", type=float, default=0.0)
    group.add_argument("--normalize_length", type=str2bool, default=False)
    return parser


def inference(args: argparse.Namespace) -> int:
    """Decode every utterance; returns the number decoded."""
    set_all_random_seed(args.seed)
    device = "cuda" if args.ngpu > 0 else "cpu"
    speech2text = Speech2Text(
        train_config=args.train_config,
        model_file=args.model_file,
        task=args.task,
        device=device,
        beam_size=args.beam_size,
        penalty=args.penalty,
        maxlenratio=args.maxlenratio,
        minlenratio=args.minlenratio,
        nbest=args.nbest,
        normalize_length=args.normalize_length,
        mask_dir=args.mask_dir,
    )
    loader = USLUTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype=args.dtype,
        batch_size=1,
        key_file=args.key_file,
        num_workers=args.num_workers,
        preprocess_fn=None,
        collate_fn=USLUTask.build_collate_fn(speech2text.train_args, False),
        allow_variable_data_keys=args.allow_variable_data_keys,
        inference=True,
    )
    n = 0
    with DatadirWriter(args.output_dir) as writer:
        for keys, batch in tqdm(loader, desc=f"decode {args.task}", mininterval=5):
            speech = batch["speech"][0, : int(batch["speech_lengths"][0])]
            for rank, (text, tokens, ids, score) in enumerate(speech2text(speech), 1):
                w = writer[f"{rank}best_recog"]
                w["token"][keys[0]] = " ".join(tokens)
                w["token_int"][keys[0]] = " ".join(map(str, ids))
                w["score"][keys[0]] = str(score)
                w["text"][keys[0]] = text
            n += 1
    logging.info(f"decoded {n} utterances into {args.output_dir}")
    return n


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one message and exit status 1."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    exit_on_input_error(lambda: inference(args))


if __name__ == "__main__":
    main()
