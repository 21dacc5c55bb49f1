"""SLURP for intent classification (``ic_slurp``) and entity recognition (``ner_slurp``).

Reads the text release (``dataset/slurp/{train,devel,test,train_synthetic}.jsonl`` and
``metadata.json`` for the speakers) and the audio (``audio/slurp_real/``,
``audio/slurp_synth/``, FLAC)::

    python -m espnet_pruning.corpora.slurp --root /data/slurp --out_dir data

Sets (every recording once, as ESPnet's ``egs2/slurp/asr1``; headset and far-field
recordings both kept):

* ``{train,valid,test}_ic_slurp`` and ``{train,valid,test}_ner_slurp``: the real speech of
  ``train``, ``devel`` and ``test``;
* continual learning (paper §4: "We left the synthetic subset for continual learning";
  §4.1: trained "on the mixture of real and synthetic SLURP"): ``train_cl_ic`` (the
  synthetic speech alone), ``train_cl_ic_mix`` (real train + synthetic) and ``valid_cl_ic``
  (devel, IC).

Targets: IC ``<scenario>_<action> SEP <transcript>`` (the label from the ``scenario`` and
``action`` fields: ``intent`` is not always their join); NER the paper's form
``<entity:TYPE> <FILL> filler <SEP> ... <SEP> transcript`` with the entities of the
``entities`` field in their order. A filler is built as SLURP's official scorer builds its
gold fillers (``release2prediction`` in the SLURP repository's
``scripts/evaluation/util.py``): the ``surface`` of each token of the span, lowercased,
joined by single spaces (``tomorrow 's``, ``u. s. d.``), so that a model reproducing the
references scores 100 there. Transcripts are normalised
(:func:`prep.normalize_transcript`; ``<unk>`` read as ``unknown``). Speakers from
``metadata.json`` (``usrid``); synthetic speech has the one speaker ``synthetic``.
Utterance ids end with the recording's file stem (``...-audio-1490007041-headset``).
"""

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from typeguard import typechecked

from espnet_pruning.corpora import prep
from espnet_pruning.corpora.prep import CorpusError, Utterance

TASKS = ("ic_slurp", "ner_slurp")
#: jsonl file -> split name of the sets (``devel`` is the validation set).
SPLITS = {"train": "train", "devel": "valid", "test": "test"}
_LABEL = re.compile(r"^[a-z0-9_]+$")
_FILE = re.compile(r"^(audio-[A-Za-z0-9_.-]+)\.flac$")
_KEYS = ("sentence", "scenario", "action", "tokens", "entities", "recordings")
#: A token surface usable as one word of the NER target (no white space, no ``<...>``).
_SURFACE = re.compile(r"^[^\s<>]+$")


@typechecked
def gold_entities(record: dict, where: str) -> List[Tuple[str, str]]:
    """``[(type, filler), ...]`` of a jsonl record, as SLURP's official scorer reads them.

    The filler of an entity is the ``surface`` of each token of its ``span``, lowercased
    and joined by single spaces.

    Raises:
        CorpusError: ``tokens`` or ``entities`` malformed, a bad type, an empty span, a
            span index out of range, or a surface that cannot be one word of the target
            text (empty, with white space, ``<`` or ``>``, as in ``<SEP>``).
    """
    tokens, entities = record["tokens"], record["entities"]
    if not isinstance(tokens, list) or not isinstance(entities, list):
        raise CorpusError(f"{where}: 'tokens' and 'entities' must be lists")
    out = []
    for k, entity in enumerate(entities):
        what = f"{where}: entities[{k}]"
        span = entity.get("span") if isinstance(entity, dict) else None
        etype = entity.get("type") if isinstance(entity, dict) else None
        if not isinstance(etype, str) or not _LABEL.match(etype):
            raise CorpusError(f"{what}: entity type {etype!r}")
        if not isinstance(span, list) or not span:
            raise CorpusError(f"{what}: 'span' must be a non-empty list of token ids")
        words = []
        for i in span:
            token = (
                tokens[i]
                if isinstance(i, int)
                and not isinstance(i, bool)
                and 0 <= i < len(tokens)
                else None
            )
            surface = token.get("surface") if isinstance(token, dict) else None
            if not isinstance(surface, str):
                raise CorpusError(f"{what}: span index {i!r} names no token surface")
            if not _SURFACE.match(surface):
                raise CorpusError(
                    f"{what}: token surface {surface!r} cannot be a filler word"
                )
            words.append(surface.lower())
        out.append((etype, " ".join(words)))
    return out


@typechecked
def ner_text(entities: Sequence[Tuple[str, str]], transcript: str) -> str:
    """The paper's NER target: ``<entity:T> <FILL> filler <SEP> ... <SEP> transcript``."""
    chunks = [f"<entity:{t}> <FILL> {f}" for t, f in entities]
    return " <SEP> ".join(chunks + [transcript])


@typechecked
def read_speakers(path: Path) -> Dict[str, str]:
    """Recording file name -> ``usrid`` from ``metadata.json``."""
    meta = prep.read_json(path, "SLURP metadata file")
    if not isinstance(meta, dict):
        raise CorpusError(f"{path}: expected an object keyed by slurp_id")
    out = {}
    for sid, record in meta.items():
        recordings = record.get("recordings") if isinstance(record, dict) else None
        if not isinstance(recordings, dict):
            raise CorpusError(f"{path}: entry {sid!r} has no 'recordings' object")
        for name, rec in recordings.items():
            if not isinstance(rec, dict) or not isinstance(rec.get("usrid"), str):
                raise CorpusError(f"{path}: entry {sid!r}, recording {name}: no usrid")
            out[name] = rec["usrid"]
    return out


@typechecked
def read_split(path: Path) -> List[Tuple[str, str, str, List[Tuple[str, str]], str]]:
    """Records of a jsonl file: ``(file, ic text label, transcript, entities, "path:line")``
    per recording."""
    out = []
    for n, line in prep.read_lines(path, "SLURP jsonl file"):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise CorpusError(f"{where}: not valid JSON: {e}") from e
        if not isinstance(rec, dict) or any(k not in rec for k in _KEYS):
            raise CorpusError(f"{where}: record lacks one of {', '.join(_KEYS)}")
        label = f"{rec['scenario']}_{rec['action']}"
        if not _LABEL.match(label):
            raise CorpusError(f"{where}: unknown intent label {label!r}")
        transcript = prep.normalize_transcript(
            str(rec["sentence"]).replace("<unk>", "unknown")
        )
        if not transcript:
            raise CorpusError(f"{where}: empty sentence")
        entities = gold_entities(rec, where)
        if not isinstance(rec["recordings"], list):
            raise CorpusError(f"{where}: 'recordings' is not a list")
        for r in rec["recordings"]:
            name = r.get("file") if isinstance(r, dict) else None
            if not isinstance(name, str) or not _FILE.match(name):
                raise CorpusError(
                    f"{where}: recording file {name!r} is not audio-<id>.flac"
                )
            out.append((name, label, transcript, entities, where))
    return out


def _utterances(
    records, audio_dir: Path, tasks: Sequence[str], speakers, seen: Set[str]
) -> Dict[str, List[Utterance]]:
    """Utterances per task, each recording once over all calls (``seen``)."""
    out: Dict[str, List[Utterance]] = {t: [] for t in tasks}
    repeats = 0
    for name, label, transcript, entities, where in records:
        if name in seen:
            repeats += 1
            continue
        seen.add(name)
        if speakers is None:
            speaker = "synthetic"
        elif name in speakers:
            speaker = speakers[name]
        else:
            raise CorpusError(
                f"{where}: recording {name} has no speaker in metadata.json"
            )
        texts = {
            "ic_slurp": prep.with_transcript(label, transcript),
            "ner_slurp": ner_text(entities, transcript),
        }
        for task in tasks:
            out[task].append(
                Utterance(
                    corpus="slurp",
                    speaker=speaker,
                    local_id=_FILE.match(name).group(1),
                    task=task,
                    audio=audio_dir / name,
                    text=texts[task],
                    source=where,
                )
            )
    if repeats:
        logging.info(f"{audio_dir}: {repeats} recording(s) listed again, kept once")
    return out


def collect(args: argparse.Namespace) -> Tuple[Dict[str, List[Utterance]], None]:
    """Utterances of every set."""
    text_dir = args.root / "dataset/slurp"
    speakers = read_speakers(text_dir / "metadata.json")
    seen: Set[str] = set()  # recordings already used (ESPnet keeps each once)
    real = {
        split: _utterances(
            read_split(text_dir / f"{jsonl}.jsonl"),
            _audio(args, "real"),
            TASKS,
            speakers,
            seen,
        )
        for jsonl, split in SPLITS.items()
    }
    sets = {
        f"{split}_{task}": real[split][task]
        for split in SPLITS.values()
        for task in args.tasks
    }
    if not args.skip_synthetic:
        synth = _utterances(
            read_split(text_dir / "train_synthetic.jsonl"),
            _audio(args, "synth"),
            ["ic_slurp"],
            None,
            seen,
        )["ic_slurp"]
        sets["train_cl_ic"] = synth
        sets["train_cl_ic_mix"] = real["train"]["ic_slurp"] + synth
        sets["valid_cl_ic"] = real["valid"]["ic_slurp"]
    return sets, None


def _audio(args: argparse.Namespace, kind: str) -> Path:
    root = args.audio_root if args.audio_root is not None else args.root / "audio"
    return root / f"slurp_{kind}"


def set_names(args: argparse.Namespace) -> List[str]:
    """The data sets written."""
    names = [f"{s}_{t}" for s in SPLITS.values() for t in args.tasks]
    if not args.skip_synthetic:
        names += ["train_cl_ic", "train_cl_ic_mix", "valid_cl_ic"]
    return names


def required(args: argparse.Namespace) -> List[Tuple[Path, str, str]]:
    """The jsonl files, metadata.json and the audio folders."""
    text_dir = args.root / "dataset/slurp"
    out = [(text_dir / f"{j}.jsonl", "SLURP jsonl file", "file") for j in SPLITS]
    out += [
        (text_dir / "metadata.json", "SLURP metadata file", "file"),
        (_audio(args, "real"), "SLURP real audio folder", "dir"),
    ]
    if not args.skip_synthetic:
        out += [
            (text_dir / "train_synthetic.jsonl", "SLURP jsonl file", "file"),
            (_audio(args, "synth"), "SLURP synthetic audio folder", "dir"),
        ]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SLURP's options."""
    parser.add_argument(
        "--audio_root",
        type=Path,
        default=None,
        help="Folder holding slurp_real/ and slurp_synth/ (default: ROOT/audio)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=TASKS,
        default=list(TASKS),
        help="Tasks to write sets for",
    )
    parser.add_argument(
        "--skip_synthetic",
        action="store_true",
        help="No continual-learning sets (the synthetic audio is not needed then)",
    )


CORPUS = prep.Corpus(
    name="slurp",
    description="SLURP -> {train,valid,test}_{ic,ner}_slurp, train_cl_ic[_mix], valid_cl_ic",
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
