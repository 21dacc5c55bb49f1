#!/usr/bin/env python3
"""Decode a data set with a trained UniverSLU model and one task's prompt.

Writes ESPnet-style outputs: ``<output_dir>/<n>best_recog/{text,token,token_int,score}``.
Hypotheses never contain prompt tokens.

Several data sets (and models or masks) can be decoded in one process with repeated
``--decode_set task=T,data=WAV_SCP,output_dir=D[,key_file=K][,model_file=M]
[,mask_dir=M][,train_config=C][,config=Y]``: each item overrides those options (``config``
is a decoding YAML whose beam-search options apply to that item only). This saves the
start-up of a process per set, which dominates on small models.

Example:
    python -m espnet_pruning.bin.uslu_inference --task ic_slurp \\
        --train_config exp/uslu/config.yaml --model_file exp/uslu/valid.acc.best.pth \\
        --data_path_and_name_and_type dump/raw/test_ic_slurp/wav.scp,speech,sound \\
        --output_dir exp/uslu/decode_test_ic_slurp --beam_size 1
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from tqdm import tqdm

from espnet_pruning.bin.cli import exit_on_input_error
from espnet_pruning.errors import InputError
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
    parser.add_argument(
        "--output_dir", default=None, help="required without --decode_set"
    )
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: one GPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32"])
    parser.add_argument("--num_workers", type=int, default=0)
    group = parser.add_argument_group("Input data")
    group.add_argument(
        "--data_path_and_name_and_type",
        type=str2triple_str,
        default=[],
        action="append",
    )
    group.add_argument(
        "--decode_set",
        default=[],
        action="append",
        help="task=T,data=WAV_SCP,output_dir=D[,key_file=K][,model_file=M]"
        "[,mask_dir=M][,train_config=C][,config=Y]; repeatable",
    )
    group.add_argument("--key_file", type=str_or_none, default=None)
    group.add_argument("--allow_variable_data_keys", type=str2bool, default=True)
    group = parser.add_argument_group("Model")
    group.add_argument("--train_config", default=None, help="config.yaml of training")
    group.add_argument("--model_file", default=None, help="checkpoint .pth")
    group.add_argument("--task", default=None, help="task name (its prompt is used)")
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


ITEM_KEYS = (
    "task",
    "data",
    "output_dir",
    "key_file",
    "model_file",
    "mask_dir",
    "train_config",
    "config",
)
REQUIRED = ("task", "output_dir", "train_config", "model_file")
BEAM_KEYS = (
    "beam_size",
    "penalty",
    "maxlenratio",
    "minlenratio",
    "nbest",
    "normalize_length",
)


def _parse_item(item: str) -> Dict[str, str]:
    fields = {}
    for part in item.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in ITEM_KEYS or not value:
            raise InputError(
                f"--decode_set {item!r}: expected KEY=VALUE pairs with keys {ITEM_KEYS}"
            )
        fields[key] = value
    return fields


def decode_jobs(args: argparse.Namespace) -> List[argparse.Namespace]:
    """One namespace per data set to decode (``--decode_set`` items or the options).

    Raises:
        InputError: For a malformed item, an unknown decoding-config key or a
            missing required option.
    """
    jobs = []
    for item in args.decode_set or [None]:
        job = argparse.Namespace(**vars(args))
        if item is not None:
            fields = _parse_item(item)
            if "config" in fields:
                with open(fields.pop("config"), encoding="utf-8") as f:
                    conf = yaml.safe_load(f) or {}
                unknown = sorted(set(conf) - set(BEAM_KEYS))
                if unknown:
                    raise InputError(
                        f"{item}: decoding config keys {unknown} cannot differ per set "
                        f"(allowed: {BEAM_KEYS})"
                    )
                vars(job).update(conf)
            if "data" in fields:
                job.data_path_and_name_and_type = [
                    (fields.pop("data"), "speech", "sound")
                ]
            vars(job).update(fields)
        missing = [k for k in REQUIRED if getattr(job, k) is None]
        if not job.data_path_and_name_and_type:
            missing.append("data_path_and_name_and_type")
        if missing:
            raise InputError(
                f"{item or 'uslu_inference'}: missing {', '.join(missing)}"
            )
        jobs.append(job)
    return jobs


def _no_keys(key_file: str) -> bool:
    """Whether an existing ``key_file`` lists no utterance (a missing one is ESPnet's
    error to report)."""
    path = Path(key_file)
    if not path.is_file():
        return False
    with path.open(encoding="utf-8") as f:
        return not any(line.strip() for line in f)


def inference(args: argparse.Namespace) -> int:
    """Decode every utterance; returns the number decoded."""
    if args.key_file is not None and _no_keys(args.key_file):
        # A job's share of a set smaller than the number of jobs (slu.sh pads the
        # split with empty key files): nothing to decode, and not an error.
        logging.info(f"{args.key_file}: no utterances, {args.output_dir} left empty")
        return 0
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
    exit_on_input_error(lambda: [inference(job) for job in decode_jobs(args)])


if __name__ == "__main__":
    main()
