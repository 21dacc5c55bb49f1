"""Embedded spoken corpus for all seven UniverSLU tasks, synthesised with espeak-ng.

The real corpora (IEMOCAP, SLURP, LibriSpeech, Fluent Speech Commands, SNIPS, Speech
Commands) are licensed downloads; this generator writes a small but real *spoken* stand-in
with the same Kaldi layout, prompts and target formats, from templates written for this
project (:mod:`espnet_pruning.corpora.templates`) and espeak-ng voices
(:mod:`espnet_pruning.corpora.speakers`)::

    python -m espnet_pruning.corpora.synthetic --out_dir data --wav_dir wavs --seed 0

Output (every directory a valid Kaldi data dir with ``wav.scp text utt2spk spk2utt prompt
utt2category utt2num_samples``; 16 kHz mono 16-bit WAVs under ``wav_dir/<spk>/``):

* ``train``, ``valid``: all seven tasks mixed (train-pool speakers);
* ``test_<task>``: one per task, speakers never seen in train/valid;
* ``train_cl_asr``, ``valid_cl_asr``: new ASR sentences, new voices and speeds (the
  LibriSpeech-360 analogue for continual learning);
* ``train_cl_ic``, ``valid_cl_ic``: new ``ic_slurp`` speech in another "synthetic" style
  (klatt/whisper/croak variants, unusual speeds; the SLURP-synthetic analogue);
* ``speakers.json`` (speaker -> voice), ``labels.json`` (label inventory per task),
  ``corpus.json`` (parameters and counts per set and task).

Utterance ids are ``<spk>-<task>-<nnnnn>`` (unique over the whole corpus). The output is a
function of the parameters only (byte-identical WAVs for a seed). The run is resumable:
WAVs are written to temporary files and renamed, complete ones are not re-synthesised, data
dirs are replaced atomically, and a finished run (``.synthetic_done.json`` with the same
parameters) is skipped.
"""

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
from tqdm import tqdm
from typeguard import typechecked

from espnet_pruning.corpora.audio import (
    SAMPLE_RATE,
    WavError,
    background_noise,
    check_wav,
    pad_center,
    remove_stale_temporaries,
    write_wav,
)
from espnet_pruning.corpora.kaldi import KaldiEntry, write_data_dir
from espnet_pruning.corpora.speakers import (
    Emotion,
    NoiseSource,
    Speaker,
    load_emotions,
    load_speakers,
    pool,
    utterance_prosody,
)
from espnet_pruning.corpora.templates import PROMPTS, TASKS, Sample, Templates
from espnet_pruning.corpora.tts import Espeak, Prosody, TTSError

#: Bump when a code change alters the generated texts or audio.
GENERATOR_VERSION = 1
DONE_MARKER = ".synthetic_done.json"
WAV_MARKER = ".synthetic_params.json"
_OUR_WAV = re.compile(r"^[A-Za-z0-9]+-[a-z_]+-\d{5}\.wav$")


class GenerationError(RuntimeError):
    """The corpus cannot be generated (bad output directory, parameter clash, ...)."""


class OutputDirError(GenerationError):
    """An output directory cannot be created or written."""


class ParameterMismatchError(GenerationError):
    """An output directory holds a corpus generated with other parameters."""


@dataclasses.dataclass(frozen=True)
class SetSpec:
    """One data directory: its tasks, speaker pool and utterances per task."""

    name: str
    tasks: Tuple[str, ...]
    pool: str
    n_per_task: int


@dataclasses.dataclass(frozen=True)
class PlannedUtterance:
    """Everything needed to render and list one utterance."""

    utt_id: str
    set_name: str
    speaker: str
    sample: Sample
    wav: Path
    prosody: Optional[Prosody] = None
    noise: Optional[Tuple[str, float, Optional[float], int]] = (
        None  # colour, dB, hum, seed
    )


@typechecked
def set_specs(n_train: int, n_valid: int, n_test: int, n_cl: int) -> List[SetSpec]:
    """The data directories of the corpus, in generation order."""
    specs = [
        SetSpec("train", TASKS, "train", n_train),
        SetSpec("valid", TASKS, "train", n_valid),
    ]
    specs += [SetSpec(f"test_{t}", (t,), "test", n_test) for t in TASKS]
    specs += [
        SetSpec("train_cl_asr", ("asr_librispeech",), "cl_asr", n_cl),
        SetSpec("valid_cl_asr", ("asr_librispeech",), "cl_asr", n_valid),
        SetSpec("train_cl_ic", ("ic_slurp",), "cl_ic", n_cl),
        SetSpec("valid_cl_ic", ("ic_slurp",), "cl_ic", n_valid),
    ]
    return specs


def _rng(seed: int, *names: str) -> np.random.Generator:
    """An independent random stream per (seed, names), stable across Python runs."""
    return np.random.default_rng([seed] + [zlib.crc32(n.encode()) for n in names])


def _spread(items: Sequence, n: int, rng: np.random.Generator) -> List:
    """``n`` items drawn as evenly as possible from ``items``, in random order."""
    if not items:
        return []
    reps = [items[i % len(items)] for i in range(n)]
    return [reps[i] for i in rng.permutation(n)]


@typechecked
def plan_corpus(
    seed: int,
    specs: Sequence[SetSpec],
    wav_dir: Path,
    templates: Templates,
    speakers: Dict[str, Speaker],
    noises: Dict[str, NoiseSource],
    emotions: Dict[str, Emotion],
) -> List[PlannedUtterance]:
    """Decide every utterance: text, label, speaker, prosody, id and WAV path.

    Cheap (no audio) and deterministic for ``seed``; ASR sentences are unique over all sets.
    """
    plan: List[PlannedUtterance] = []
    counters = {t: 0 for t in TASKS}
    asr_seen: Set[str] = set()
    for spec in specs:
        voices = pool(speakers, spec.pool)
        noise_pool = pool(noises, "test" if spec.pool == "test" else "train")
        if not voices:
            raise GenerationError(f"speaker pool {spec.pool!r} is empty")
        for task in spec.tasks:
            rng = _rng(seed, spec.name, task)
            samples = templates.sample(task, spec.n_per_task, rng, exclude=asr_seen)
            silent = [s.style == "silence" for s in samples]
            if any(silent) and not noise_pool:
                raise GenerationError(
                    f"no noise sources for the silence clips of {spec.name}"
                )
            spk_voice = iter(_spread(voices, len(samples) - sum(silent), rng))
            spk_noise = iter(_spread(noise_pool, sum(silent), rng))
            for sample, is_silence in zip(samples, silent):
                counters[task] += 1
                if is_silence:
                    src = next(spk_noise)
                    level = float(rng.uniform(*src.level_db))
                    noise = (src.colour, level, src.hum_hz, int(rng.integers(2**31)))
                    spk_id, prosody = src.spk_id, None
                else:
                    spk = next(spk_voice)
                    emotion = emotions[sample.style] if task == "er_iemocap" else None
                    spk_id, noise = spk.spk_id, None
                    prosody = utterance_prosody(spk, rng, emotion=emotion)
                utt_id = f"{spk_id}-{task}-{counters[task]:05d}"
                plan.append(
                    PlannedUtterance(
                        utt_id=utt_id,
                        set_name=spec.name,
                        speaker=spk_id,
                        sample=sample,
                        wav=wav_dir / spk_id / f"{utt_id}.wav",
                        prosody=prosody,
                        noise=noise,
                    )
                )
    return plan


@typechecked
def render(
    utt: PlannedUtterance, engine: Optional[Espeak], templates: Templates
) -> np.ndarray:
    """The 16 kHz int16 audio of one planned utterance."""
    if utt.noise is not None:
        colour, level, hum, noise_seed = utt.noise
        return background_noise(
            np.random.default_rng(noise_seed),
            templates.scr_silence_seconds,
            colour=colour,
            level_db=level,
            hum_hz=hum,
        )
    x = engine.render(utt.sample.spoken, utt.prosody)
    if utt.sample.task == "scr_speechcommands":
        x = pad_center(x, int(round(templates.scr_min_seconds * SAMPLE_RATE)))
    return x


def _prepare_dir(path: Union[str, Path], what: str) -> Path:
    """Create ``path`` (with parents) and check that it is writable; absolute path back."""
    path = Path(path).absolute()
    if any(c.isspace() for c in str(path)):
        raise OutputDirError(
            f"{what} {str(path)!r}: whitespace in the path breaks wav.scp"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(
            f"{what} {str(path)!r} cannot be created or written: {e.strerror or e}"
        ) from e
    return path


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"unreadable": str(path)}


def _clear_wavs(wav_dir: Path) -> int:
    """Delete the WAVs this generator wrote under ``wav_dir`` (nothing else)."""
    n = 0
    for spk_dir in sorted(p for p in wav_dir.iterdir() if p.is_dir()):
        for p in spk_dir.iterdir():
            if p.is_file() and _OUR_WAV.match(p.name):
                p.unlink()
                n += 1
        if not any(spk_dir.iterdir()):
            spk_dir.rmdir()
    return n


def _is_complete(path: Path) -> bool:
    try:
        check_wav(path)
    except WavError:
        return False
    return True


def _check_marker(marker: Path, params: dict, overwrite: bool, what: str) -> bool:
    """Compare a marker with ``params``. True: same; False: absent or overwritten."""
    prev = _read_json(marker)
    if prev is None:
        return False
    if prev == params:
        return True
    if not overwrite:
        diff = sorted(
            k for k in set(prev) | set(params) if prev.get(k) != params.get(k)
        )
        raise ParameterMismatchError(
            f"{what} {str(marker.parent)!r} holds a corpus generated with other parameters "
            f"(differing: {', '.join(diff)}; see {marker}); pass --overwrite to regenerate "
            "it or choose another directory"
        )
    marker.unlink()
    return False


@typechecked
def generate(
    out_dir: Union[str, Path],
    wav_dir: Union[str, Path],
    seed: int = 0,
    n_train: int = 120,
    n_valid: int = 16,
    n_test: int = 30,
    n_cl: int = 120,
    nj: int = 2,
    overwrite: bool = False,
    espeak: Optional[str] = None,
    progress: bool = True,
) -> Dict:
    """Generate the corpus (or skip it if already generated with the same parameters).

    Args:
        out_dir: Where the data directories and JSON files go.
        wav_dir: Where the WAVs go (``wav_dir/<spk>/<uttid>.wav``; absolute paths in
            ``wav.scp``).
        seed: Random seed; the output is a function of the parameters.
        n_train: Utterances per task in ``train``.
        n_valid: Utterances per task in ``valid``, ``valid_cl_asr`` and ``valid_cl_ic``.
        n_test: Utterances per ``test_<task>`` set.
        n_cl: Utterances in ``train_cl_asr`` and in ``train_cl_ic``.
        nj: Parallel synthesis jobs.
        overwrite: Regenerate if the directories hold a corpus of other parameters (instead
            of raising :class:`ParameterMismatchError`).
        espeak: espeak-ng binary (default: ``$ESPEAK_NG`` or ``espeak-ng`` on PATH).
        progress: Show a progress bar.

    Returns:
        The summary also written to ``out_dir/corpus.json``.

    Raises:
        EspeakNotFoundError: espeak-ng missing (before anything is written).
        OutputDirError: An output directory cannot be created or written.
        ParameterMismatchError: See ``overwrite``.
    """
    sizes = dict(n_train=n_train, n_valid=n_valid, n_test=n_test, n_cl=n_cl)
    for k, v in sizes.items():
        if v < 1:
            raise ValueError(f"{k} must be >= 1, got {v}")
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    engine = Espeak(espeak)
    templates = Templates()
    speakers, noises = load_speakers()
    emotions = load_emotions()
    missing = sorted(
        {s.variant for s in speakers.values()} - engine.variants()
        | {s.voice for s in speakers.values()} - engine.voices()
    )
    if missing:
        raise GenerationError(
            f"espeak-ng {engine.version} ({engine.binary}) lacks voices/variants {missing}"
        )
    out_dir = _prepare_dir(out_dir, "output directory")
    wav_dir = _prepare_dir(wav_dir, "wav directory")

    wav_params = dict(
        generator_version=GENERATOR_VERSION,
        seed=seed,
        **sizes,
        templates_sha256=templates.digest,
        espeak_ng=engine.version,
    )
    params = dict(wav_params, wav_dir=str(wav_dir))
    specs = set_specs(**sizes)
    done = out_dir / DONE_MARKER
    if _check_marker(done, params, overwrite, "output directory") and all(
        (out_dir / s.name).is_dir() for s in specs
    ):
        logging.info(f"{out_dir}: already generated with these parameters; skipping")
        return _read_json(out_dir / "corpus.json") or {}
    if done.exists():
        done.unlink()
    if not _check_marker(wav_dir / WAV_MARKER, wav_params, overwrite, "wav directory"):
        if overwrite:
            n = _clear_wavs(wav_dir)
            if n:
                logging.info(f"{wav_dir}: removed {n} WAVs of other parameters")
        _write_json(wav_dir / WAV_MARKER, wav_params)
    remove_stale_temporaries(wav_dir)
    for p in out_dir.glob(".tmp-*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p in out_dir.glob(".old-*"):
        shutil.rmtree(p, ignore_errors=True)

    plan = plan_corpus(seed, specs, wav_dir, templates, speakers, noises, emotions)
    todo = [u for u in plan if not _is_complete(u.wav)]
    logging.info(
        f"{len(plan)} utterances planned, {len(plan) - len(todo)} already synthesised, "
        f"{len(todo)} to synthesise with {nj} job(s)"
    )

    def work(u: PlannedUtterance) -> None:
        write_wav(u.wav, render(u, engine, templates))

    with tqdm(
        total=len(todo), desc="synthesising", unit="utt", disable=not progress
    ) as bar:
        if nj == 1:
            for u in todo:
                work(u)
                bar.update()
        else:
            with concurrent.futures.ThreadPoolExecutor(nj) as ex:
                futures = [ex.submit(work, u) for u in todo]
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        fut.result()
                        bar.update()
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise

    num_samples = {u.utt_id: check_wav(u.wav) for u in plan}
    by_set: Dict[str, List[PlannedUtterance]] = {s.name: [] for s in specs}
    for u in plan:
        by_set[u.set_name].append(u)
    summary_sets = {}
    for spec in specs:
        utts = by_set[spec.name]
        entries = [
            KaldiEntry(
                utt_id=u.utt_id,
                speaker=u.speaker,
                wav=str(u.wav),
                text=u.sample.text,
                prompt=PROMPTS[u.sample.task],
                category=u.sample.task,
                num_samples=num_samples[u.utt_id],
            )
            for u in utts
        ]
        write_data_dir(out_dir / spec.name, entries)
        summary_sets[spec.name] = dict(
            num_utterances=len(utts),
            seconds=round(sum(num_samples[u.utt_id] for u in utts) / SAMPLE_RATE, 2),
            speaker_pool=spec.pool,
            tasks={t: sum(u.sample.task == t for u in utts) for t in spec.tasks},
            speakers=sorted({u.speaker for u in utts}),
        )

    used: Dict[str, List[str]] = {}
    for u in plan:
        if u.set_name not in used.setdefault(u.speaker, []):
            used[u.speaker].append(u.set_name)
    spk_json = {}
    for spk_id, spk in sorted({**speakers, **noises}.items()):
        spk_json[spk_id] = dict(spk.to_json(), sets=used.get(spk_id, []))
    _write_json(out_dir / "speakers.json", spk_json)
    _write_json(out_dir / "labels.json", templates.labels())
    summary = dict(
        generator="espnet_pruning.corpora.synthetic",
        params=params,
        sample_rate=SAMPLE_RATE,
        tasks={t: dict(prompt=PROMPTS[t]) for t in TASKS},
        sets=summary_sets,
    )
    _write_json(out_dir / "corpus.json", summary)
    _write_json(done, params)
    logging.info(f"wrote {len(specs)} data dirs under {out_dir}")
    return summary


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(
        description=(
            "Generate the embedded spoken 7-task UniverSLU corpus with espeak-ng "
            "(Kaldi data dirs + 16 kHz WAVs)"
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--out_dir", type=str, required=True, help="Data directories go here"
    )
    parser.add_argument("--wav_dir", type=str, required=True, help="WAV files go here")
    parser.add_argument("--seed", type=int, default=0, help="Random seed")
    parser.add_argument(
        "--n_train", type=_positive_int, default=120, help="Train utterances per task"
    )
    parser.add_argument(
        "--n_valid",
        type=_positive_int,
        default=16,
        help="Valid utterances per task (also CL valid)",
    )
    parser.add_argument(
        "--n_test", type=_positive_int, default=30, help="Utterances per test set"
    )
    parser.add_argument(
        "--n_cl",
        type=_positive_int,
        default=120,
        help="Utterances of train_cl_asr and train_cl_ic each",
    )
    parser.add_argument(
        "--nj",
        type=_positive_int,
        default=min(2, os.cpu_count() or 1),
        help="Parallel jobs",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Regenerate when the directories hold a corpus of other parameters",
    )
    parser.add_argument(
        "--espeak", type=str, default=None, help="espeak-ng binary (default: on PATH)"
    )
    parser.add_argument("--no_progress", action="store_true", help="No progress bar")
    parser.add_argument(
        "--log_level",
        type=lambda x: x.upper(),
        default="INFO",
        choices=("ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"),
        help="The verbose level of logging",
    )
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    try:
        generate(
            args.out_dir,
            args.wav_dir,
            seed=args.seed,
            n_train=args.n_train,
            n_valid=args.n_valid,
            n_test=args.n_test,
            n_cl=args.n_cl,
            nj=args.nj,
            overwrite=args.overwrite,
            espeak=args.espeak,
            progress=not args.no_progress,
        )
    except (GenerationError, TTSError) as e:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {e}")


if __name__ == "__main__":
    main()
