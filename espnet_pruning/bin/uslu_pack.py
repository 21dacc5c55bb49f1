#!/usr/bin/env python3
"""Pack a trained UniverSLU system the ESPnet way: one zip, checksummed, self-contained.

The archive (``espnet2.main_funcs.pack_funcs`` format, see
:mod:`espnet_pruning.inference.packing`) holds the config (Whisper built from its dims, token list
inline), the model, the mask set, the task specifiers, and any ``--option`` files such as
``RESULTS.md`` and a figures directory. It is written to a temporary file and renamed.
Decode from it with ``Speech2Text.from_pretrained(zip, task=...)``.

Example:
    python -m espnet_pruning.bin.uslu_pack \\
        --train_config exp/uslu_multi_task_q2/config.yaml \\
        --model_file exp/uslu_multi_task_q2/valid.acc.best.pth \\
        --mask_dir exp/find_masks/multi_task/round2/masks \\
        --option exp/RESULTS.md --option exp/figures \\
        --outpath exp/packed/uslu_multi_task_q2.zip
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

import yaml
from espnet2.main_funcs.pack_funcs import pack
from typeguard import typechecked

from espnet_pruning.bin.cli import run_logged
from espnet_pruning.errors import InputError
from espnet_pruning.fileio import read_yaml
from espnet_pruning.inference.packing import (
    CHECKSUMS,
    checksum_lines,
    model_dims,
    self_contained_config,
)
from espnet_pruning.tasks.uslu import USLUTask


@typechecked
def pack_system(
    train_config: Union[str, Path],
    model_file: Union[str, Path],
    outpath: Union[str, Path],
    mask_dir: Optional[Union[str, Path]] = None,
    option: Sequence[Union[str, Path]] = (),
) -> Path:
    """Write the packed system to ``outpath`` (see the module docstring).

    Raises:
        InputError: A file is missing or the model does not load.
    """
    outpath = Path(outpath).resolve()
    for path in [train_config, model_file, *option] + ([mask_dir] if mask_dir else []):
        if not Path(path).exists():
            raise InputError(f"{path}: not found")
    model, _ = USLUTask.build_model_from_file(train_config, model_file, "cpu")
    conf = self_contained_config(read_yaml(train_config), model_dims(model))
    del model
    outpath.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=outpath.parent, prefix=".pack.") as tmp:
        stage = Path(tmp)
        exp = stage / "exp"
        exp.mkdir()
        shutil.copyfile(model_file, exp / "model.pth")
        files = {"model_file": "exp/model.pth"}
        if mask_dir is not None:
            shutil.copytree(mask_dir, exp / "masks")
            files["mask_dir"] = "exp/masks"
        spec = conf.get("task_specifiers")
        if isinstance(spec, str):
            shutil.copyfile(spec, exp / "task_specifiers.yaml")
            conf["task_specifiers"] = "exp/task_specifiers.yaml"
        (exp / "config.yaml").write_text(yaml.safe_dump(conf), encoding="utf-8")
        extra: List[str] = []
        for path in option:
            name = Path(path).name
            copy = shutil.copytree if Path(path).is_dir() else shutil.copyfile
            copy(path, stage / name)
            extra.append(name)
        (stage / CHECKSUMS).write_text(checksum_lines(stage), encoding="utf-8")
        partial = stage / "packed.zip"
        cwd = os.getcwd()
        os.chdir(stage)  # ESPnet's pack names members by paths relative to the cwd
        try:
            pack(
                files=files,
                yaml_files={"train_config": "exp/config.yaml"},
                option=[CHECKSUMS, *extra],
                outpath=partial,
            )
        finally:
            os.chdir(cwd)
        os.replace(partial, outpath)
    return outpath


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--train_config", required=True, type=Path)
    parser.add_argument("--model_file", required=True, type=Path)
    parser.add_argument("--mask_dir", type=Path, default=None)
    parser.add_argument(
        "--option",
        type=Path,
        action="append",
        default=[],
        help="another file or directory to include (RESULTS.md, figures); repeatable",
    )
    parser.add_argument("--outpath", required=True, type=Path, help="the zip to write")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Entry point; bad input ends with one ``ERROR:`` line and exit status 1."""
    args = get_parser().parse_args(cmd)
    run_logged(
        lambda: pack_system(
            args.train_config,
            args.model_file,
            args.outpath,
            mask_dir=args.mask_dir,
            option=args.option,
        )
    )


if __name__ == "__main__":
    main()
