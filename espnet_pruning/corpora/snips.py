"""SNIPS SmartLights for intent classification (``ic_snips``).

Reads the close-field release (``smart-lights-en-close-field/``: ``dataset.json`` with the
NLU queries per intent, ``speech_corpus/metadata.json`` with one entry per recording and
the WAVs in ``speech_corpus/audio/``)::

    python -m espnet_pruning.corpora.snips --out_dir data \\
        --root /data/snips_slu_data_v1.0/smart-lights-en-close-field

A recording's intent is that of the query with the same text (compared after
normalisation), joined explicitly rather than by the line order of sorted files. The
release has no official split; as ESPnet's ``egs2/snips/asr1``, the utterances sorted by
id give the first 166 to ``valid_ic_snips``, the next 166 to ``test_ic_snips`` and the
rest to ``train_ic_snips``. Text: ``<INTENT> SEP <transcript>`` (``SWITCHLIGHTON SEP turn
on the lights``). Speaker: the recording's worker.
"""

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from typeguard import typechecked

from espnet_pruning.corpora import prep
from espnet_pruning.corpora.prep import CorpusError, Utterance

TASK = "ic_snips"


@typechecked
def read_intents(path: Path) -> Dict[str, Set[str]]:
    """Normalised query text -> the intents (upper case) of the queries with that text."""
    data = prep.read_json(path, "SNIPS dataset file")
    intents = data.get("intents") if isinstance(data, dict) else None
    if not isinstance(intents, dict):
        raise CorpusError(f"{path}: expected an object with key 'intents'")
    labels = prep.task_labels(TASK)
    out: Dict[str, Set[str]] = {}
    for intent, body in intents.items():
        label = intent.upper()
        if label not in labels:
            raise CorpusError(
                f"{path}: unknown intent {intent!r} (known: {', '.join(labels)})"
            )
        queries = body.get("utterances") if isinstance(body, dict) else None
        if not isinstance(queries, list):
            raise CorpusError(f"{path}: intents.{intent} has no 'utterances' list")
        for i, query in enumerate(queries):
            chunks = query.get("data") if isinstance(query, dict) else None
            if not isinstance(chunks, list) or not all(
                isinstance(c, dict) and isinstance(c.get("text"), str) for c in chunks
            ):
                raise CorpusError(
                    f"{path}: intents.{intent}.utterances[{i}]: expected 'data' chunks "
                    "with 'text'"
                )
            text = prep.normalize_transcript("".join(c["text"] for c in chunks))
            out.setdefault(text, set()).add(label)
    return out


@typechecked
def read_recordings(root: Path, intents: Dict[str, Set[str]]) -> List[Utterance]:
    """One utterance per ``metadata.json`` entry, sorted by utterance id."""
    corpus_dir = root / "speech_corpus"
    path = corpus_dir / "metadata.json"
    meta = prep.read_json(path, "SNIPS speech metadata file")
    if not isinstance(meta, dict):
        raise CorpusError(f"{path}: expected an object keyed by recording id")
    utts = []
    for key, rec in meta.items():
        where = f"{path}: entry {key!r}"
        worker = rec.get("worker") if isinstance(rec, dict) else None
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("filename"), str)
            or not isinstance(rec.get("text"), str)
            or not isinstance(worker, dict)
            or "id" not in worker
        ):
            raise CorpusError(
                f"{where}: expected 'filename', 'text' and 'worker': {{id}}"
            )
        text = prep.normalize_transcript(rec["text"])
        found = intents.get(text, set())
        if len(found) != 1:
            problem = (
                "matches no query" if not found else f"is ambiguous {sorted(found)}"
            )
            raise CorpusError(
                f"{where}: text {rec['text']!r} {problem} of dataset.json"
            )
        audio = corpus_dir / "audio" / rec["filename"]
        utts.append(
            Utterance(
                corpus="snips",
                speaker=str(worker["id"]),
                local_id=prep.check_local_id(Path(rec["filename"]).stem, where),
                task=TASK,
                audio=audio,
                text=prep.with_transcript(next(iter(found)), text),
                source=where,
            )
        )
    return sorted(utts, key=lambda u: u.utt_id.encode())


def collect(args: argparse.Namespace) -> Tuple[Dict[str, List[Utterance]], None]:
    """Utterances of the three sets."""
    intents = read_intents(args.root / "dataset.json")
    utts = read_recordings(args.root, intents)
    n_heldout = args.n_valid + args.n_test
    if len(utts) <= n_heldout:
        raise CorpusError(
            f"{args.root}: {len(utts)} recordings, need more than --n_valid + --n_test "
            f"= {n_heldout}"
        )
    return {
        f"train_{TASK}": utts[n_heldout:],
        f"valid_{TASK}": utts[: args.n_valid],
        f"test_{TASK}": utts[args.n_valid : n_heldout],
    }, None


def set_names(args: argparse.Namespace) -> List[str]:
    """The data sets written."""
    return [f"{s}_{TASK}" for s in ("train", "valid", "test")]


def required(args: argparse.Namespace) -> List[Tuple[Path, str, str]]:
    """dataset.json, metadata.json and the audio folder."""
    return [
        (args.root / "dataset.json", "SNIPS dataset file", "file"),
        (
            args.root / "speech_corpus/metadata.json",
            "SNIPS speech metadata file",
            "file",
        ),
        (args.root / "speech_corpus/audio", "SNIPS audio folder", "dir"),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """SNIPS's options: the sizes of the held-out sets."""
    parser.add_argument(
        "--n_valid", type=int, default=166, help="Utterances of valid_ic_snips"
    )
    parser.add_argument(
        "--n_test", type=int, default=166, help="Utterances of test_ic_snips"
    )


CORPUS = prep.Corpus(
    name="snips",
    description="SNIPS SmartLights (close field) -> {train,valid,test}_ic_snips",
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
