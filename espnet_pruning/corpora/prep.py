"""What every real-corpus preparation shares: ids, text normalisation, checks, the CLI.

Each corpus module (:mod:`~espnet_pruning.corpora.iemocap`, ``slurp``, ``librispeech``,
``fsc``, ``snips``, ``speechcommands``) only parses its released annotation files into
:class:`Utterance` s per data set; this module turns them into Kaldi data directories:

* utterance ids ``<spk>-<task>-<corpus id>`` with speaker ids ``<corpus>_<speaker>``
  (speaker first, so ``utt2spk`` sorted by utterance is sorted by speaker as Kaldi
  requires; the task keeps SLURP's IC and NER copies of one recording apart in a
  combined set);
* the prompt of each task from the task registry (:mod:`espnet_pruning.specifiers`);
* every audio file checked from its header (:func:`check_audio_file`, with a progress bar)
  before anything is written, so a bad file stops the run with one message naming the
  file and the annotation line that lists it, and no data directory is half written;
* each data directory written atomically (:func:`write_data_dir`): a rerun replaces it.

Bad input (missing root or annotation file, malformed line, unknown label, unreadable
audio) raises :class:`CorpusError`; the command line prints ``ERROR: <message>`` and exits
with status 1.
"""

import argparse
import dataclasses
import functools
import json
import logging
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm
from typeguard import typechecked

from espnet_pruning.corpora.audio import SAMPLE_RATE, WavError, check_audio_file
from espnet_pruning.corpora.kaldi import KaldiEntry, write_data_dir
from espnet_pruning.errors import DataError, exit_on_input_error
from espnet_pruning.specifiers import TaskRegistry

_LOCAL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class CorpusError(DataError):
    """A corpus file is missing or malformed; the message names the path (and line)."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus, as its annotation gives it.

    Attributes:
        corpus: Short corpus tag starting the speaker id (``iemocap``, ``slurp``, ...).
        speaker: The corpus's speaker id (any characters; sanitised into the id).
        local_id: The corpus's utterance id (letters, digits, ``_ . -``).
        task: Task name (``er_iemocap``...), its ``utt2category`` and prompt.
        audio: The audio file (absolute path in ``wav.scp``).
        text: The target text (already in the task's format).
        source: Where the annotation lists it (``path:line``), for error messages.
    """

    corpus: str
    speaker: str
    local_id: str
    task: str
    audio: Path
    text: str
    source: str

    @property
    def spk_id(self) -> str:
        """Speaker id: ``<corpus>_<speaker>`` with only letters, digits and ``_``."""
        return f"{self.corpus}_{sanitize(self.speaker)}"

    @property
    def utt_id(self) -> str:
        """Utterance id ``<spk>-<task>-<corpus id>``."""
        return f"{self.spk_id}-{self.task}-{self.local_id}"


@typechecked
def sanitize(name: str) -> str:
    """Letters and digits of ``name``, other runs of characters as one ``_``.

    Speaker ids made of these never break Kaldi's rule that sorting by utterance id also
    sorts by speaker: ``-`` (0x2d), which follows the speaker in the utterance id, sorts
    before every character a longer speaker id could continue with.
    """
    out = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    if not out:
        raise ValueError(f"speaker id {name!r} has no letters or digits")
    return out


@typechecked
def ascii_fold(text: str) -> str:
    """Accented letters to their base letter; other non-ASCII characters dropped."""
    decomposed = unicodedata.normalize("NFKD", text)
    return decomposed.encode("ascii", "ignore").decode("ascii")


@typechecked
def normalize_transcript(text: str, upper: bool = False) -> str:
    """The project's transcript normalisation for the SLU targets.

    ASCII only; ``@`` and ``#`` and ``&`` spoken (``at``, ``hashtag``, ``and``, as ESPnet's
    SLURP recipe does for the first two); periods and commas deleted (``a.m.`` -> ``am``);
    every other character but letters, digits and apostrophes a word break; lower case
    (or upper case); single spaces.

    Args:
        text: The raw transcript.
        upper: Upper case instead of lower case.

    Returns:
        The normalised transcript (may be empty).
    """
    # Typographic apostrophes would otherwise vanish in the ASCII folding (I’m -> Im).
    text = ascii_fold(text.replace("\u2019", "'").replace("\u2018", "'"))
    for symbol, word in (("@", " at "), ("#", " hashtag "), ("&", " and ")):
        text = text.replace(symbol, word)
    text = re.sub(r"[.,]", "", text)
    text = re.sub(r"[^A-Za-z0-9']+", " ", text)
    text = " ".join(text.split())
    return text.upper() if upper else text.lower()


@typechecked
def with_transcript(label: str, transcript: str) -> str:
    """A classification target: the label, then `` SEP <transcript>`` if there is one."""
    return f"{label} SEP {transcript}" if transcript else label


@typechecked
def check_local_id(local_id: str, source: str) -> str:
    """``local_id`` if usable in an utterance id, else a :class:`CorpusError`."""
    if not _LOCAL_ID.match(local_id):
        raise CorpusError(
            f"{source}: utterance id {local_id!r} may use letters, digits, '_', '.', '-' only"
        )
    return local_id


@typechecked
def require(path: Path, what: str, kind: str = "file") -> Path:
    """``path`` if it is an existing file (``kind="file"``) or directory (``"dir"``)."""
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        raise CorpusError(f"{path}: {what} not found")
    return path


@typechecked
def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; errors name the file (and line, column)."""
    require(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: cannot read: {e}") from e


@typechecked
def read_lines(path: Path, what: str) -> Iterator[Tuple[int, str]]:
    """Lines of a UTF-8 text file without the newline, numbered from 1."""
    require(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                yield n, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not valid UTF-8 ({e})") from e
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror or e}") from e


@functools.lru_cache(maxsize=1)
def _registry() -> TaskRegistry:
    return TaskRegistry.load()


@typechecked
def prompts(tasks: Sequence[str]) -> Dict[str, str]:
    """The prompt of each task, from the built-in task specifiers."""
    return {t: " ".join(_registry()[t].prompt) for t in tasks}


@typechecked
def task_labels(task: str) -> Tuple[str, ...]:
    """The labels the task specifiers declare for ``task`` (empty if open-ended)."""
    return _registry()[task].labels


@typechecked
def check_audio(
    utts: Sequence[Utterance],
    fs: int = SAMPLE_RATE,
    full_check: bool = True,
    skip_missing: bool = False,
    progress: bool = True,
    known_frames: Optional[Dict[Path, int]] = None,
) -> Tuple[List[Utterance], Dict[Path, Optional[int]]]:
    """Check every audio file once: present, and (``full_check``) readable, mono, ``fs``.

    Args:
        utts: The utterances (audio files may repeat).
        fs: Required sampling rate.
        full_check: Open each file's header; False checks only that it exists.
        skip_missing: Drop utterances whose file is missing (logged) instead of failing.
        progress: Show a progress bar.
        known_frames: Files already known to be good (e.g. written by the preparation).

    Returns:
        The utterances kept and the number of samples per file (None when not opened).

    Raises:
        CorpusError: Naming the file and the annotation line that lists it.
    """
    frames: Dict[Path, Optional[int]] = dict(known_frames or {})
    first_source: Dict[Path, str] = {}
    for u in utts:
        first_source.setdefault(u.audio, u.source)
    missing = set()
    todo = [p for p in first_source if p not in frames]
    desc = "checking audio" if full_check else "finding audio"
    for path in tqdm(todo, desc=desc, unit="file", disable=not progress):
        if not path.is_file():
            if skip_missing:
                missing.add(path)
                continue
            raise CorpusError(
                f"{path}: audio file not found (listed at {first_source[path]})"
            )
        if not full_check:
            frames[path] = None
            continue
        try:
            frames[path] = check_audio_file(path, expected_rate=fs)
        except WavError as e:
            raise CorpusError(f"{e} (listed at {first_source[path]})") from e
    if missing:
        logging.warning(
            f"{len(missing)} audio file(s) not found, their utterances skipped "
            f"(first: {sorted(missing)[0]})"
        )
    return [u for u in utts if u.audio not in missing], frames


@typechecked
def write_sets(
    out_dir: Path,
    sets: Dict[str, List[Utterance]],
    fs: int = SAMPLE_RATE,
    full_check: bool = True,
    skip_missing: bool = False,
    progress: bool = True,
    known_frames: Optional[Dict[Path, int]] = None,
) -> Dict[str, int]:
    """Check the audio of every set, then write each set as ``out_dir/<set>``.

    Nothing is written unless every set is valid (no empty set, no duplicate ids, every
    audio file good); each directory is then replaced atomically.

    Args:
        out_dir: Parent of the data directories (``data``).
        sets: Utterances per set name.
        fs: Required sampling rate.
        full_check: Open every audio file's header (else only check existence).
        skip_missing: Skip utterances whose audio file is missing.
        progress: Progress bar for the audio check.
        known_frames: Audio files the caller wrote and knows (path -> samples).

    Returns:
        The number of utterances per set.
    """
    every = [u for utts in sets.values() for u in utts]
    _, frames = check_audio(
        every,
        fs=fs,
        full_check=full_check,
        skip_missing=skip_missing,
        progress=progress,
        known_frames=known_frames,
    )
    task_prompts = prompts(sorted({u.task for u in every}))
    entries: Dict[str, List[KaldiEntry]] = {}
    for name, utts in sets.items():
        seen: Dict[str, str] = {}
        rows = []
        for u in utts:
            if u.audio not in frames:  # missing and skipped
                continue
            if u.utt_id in seen:
                raise CorpusError(
                    f"{u.source}: utterance {u.utt_id} of set {name} is also listed at "
                    f"{seen[u.utt_id]}"
                )
            seen[u.utt_id] = u.source
            rows.append(
                KaldiEntry(
                    utt_id=u.utt_id,
                    speaker=u.spk_id,
                    wav=str(u.audio.absolute()),
                    text=u.text,
                    prompt=task_prompts[u.task],
                    category=u.task,
                    num_samples=frames[u.audio],
                )
            )
        if not rows:
            raise CorpusError(f"set {name}: no utterances (check the corpus root)")
        entries[name] = rows
    counts = {}
    for name, rows in entries.items():
        write_data_dir(out_dir / name, rows, check_audio=False)
        counts[name] = len(rows)
        logging.info(f"{out_dir / name}: {len(rows)} utterances")
    return counts


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A corpus preparation, as the shared command line runs it.

    Attributes:
        name: Module name (``iemocap``).
        description: One line for ``--help``.
        add_arguments: Adds the corpus's own options to the parser.
        required: ``args`` -> the files and directories that must exist, each
            ``(path, what, "file"|"dir")``; checked first, and all that ``--dry_run``
            checks.
        sets: ``args`` -> names of the data sets it writes (for ``--dry_run``).
        collect: ``args`` -> utterances per set, and audio files it wrote itself
            (path -> samples) or None.
    """

    name: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    required: Callable[[argparse.Namespace], List[Tuple[Path, str, str]]]
    sets: Callable[[argparse.Namespace], List[str]]
    collect: Callable[
        [argparse.Namespace],
        Tuple[Dict[str, List[Utterance]], Optional[Dict[Path, int]]],
    ]


def get_parser(corpus: Corpus) -> argparse.ArgumentParser:
    """The options every corpus preparation has, plus the corpus's own."""
    parser = argparse.ArgumentParser(
        description=corpus.description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--root", type=Path, required=True, help="The corpus as released (extracted)"
    )
    parser.add_argument(
        "--out_dir", type=Path, default=Path("data"), help="Data directories go here"
    )
    parser.add_argument(
        "--fs", type=int, default=SAMPLE_RATE, help="Required sampling rate (Hz)"
    )
    parser.add_argument(
        "--skip_audio_check",
        action="store_true",
        help="Only check that audio files exist (no header check, no utt2num_samples)",
    )
    parser.add_argument(
        "--skip_missing_audio",
        action="store_true",
        help="Skip (and count) utterances whose audio file is missing instead of failing",
    )
    parser.add_argument(
        "--dry_run",
        action="store_true",
        help="Check the corpus root and annotation files, print the plan, write nothing",
    )
    parser.add_argument("--no_progress", action="store_true", help="No progress bar")
    parser.add_argument(
        "--log_level",
        type=lambda x: x.upper(),
        default="INFO",
        choices=("ERROR", "WARNING", "INFO", "DEBUG"),
        help="Logging level",
    )
    corpus.add_arguments(parser)
    return parser


def check_required(corpus: Corpus, args: argparse.Namespace) -> None:
    """Raise one :class:`CorpusError` listing every required path that is missing."""
    require(args.root, f"{corpus.name} corpus root", "dir")
    missing = [
        f"{path}: {what} not found"
        for path, what, kind in corpus.required(args)
        if not (path.is_file() if kind == "file" else path.is_dir())
    ]
    if missing:
        raise CorpusError("; ".join(missing))


@typechecked
def prepare(corpus: Corpus, args: argparse.Namespace) -> Dict[str, int]:
    """Check, collect and write the corpus's data sets (or only check: ``--dry_run``)."""
    check_required(corpus, args)
    names = corpus.sets(args)
    if args.dry_run:
        print(
            f"{corpus.name}: {args.root} OK; would write "
            + " ".join(str(args.out_dir / n) for n in names)
        )
        return {}
    sets, written = corpus.collect(args)
    assert sorted(sets) == sorted(names), (sorted(sets), names)
    return write_sets(
        args.out_dir,
        sets,
        fs=args.fs,
        full_check=not args.skip_audio_check,
        skip_missing=args.skip_missing_audio,
        progress=not args.no_progress,
        known_frames=written,
    )


def main(corpus: Corpus, cmd: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point of a corpus module: input errors exit with status 1."""
    args = get_parser(corpus).parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    exit_on_input_error(lambda: prepare(corpus, args))
