"""A state dict on disk in sparse form: one bit per masked weight plus the kept values.

Layout of a ``.sparse`` file (little-endian, no pickle)::

    8 bytes           length H of the header (unsigned 64-bit)
    H bytes           JSON header: format name and version, bit order, sha256 of the
                      payload, and per tensor (in payload order) its name, shape, dtype,
                      ``n_kept`` (null for a tensor stored whole) and payload offsets
    payload           per tensor: a masked tensor's mask flattened row-major, packed 8
                      per byte with ``numpy.packbits(..., bitorder="little")`` (ceil(n/8)
                      bytes), then its kept values in the same order; a tensor without a
                      mask, all its values

Only the kept values of a masked tensor are stored, so the file holds ``density × dense``
bytes of values plus one bit per masked weight (and at most one padding byte per tensor
and the header). Loading restores zeros at pruned positions: the weights ``m ⊙ W`` exactly.
The file is written to a temporary sibling and renamed into place.
"""

import hashlib
import json
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np
import torch
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.fileio import atomic_open

FORMAT = "espnet_pruning.sparse"
VERSION = 1
BITORDER = "little"


class SparseFileError(InputError):
    """A sparse state file is missing, corrupt or not of this format; names the file."""


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _raw(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()


@typechecked
def save_sparse_state(
    path: Union[str, Path],
    state: Mapping[str, torch.Tensor],
    masks: Optional[Mapping[str, torch.Tensor]] = None,
) -> Path:
    """Write ``state`` with every tensor of ``masks`` stored as bits + kept values.

    Args:
        path: Output file (conventionally ``*.sparse``).
        state: Tensors by name (e.g. a model's state dict after ``TaskSwitcher.switch``).
        masks: Bool masks by tensor name (a subset of ``state``'s names, same shapes);
            values outside a mask are not stored and load back as zeros.

    Returns:
        The path.

    Raises:
        SparseFileError: A mask names no tensor of ``state`` or has another shape.
    """
    path = Path(path)
    masks = dict(masks or {})
    unknown = sorted(set(masks) - set(state))
    if unknown:
        raise SparseFileError(f"{path}: masks for tensors not in the state: {unknown}")
    entries, chunks, offset = [], [], 0
    for name, tensor in state.items():
        mask = masks.get(name)
        entry = {
            "name": name,
            "shape": list(tensor.shape),
            "dtype": _dtype_name(tensor.dtype),
        }
        if mask is None:
            values = _raw(tensor)
            entry["n_kept"] = None
            entry["values"] = [offset, len(values)]
            chunks.append(values)
            offset += len(values)
        else:
            if tuple(mask.shape) != tuple(tensor.shape):
                raise SparseFileError(
                    f"{path}: mask of {name} has shape {tuple(mask.shape)}, "
                    f"the tensor {tuple(tensor.shape)}"
                )
            flat = mask.detach().cpu().reshape(-1).bool()
            bits = np.packbits(flat.numpy(), bitorder=BITORDER).tobytes()
            values = _raw(tensor.detach().cpu().reshape(-1)[flat])
            entry["n_kept"] = int(flat.sum())
            entry["bits"] = [offset, len(bits)]
            entry["values"] = [offset + len(bits), len(values)]
            chunks += [bits, values]
            offset += len(bits) + len(values)
        entries.append(entry)
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    header = json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "bitorder": BITORDER,
            "sha256": digest.hexdigest(),
            "tensors": entries,
        },
        separators=(",", ":"),
    ).encode("utf-8")
    with atomic_open(path, binary=True) as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for chunk in chunks:
            f.write(chunk)
    return path


@typechecked
def load_sparse_state(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read a file of :func:`save_sparse_state` back into dense tensors.

    Args:
        path: The ``.sparse`` file.

    Returns:
        Tensors by name, in the order saved; pruned positions are zeros.

    Raises:
        SparseFileError: Missing, truncated, corrupt (checksum) or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise SparseFileError(f"{path}: sparse state file not found")
    data = path.read_bytes()
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
        ok = header["format"] == FORMAT and header["version"] == VERSION
    except (struct.error, ValueError, KeyError, TypeError) as e:
        raise SparseFileError(f"{path}: not a {FORMAT} file ({e})") from e
    if not ok:
        raise SparseFileError(
            f"{path}: format {header.get('format')} version {header.get('version')}, "
            f"expected {FORMAT} version {VERSION}"
        )
    payload = memoryview(data)[8 + n :]
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise SparseFileError(f"{path}: checksum mismatch (corrupt or truncated file)")
    state = {}
    for entry in header["tensors"]:
        dtype = getattr(torch, entry["dtype"])
        shape = entry["shape"]
        start, size = entry["values"]
        values = (
            torch.frombuffer(
                bytearray(payload[start : start + size]), dtype=torch.uint8
            )
            if size
            else torch.zeros(0, dtype=torch.uint8)  # frombuffer refuses empty buffers
        ).view(dtype)
        if entry["n_kept"] is None:
            state[entry["name"]] = values.reshape(shape)
            continue
        numel = int(np.prod(shape, dtype=np.int64))
        b_start, b_size = entry["bits"]
        bits = np.frombuffer(payload[b_start : b_start + b_size], dtype=np.uint8)
        flat_mask = torch.from_numpy(
            np.unpackbits(bits, count=numel, bitorder=BITORDER).astype(bool)
        )
        if int(flat_mask.sum()) != entry["n_kept"] or values.numel() != entry["n_kept"]:
            raise SparseFileError(f"{path}: {entry['name']}: kept counts disagree")
        tensor = torch.zeros(numel, dtype=dtype)
        tensor[flat_mask] = values
        state[entry["name"]] = tensor.reshape(shape)
    return state
