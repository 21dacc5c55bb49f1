"""Matched-pairs significance test between two systems (NIST MAPSSWE).

The paper reports that task-specific pruning beats task-agnostic pruning with p < 0.001
for IC and ASR "using the Matched Pair test": NIST's Matched Pairs Sentence-Segment Word
Error test (Gillick and Cox, 1989; sctk's ``sc_stats -t mapsswe``). For segment i let
Z_i = N_A,i − N_B,i be the difference of the two systems' error counts. Under the null
hypothesis the mean of Z is 0; with n segments, mean μ and sample standard deviation σ,

    W = μ / (σ / √n),   p = erfc(|W| / √2)   (two-sided, normal approximation).

Segments here are utterances (sc_stats cuts an utterance further at stretches both
systems get right; for one-label classification tasks the two coincide). Error counts:

* ``wer``: word errors (substitutions + deletions + insertions, Levenshtein) of the
  hypothesis against the reference after :func:`~espnet_pruning.scoring.text.
  normalize_for_wer`, the normalisation of our WER scorer;
* ``accuracy``: 1 if the predicted label (first token) is wrong, else 0.
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import editdistance
from typeguard import typechecked

from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.labels import label_pairs
from espnet_pruning.scoring.text import normalize_for_wer, pair_texts

METRICS = ("wer", "accuracy")


@dataclass(frozen=True)
class MatchedPairsResult:
    """The outcome of a MAPSSWE test.

    Attributes:
        n: Segments (utterances).
        errors_a, errors_b: Total errors of each system.
        mean: Mean of Z_i = N_A,i − N_B,i.
        std: Sample standard deviation of Z_i (n − 1 in the denominator).
        w: The test statistic.
        p: Two-sided p-value.
        better: ``A``, ``B`` or ``same`` (fewer errors; ``same`` if W = 0).
    """

    n: int
    errors_a: int
    errors_b: int
    mean: float
    std: float
    w: float
    p: float
    better: str

    def to_dict(self) -> Dict:
        """JSON-serialisable fields."""
        return asdict(self)


@typechecked
def matched_pairs(
    errors_a: Sequence[int], errors_b: Sequence[int]
) -> MatchedPairsResult:
    """MAPSSWE on per-segment error counts of two systems.

    Args:
        errors_a: Errors of system A per segment.
        errors_b: Errors of system B on the same segments.

    Returns:
        The result; identical error counts everywhere give W = 0 and p = 1.

    Raises:
        ScoringError: Different lengths, or fewer than 2 segments.

    Examples:
        >>> r = matched_pairs([2, 1, 0, 3], [1, 1, 0, 1])
        >>> round(r.w, 4), round(r.p, 4), r.better
        (1.5667, 0.1172, 'B')
    """
    if len(errors_a) != len(errors_b):
        raise ScoringError(f"{len(errors_a)} vs {len(errors_b)} segments")
    n = len(errors_a)
    if n < 2:
        raise ScoringError(f"the matched-pairs test needs 2 or more segments, got {n}")
    z = [a - b for a, b in zip(errors_a, errors_b)]
    mean = sum(z) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in z) / (n - 1))
    if std == 0.0:
        w = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        w = mean / (std / math.sqrt(n))
    p = math.erfc(abs(w) / math.sqrt(2.0))
    better = "same" if w == 0.0 else ("B" if w > 0 else "A")
    return MatchedPairsResult(
        n=n,
        errors_a=int(sum(errors_a)),
        errors_b=int(sum(errors_b)),
        mean=mean,
        std=std,
        w=w,
        p=p,
        better=better,
    )


@typechecked
def utterance_errors(
    metric: str,
    refs: Mapping[str, str],
    hyps_a: Mapping[str, str],
    hyps_b: Mapping[str, str],
) -> Tuple[List[str], List[int], List[int]]:
    """Per-utterance error counts of two systems on the same references.

    A reference without a hypothesis counts as an empty hypothesis (as in scoring).

    Returns:
        ``(uttids, errors of A, errors of B)`` in reference order.

    Raises:
        ScoringError: Unknown metric, no references, hypotheses for unknown ids.
    """
    if metric not in METRICS:
        raise ScoringError(f"metric must be one of {METRICS}, got {metric!r}")
    counts = []
    for hyps in (hyps_a, hyps_b):
        paired = pair_texts(refs, hyps)
        if metric == "wer":
            counts.append(
                [
                    editdistance.eval(
                        normalize_for_wer(r).split(), normalize_for_wer(h).split()
                    )
                    for r, h in zip(paired.refs, paired.hyps)
                ]
            )
        else:
            ref_labels, hyp_labels = label_pairs(paired)
            counts.append([int(r != h) for r, h in zip(ref_labels, hyp_labels)])
    return list(refs), counts[0], counts[1]
