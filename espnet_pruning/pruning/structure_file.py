"""The kept heads and FFN units of a compiled model, as a JSON file.

A compiled task model (:func:`~espnet_pruning.pruning.structured.compile_kept`) has
other shapes than the training config builds; its structure file says which units of
every structure it kept, so that the dense model built from the config can be compiled
into the same shapes and the compiled weights loaded strictly::

    {"format": "espnet_pruning.structure", "version": 1, "task": "ic_slurp",
     "units": {"<structure>": {"count": 8, "kept": [0, 3, 5]}, ...}}

Unit indices are those of the dense model, ascending. Written atomically.
"""

import json
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_write_text

FORMAT = "espnet_pruning.structure"
VERSION = 1


class StructureFileError(InputError):
    """A structure file that is missing or malformed; names the file and the key."""


@typechecked
def save_structure(
    path: Union[str, Path], task: str, kept: Mapping[str, torch.Tensor]
) -> Path:
    """Write ``task``'s kept units (structure name → bool vector) to ``path``."""
    units = {
        name: {
            "count": int(vector.numel()),
            "kept": torch.nonzero(vector.bool()).flatten().tolist(),
        }
        for name, vector in sorted(kept.items())
    }
    doc = {"format": FORMAT, "version": VERSION, "task": task, "units": units}
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")
    return Path(path)


@typechecked
def load_structure(path: Union[str, Path]) -> Tuple[str, Dict[str, torch.Tensor]]:
    """The task and kept units (structure name → bool vector) of a structure file.

    Raises:
        StructureFileError: Missing file, wrong format or version, bad entries.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StructureFileError(f"{path}: structure file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StructureFileError(f"{path}: not a structure file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StructureFileError(f"{path}: format is not {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise StructureFileError(
            f"{path}: version {doc.get('version')!r}, this code reads {VERSION}"
        )
    task, units = doc.get("task"), doc.get("units")
    if not isinstance(task, str) or not isinstance(units, dict):
        raise StructureFileError(f"{path}: needs 'task' (a name) and 'units' (a map)")
    kept = {}
    for name, entry in units.items():
        count = entry.get("count") if isinstance(entry, dict) else None
        index = entry.get("kept") if isinstance(entry, dict) else None
        if (
            not isinstance(count, int)
            or not isinstance(index, list)
            or any(not isinstance(i, int) or not 0 <= i < count for i in index)
            or index != sorted(set(index))
        ):
            raise StructureFileError(
                f"{path}: units.{name}: needs 'count' and ascending 'kept' indices "
                "below it"
            )
        vector = torch.zeros(count, dtype=torch.bool)
        vector[index] = True
        kept[name] = vector
    return task, kept
