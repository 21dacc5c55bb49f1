#!/usr/bin/env python3
"""Export one task's subnetwork ``m_T ⊙ θ`` of a trained UniverSLU model.

Written into ``--output_dir`` (each atomically):
    whisper.pt      openai-whisper checkpoint (``whisper.load_model`` loads it; decode with
                    the task's prompt after ``<|startoftranscript|>``, see prompt.txt)
    prompt.txt      the task's prompt tokens
    config.yaml     the training config without masks and without the Whisper file it
    model.pth       was built from (dims inline): ``uslu_inference --train_config
                    config.yaml --model_file model.pth --task T`` decodes the subnetwork
                    with no mask set
    model.sparse    the same weights with every masked tensor as 1 bit per weight plus the
                    kept values (:mod:`espnet_pruning.pruning.sparse`); load it with
                    ``load_sparse_state``
    compiled.pth    (``--formats compiled``, structured masks of ``--mask_method
    structure.json  hard_concrete``) the physically smaller model without the task's dropped
                    heads and FFN units, and which units it kept
                    (:mod:`espnet_pruning.pruning.structure_file`): ``uslu_inference
                    --train_config config.yaml --model_file compiled.pth --structure_file
                    structure.json --task T`` decodes it

Without a mask set (``--mask_dir`` or the training config's) the dense model is exported.

Example:
    python -m espnet_pruning.bin.uslu_export --task ic_slurp \\
        --train_config exp/uslu/config.yaml --model_file exp/uslu/valid.acc.best.pth \\
        --mask_dir exp/masks/multi_task/q2 --output_dir exp/export/ic_slurp
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import torch
import yaml
from typeguard import typechecked

from espnet_pruning.bin.cli import run_logged
from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_open, atomic_write_text, read_yaml
from espnet_pruning.inference.packing import model_dims, self_contained_config
from espnet_pruning.pruning.sparse import save_sparse_state
from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.pruning.structure_file import save_structure
from espnet_pruning.pruning.structured import compile_kept, kept_units_of_mask
from espnet_pruning.pruning.switch import TaskSwitcher
from espnet_pruning.tasks.uslu import USLUTask
from espnet_pruning.whisper.openai_format import (
    save_whisper_checkpoint,
    whisper_state_from_espnet,
)

FORMATS = ("whisper", "espnet", "sparse", "compiled")
#: What ``--formats`` gives by default (``compiled`` needs a structured mask).
DEFAULT_FORMATS = ("whisper", "espnet", "sparse")
DTYPES = {"fp32": None, "fp16": torch.float16}


@typechecked
def export_task(
    train_config: Union[str, Path],
    model_file: Union[str, Path],
    task: str,
    output_dir: Union[str, Path],
    mask_dir: Optional[Union[str, Path]] = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    whisper_dtype: Optional[torch.dtype] = None,
) -> Dict[str, Path]:
    """Write task ``task``'s subnetwork in the given formats; returns the files by format.

    Raises:
        InputError: Unknown task or format, no mask for the task, unreadable files.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown export format(s) {unknown}; choose from {FORMATS}")
    train_config, output_dir = Path(train_config), Path(output_dir)
    model, train_args = USLUTask.build_model_from_file(train_config, model_file, "cpu")
    spec = USLUTask.task_registry(train_args)[task]  # an unknown task is an error
    mask_set = load_masks(mask_dir) if mask_dir is not None else None
    if mask_set is None and model.masked_training is not None:
        mask_set = model.masked_training.masks
    model.masked_training = None
    masks = None
    if mask_set is not None:
        if task not in mask_set:
            raise InputError(
                f"{mask_set.source or 'mask set'}: no mask for task {task!r}; it has "
                f"{', '.join(mask_set.tasks)}"
            )
        masks = {n: m.clone() for n, m in mask_set.mask(task).items()}
        # m ⊙ θ written into the weights: the task's subnetwork as a dense model.
        TaskSwitcher(model, mask_set).switch(task)
    else:
        logging.warning(f"no mask set: exporting the dense model for {task}")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    dims = model_dims(model)
    out: Dict[str, Path] = {}
    if "compiled" in formats:
        if masks is None:
            raise InputError("--formats compiled needs a mask set (--mask_dir)")
        try:
            kept = kept_units_of_mask(model, masks)
        except ValueError as e:
            raise InputError(
                f"{mask_set.source or 'mask set'}: task {task}: no compiled export ({e})"
            ) from None
        compiled = compile_kept(model, kept)
        out["compiled"] = output_dir / "compiled.pth"
        with atomic_open(out["compiled"], binary=True) as f:
            torch.save({k: v.detach() for k, v in compiled.state_dict().items()}, f)
        save_structure(output_dir / "structure.json", task, kept)
    if "whisper" in formats:
        out["whisper"] = output_dir / "whisper.pt"
        save_whisper_checkpoint(
            out["whisper"], dims, whisper_state_from_espnet(state), whisper_dtype
        )
        atomic_write_text(output_dir / "prompt.txt", " ".join(spec.prompt) + "\n")
    if "espnet" in formats:
        out["espnet"] = output_dir / "model.pth"
        with atomic_open(out["espnet"], binary=True) as f:
            torch.save(state, f)
    if "espnet" in formats or "compiled" in formats:
        atomic_write_text(
            output_dir / "config.yaml",
            yaml.safe_dump(
                self_contained_config(read_yaml(train_config), dims), sort_keys=False
            ),
        )
    if "sparse" in formats:
        out["sparse"] = save_sparse_state(output_dir / "model.sparse", state, masks)
    for name, path in out.items():
        logging.info(f"{task}: {name} → {path} ({path.stat().st_size} bytes)")
    return out


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--task", required=True, help="task whose subnetwork to export")
    parser.add_argument("--train_config", required=True, type=Path)
    parser.add_argument("--model_file", required=True, type=Path)
    parser.add_argument("--mask_dir", type=Path, default=None, help="mask set")
    parser.add_argument("--output_dir", required=True, type=Path)
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=list(DEFAULT_FORMATS),
        help="what to write",
    )
    parser.add_argument(
        "--whisper_dtype",
        choices=tuple(DTYPES),
        default="fp32",
        help="dtype of whisper.pt (OpenAI's releases are fp16)",
    )
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one ``ERROR:`` line and exit status 1."""
    args = get_parser().parse_args(cmd)
    run_logged(
        lambda: export_task(
            args.train_config,
            args.model_file,
            args.task,
            args.output_dir,
            mask_dir=args.mask_dir,
            formats=args.formats,
            whisper_dtype=DTYPES[args.whisper_dtype],
        )
    )


if __name__ == "__main__":
    main()
