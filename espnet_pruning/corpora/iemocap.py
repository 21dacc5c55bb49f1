"""IEMOCAP for emotion recognition (``er_iemocap``): four classes, ESPnet's session split.

Reads the released ``IEMOCAP_full_release/``: for every turn of
``Session<n>/dialog/EmoEvaluation/<dialog>.txt`` (header lines
``[<start> - <end>]<TAB><turn><TAB><code><TAB>[V, A, D]``) whose code is one of the four
classes, the words of ``Session<n>/dialog/transcriptions/<dialog>.txt``
(``<turn> [<start>-<end>]: <words>``) and the audio
``Session<n>/sentences/wav/<dialog>/<turn>.wav``::

    python -m espnet_pruning.corpora.iemocap --root /data/IEMOCAP_full_release --out_dir data

Writes ``train_er_iemocap`` (Sessions 1-3 and the dialogs of Session 4 where the female
actor wears the markers, ``Ses04F_*``), ``valid_er_iemocap`` (``Ses04M_*``) and
``test_er_iemocap`` (Session 5), the split of ESPnet's ``egs2/iemocap/asr1``.

Classes (paper §4: neutral, happy, sad, angry): ``neu hap sad ang``; ``exc`` (excited) is
dropped like every other code, as ESPnet's recipe and UniverSLU do (``--merge_excited``
counts it as happy instead, a common alternative in the ER literature). Text:
``em:<class> SEP <transcript>``, the transcript lower-cased without punctuation or
bracketed events (``[LAUGHTER]``). Speaker: the actor of the turn (``Ses01M`` for
``Ses01F_impro01_M000``).
"""

import argparse
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.corpora import prep
from espnet_pruning.corpora.prep import CorpusError, Utterance

TASK = "er_iemocap"
SESSIONS = (1, 2, 3, 4, 5)
#: Every code of EmoEvaluation headers (README); "xxx": the evaluators did not agree.
CODES = ("neu", "hap", "sad", "ang", "exc", "fru", "sur", "fea", "oth", "dis", "xxx")
KEPT = ("neu", "hap", "sad", "ang")
_HEADER_TIME = re.compile(r"^\[\d+(\.\d+)? - \d+(\.\d+)?\]$")
_TURN = re.compile(r"^(Ses0[1-5])([FM])_\S*_([FM])[A-Za-z0-9]*$")
_TRANSCRIPT = re.compile(r"^(\S+) \[[0-9.]+-[0-9.]+\]:(.*)$")
_EVENT = re.compile(r"\[[^\]]*\]")


@typechecked
def split_of(dialog: str) -> str:
    """``train``, ``valid`` or ``test`` for a dialog id (``Ses04M_impro01`` -> valid)."""
    session, wearer = dialog[:5], dialog[5]
    if session == "Ses05":
        return "test"
    if session == "Ses04" and wearer == "M":
        return "valid"
    return "train"


@typechecked
def read_emotions(path: Path) -> List[Tuple[str, str, str]]:
    """The turns of one EmoEvaluation file: ``(turn, code, "path:line")``."""
    dialog = path.stem
    turns = []
    for n, line in prep.read_lines(path, "EmoEvaluation file"):
        if not line.startswith("["):
            continue  # evaluator lines (C-E1:, A-E3:), blank lines, the % header
        fields = line.split("\t")
        where = f"{path}:{n}"
        if len(fields) != 4 or not _HEADER_TIME.match(fields[0].strip()):
            raise CorpusError(
                f"{where}: malformed turn header (expected "
                f"'[start - end]<TAB>turn<TAB>code<TAB>[V, A, D]'): {line!r}"
            )
        turn, code = fields[1].strip(), fields[2].strip()
        if not turn.startswith(dialog + "_") or not _TURN.match(turn):
            raise CorpusError(
                f"{where}: turn {turn!r} is not a turn of dialog {dialog}"
            )
        if code not in CODES:
            raise CorpusError(
                f"{where}: unknown emotion code {code!r} (known: {' '.join(CODES)})"
            )
        turns.append((turn, code, where))
    return turns


@typechecked
def read_transcripts(path: Path) -> Dict[str, str]:
    """Turn -> words of one transcription file (lines of other turns' shape ignored)."""
    dialog = path.stem
    out: Dict[str, str] = {}
    for n, line in prep.read_lines(path, "transcription file"):
        if not line.startswith(dialog + "_"):
            continue  # not a turn line
        m = _TRANSCRIPT.match(line)
        if m is None:
            raise CorpusError(
                f"{path}:{n}: malformed transcription line (expected "
                f"'<turn> [start-end]: words'): {line!r}"
            )
        out[m.group(1)] = m.group(2)
    return out


@typechecked
def transcript_of(words: str) -> str:
    """Lower-case words without bracketed events and punctuation."""
    return prep.normalize_transcript(_EVENT.sub(" ", words))


@typechecked
def label_of(code: str, merge_excited: bool) -> Optional[str]:
    """``em:<class>`` of a code, or None for a dropped code."""
    if code == "exc" and merge_excited:
        code = "hap"
    return f"em:{code}" if code in KEPT else None


def collect(args: argparse.Namespace) -> Tuple[Dict[str, List[Utterance]], None]:
    """Utterances of the three sets."""
    labels = prep.task_labels(TASK)
    sets: Dict[str, List[Utterance]] = {s: [] for s in set_names(args)}
    for s in SESSIONS:
        session = args.root / f"Session{s}"
        for emo_file in sorted((session / "dialog/EmoEvaluation").glob("Ses*.txt")):
            dialog = emo_file.stem
            trans_file = session / "dialog/transcriptions" / f"{dialog}.txt"
            words = read_transcripts(trans_file)
            for turn, code, where in read_emotions(emo_file):
                label = label_of(code, args.merge_excited)
                if label is None:
                    continue
                assert label in labels, label
                if turn not in words:
                    raise CorpusError(
                        f"{where}: turn {turn} has no line in {trans_file}"
                    )
                m = _TURN.match(turn)
                sets[f"{split_of(dialog)}_{TASK}"].append(
                    Utterance(
                        corpus="iemocap",
                        speaker=m.group(1) + m.group(3),
                        local_id=prep.check_local_id(turn, where),
                        task=TASK,
                        audio=session / "sentences/wav" / dialog / f"{turn}.wav",
                        text=prep.with_transcript(label, transcript_of(words[turn])),
                        source=where,
                    )
                )
    return sets, None


def set_names(args: argparse.Namespace) -> List[str]:
    """The data sets written."""
    return [f"{s}_{TASK}" for s in ("train", "valid", "test")]


def required(args: argparse.Namespace) -> List[Tuple[Path, str, str]]:
    """Per session: the EmoEvaluation, transcription and sentence audio folders."""
    out = []
    for s in SESSIONS:
        d = args.root / f"Session{s}"
        out += [
            (d / "dialog/EmoEvaluation", "EmoEvaluation folder", "dir"),
            (d / "dialog/transcriptions", "transcriptions folder", "dir"),
            (d / "sentences/wav", "sentence audio folder", "dir"),
        ]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """IEMOCAP's options."""
    parser.add_argument(
        "--merge_excited",
        action="store_true",
        help="Count 'exc' (excited) as happy (ESPnet and UniverSLU drop it)",
    )


CORPUS = prep.Corpus(
    name="iemocap",
    description="IEMOCAP -> {train,valid,test}_er_iemocap (4 emotions)",
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
