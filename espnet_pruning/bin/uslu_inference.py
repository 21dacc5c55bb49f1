#!/usr/bin/env python3
"""Decode a data set with a trained UniverSLU model and one task's prompt.

Writes ESPnet-style outputs: ``<output_dir>/<n>best_recog/{text,token,token_int,score}``.
Hypotheses never contain prompt tokens. ``--batch_size N`` decodes N utterances in one beam
search (same hypotheses as one at a time).

An utterance that cannot be read or decoded (e.g. empty or non-finite audio) is reported
as one ``ERROR: <key>: <reason>`` line and skipped; every other utterance is decoded and
written, the failed keys are listed in ``<output_dir>/failed_keys``, and the process
exits with status 1 at the end. Status 0 means every utterance was decoded.

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
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import yaml
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.fileio.read_text import read_2columns_text
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.train.dataset import ESPnetDataset
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from tqdm import tqdm

from espnet_pruning.errors import InputError, exit_on_input_error, input_error_of
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.inference.speech2text import Speech2Text


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
    parser.add_argument(
        "--num_workers", type=int, default=0, help="unused (audio is read per key)"
    )
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
        "--utt2task",
        type=str_or_none,
        default=None,
        help="'<uttid> <task>' lines (e.g. a data dir's utt2category): each utterance "
        "is decoded with its own task's prompt and subnetwork (then --task is not "
        "needed)",
    )
    group.add_argument(
        "--prompt",
        type=str_or_none,
        default=None,
        help="prompt tokens for a --task that is not in the run's task specifiers",
    )
    group.add_argument(
        "--mask_dir",
        type=str_or_none,
        default=None,
        help="decode the task's subnetwork of this mask set",
    )
    group.add_argument(
        "--structure_file",
        type=str_or_none,
        default=None,
        help="structure.json of a compiled model (uslu_export --formats compiled): "
        "--model_file holds its weights, --train_config the dense model's config",
    )
    group.add_argument(
        "--compile_structures",
        type=str2bool,
        default=False,
        help="with a structured mask set (--mask_method hard_concrete): decode each "
        "task with a physically smaller model, its dropped heads and FFN units removed",
    )
    group = parser.add_argument_group("Beam search")
    group.add_argument(
        "--batch_size",
        type=int,
        default=1,
        help="utterances decoded together in one beam search",
    )
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
    "utt2task",
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
        if "task" in missing and job.utt2task is not None:
            missing.remove("task")
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


def _keys(args: argparse.Namespace) -> List[str]:
    # The utterances in order: the key file's, else the first data file's.
    key_file = args.key_file or args.data_path_and_name_and_type[0][0]
    return list(read_2columns_text(key_file))


def _task_groups(args: argparse.Namespace, keys: List[str]) -> Dict[str, List[str]]:
    # The keys of each task, tasks in order of first appearance (one switch per task).
    if args.utt2task is None:
        return {args.task: keys}
    utt2task = read_2columns_text(args.utt2task)
    missing = [k for k in keys if k not in utt2task]
    if missing:
        raise InputError(
            f"{args.utt2task}: no task for {len(missing)} utterance(s), e.g. {missing[0]}"
        )
    groups: Dict[str, List[str]] = {}
    for key in keys:
        groups.setdefault(utt2task[key], []).append(key)
    return groups


def _report(key: str, exc: BaseException, failed: List[str]) -> None:
    # One line per bad utterance; the traceback only at DEBUG level (a bug, not input).
    err = input_error_of(exc)
    reason = str(err) if err is not None else f"{type(exc).__name__}: {exc}"
    logging.debug(f"{key}: decoding failed", exc_info=exc)
    # tqdm.write keeps the line apart from the progress bar on the same stream.
    tqdm.write(f"ERROR: {key}: {reason}", file=sys.stderr)
    failed.append(key)


def _decode(
    speech2text: Speech2Text,
    items: List[Tuple[str, torch.Tensor]],
    failed: List[str],
):
    """Yield ``(key, results)``; a batch that fails is decoded one by one so that only
    the bad utterances are reported."""
    if len(items) > 1:
        try:
            results = speech2text.decode_batch([s for _, s in items])
        except Exception:  # noqa: B902 - isolated below, utterance by utterance
            results = None
        if results is not None:
            yield from zip([k for k, _ in items], results)
            return
    for key, speech in items:
        try:
            yield key, speech2text(speech)
        except Exception as e:  # noqa: B902 - reported as the utterance's error
            _report(key, e, failed)


#: The options that make a job's model: consecutive jobs alike in these share one model.
MODEL_KEYS = (
    "train_config",
    "model_file",
    "mask_dir",
    "compile_structures",
    "structure_file",
    "ngpu",
)


class ModelCache:
    """The last job's :class:`Speech2Text`, reused by the next job with the same model.

    ``slu.sh`` decodes every test set of a system in one process: building the model
    once instead of once per set saves the config parse, the model build and the
    checkpoint load of all sets but the first.
    """

    def __init__(self):
        self.key: Optional[Tuple] = None
        self.speech2text: Optional[Speech2Text] = None

    def get(self, args: argparse.Namespace, task: str) -> Speech2Text:
        """A decoder of ``args``'s model with its search settings, set to ``task``."""
        key = tuple(getattr(args, k) for k in MODEL_KEYS)
        search = {k: getattr(args, k) for k in BEAM_KEYS}
        prompt = args.prompt if args.utt2task is None else None
        if self.speech2text is None or key != self.key:
            self.speech2text = None  # the previous model is freed before the next loads
            self.speech2text = Speech2Text(
                train_config=args.train_config,
                model_file=args.model_file,
                task=task,
                prompt=prompt,
                device="cuda" if args.ngpu > 0 else "cpu",
                mask_dir=args.mask_dir,
                compile_structures=args.compile_structures,
                structure_file=args.structure_file,
                **search,
            )
            self.key = key
        else:
            self.speech2text.set_search(**search)
        return self.speech2text


def inference(
    args: argparse.Namespace, models: Optional[ModelCache] = None
) -> Tuple[int, List[str]]:
    """Decode every utterance; returns the number decoded and the keys that failed.

    Args:
        args: One job's options (:func:`decode_jobs`).
        models: Reuse the previous job's model when it is the same one.
    """
    if args.batch_size < 1:
        raise InputError(f"--batch_size must be at least 1, not {args.batch_size}")
    if args.key_file is not None and _no_keys(args.key_file):
        # A job's share of a set smaller than the number of jobs (slu.sh pads the
        # split with empty key files): nothing to decode, and not an error.
        logging.info(f"{args.key_file}: no utterances, {args.output_dir} left empty")
        return 0, []
    set_all_random_seed(args.seed)
    groups = _task_groups(args, _keys(args))
    if not groups:
        return 0, []
    prompt = args.prompt if args.utt2task is None else None
    speech2text = (models or ModelCache()).get(args, next(iter(groups)))
    # Random access by key: an unreadable utterance fails alone.
    dataset = ESPnetDataset(args.data_path_and_name_and_type, float_dtype=args.dtype)
    n, failed, pending = 0, [], []
    with DatadirWriter(args.output_dir) as writer:

        def flush():
            nonlocal n
            for key, results in _decode(speech2text, pending, failed):
                for rank, (text, tokens, ids, score) in enumerate(results, 1):
                    w = writer[f"{rank}best_recog"]
                    w["token"][key] = " ".join(tokens)
                    w["token_int"][key] = " ".join(map(str, ids))
                    w["score"][key] = str(score)
                    w["text"][key] = text
                n += 1
            pending.clear()

        for task, keys in groups.items():
            try:
                speech2text.set_task(task, prompt)
            except InputError as e:
                raise InputError(f"{args.utt2task or '--task'}: {e}") from None
            for key in tqdm(keys, desc=f"decode {task}", mininterval=5):
                try:
                    speech = speech2text.check_speech(dataset[key][1]["speech"])
                except Exception as e:  # noqa: B902 - reported as the utterance's error
                    _report(key, e, failed)
                    continue
                pending.append((key, speech))
                if len(pending) == args.batch_size:
                    flush()
            flush()
    failed_file = Path(args.output_dir) / "failed_keys"
    if failed:
        atomic_write_text(failed_file, "".join(f"{k}\n" for k in failed))
    elif failed_file.exists():
        failed_file.unlink()
    logging.info(f"decoded {n} utterances into {args.output_dir}")
    return n, failed


def run(args: argparse.Namespace) -> None:
    """Decode every job; exit with status 1 if any utterance failed."""
    failed, models = [], ModelCache()
    for job in decode_jobs(args):
        failed += inference(job, models)[1]
    if failed:
        print(
            f"ERROR: {len(failed)} utterance(s) failed (listed in failed_keys of "
            "their output directory); the others were decoded",
            file=sys.stderr,
        )
        sys.exit(1)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one message and exit status 1."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    exit_on_input_error(lambda: run(args))


if __name__ == "__main__":
    main()
