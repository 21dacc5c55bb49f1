"""Fluent Speech Commands for intent classification (``ic_fsc``).

Reads the release (``fluent_speech_commands_dataset/``: ``data/{train,valid,test}_data.csv``
with the header ``,path,speakerId,transcription,action,object,location`` and the WAVs under
``wavs/speakers/<speakerId>/``)::

    python -m espnet_pruning.corpora.fsc --root /data/fluent_speech_commands_dataset \\
        --out_dir data

Writes ``{train,valid,test}_ic_fsc`` from the official splits (paper §4.2). Text:
``in:<action>_<object>_<location> SEP <transcript>`` (UniverSLU's ``in:`` labels, lower
case, spaces in slot values as ``_``: ``in:change_language_german_none``). Speaker:
``speakerId``; the utterance id ends with the WAV's file stem.
"""

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.corpora import prep
from espnet_pruning.corpora.prep import CorpusError, Utterance

TASK = "ic_fsc"
SPLITS = ("train", "valid", "test")
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")
LOCATIONS = ("none", "kitchen", "bedroom", "washroom")


@typechecked
def slot(value: str) -> str:
    """A slot value as part of a label: lower case, spaces as ``_``."""
    return "_".join(value.lower().split())


@typechecked
def read_split(root: Path, split: str) -> List[Utterance]:
    """The utterances of ``data/<split>_data.csv``."""
    path = prep.require(root / "data" / f"{split}_data.csv", "FSC csv file")
    utts = []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or any(c not in header for c in COLUMNS):
                raise CorpusError(
                    f"{path}:1: header must name the columns {', '.join(COLUMNS)}: "
                    f"{header}"
                )
            col = {c: header.index(c) for c in COLUMNS}
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row:
                    continue
                if len(row) != len(header):
                    raise CorpusError(
                        f"{where}: {len(row)} fields, the header has {len(header)}"
                    )
                value = {c: row[i].strip() for c, i in col.items()}
                if value["location"].lower() not in LOCATIONS:
                    raise CorpusError(
                        f"{where}: unknown location {value['location']!r} "
                        f"(known: {', '.join(LOCATIONS)})"
                    )
                if not value["action"] or not value["object"] or not value["path"]:
                    raise CorpusError(f"{where}: empty path, action or object")
                label = "in:" + "_".join(
                    slot(value[c]) for c in ("action", "object", "location")
                )
                audio = root / value["path"]
                utts.append(
                    Utterance(
                        corpus="fsc",
                        speaker=value["speakerId"] or "unknown",
                        local_id=prep.check_local_id(audio.stem, where),
                        task=TASK,
                        audio=audio,
                        text=prep.with_transcript(
                            label, prep.normalize_transcript(value["transcription"])
                        ),
                        source=where,
                    )
                )
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not valid UTF-8 ({e})") from e
    except csv.Error as e:
        raise CorpusError(f"{path}: malformed CSV: {e}") from e
    return utts


def collect(args: argparse.Namespace) -> Tuple[Dict[str, List[Utterance]], None]:
    """Utterances of the three sets."""
    return {f"{s}_{TASK}": read_split(args.root, s) for s in SPLITS}, None


def set_names(args: argparse.Namespace) -> List[str]:
    """The data sets written."""
    return [f"{s}_{TASK}" for s in SPLITS]


def required(args: argparse.Namespace) -> List[Tuple[Path, str, str]]:
    """The three CSV files and the audio folder."""
    out = [(args.root / f"data/{s}_data.csv", "FSC csv file", "file") for s in SPLITS]
    return out + [(args.root / "wavs/speakers", "FSC audio folder", "dir")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones."""


CORPUS = prep.Corpus(
    name="fsc",
    description="Fluent Speech Commands -> {train,valid,test}_ic_fsc",
    add_arguments=add_arguments,
    required=required,
    sets=set_names,
    collect=collect,
)


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point."""
    prep.main(CORPUS, cmd)


if __name__ == "__main__":
    main()
