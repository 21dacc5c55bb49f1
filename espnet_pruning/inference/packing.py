"""Shipping a trained system: a self-contained config, and ESPnet-packed archives.

A packed system is ESPnet's format (``espnet2.main_funcs.pack_funcs``: a zip with
``meta.yaml`` naming the files) holding::

    exp/config.yaml       the training config, self-contained: Whisper built from its dims
                          (no checkpoint file needed), token list inline, no mask set
                          attached (masks are chosen per task at decoding time)
    exp/model.pth         the shared weights θ
    exp/masks/            the mask set (optional)
    exp/task_specifiers.yaml   when the run used its own task file
    exp/sha256sums.txt    sha256 of every other file: checked when loaded
    RESULTS.md, figures/  and any other file given (``option``)

:func:`unpack_system` extracts an archive (or reads an unpacked directory), verifies the
checksums and returns the paths by role (``train_config``, ``model_file``, ``mask_dir``).
"""

import hashlib
from pathlib import Path
from typing import Dict, Optional, Union

import yaml
from espnet2.main_funcs.pack_funcs import unpack
from whisper.model import ModelDimensions

from espnet_pruning.errors import InputError

CHECKSUMS = "exp/sha256sums.txt"


class PackError(InputError):
    """A packed system is missing, incomplete or corrupt; names the file."""


def model_dims(model) -> ModelDimensions:
    """openai-whisper dimensions of a UniverSLU model's Whisper encoder and decoder."""
    enc, dec = model.encoder.encoders, model.decoder.decoders
    return ModelDimensions(
        n_mels=enc.conv1.in_channels,
        n_audio_ctx=enc.positional_embedding.size(0),
        n_audio_state=enc.conv1.out_channels,
        n_audio_head=enc.blocks[0].attn.n_head,
        n_audio_layer=len(enc.blocks),
        n_vocab=dec.token_embedding.num_embeddings,
        n_text_ctx=dec.positional_embedding.size(0),
        n_text_state=dec.token_embedding.embedding_dim,
        n_text_head=dec.blocks[0].attn.n_head,
        n_text_layer=len(dec.blocks),
    )


def self_contained_config(conf: dict, dims: ModelDimensions) -> dict:
    """A training config that builds the model from nothing but itself and a state dict.

    No mask set, no initialisation, Whisper built from ``dims`` instead of a checkpoint
    file (all weights then come from the model file).
    """
    conf = dict(conf)
    conf["mask_dir"] = None
    conf["init_param"] = []
    conf["init"] = None
    for part in ("encoder_conf", "decoder_conf"):
        part_conf = dict(conf.get(part) or {})
        part_conf.pop("whisper_checkpoint", None)
        part_conf["whisper_dims"] = dict(vars(dims))
        conf[part] = part_conf
    return conf


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_lines(root: Path) -> str:
    """``<sha256>  <path>`` for every file under ``root`` (paths relative to it)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return "".join(f"{sha256_of(p)}  {p.relative_to(root).as_posix()}\n" for p in files)


def verify_checksums(root: Path, source: str) -> None:
    """Check every file listed in ``root/exp/sha256sums.txt``.

    Raises:
        PackError: The list is missing, or a file is missing or differs.
    """
    listing = root / CHECKSUMS
    if not listing.is_file():
        raise PackError(f"{source}: no {CHECKSUMS}; not a packed UniverSLU system")
    for line in listing.read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        path = root / name
        if not path.is_file():
            raise PackError(f"{source}: {name} is missing")
        if sha256_of(path) != digest:
            raise PackError(f"{source}: {name} is corrupt (sha256 differs)")


def unpack_system(
    archive_or_dir: Union[str, Path], cache_dir: Optional[Union[str, Path]] = None
) -> Dict[str, str]:
    """Paths of a packed system's files by role, after checking their checksums.

    Args:
        archive_or_dir: A packed zip, or a directory it was unpacked into.
        cache_dir: Where a zip is unpacked (default: beside it, ``<name>.unpacked``).

    Returns:
        ``train_config``, ``model_file`` and, if packed, ``mask_dir``.

    Raises:
        PackError: Not found, not a packed system, or corrupt.
    """
    source = Path(archive_or_dir)
    if source.is_dir():
        root = source
        try:
            meta = yaml.safe_load((root / "meta.yaml").read_text(encoding="utf-8"))
            found = {
                k: str(root / v)
                for k, v in {**meta["yaml_files"], **meta["files"]}.items()
            }
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise PackError(f"{source}: no packed system here (meta.yaml: {e})") from e
    elif source.is_file():
        root = (
            Path(cache_dir)
            if cache_dir
            else source.with_name(source.name + ".unpacked")
        )
        try:
            found = unpack(source, root)
        except Exception as e:  # zipfile/tarfile/yaml raise many kinds of errors
            raise PackError(f"{source}: not a packed system ({e})") from e
    else:
        raise PackError(f"{source}: packed system not found")
    verify_checksums(root, str(source))
    missing = [k for k in ("train_config", "model_file") if k not in found]
    if missing:
        raise PackError(f"{source}: meta.yaml lacks {missing}")
    return found
