"""Kaldi-style data directories: atomic writing and validation.

A directory holds ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` and the UniverSLU extras
``prompt`` (``<uttid> <|en|> <|task|> <|dataset|>``), ``utt2category`` (``<uttid> <task>``)
and ``utt2num_samples`` (left out when the sample counts are unknown), every file sorted by its
first field in C (byte) order. :func:`validate_data_dir` checks what ESPnet's
``utils/validate_data_dir.sh --no-feats`` checks (and a little more: printable ASCII text,
every audio file readable, 16 kHz, mono; WAV in full, FLAC from its header) and raises
:class:`DataDirError` naming the file and line. :func:`read_data_dir` reads a directory
back. Usable from the shell::

    python -m espnet_pruning.corpora.kaldi data/train data/valid
"""

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from typeguard import typechecked

from espnet_pruning.corpora.audio import WavError, check_audio_file
from espnet_pruning.errors import InputError

REQUIRED = ("wav.scp", "text", "utt2spk", "spk2utt")
OPTIONAL = ("prompt", "utt2category", "utt2num_samples")


class DataDirError(InputError):
    """A Kaldi data directory is invalid (the message names file and line)."""


@dataclasses.dataclass(frozen=True)
class KaldiEntry:
    """One utterance of a data directory (``num_samples`` None: unknown)."""

    utt_id: str
    speaker: str
    wav: str
    text: str
    prompt: str
    category: str
    num_samples: Optional[int] = None


def _check_field(value: str, what: str, utt_id: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{utt_id}: {what} {value!r} is empty or contains whitespace")


@typechecked
def write_data_dir(
    path: Path,
    entries: Sequence[KaldiEntry],
    validate: bool = True,
    check_audio: bool = True,
) -> None:
    """Write a data directory atomically: a temporary sibling folder, then a rename.

    An existing ``path`` is replaced (moved aside, then deleted) only once the new one is
    complete, so an interrupted run leaves either the old or the new directory.

    Args:
        path: The data directory to (re)create.
        entries: Its utterances (any order; written sorted).
        validate: Run :func:`validate_data_dir` on the temporary folder before the rename.
        check_audio: Let that validation open every audio file (callers that checked
            the audio already pass False).
    """
    for e in entries:
        _check_field(e.utt_id, "utterance id", e.utt_id)
        _check_field(e.speaker, "speaker", e.utt_id)
        _check_field(e.wav, "wav path", e.utt_id)
        _check_field(e.category, "category", e.utt_id)
        if not e.utt_id.startswith(e.speaker + "-"):
            raise ValueError(f"{e.utt_id}: utterance id must start with '{e.speaker}-'")
    rows = sorted(entries, key=lambda e: e.utt_id.encode())
    spk2utt: Dict[str, List[str]] = {}
    for e in rows:
        spk2utt.setdefault(e.speaker, []).append(e.utt_id)
    files = {
        "wav.scp": [f"{e.utt_id} {e.wav}" for e in rows],
        "text": [f"{e.utt_id} {e.text}" for e in rows],
        "utt2spk": [f"{e.utt_id} {e.speaker}" for e in rows],
        "spk2utt": [
            f"{s} {' '.join(u)}"
            for s, u in sorted(spk2utt.items(), key=lambda x: x[0].encode())
        ],
        "prompt": [f"{e.utt_id} {e.prompt}" for e in rows],
        "utt2category": [f"{e.utt_id} {e.category}" for e in rows],
    }
    # A partial utt2num_samples would fail validation; without counts, stage 3 makes one.
    if all(e.num_samples is not None for e in rows):
        files["utt2num_samples"] = [f"{e.utt_id} {e.num_samples}" for e in rows]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    old = path.parent / f".old-{path.name}-{os.getpid()}"
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    tmp.mkdir()
    try:
        for name, lines in files.items():
            with open(tmp / name, "w", encoding="utf-8", newline="\n") as f:
                f.write("".join(line + "\n" for line in lines))
        if validate:
            validate_data_dir(tmp, check_audio=check_audio)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _read_table(path: Path, min_fields: int = 2) -> List[Tuple[int, str, List[str]]]:
    """Lines of a Kaldi table file: ``(line number, key, remaining fields)``."""
    rows = []
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataDirError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataDirError(f"{path}: not valid UTF-8 ({e})") from e
    if text and not text.endswith("\n"):
        raise DataDirError(f"{path}: last line has no newline")
    for n, line in enumerate(text.split("\n")[:-1], start=1):
        if "\r" in line:
            raise DataDirError(f"{path}:{n}: carriage return (DOS line ending)")
        fields = line.split(" ")
        if "" in fields or "\t" in line:
            raise DataDirError(
                f"{path}:{n}: fields must be separated by single spaces: {line!r}"
            )
        if len(fields) < min_fields:
            raise DataDirError(
                f"{path}:{n}: expected at least {min_fields} fields: {line!r}"
            )
        rows.append((n, fields[0], fields[1:]))
    if not rows:
        raise DataDirError(f"{path}: empty")
    for (n0, k0, _), (n1, k1, _) in zip(rows, rows[1:]):
        if k0.encode() == k1.encode():
            raise DataDirError(f"{path}:{n1}: duplicate key {k1!r} (also line {n0})")
        if k0.encode() > k1.encode():
            raise DataDirError(
                f"{path}:{n1}: not sorted (LC_ALL=C): {k1!r} comes after {k0!r}"
            )
    return rows


@typechecked
def validate_data_dir(
    path: Union[str, Path], check_audio: bool = True, expected_rate: int = 16000
) -> int:
    """Validate a Kaldi data directory (the equivalent of ``validate_data_dir.sh
    --no-feats --non-print`` plus audio checks).

    Checks: required files present; every file sorted (C order) with unique keys and single
    spaces; the same utterance ids in every per-utterance file; ``spk2utt`` equals the
    inversion of ``utt2spk`` and sorting ``utt2spk`` by speaker gives the same order (Kaldi's
    rule; true when speaker ids are prefixes of utterance ids); text and prompt printable
    ASCII and non-empty;
    ``utt2num_samples`` integers; every audio file exists and is mono at ``expected_rate``
    (WAVs complete 16-bit PCM, other formats such as FLAC checked from their header), with
    the number of samples ``utt2num_samples`` gives.

    Args:
        path: The data directory.
        check_audio: Also open every audio file of ``wav.scp``.
        expected_rate: Required sampling rate.

    Returns:
        The number of utterances.

    Raises:
        DataDirError: Naming the file (and line) at fault.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: not a directory")
    for name in REQUIRED:
        if not (path / name).is_file():
            raise DataDirError(f"{path / name}: missing")
    tables = {
        name: _read_table(path / name)
        for name in REQUIRED + OPTIONAL
        if (path / name).is_file()
    }
    utts = [k for _, k, _ in tables["utt2spk"]]
    for name, rows in tables.items():
        if name == "spk2utt":
            continue
        keys = [k for _, k, _ in rows]
        if keys != utts:
            missing = sorted(set(utts) - set(keys))
            extra = sorted(set(keys) - set(utts))
            raise DataDirError(
                f"{path / name}: utterance ids differ from utt2spk "
                f"(missing {missing[:3]}, extra {extra[:3]})"
            )
    spk_of: Dict[str, str] = {}
    for n, utt, rest in tables["utt2spk"]:
        if len(rest) != 1:
            raise DataDirError(f"{path / 'utt2spk'}:{n}: expected '<uttid> <spkid>'")
        spk_of[utt] = rest[0]
    by_spk: Dict[str, List[str]] = {}
    for utt in utts:
        by_spk.setdefault(spk_of[utt], []).append(utt)
    spk_rows = tables["spk2utt"]
    if [k for _, k, _ in spk_rows] != sorted(by_spk, key=str.encode):
        raise DataDirError(f"{path / 'spk2utt'}: speakers differ from utt2spk")
    for n, spk, rest in spk_rows:
        if rest != by_spk[spk]:
            raise DataDirError(
                f"{path / 'spk2utt'}:{n}: utterances of {spk!r} differ from utt2spk"
            )
    sorted_by_spk = sorted(utts, key=lambda u: (spk_of[u].encode(), u.encode()))
    if sorted_by_spk != utts:
        raise DataDirError(
            f"{path / 'utt2spk'}: not in sorted order when sorted first on speaker id "
            "(make speaker ids prefixes of utterance ids)"
        )
    for name in ("text", "prompt", "utt2category"):
        for n, utt, rest in tables.get(name, []):
            line = " ".join(rest)
            if not line.isascii() or not line.isprintable():
                raise DataDirError(
                    f"{path / name}:{n}: non-printable characters: {line!r}"
                )
    num_samples: Dict[str, int] = {}
    for n, utt, rest in tables.get("utt2num_samples", []):
        if len(rest) != 1 or not rest[0].isdigit() or int(rest[0]) == 0:
            raise DataDirError(
                f"{path / 'utt2num_samples'}:{n}: expected a positive integer"
            )
        num_samples[utt] = int(rest[0])
    for n, utt, rest in tables["wav.scp"]:
        if len(rest) != 1:
            raise DataDirError(
                f"{path / 'wav.scp'}:{n}: expected '<uttid> <wav path>' (no pipes, no spaces)"
            )
        if not check_audio:
            continue
        try:
            frames = check_audio_file(rest[0], expected_rate=expected_rate)
        except WavError as e:
            raise DataDirError(f"{path / 'wav.scp'}:{n}: {e}") from e
        if utt in num_samples and num_samples[utt] != frames:
            raise DataDirError(
                f"{path / 'utt2num_samples'}: {utt} says {num_samples[utt]} samples, "
                f"{rest[0]} has {frames}"
            )
    return len(utts)


@typechecked
def read_data_dir(path: Union[str, Path]) -> List[KaldiEntry]:
    """Read a data directory written by :func:`write_data_dir` (validated first).

    Args:
        path: The data directory; ``prompt`` and ``utt2category`` are required.

    Returns:
        Its utterances in file order; ``num_samples`` None without ``utt2num_samples``.

    Raises:
        DataDirError: The directory is invalid or lacks ``prompt``/``utt2category``.
    """
    path = Path(path)
    validate_data_dir(path, check_audio=False)
    for name in ("prompt", "utt2category"):
        if not (path / name).is_file():
            raise DataDirError(f"{path / name}: missing")
    cols = {
        name: {k: " ".join(rest) for _, k, rest in _read_table(path / name)}
        for name in ("wav.scp", "text", "utt2spk", "prompt", "utt2category")
    }
    samples = (
        {k: int(rest[0]) for _, k, rest in _read_table(path / "utt2num_samples")}
        if (path / "utt2num_samples").is_file()
        else {}
    )
    return [
        KaldiEntry(
            utt_id=utt,
            speaker=cols["utt2spk"][utt],
            wav=cols["wav.scp"][utt],
            text=cols["text"][utt],
            prompt=cols["prompt"][utt],
            category=cols["utt2category"][utt],
            num_samples=samples.get(utt),
        )
        for utt in cols["utt2spk"]
    ]


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(
        description="Validate Kaldi-style data directories (sorted, consistent, 16 kHz wavs)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("data_dirs", nargs="+", help="Data directories")
    parser.add_argument("--no_audio", action="store_true", help="Skip opening the WAVs")
    parser.add_argument("--fs", type=int, default=16000, help="Required sampling rate")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Validate the given directories; exit status 1 on the first invalid one."""
    args = get_parser().parse_args(cmd)
    for d in args.data_dirs:
        try:
            n = validate_data_dir(
                d, check_audio=not args.no_audio, expected_rate=args.fs
            )
        except DataDirError as e:
            sys.exit(f"invalid data dir: {e}")
        print(f"{d}: OK ({n} utterances)")


if __name__ == "__main__":
    main()
