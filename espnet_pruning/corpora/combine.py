"""Combine per-task data directories into one, some of them repeated (upsampled).

The multi-task training set is the union of the tasks' sets; a small set can be repeated
(paper §4: "IEMOCAP was upsampled by 10 times to account for data imbalance")::

    python -m espnet_pruning.corpora.combine --out_dir data/train \\
        data/train_er_iemocap:10 data/train_ic_slurp data/train_asr_librispeech

``SET:N`` lists ``SET`` N times: the first copy keeps its utterance ids, copy ``k`` (2..N)
appends ``-rep<k>``, so every id stays unique and still starts with its speaker. The
output is validated (without opening the audio again) and written atomically.
"""

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.corpora.kaldi import KaldiEntry, read_data_dir, write_data_dir
from espnet_pruning.errors import DataError, exit_on_input_error

_FACTOR = re.compile(r"^(.+):(\d+)$")


@typechecked
def parse_source(spec: str) -> Tuple[Path, int]:
    """``DIR`` or ``DIR:N`` -> ``(DIR, N)``."""
    m = _FACTOR.match(spec)
    path, factor = (m.group(1), int(m.group(2))) if m else (spec, 1)
    if factor < 1:
        raise DataError(f"{spec}: the repeat factor must be at least 1")
    return Path(path), factor


@typechecked
def combine(out_dir: Path, sources: Sequence[Tuple[Path, int]]) -> int:
    """Write ``out_dir`` from the sources, each repeated its factor of times.

    Args:
        out_dir: The combined data directory.
        sources: ``(data dir, repeat factor)`` pairs.

    Returns:
        The number of utterances written.

    Raises:
        DataError: A source is invalid, or two sources share an utterance id.
    """
    rows: List[KaldiEntry] = []
    origin: Dict[str, Path] = {}
    for path, factor in sources:
        entries = read_data_dir(path)
        for k in range(1, factor + 1):
            suffix = "" if k == 1 else f"-rep{k}"
            for e in entries:
                utt = e.utt_id + suffix
                if utt in origin:
                    raise DataError(
                        f"utterance {utt} is in both {origin[utt]} and {path}"
                    )
                origin[utt] = path
                rows.append(
                    KaldiEntry(
                        utt_id=utt,
                        speaker=e.speaker,
                        wav=e.wav,
                        text=e.text,
                        prompt=e.prompt,
                        category=e.category,
                        num_samples=e.num_samples,
                    )
                )
        logging.info(f"{path}: {len(entries)} utterances x {factor}")
    write_data_dir(out_dir, rows, check_audio=False)
    logging.info(f"{out_dir}: {len(rows)} utterances")
    return len(rows)


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(
        description="Combine data directories (SET:N repeats SET N times)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="Output directory")
    parser.add_argument("sources", nargs="+", help="Data directories, DIR or DIR:N")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point: input errors exit with status 1."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level="INFO",
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    exit_on_input_error(
        lambda: combine(args.out_dir, [parse_source(s) for s in args.sources])
    )


if __name__ == "__main__":
    main()
