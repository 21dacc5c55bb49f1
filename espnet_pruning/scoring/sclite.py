"""Running NIST sclite (SCTK) on word-level ``trn`` files and reading its counts.

``trn`` lines are ``<words>\\t(<speaker>-<uttid>)``. With ``-i rm`` sclite takes the
speaker from the id up to the first ``-`` and reports an error (while still exiting with
status 0) for ids without one, so every id gets the speaker prefix :data:`SPEAKER`;
parentheses in an utterance id would end the id early and are rejected. Alignment is
case-sensitive (``-s``) and UTF-8 (``-e utf-8``). The counts come from the ``Sum`` row of
the raw-count summary (``rsum``) and are checked against the files written.
"""

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

from typeguard import typechecked

from espnet_pruning.scoring.errors import ScoringError

#: Where Debian/Ubuntu's ``sctk`` package installs sclite (not on PATH).
SCTK_DIR = Path("/usr/lib/sctk/bin")
#: Speaker prefix of every trn id.
SPEAKER = "spk"
_SUM_ROW = re.compile(r"^\s*\|\s*Sum\s*\|([^|]*)\|([^|]*)\|\s*$")


@dataclasses.dataclass(frozen=True)
class SCliteCounts:
    """Totals of sclite's raw-count summary (``Sum`` row)."""

    n_sentences: int
    n_words: int
    n_correct: int
    n_sub: int
    n_del: int
    n_ins: int
    n_err: int
    n_sentence_err: int


@typechecked
def find_sclite() -> Path:
    """Locate the ``sclite`` executable: on ``PATH`` first, then in :data:`SCTK_DIR`.

    Returns:
        Its path.

    Raises:
        ScoringError: sclite is not installed.
    """
    found = shutil.which("sclite")
    if found:
        return Path(found)
    candidate = SCTK_DIR / "sclite"
    if candidate.is_file():
        return candidate
    raise ScoringError(
        f"NIST sclite not found on PATH nor in {SCTK_DIR}; install the Debian/Ubuntu "
        "package 'sctk' (apt-get install sctk) to compute WER"
    )


@typechecked
def write_trn(path: Path, uttids: Sequence[str], texts: Sequence[str]) -> None:
    """Write a word-level trn file: ``<words>\\t(spk-<uttid>)`` per utterance.

    Args:
        path: Output file.
        uttids: Utterance ids.
        texts: Space-separated words, aligned with ``uttids`` (may be empty).

    Raises:
        ScoringError: An id contains a parenthesis, or a text a tab or newline.
    """
    if len(uttids) != len(texts):
        raise ValueError("uttids and texts differ in length")
    lines = []
    for uttid, text in zip(uttids, texts):
        if "(" in uttid or ")" in uttid:
            raise ScoringError(
                f"utterance id {uttid!r} contains a parenthesis, which sclite's trn "
                "format cannot represent",
                uttid,
                "ref",
            )
        if any(c in text for c in "\t\n\r"):
            raise ScoringError(f"text of utterance {uttid!r} contains a tab or newline")
        lines.append(f"{text}\t({SPEAKER}-{uttid})\n")
    path.write_text("".join(lines), encoding="utf-8")


@typechecked
def parse_sclite_counts(report: str) -> SCliteCounts:
    """Read the ``Sum`` row of sclite's raw-count summary (``-o rsum`` or ``all``).

    The row reads ``| Sum | #Snt #Wrd | Corr Sub Del Ins Err S.Err |`` (counts, not the
    ``Sum/Avg`` row of percentages).

    Args:
        report: sclite's output.

    Returns:
        The counts.

    Raises:
        ScoringError: No such row.
    """
    for line in report.splitlines():
        m = _SUM_ROW.match(line)
        if m is None:
            continue
        try:
            snt_wrd = [int(x) for x in m.group(1).split()]
            rest = [int(x) for x in m.group(2).split()]
        except ValueError:
            continue
        if len(snt_wrd) == 2 and len(rest) == 6:
            return SCliteCounts(*snt_wrd, *rest)
    raise ScoringError("sclite's report has no raw-count 'Sum' row")


@typechecked
def run_sclite(
    ref_trn: Path,
    hyp_trn: Path,
    report: Path,
    sclite: Optional[Path] = None,
) -> SCliteCounts:
    """Align ``hyp_trn`` against ``ref_trn`` with sclite; keep its report.

    Runs ``sclite -r REF trn -h HYP trn -i rm -s -e utf-8 -o all stdout`` and writes its
    standard output (summary, raw-count summary and alignments) to ``report``.

    Args:
        ref_trn: Reference trn file.
        hyp_trn: Hypothesis trn file.
        report: Where to write sclite's report.
        sclite: The executable (default: :func:`find_sclite`).

    Returns:
        The counts of the ``Sum`` row.

    Raises:
        ScoringError: sclite is missing, fails or reports an error.
    """
    exe = sclite if sclite is not None else find_sclite()
    cmd = [str(exe), "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn"]
    cmd += ["-i", "rm", "-s", "-e", "utf-8", "-o", "all", "stdout"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    report.write_text(proc.stdout, encoding="utf-8")
    errors = [
        line.strip()
        for line in (proc.stdout + "\n" + proc.stderr).splitlines()
        if re.match(r"^\s*(sclite: )?Error", line)
    ]
    if proc.returncode != 0 or errors:
        detail = "; ".join(errors[:3]) or proc.stderr.strip()[-500:]
        raise ScoringError(
            f"sclite failed (exit status {proc.returncode}): {detail} "
            f"(command: {' '.join(cmd)})"
        )
    return parse_sclite_counts(proc.stdout)
