"""LibriSpeech for speech recognition (``asr_librispeech``).

Reads the released subsets (``LibriSpeech/<subset>/<reader>/<chapter>/``: one
``<reader>-<chapter>.trans.txt`` with ``<utt> UPPER CASE WORDS`` lines and one
``<utt>.flac`` per line)::

    python -m espnet_pruning.corpora.librispeech --root /data/LibriSpeech --out_dir data

Sets (paper §4: "LibriSpeech the 100h subset in training and test-other set in
evaluation"; §4.1: "LibriSpeech 360h" as new data for continual learning):

* ``train_asr_librispeech``: train-clean-100;
* ``valid_asr_librispeech``: dev-clean + dev-other (ESPnet's ``dev``);
* ``test_asr_librispeech``: test-other;
* ``train_cl_asr``: train-clean-360; ``valid_cl_asr``: the validation subsets again.

Each ``--*_subsets`` option changes a set's subsets (``--cl_subsets`` with no value: no
continual-learning sets). Text: the transcript as released (upper case, apostrophes).
Speaker: the reader.
"""

import argparse
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.corpora import prep
from espnet_pruning.corpora.prep import CorpusError, Utterance

TASK = "asr_librispeech"
_WORDS = re.compile(r"^[A-Z']+( [A-Z']+)*$")


@typechecked
def read_subset(root: Path, subset: str) -> List[Utterance]:
    """Every utterance of one subset (``train-clean-100``), in reader/chapter order."""
    subset_dir = prep.require(root / subset, f"LibriSpeech subset {subset}", "dir")
    utts = []
    for chapter_dir in sorted(p for p in subset_dir.glob("*/*") if p.is_dir()):
        reader, chapter = chapter_dir.parent.name, chapter_dir.name
        trans = chapter_dir / f"{reader}-{chapter}.trans.txt"
        prefix = f"{reader}-{chapter}-"
        for n, line in prep.read_lines(trans, "LibriSpeech transcript file"):
            where = f"{trans}:{n}"
            utt, _, words = line.partition(" ")
            words = " ".join(words.split())
            if not utt.startswith(prefix) or not utt[len(prefix) :].isdigit():
                raise CorpusError(
                    f"{where}: utterance id {utt!r} is not {prefix}<number>: {line!r}"
                )
            if not _WORDS.match(words):
                raise CorpusError(
                    f"{where}: transcript must be upper-case words: {line!r}"
                )
            utts.append(
                Utterance(
                    corpus="libri",
                    speaker=reader,
                    local_id=utt,
                    task=TASK,
                    audio=chapter_dir / f"{utt}.flac",
                    text=words,
                    source=where,
                )
            )
    if not utts:
        raise CorpusError(f"{subset_dir}: no <reader>/<chapter>/*.trans.txt found")
    return utts


def _groups(args: argparse.Namespace) -> Dict[str, List[str]]:
    """Set name -> its subsets."""
    groups = {
        f"train_{TASK}": args.train_subsets,
        f"valid_{TASK}": args.valid_subsets,
        f"test_{TASK}": args.test_subsets,
    }
    if args.cl_subsets:
        groups["train_cl_asr"] = args.cl_subsets
        groups["valid_cl_asr"] = args.valid_subsets
    return groups


def collect(args: argparse.Namespace) -> Tuple[Dict[str, List[Utterance]], None]:
    """Utterances of every set (each subset read once)."""
    cache: Dict[str, List[Utterance]] = {}
    sets = {}
    for name, subsets in _groups(args).items():
        sets[name] = []
        for subset in subsets:
            if subset not in cache:
                cache[subset] = read_subset(args.root, subset)
            sets[name] += cache[subset]
    return sets, None


def set_names(args: argparse.Namespace) -> List[str]:
    """The data sets written."""
    return list(_groups(args))


def required(args: argparse.Namespace) -> List[Tuple[Path, str, str]]:
    """Every subset folder used."""
    subsets = sorted({s for group in _groups(args).values() for s in group})
    return [(args.root / s, f"LibriSpeech subset {s}", "dir") for s in subsets]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """LibriSpeech's options."""
    for name, default in (
        ("train", ["train-clean-100"]),
        ("valid", ["dev-clean", "dev-other"]),
        ("test", ["test-other"]),
        ("cl", ["train-clean-360"]),
    ):
        parser.add_argument(
            f"--{name}_subsets",
            nargs="+" if name != "cl" else "*",
            default=default,
            help=f"Subsets of the {name} set",
        )


CORPUS = prep.Corpus(
    name="librispeech",
    description="LibriSpeech -> {train,valid,test}_asr_librispeech, {train,valid}_cl_asr",
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
