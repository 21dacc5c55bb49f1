"""Mask sets on disk: one bit per weight per task, a JSON manifest, atomic replacement.

Layout of a mask directory::

    manifest.json     format name and version, bit order, tasks, tensor names (sorted)
                      and shapes, the pruning scope policy that chose them,
                      n_model_params, and per task: file name, n_total, n_kept, kept
                      count per tensor (in name order), sha256 of the file; and
                      ``checksum``: the sha256 of the manifest's canonical JSON
                      (sorted keys, no spaces) without the checksum itself
    <task>.mask       the task's masks concatenated in manifest order, each flattened
                      row-major, packed 8 per byte with ``numpy.packbits(...,
                      bitorder="little")``: element ``i`` is bit ``i % 8`` (least
                      significant first) of byte ``i // 8``; unused bits of the last
                      byte are 0. Size: exactly ``ceil(n_total / 8)`` bytes.

No pickle anywhere; loading validates sizes, checksums and counts and raises
:class:`MaskFileError` naming the file. :func:`save_masks` writes into a temporary
sibling directory and renames it into place, so readers never see a half-written set
and an existing set is replaced only after the new one is complete; the next save
removes what a killed save left and restores a set a kill left moved aside.

Version 1 manifests (no checksum, no scope) are refused with the command that upgrades
them (:func:`upgrade_masks`, ``uslu_masks upgrade``).
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import fsync_dir
from espnet_pruning.pruning.masks import MaskError, MaskSet, check_task_name
from espnet_pruning.pruning.scope import PruningScope

FORMAT = "espnet_pruning.masks"
VERSION = 2
#: Version 1: no checksum and no scope; read only by :func:`upgrade_masks`.
LEGACY_VERSION = 1
MANIFEST = "manifest.json"
BITORDER = "little"
SUFFIX = ".mask"

#: Elements packed/unpacked at a time (a multiple of 8 keeps byte alignment).
_CHUNK = 1 << 24


class MaskFileError(InputError):
    """A mask directory or file is missing, corrupt or does not fit; names the file."""


def _flat_pieces(maskset: MaskSet, task: str) -> Iterator[np.ndarray]:
    """The task's masks in manifest order as flat uint8 0/1 pieces."""
    for name, m in maskset.mask(task).items():
        flat = m.detach().reshape(-1)
        for start in range(0, flat.numel(), _CHUNK):
            yield flat[start : start + _CHUNK].cpu().numpy().view(np.uint8)


def _write_packed(path: Path, pieces: Iterator[np.ndarray]) -> str:
    """Pack 0/1 pieces into ``path`` bit by bit; returns the sha256 hex digest."""
    digest = hashlib.sha256()
    carry = np.zeros(0, dtype=np.uint8)
    with open(path, "wb") as f:
        for piece in pieces:
            if carry.size:
                piece = np.concatenate([carry, piece])
            whole = piece.size - piece.size % 8
            data = np.packbits(piece[:whole], bitorder=BITORDER).tobytes()
            digest.update(data)
            f.write(data)
            carry = piece[whole:].copy()
        if carry.size:
            data = np.packbits(carry, bitorder=BITORDER).tobytes()
            digest.update(data)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def manifest_checksum(manifest: Mapping) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its ``checksum`` key."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _manifest(maskset: MaskSet, files: Dict[str, str], digests: Dict[str, str]) -> dict:
    per_task = {}
    for task in maskset.tasks:
        counts = maskset.kept_per_tensor(task)
        per_task[task] = {
            "file": files[task],
            "n_total": maskset.numel(),
            "n_kept": sum(counts.values()),
            "per_tensor": [counts[n] for n in maskset.names],
            "sha256": digests[task],
        }
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "bitorder": BITORDER,
        "tasks": list(maskset.tasks),
        "names": list(maskset.names),
        "shapes": [list(s) for s in maskset.shapes.values()],
        "scope": None if maskset.scope is None else maskset.scope.to_dict(),
        "n_model_params": maskset.n_model_params,
        "masks": per_task,
    }
    manifest["checksum"] = manifest_checksum(manifest)
    return manifest


@typechecked
def save_masks(maskset: MaskSet, directory: Union[str, Path]) -> Path:
    """Write ``maskset`` to ``directory`` atomically (replacing an existing mask set).

    Args:
        maskset: The masks.
        directory: Target directory. It must not exist, be empty, or hold a mask set
            (a directory with a ``manifest.json``), which is replaced.

    Returns:
        The directory.

    Raises:
        MaskFileError: If ``directory`` exists and is neither empty nor a mask set.
        OSError: If writing fails; an existing mask set is then left intact.

    Examples:
        >>> import tempfile
        >>> ms = MaskSet.ones(["asr"], {"w": (3, 5)})
        >>> d = save_masks(ms, Path(tempfile.mkdtemp()) / "masks")
        >>> (d / "asr.mask").stat().st_size, load_masks(d) == ms
        (2, True)
    """
    directory = Path(directory)
    _clean_debris(directory)
    if directory.exists() and (
        not directory.is_dir()
        or (any(directory.iterdir()) and not (directory / MANIFEST).is_file())
    ):
        raise MaskFileError(
            f"{directory} exists and is not a mask directory; refusing to replace it"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        files, digests = {}, {}
        for task in maskset.tasks:
            files[task] = task + SUFFIX
            digests[task] = _write_packed(
                tmp / files[task], _flat_pieces(maskset, task)
            )
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(_manifest(maskset, files, digests), f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        old = None
        if directory.exists():
            # Two renames: the old set is moved aside only once the new one is whole.
            old = Path(
                tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent)
            )
            os.rename(directory, old / "set")
        try:
            os.rename(tmp, directory)
        except BaseException:
            if old is not None:
                os.rename(old / "set", directory)
            raise
        fsync_dir(directory.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _aside(directory: Path) -> List[Path]:
    """Sets a killed save moved aside (``.<name>.old-*/set``), newest first."""
    olds = directory.parent.glob(f".{directory.name}.old-*")
    return sorted(
        (p / "set" for p in olds if (p / "set" / MANIFEST).is_file()),
        key=lambda p: p.stat().st_mtime_ns,
        reverse=True,
    )


def _clean_debris(directory: Path) -> None:
    """Restore a set a killed save left moved aside; remove its temporary folders."""
    if not directory.parent.is_dir():
        return
    aside = _aside(directory)
    if aside and not directory.exists() and not directory.is_symlink():
        os.rename(aside[0], directory)
        fsync_dir(directory.parent)
    for pattern in (f".{directory.name}.tmp-*", f".{directory.name}.old-*"):
        for p in directory.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------- loading
def _upgrade_hint(directory: Path) -> str:
    return (
        f"upgrade it with: python -m espnet_pruning.bin.uslu_masks upgrade "
        f"--mask_dir {directory} --train_config <config.yaml of the model the masks "
        "were made for> [--scope_config <the PruningScope YAML used at init>]"
    )


def _read_manifest(directory: Path, legacy: bool = False) -> dict:
    path = directory / MANIFEST
    if not directory.exists():
        aside = _aside(directory)
        hint = (
            f"; an interrupted save left the previous set in {aside[0]} (run the "
            "command again, or move it back)"
            if aside
            else ""
        )
        raise MaskFileError(f"mask directory {directory} does not exist{hint}")
    if not directory.is_dir():
        raise MaskFileError(
            f"{directory}: not a mask directory (a file; expected a directory with "
            f"{MANIFEST})"
        )
    if not path.is_file():
        raise MaskFileError(f"{path}: missing manifest (not a mask directory?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MaskFileError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise MaskFileError(f"{path}: not a {FORMAT} manifest")
    version = manifest.get("version")
    if version == LEGACY_VERSION and not legacy:
        raise MaskFileError(
            f"{path}: format version 1 has no checksum and no pruning scope; "
            + _upgrade_hint(directory)
        )
    if version != (LEGACY_VERSION if legacy else VERSION):
        raise MaskFileError(
            f"{path}: format version {version!r} is not supported (expected "
            f"{LEGACY_VERSION if legacy else VERSION})"
        )
    if not legacy and manifest.get("checksum") != manifest_checksum(manifest):
        raise MaskFileError(f"{path}: manifest checksum mismatch (corrupt manifest)")
    try:
        _check_manifest(manifest, legacy)
    except (KeyError, TypeError, ValueError) as e:
        raise MaskFileError(f"{path}: malformed manifest ({e!r})") from None
    return manifest


def _check_manifest(m: dict, legacy: bool = False) -> None:
    if not legacy and m["scope"] is not None:
        if not isinstance(m["scope"], dict):
            raise TypeError("scope must be an object or null")
        PruningScope.from_dict(m["scope"])
    if m["bitorder"] != BITORDER:
        raise ValueError(f"bitorder {m['bitorder']!r}")
    names, shapes, tasks = m["names"], m["shapes"], m["tasks"]
    if not (isinstance(names, list) and isinstance(shapes, list)):
        raise TypeError("names and shapes must be lists")
    if len(names) != len(shapes) or names != sorted(set(names)):
        raise ValueError("names must be sorted, unique and match shapes")
    for s in shapes:
        if not isinstance(s, list) or not all(isinstance(x, int) and x >= 0 for x in s):
            raise ValueError(f"bad shape {s!r}")
    n_params = m["n_model_params"]
    if n_params is not None and not isinstance(n_params, int):
        raise TypeError("n_model_params must be an int or null")
    if not isinstance(tasks, list) or set(tasks) != set(m["masks"]):
        raise ValueError("tasks do not match the per-task entries")
    for task in tasks:
        check_task_name(task)
        entry = m["masks"][task]
        if entry["file"] != task + SUFFIX:
            raise ValueError(f"unexpected file name {entry['file']!r}")
        if len(entry["per_tensor"]) != len(names):
            raise ValueError(f"task {task}: per_tensor has the wrong length")
        for key in ("n_total", "n_kept"):
            if not isinstance(entry[key], int):
                raise TypeError(f"task {task}: {key} must be an int")
        if not isinstance(entry["sha256"], str):
            raise TypeError(f"task {task}: sha256 must be a string")


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _read_task(
    directory: Path, task: str, entry: dict, shapes: Dict[str, Tuple[int, ...]]
) -> Dict[str, torch.Tensor]:
    path = directory / entry["file"]
    n_total = sum(_numel(s) for s in shapes.values())
    if entry["n_total"] != n_total:
        raise MaskFileError(
            f"{path}: manifest n_total {entry['n_total']} != {n_total} from the shapes"
        )
    if not path.is_file():
        raise MaskFileError(f"{path}: missing mask file for task {task!r}")
    expected = (n_total + 7) // 8
    size = path.stat().st_size
    if size != expected:
        kind = "truncated" if size < expected else "oversized"
        raise MaskFileError(f"{path}: {kind} file ({size} bytes, expected {expected})")
    data = np.fromfile(path, dtype=np.uint8)
    if hashlib.sha256(data.tobytes()).hexdigest() != entry["sha256"]:
        raise MaskFileError(f"{path}: checksum mismatch (corrupt file)")
    if n_total % 8 and data[-1] >> (n_total % 8):
        raise MaskFileError(f"{path}: non-zero padding bits")
    masks, offset = {}, 0
    for (name, shape), want in zip(shapes.items(), entry["per_tensor"]):
        n = _numel(shape)
        first, last = offset // 8, (offset + n + 7) // 8
        bits = np.unpackbits(data[first:last], bitorder=BITORDER)
        bits = bits[offset - 8 * first : offset - 8 * first + n]
        m = torch.from_numpy(bits.astype(np.bool_)).view(shape)
        kept = int(m.sum())
        if kept != want:
            raise MaskFileError(
                f"{path}: tensor {name} has {kept} kept weights, manifest says {want}"
            )
        masks[name] = m
        offset += n
    if sum(entry["per_tensor"]) != entry["n_kept"]:
        raise MaskFileError(f"{path}: kept count mismatch with the manifest n_kept")
    return masks


@typechecked
def load_masks(
    directory: Union[str, Path],
    expected_shapes: Optional[Mapping[str, Sequence[int]]] = None,
    tasks: Optional[Sequence[str]] = None,
) -> MaskSet:
    """Read a mask set written by :func:`save_masks`.

    Args:
        directory: The mask directory.
        expected_shapes: If given, the tensor names and shapes the masks must have
            (e.g. the prunable parameters of the model they are meant for).
        tasks: Load only these tasks (all if None).

    Returns:
        The mask set (masks on CPU).

    Raises:
        MaskFileError: For a missing manifest or file, invalid JSON, an unsupported
            format version (version 1: with the upgrade command), a manifest or file
            checksum mismatch, a truncated or oversized file, a kept-count
            mismatch, an unknown task, or masks that do not fit ``expected_shapes``;
            the message names the file (or the first mismatching tensor).
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    shapes = {n: tuple(s) for n, s in zip(manifest["names"], manifest["shapes"])}
    if expected_shapes is not None:
        _check_expected(directory / MANIFEST, shapes, expected_shapes)
    wanted = manifest["tasks"] if tasks is None else list(tasks)
    unknown = [t for t in wanted if t not in manifest["masks"]]
    if unknown:
        raise MaskFileError(
            f"{directory / MANIFEST}: no masks for tasks {unknown}; "
            f"has {manifest['tasks']}"
        )
    return _mask_set(directory, manifest, shapes, wanted)


def _mask_set(
    directory: Path, manifest: dict, shapes: Dict[str, Tuple[int, ...]], tasks
) -> MaskSet:
    scope = manifest.get("scope")
    try:
        ms = MaskSet(
            shapes,
            {},
            manifest["n_model_params"],
            None if scope is None else PruningScope.from_dict(scope),
        )
        # One task unpacked at a time: the set itself holds 1 bit per weight and task.
        for t in tasks:
            ms.add_task(t, _read_task(directory, t, manifest["masks"][t], shapes))
    except MaskError as e:
        raise MaskFileError(f"{directory / MANIFEST}: {e}") from None
    ms.source = str(directory)
    return ms


def _check_expected(
    path: Path,
    shapes: Dict[str, Tuple[int, ...]],
    expected: Mapping[str, Sequence[int]],
) -> None:
    expected = {n: tuple(int(x) for x in s) for n, s in expected.items()}
    for name in sorted(set(shapes) | set(expected)):
        if name not in expected:
            raise MaskFileError(f"{path}: masks tensor {name} the model does not have")
        if name not in shapes:
            raise MaskFileError(f"{path}: no mask for the model's tensor {name}")
        if shapes[name] != expected[name]:
            raise MaskFileError(
                f"{path}: tensor {name} has shape {shapes[name]}, "
                f"the model's is {expected[name]}"
            )


@typechecked
def mask_file_paths(directory: Union[str, Path]) -> List[Path]:
    """The files of a mask set (manifest first), e.g. for copying or hashing.

    Raises:
        MaskFileError: If the manifest is missing or invalid.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    return [directory / MANIFEST] + [
        directory / manifest["masks"][t]["file"] for t in manifest["tasks"]
    ]


@typechecked
def upgrade_masks(
    directory: Union[str, Path],
    model: torch.nn.Module,
    scope: PruningScope,
    output: Optional[Union[str, Path]] = None,
) -> Path:
    """Rewrite a version-1 mask set as the current version (checksum and scope).

    The set must cover exactly the prunable parameters of ``model`` under ``scope``
    (the model and scope it was made with) and record its parameter count.

    Args:
        directory: The version-1 mask directory.
        model: A model built from the config the masks were made for.
        scope: The pruning scope used when the masks were created.
        output: Where to write the upgraded set (default: replace ``directory``).

    Returns:
        The upgraded mask directory.

    Raises:
        MaskFileError: A damaged set, one not of version 1, or masks that do not fit
            ``model`` under ``scope``.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory, legacy=True)
    shapes = {n: tuple(s) for n, s in zip(manifest["names"], manifest["shapes"])}
    ms = _mask_set(directory, manifest, shapes, manifest["tasks"])
    ms.scope = scope
    try:
        ms.check_compatible(model)
    except MaskError as e:
        raise MaskFileError(f"{e} (under scope {scope.to_dict()})") from None
    if ms.n_model_params is None:
        ms.n_model_params = sum(p.numel() for p in model.parameters())
    return save_masks(ms, directory if output is None else Path(output))
