"""Checkpoints that appear whole or not at all: ESPnet writes, a commit publishes.

ESPnet's ``Trainer.run`` writes ``checkpoint.pth``, ``{N}epoch.pth``, the averaged models
and the ``latest``/best links straight into the experiment directory with ``torch.save``
and ``symlink_to``; a kill while a file is written leaves it truncated, and a kill
between two files leaves ``checkpoint.pth`` ahead of ``latest.pth``. The project's
trainer therefore hands ESPnet a hidden *stage* directory inside the experiment
directory (``.stage/``) and commits what ESPnet wrote there at points where ESPnet
writes nothing (the start of every epoch and the end of the run):

1. every new file is flushed to disk, hard-linked into the experiment directory under
   a temporary name and renamed over the old one (``os.replace`` is atomic);
2. the links are re-created the same way;
3. ``checkpoint.pth`` comes last, so the epoch it records never runs ahead of the
   epoch files and links;
4. epoch files ESPnet deleted are deleted.

A rerun drops the stage (whatever a killed run left there) and rebuilds it from the
committed files, so ESPnet resumes from the last complete epoch. Files damaged by
something else (a copy, a full disk) are found before ESPnet reads them and reported
as one :class:`CheckpointError` naming the file and what to do.
"""

import logging
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import List, Sequence

import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import fsync_dir

STAGE = ".stage"
CHECKPOINT = "checkpoint.pth"
EPOCH_FILE = re.compile(r"[0-9]+epoch\.pth")
#: Directories ESPnet's Trainer writes plots and logs into; the stage links them.
LOG_DIRS = ("images", "tensorboard", "att_ws")


class CheckpointError(InputError):
    """A checkpoint file is damaged or missing; the message names it and the remedy."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@typechecked
def check_torch_file(path: Path) -> None:
    """Refuse a ``torch.save`` file that is not a complete zip archive.

    Reads only the archive's directory (cheap for any size); a truncated or
    zero-length file fails.

    Raises:
        CheckpointError: Naming the file.
    """
    try:
        with zipfile.ZipFile(path) as z:
            ok = any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist())
    except (OSError, zipfile.BadZipFile, EOFError):
        ok = False
    if not ok:
        raise CheckpointError(
            f"{path}: damaged or partial checkpoint (not a complete torch file); "
            + restart_hint(path.parent)
        )


def restart_hint(output_dir: Path) -> str:
    """What to do about a damaged checkpoint of the run in ``output_dir``."""
    return (
        f"restore it, or delete {output_dir / CHECKPOINT} and {output_dir}/*epoch.pth "
        "to train again from the first epoch"
    )


def _temp_name(directory: Path, name: str) -> Path:
    return directory / f".{name}.tmp-commit"


def _publish_file(src: Path, dst: Path, keep: bool) -> None:
    """``src`` becomes ``dst`` in one rename; with ``keep``, ``src`` stays a hard link."""
    if dst.exists() and not dst.is_symlink() and os.path.samefile(src, dst):
        return
    _fsync_file(src)
    if not keep:
        os.replace(src, dst)
        return
    tmp = _temp_name(dst.parent, dst.name)
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:  # a file system without hard links: copy, then rename
        shutil.copyfile(src, tmp)
        _fsync_file(tmp)
    os.replace(tmp, dst)


def _publish_link(src: Path, dst: Path) -> None:
    target = os.readlink(src)
    if dst.is_symlink() and os.readlink(dst) == target:
        return
    tmp = _temp_name(dst.parent, dst.name)
    if tmp.exists() or tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, dst)


@typechecked
def commit(stage: Path) -> None:
    """Publish what ESPnet wrote into ``stage`` to its parent (see module docstring)."""
    out = stage.parent
    entries = sorted(p for p in stage.iterdir() if p.name not in LOG_DIRS)
    files = [p for p in entries if p.is_file() and not p.is_symlink()]
    epochs = [p for p in files if EPOCH_FILE.fullmatch(p.name)]
    others = [p for p in files if p not in epochs and p.name != CHECKPOINT]
    for p in epochs:
        _publish_file(p, out / p.name, keep=True)  # averaging reads them in the stage
    for p in others:
        _publish_file(p, out / p.name, keep=False)
    for p in entries:
        if p.is_symlink():
            _publish_link(p, out / p.name)
    if (stage / CHECKPOINT).is_file():
        _publish_file(stage / CHECKPOINT, out / CHECKPOINT, keep=False)
    staged = {p.name for p in epochs}
    for p in out.iterdir():
        if EPOCH_FILE.fullmatch(p.name) and p.name not in staged:
            p.unlink()
    fsync_dir(out)


@typechecked
def committed_torch_files(output_dir: Path) -> List[Path]:
    """The regular ``.pth`` files of an experiment directory (links excluded)."""
    return sorted(
        p
        for p in output_dir.glob("*.pth")
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )


@typechecked
def prepare_stage(output_dir: Path, log_dirs: Sequence[str] = LOG_DIRS) -> Path:
    """Drop a killed run's stage and rebuild it from the committed files.

    The stage gets hard links of the epoch files (ESPnet averages and prunes them), a
    hard link of ``checkpoint.pth`` (ESPnet resumes from it; the first commit replaces
    it before ESPnet writes the next one), copies of the links and links to the log
    directories ``log_dirs`` (created in ``output_dir``). Temporary files of an
    interrupted commit are removed.

    Raises:
        CheckpointError: A committed checkpoint file is damaged (checked first).
    """
    check_committed(output_dir)
    stage = output_dir / STAGE
    if stage.is_symlink() or stage.is_file():
        stage.unlink()
    elif stage.exists():
        shutil.rmtree(stage)
    for p in output_dir.glob(".*.tmp-*"):
        if p.is_file() or p.is_symlink():
            p.unlink()
    stage.mkdir(parents=True)
    for p in output_dir.iterdir():
        if p.is_symlink() and p.suffix == ".pth":
            os.symlink(os.readlink(p), stage / p.name)
        elif p.is_file() and (EPOCH_FILE.fullmatch(p.name) or p.name == CHECKPOINT):
            os.link(p, stage / p.name)
    for name in log_dirs:
        (output_dir / name).mkdir(exist_ok=True)
        os.symlink(Path("..") / name, stage / name)
    return stage


@typechecked
def check_committed(output_dir: Path) -> None:
    """Check every committed ``.pth`` file of ``output_dir`` is a complete torch file.

    Raises:
        CheckpointError: Naming the first damaged file.
    """
    for path in committed_torch_files(output_dir):
        check_torch_file(path)


@typechecked
def release_stage(stage: Path, epoch: int) -> None:
    """Before ESPnet writes epoch ``epoch``: unlink stage files it will overwrite.

    ``torch.save`` truncates an existing file in place; a stage file that is a hard
    link of a committed one must not be written through.
    """
    for name in (CHECKPOINT, f"{epoch}epoch.pth"):
        p = stage / name
        if p.is_file() and not p.is_symlink():
            p.unlink()


@typechecked
def finished_epoch(output_dir: Path) -> int:
    """The epoch recorded in a run's committed ``checkpoint.pth`` (not in a link).

    Raises:
        CheckpointError: If ``checkpoint.pth`` is missing or damaged.
    """
    path = output_dir / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; the training run did not finish (run it again)"
        )
    check_torch_file(path)
    # mmap: only the pickled structure is read, not the weights and optimizer state.
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    epoch = state.get("reporter", {}).get("epoch") if isinstance(state, dict) else None
    if not isinstance(epoch, int):
        raise CheckpointError(f"{path}: records no epoch; not an ESPnet checkpoint")
    logging.debug(f"{path}: epoch {epoch}")
    return epoch
