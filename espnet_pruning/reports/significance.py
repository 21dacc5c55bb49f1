"""Matched-pairs significance test between two systems (NIST MAPSSWE).

The paper reports that task-specific pruning beats task-agnostic pruning with p < 0.001
for IC and ASR "using the Matched Pair test": NIST's Matched Pairs Sentence-Segment Word
Error test (Gillick and Cox, 1989), sctk's ``sc_stats -t mapsswe``. For segment i let
Z_i = N_A,i − N_B,i be the difference of the two systems' error counts. Under the null
hypothesis the mean of Z is 0; with n segments, mean μ and sample standard deviation σ
(n − 1 in the denominator),

    W = μ / (σ / √n),   p = erfc(|W| / √2)   (two-sided, normal approximation).

**Error counts.** ``wer``: both texts are normalised as for our WER scorer
(:func:`~espnet_pruning.scoring.text.normalize_for_wer`, prompt tokens stripped) and
aligned word by word with sclite's dynamic programme (:func:`align_words`: costs 0
correct, 3 insertion or deletion, 4 substitution, sclite's tie-breaking), so the errors
are the ones sclite counts. ``accuracy``: an utterance is one "word", its label (the
first token); a wrong or missing label is one error.

**Segments** (``segmentation``):

* ``mapsswe`` (default): sc_stats' segmentation, ported from sctk's ``mtchprs.c``
  (``test_comp_sents``, :data:`MIN_GOOD` = 2 boundary words). An utterance is cut where
  both systems get at least two consecutive reference words right; segments in which
  neither system errs are dropped. On random test sets the segments, mean, standard
  deviation and W equal those of sc_stats run on sclite's alignments (a test checks it
  when sctk is installed). For ``accuracy`` the segments are the utterances on which at
  least one system is wrong.
* ``utterance``: one segment per utterance, every utterance included (also those both
  systems get right, Z_i = 0); simpler to explain, but n and W differ from sc_stats'.

**Degenerate cases.** All differences zero (also no segment at all): W = 0, p = 1,
neither system better. σ = 0 with μ ≠ 0 (every segment differs by the same amount):
W = ±∞ and p = 0, where sc_stats prints Z = 0 (it skips the division). Fewer than
:data:`MIN_SEGMENTS` segments with a difference raise :class:`TooFewSegmentsError`.
Below :data:`SMALL_SAMPLE` segments a result is flagged ``small_sample``: the normal
approximation of W is rough there (a rule of thumb, not part of the test).

sc_stats computes p with its own approximation of the normal distribution; its p-values
can differ from ours in the third decimal, W agrees.
"""

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.labels import label_pairs
from espnet_pruning.scoring.text import normalize_for_wer, pair_texts

METRICS = ("wer", "accuracy")
SEGMENTATIONS = ("mapsswe", "utterance")

#: sctk's DEFAULT_MIN_NUM_GOOD: correct words (in both systems) that close a segment.
MIN_GOOD = 2
#: Fewest segments for which the sample standard deviation exists.
MIN_SEGMENTS = 2
#: Below this many segments a result is flagged ``small_sample``.
SMALL_SAMPLE = 30

#: Word evaluations of an alignment, as in sclite's SGML output.
CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"

# sclite's word costs (sctk word.c, wwd_WORD).
_COST_SUB = 4
_COST_INS_DEL = 3


class TooFewSegmentsError(ScoringError):
    """Fewer than :data:`MIN_SEGMENTS` segments, and they differ: no variance."""


@dataclass(frozen=True)
class MatchedPairsResult:
    """The outcome of a MAPSSWE test.

    Attributes:
        n: Segments.
        errors_a: Errors of system A summed over the segments.
        errors_b: Errors of system B summed over the segments.
        mean: Mean of Z_i = N_A,i − N_B,i (0 when n = 0).
        std: Sample standard deviation of Z_i (n − 1 in the denominator).
        w: The test statistic (±inf when ``std`` is 0 and ``mean`` is not).
        p: Two-sided p-value.
        better: ``A``, ``B`` (the system with fewer errors) or ``same`` (mean 0).
        small_sample: ``n`` < :data:`SMALL_SAMPLE`.
    """

    n: int
    errors_a: int
    errors_b: int
    mean: float
    std: float
    w: float
    p: float
    better: str
    small_sample: bool

    def to_dict(self) -> Dict:
        """The fields as a dict (``w`` may be ±inf: :mod:`json` writes ±Infinity)."""
        return asdict(self)


@dataclass(frozen=True)
class SegmentErrors:
    """Per-segment error counts of two systems on one test set.

    Attributes:
        uttids: The utterance of each segment.
        errors_a: Errors of system A per segment.
        errors_b: Errors of system B per segment.
        n_utterances: Utterances of the test set.
        segmentation: How the segments were made (see :data:`SEGMENTATIONS`).
    """

    uttids: Tuple[str, ...]
    errors_a: Tuple[int, ...]
    errors_b: Tuple[int, ...]
    n_utterances: int
    segmentation: str


@typechecked
def matched_pairs(
    errors_a: Sequence[int], errors_b: Sequence[int]
) -> MatchedPairsResult:
    """MAPSSWE on per-segment error counts of two systems.

    Args:
        errors_a: Errors of system A per segment.
        errors_b: Errors of system B on the same segments.

    Returns:
        The result; identical error counts everywhere (or no segment) give W = 0, p = 1.

    Raises:
        ScoringError: Different lengths.
        TooFewSegmentsError: Fewer than :data:`MIN_SEGMENTS` segments, not all equal.

    Examples:
        >>> r = matched_pairs([2, 1, 0, 3], [1, 1, 0, 1])
        >>> round(r.w, 4), round(r.p, 4), r.better
        (1.5667, 0.1172, 'B')
    """
    if len(errors_a) != len(errors_b):
        raise ScoringError(f"{len(errors_a)} vs {len(errors_b)} segments")
    n = len(errors_a)
    z = [a - b for a, b in zip(errors_a, errors_b)]
    if any(z) and n < MIN_SEGMENTS:
        raise TooFewSegmentsError(
            f"the matched-pairs test needs {MIN_SEGMENTS} or more segments, got {n}"
        )
    mean = sum(z) / n if n else 0.0
    std = math.sqrt(sum((x - mean) ** 2 for x in z) / (n - 1)) if n > 1 else 0.0
    if std > 0.0:
        w = mean / (std / math.sqrt(n))
    else:
        w = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return MatchedPairsResult(
        n=n,
        errors_a=int(sum(errors_a)),
        errors_b=int(sum(errors_b)),
        mean=mean,
        std=std,
        w=w,
        p=math.erfc(abs(w) / math.sqrt(2.0)),
        better="same" if mean == 0.0 else ("B" if mean > 0 else "A"),
        small_sample=n < SMALL_SAMPLE,
    )


@typechecked
def align_words(ref: Sequence[str], hyp: Sequence[str]) -> Tuple[str, ...]:
    """sclite's word alignment of a hypothesis against a reference.

    The dynamic programme of sctk's ``net_dp.c`` on two word chains: cost 0 for a
    correct word, 3 for an insertion or a deletion, 4 for a substitution; at equal
    cost a substitution (or match) wins over a deletion, a deletion over an insertion.

    Args:
        ref: Reference words.
        hyp: Hypothesis words.

    Returns:
        One of ``C``, ``S``, ``D``, ``I`` per alignment slot, in order.

    Examples:
        >>> "".join(align_words("G H I".split(), "G H I I".split()))
        'CCIC'
    """
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    for b in range(1, m + 1):
        cost[0][b], move[0][b] = _COST_INS_DEL * b, INSERTION
    for a in range(1, n + 1):
        cost[a][0], move[a][0] = _COST_INS_DEL * a, DELETION
        row, prev, word = cost[a], cost[a - 1], ref[a - 1]
        for b in range(1, m + 1):
            same = word == hyp[b - 1]
            sub = prev[b - 1] + (0 if same else _COST_SUB)
            dele = prev[b] + _COST_INS_DEL
            ins = row[b - 1] + _COST_INS_DEL
            if sub <= dele and sub <= ins:
                row[b], move[a][b] = sub, CORRECT if same else SUBSTITUTION
            elif dele < ins:
                row[b], move[a][b] = dele, DELETION
            else:
                row[b], move[a][b] = ins, INSERTION
    path = []
    a, b = n, m
    while a > 0 or b > 0:
        step = move[a][b]
        path.append(step)
        if step != INSERTION:
            a -= 1
        if step != DELETION:
            b -= 1
    return tuple(reversed(path))


@typechecked
def mapsswe_segments(
    path_a: Sequence[str], path_b: Sequence[str], min_good: int = MIN_GOOD
) -> List[Tuple[int, int]]:
    """sc_stats' segments of one utterance and the errors of each system in them.

    A port of sctk's ``test_comp_sents`` for two alignments of the same reference (the
    re-synchronisation sctk needs for alternations in references never applies): scan
    the reference words; a segment opens at an error of either system (insertions
    included) and closes after ``min_good`` consecutive words both systems get right;
    the end of the utterance closes an open segment. A segment starts ``min_good - 1``
    slots before the end of the preceding correct stretch.

    Args:
        path_a: Alignment of system A (:func:`align_words`).
        path_b: Alignment of system B against the same reference.
        min_good: Correct words that close a segment.

    Returns:
        ``(errors of A, errors of B)`` per segment with at least one error.
    """
    if min_good < 1:
        raise ValueError(f"min_good must be positive, got {min_good}")
    na, nb = len(path_a), len(path_b)
    segments: List[Tuple[int, int]] = []

    def close(beg_a: int, beg_b: int, end_a: int, end_b: int) -> None:
        # Both ends inclusive, as in sctk's seg_count.
        errs_a = sum(e != CORRECT for e in path_a[max(beg_a, 0) : end_a + 1])
        errs_b = sum(e != CORRECT for e in path_b[max(beg_b, 0) : end_b + 1])
        if errs_a or errs_b:  # sctk drops (and warns about) error-free segments
            segments.append((errs_a, errs_b))

    i = j = eog_a = eog_b = good = 0
    state = "b"  # b: no open segment, e: in errors, g: counting correct words
    while i < na:
        while i < na and path_a[i] == INSERTION:
            i, state = i + 1, "e"
        while j < nb and path_b[j] == INSERTION:
            j, state = j + 1, "e"
        both = i < na and path_a[i] == CORRECT and j < nb and path_b[j] == CORRECT
        if state == "b":
            if both:
                eog_a, eog_b = i, j
            else:
                state = "e"
        elif both:
            good = 1 if state == "e" else good + 1
            if good == min_good:
                close(eog_a - (min_good - 1), eog_b - (min_good - 1), i, j)
                eog_a, eog_b, state = i, j, "b"
            else:
                state = "g"
        else:
            state = "e"
        i += i < na
        j += j < nb
    # The end closes an open segment, and one holding B's trailing insertions, which
    # the loop (driven by A) never visits.
    if state != "b" or j < nb:
        close(eog_a - (min_good - 1), eog_b - (min_good - 1), na - 1, nb - 1)
    return segments


def _alignments(metric: str, refs: Sequence[str], hyps: Sequence[str]) -> List:
    if metric == "wer":
        return [
            align_words(normalize_for_wer(r).split(), normalize_for_wer(h).split())
            for r, h in zip(refs, hyps)
        ]
    return [
        (DELETION,) if h is None else ((CORRECT,) if h == r else (SUBSTITUTION,))
        for r, h in zip(refs, hyps)
    ]


@typechecked
def segment_errors(
    metric: str,
    refs: Mapping[str, str],
    hyps_a: Mapping[str, str],
    hyps_b: Mapping[str, str],
    segmentation: str = "mapsswe",
    min_good: int = MIN_GOOD,
) -> SegmentErrors:
    """Per-segment error counts of two systems on the same references.

    A reference without a hypothesis counts as an empty hypothesis (as in scoring;
    the command line refuses such input unless asked).

    Args:
        metric: ``wer`` or ``accuracy``.
        refs: ``{uttid: reference}``.
        hyps_a: ``{uttid: hypothesis}`` of system A.
        hyps_b: ``{uttid: hypothesis}`` of system B.
        segmentation: ``mapsswe`` or ``utterance`` (see the module docstring).
        min_good: Correct boundary words of ``mapsswe`` segments.

    Returns:
        The segments in reference order.

    Raises:
        ScoringError: Unknown metric or segmentation, no references, hypotheses for
            unknown ids, an empty reference (``accuracy``).
    """
    if metric not in METRICS:
        raise ScoringError(f"metric must be one of {METRICS}, got {metric!r}")
    if segmentation not in SEGMENTATIONS:
        raise ScoringError(
            f"segmentation must be one of {SEGMENTATIONS}, got {segmentation!r}"
        )
    paths = []
    for hyps in (hyps_a, hyps_b):
        paired = pair_texts(refs, hyps)
        if metric == "wer":
            paths.append(_alignments(metric, paired.refs, paired.hyps))
        else:
            paths.append(_alignments(metric, *label_pairs(paired)))
    uttids: List[str] = []
    errs_a: List[int] = []
    errs_b: List[int] = []
    for uttid, pa, pb in zip(refs, *paths):
        if segmentation == "utterance":
            pairs = [(sum(e != CORRECT for e in pa), sum(e != CORRECT for e in pb))]
        else:
            pairs = mapsswe_segments(pa, pb, min_good)
        for ea, eb in pairs:
            uttids.append(uttid)
            errs_a.append(ea)
            errs_b.append(eb)
    return SegmentErrors(
        uttids=tuple(uttids),
        errors_a=tuple(errs_a),
        errors_b=tuple(errs_b),
        n_utterances=len(refs),
        segmentation=segmentation,
    )


@typechecked
def utterance_errors(
    metric: str,
    refs: Mapping[str, str],
    hyps_a: Mapping[str, str],
    hyps_b: Mapping[str, str],
) -> Tuple[List[str], List[int], List[int]]:
    """Errors of two systems per utterance (every utterance, reference order).

    Returns:
        ``(uttids, errors of A, errors of B)``.

    Raises:
        ScoringError: As :func:`segment_errors`.
    """
    seg = segment_errors(metric, refs, hyps_a, hyps_b, segmentation="utterance")
    return list(seg.uttids), list(seg.errors_a), list(seg.errors_b)


@typechecked
def compare_systems(
    metric: str,
    refs: Mapping[str, str],
    hyps_a: Mapping[str, str],
    hyps_b: Mapping[str, str],
    segmentation: str = "mapsswe",
) -> Tuple[MatchedPairsResult, SegmentErrors]:
    """:func:`segment_errors` followed by :func:`matched_pairs`.

    Raises:
        ScoringError: As :func:`segment_errors`.
        TooFewSegmentsError: As :func:`matched_pairs`.
    """
    seg = segment_errors(metric, refs, hyps_a, hyps_b, segmentation)
    return matched_pairs(seg.errors_a, seg.errors_b), seg
