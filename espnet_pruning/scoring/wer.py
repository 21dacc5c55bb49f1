"""Word error rate through NIST sclite (ASR).

WER = 100 * (S + D + I) / N with substitutions S, deletions D, insertions I against N
reference words. References and hypotheses are first normalised identically
(:func:`espnet_pruning.scoring.text.normalize_for_wer`); a missing hypothesis is empty
(all its reference words are deletions).
"""

import contextlib
import tempfile
from pathlib import Path
from typing import Mapping, Optional

from typeguard import typechecked

from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.result import MetricResult
from espnet_pruning.scoring.sclite import find_sclite, run_sclite, write_trn
from espnet_pruning.scoring.text import normalize_for_wer, pair_texts

REF_TRN = "ref.trn"
HYP_TRN = "hyp.trn"
REPORT = "result.txt"


@typechecked
def score_wer(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    workdir: Optional[Path] = None,
) -> MetricResult:
    """WER in percent, computed by sclite.

    Args:
        refs: ``{uttid: reference transcript}``.
        hyps: ``{uttid: hypothesis transcript}`` (prompt tokens are stripped).
        workdir: Where ``ref.trn``, ``hyp.trn`` and sclite's report ``result.txt`` are
            kept (created if needed); a temporary directory, deleted afterwards, if
            ``None``.

    Returns:
        ``MetricResult`` named ``wer``; details: ``n_words`` (N), ``n_correct``,
        ``n_sub``, ``n_del``, ``n_ins``, ``n_err``, ``n_sentence_err``, ``ser`` (%),
        ``n_missing``, ``sclite`` (executable) and ``workdir`` (``None`` if temporary).

    Raises:
        ScoringError: Unknown hypothesis ids, no references, references without words,
            sclite missing or failing, or sclite's totals disagreeing with the input.
    """
    paired = pair_texts(refs, hyps)
    ref_texts = [normalize_for_wer(t) for t in paired.refs]
    hyp_texts = [normalize_for_wer(t) for t in paired.hyps]
    n_words = sum(len(t.split()) for t in ref_texts)
    if n_words == 0:
        raise ScoringError("the references have no words; WER is undefined")
    sclite = find_sclite()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wer_")))
        else:
            out = Path(workdir)
            out.mkdir(parents=True, exist_ok=True)
        write_trn(out / REF_TRN, paired.uttids, ref_texts)
        write_trn(out / HYP_TRN, paired.uttids, hyp_texts)
        counts = run_sclite(out / REF_TRN, out / HYP_TRN, out / REPORT, sclite=sclite)
    if counts.n_sentences != paired.n or counts.n_words != n_words:
        raise ScoringError(
            f"sclite scored {counts.n_sentences} utterances / {counts.n_words} words, "
            f"expected {paired.n} / {n_words}"
        )
    return MetricResult(
        name="wer",
        value=100.0 * (counts.n_sub + counts.n_del + counts.n_ins) / n_words,
        n=paired.n,
        higher_is_better=False,
        details={
            "n_words": n_words,
            "n_correct": counts.n_correct,
            "n_sub": counts.n_sub,
            "n_del": counts.n_del,
            "n_ins": counts.n_ins,
            "n_err": counts.n_err,
            "n_sentence_err": counts.n_sentence_err,
            "ser": 100.0 * counts.n_sentence_err / paired.n,
            "n_missing": paired.n_missing,
            "sclite": str(sclite),
            "workdir": None if workdir is None else str(workdir),
        },
    )
