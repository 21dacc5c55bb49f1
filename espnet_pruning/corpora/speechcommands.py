"""Google Speech Commands v0.02, 12 classes, for command recognition (``scr_speechcommands``).

Reads the release (``speech_commands_v0.02/``: ``<word>/<speaker>_nohash_<n>.wav``,
``validation_list.txt``, ``testing_list.txt``, ``_background_noise_/*.wav``) and, with
``--test_root``, the separate 12-class test set (``speech_commands_test_set_v0.02/``, one
folder per class)::

    python -m espnet_pruning.corpora.speechcommands --root /data/speech_commands_v0.02 \\
        --test_root /data/speech_commands_test_set_v0.02 --out_dir data \\
        --wav_dir dump/speechcommands_silence

Classes (paper §4.2, "12 different commands"): yes no up down left right on off stop go,
``_unknown_`` (every other word) and ``_silence_``. As ESPnet's ``egs2/speechcommands/asr1``
(``num_commands=12``):

* ``valid_scr_speechcommands``: the files of ``validation_list.txt``; ``test``: the test
  set of ``--test_root`` (without it, ``testing_list.txt``: no silence, a warning);
  ``train``: every other word file;
* ``_unknown_``: only every 18th file (``--unknown_every``, files sorted by path) of the
  train and valid splits, so that it does not dominate;
* ``_silence_``: one-second clips cut from the background-noise recordings every
  16000 // 9 samples (``--silence_hop``), ``running_tap`` for valid and the others for
  train, written as 16 kHz WAVs under ``--wav_dir`` (atomically; existing clips are
  reused on a rerun).

Text: ``command:<class>``. Speaker: the hash before ``_nohash_`` (the noise file for
silence clips).
"""

import argparse
import functools
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import soundfile as sf
from typeguard import typechecked

from espnet_pruning.corpora import prep
from espnet_pruning.corpora.audio import SAMPLE_RATE, WavError, check_wav, write_wav
from espnet_pruning.corpora.prep import CorpusError, Utterance

TASK = "scr_speechcommands"
NOISE_DIR = "_background_noise_"
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
_LISTED = re.compile(r"^[^/\s]+/[^/\s]+\.wav$")


@functools.lru_cache(maxsize=None)
def commands() -> Tuple[str, ...]:
    """The ten command words, from the task's declared labels."""
    others = (_label(UNKNOWN), _label(SILENCE))
    return tuple(x.split(":", 1)[1] for x in prep.task_labels(TASK) if x not in others)


def _label(cls: str) -> str:
    return f"command:{cls}"


@typechecked
def speaker_of(stem: str) -> str:
    """The speaker hash of ``<hash>_nohash_<n>`` (the whole stem otherwise)."""
    return stem.split("_nohash_")[0] if "_nohash_" in stem else stem


@typechecked
def read_list(path: Path) -> Dict[str, str]:
    """``<word>/<file>.wav`` entries of a split list -> ``"path:line"``."""
    out = {}
    for n, line in prep.read_lines(path, "Speech Commands split list"):
        line = line.strip()
        if not line:
            continue
        if not _LISTED.match(line):
            raise CorpusError(f"{path}:{n}: expected '<word>/<file>.wav': {line!r}")
        out[line] = f"{path}:{n}"
    return out


@typechecked
def word_utterance(root: Path, rel: str, source: str) -> Utterance:
    """The utterance of ``<word>/<file>.wav`` under ``root``."""
    word, name = rel.split("/")
    stem = Path(name).stem
    cls = word if word in commands() else UNKNOWN
    return Utterance(
        corpus="gsc",
        speaker=speaker_of(stem),
        local_id=prep.check_local_id(f"{word}_{stem}", source),
        task=TASK,
        audio=root / word / name,
        text=_label(cls),
        source=source,
    )


@typechecked
def thin_unknown(utts: List[Utterance], every: int) -> List[Utterance]:
    """Keep all command words and every ``every``-th unknown word (sorted by file)."""
    unknown = sorted(u.audio for u in utts if u.text == _label(UNKNOWN))
    kept = set(unknown[::every])
    return [u for u in utts if u.text != _label(UNKNOWN) or u.audio in kept]


@typechecked
def cut_silence(
    noise: Path, wav_dir: Path, hop: int, seconds: float = 1.0
) -> Tuple[List[Utterance], Dict[Path, int]]:
    """Cut ``noise`` into clips of ``seconds`` every ``hop`` samples, as WAVs.

    Args:
        noise: A 16 kHz mono background-noise recording.
        wav_dir: Clips go to ``wav_dir/<noise stem>/`` (a complete clip is kept).
        hop: Samples between the starts of two clips.
        seconds: Clip duration.

    Returns:
        The ``_silence_`` utterances and the samples of each clip.
    """
    try:
        audio, rate = sf.read(str(noise), dtype="int16", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise CorpusError(f"{noise}: unreadable background-noise file: {e}") from e
    if rate != SAMPLE_RATE or audio.shape[1] != 1:
        raise CorpusError(
            f"{noise}: {rate} Hz, {audio.shape[1]} channel(s); expected "
            f"{SAMPLE_RATE} Hz mono"
        )
    samples, length = audio[:, 0], int(round(seconds * SAMPLE_RATE))
    utts, frames = [], {}
    for start in range(0, len(samples) - length + 1, hop):
        local_id = f"silence_{noise.stem}_{start:08d}"
        clip = wav_dir / noise.stem / f"{local_id}.wav"
        try:
            done = check_wav(clip) == length
        except WavError:
            done = False
        if not done:
            write_wav(clip, np.ascontiguousarray(samples[start : start + length]))
        frames[clip] = length
        utts.append(
            Utterance(
                corpus="gsc",
                speaker=noise.stem,
                local_id=prep.check_local_id(local_id, str(noise)),
                task=TASK,
                audio=clip,
                text=_label(SILENCE),
                source=f"{noise} (samples {start}-{start + length})",
            )
        )
    if not utts:
        raise CorpusError(f"{noise}: shorter than one {seconds} s clip")
    return utts, frames


@typechecked
def read_test_set(test_root: Path) -> List[Utterance]:
    """The 12-class test set: one folder per class."""
    known = {_label(c) for c in commands() + (UNKNOWN, SILENCE)}
    utts = []
    for folder in sorted(p for p in test_root.iterdir() if p.is_dir()):
        if _label(folder.name) not in known:
            raise CorpusError(
                f"{folder}: unknown class folder (expected one of "
                f"{', '.join(sorted(c.split(':')[1] for c in known))})"
            )
        for wav in sorted(folder.glob("*.wav")):
            if wav.name.startswith("."):
                continue
            utts.append(
                Utterance(
                    corpus="gsc",
                    speaker=speaker_of(wav.stem),
                    local_id=prep.check_local_id(
                        f"test{folder.name.strip('_')}_{wav.stem}", str(wav)
                    ),
                    task=TASK,
                    audio=wav,
                    text=_label(folder.name),
                    source=str(folder),
                )
            )
    if not utts:
        raise CorpusError(f"{test_root}: no <class>/*.wav files")
    return utts


def collect(
    args: argparse.Namespace,
) -> Tuple[Dict[str, List[Utterance]], Dict[Path, int]]:
    """Utterances of the three sets; writes the silence clips."""
    root = args.root
    valid_list = read_list(root / "validation_list.txt")
    test_list = read_list(root / "testing_list.txt")
    held_out: Set[str] = set(valid_list) | set(test_list)
    train = []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if word_dir.name.startswith(("_", ".")):
            continue  # _background_noise_
        for wav in sorted(word_dir.glob("*.wav")):
            rel = f"{word_dir.name}/{wav.name}"
            if not wav.name.startswith(".") and rel not in held_out:
                train.append(word_utterance(root, rel, str(wav)))
    valid = [word_utterance(root, r, w) for r, w in valid_list.items()]
    train = thin_unknown(train, args.unknown_every)
    valid = thin_unknown(valid, args.unknown_every)
    frames: Dict[Path, int] = {}
    noises = sorted((root / NOISE_DIR).glob("*.wav"))
    if args.valid_noise not in [n.stem for n in noises]:
        raise CorpusError(f"{root / NOISE_DIR}: no {args.valid_noise}.wav")
    for noise in noises:
        clips, clip_frames = cut_silence(
            noise, args.wav_dir.absolute(), args.silence_hop
        )
        (valid if noise.stem == args.valid_noise else train).extend(clips)
        frames.update(clip_frames)
    if args.test_root is not None:
        test = read_test_set(args.test_root)
    else:
        logging.warning(
            "no --test_root: test_scr_speechcommands is testing_list.txt (no _silence_), "
            "not the official 12-class test set"
        )
        test = thin_unknown(
            [word_utterance(root, r, w) for r, w in test_list.items()],
            args.unknown_every,
        )
    return {
        f"train_{TASK}": train,
        f"valid_{TASK}": valid,
        f"test_{TASK}": test,
    }, frames


def set_names(args: argparse.Namespace) -> List[str]:
    """The data sets written."""
    return [f"{s}_{TASK}" for s in ("train", "valid", "test")]


def required(args: argparse.Namespace) -> List[Tuple[Path, str, str]]:
    """The split lists, the noise folder and the test set."""
    out = [
        (args.root / "validation_list.txt", "Speech Commands split list", "file"),
        (args.root / "testing_list.txt", "Speech Commands split list", "file"),
        (args.root / NOISE_DIR, "background-noise folder", "dir"),
    ]
    if args.test_root is not None:
        out.append((args.test_root, "Speech Commands 12-class test set", "dir"))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Speech Commands' options."""
    parser.add_argument(
        "--test_root",
        type=Path,
        default=None,
        help="The extracted speech_commands_test_set_v0.02 (one folder per class)",
    )
    parser.add_argument(
        "--wav_dir",
        type=Path,
        default=Path("dump/speechcommands_silence"),
        help="Where the _silence_ clips are written",
    )
    parser.add_argument(
        "--unknown_every",
        type=int,
        default=18,
        help="Keep every N-th _unknown_ file of train and valid",
    )
    parser.add_argument(
        "--silence_hop",
        type=int,
        default=SAMPLE_RATE // 9,
        help="Samples between the starts of two _silence_ clips",
    )
    parser.add_argument(
        "--valid_noise",
        default="running_tap",
        help="Background-noise file (stem) whose clips form the valid silence",
    )


CORPUS = prep.Corpus(
    name="speechcommands",
    description="Speech Commands v0.02 -> {train,valid,test}_scr_speechcommands (12 classes)",
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
