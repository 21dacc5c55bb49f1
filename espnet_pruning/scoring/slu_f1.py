"""SLURP's SLU-F1 for entity outputs (NER), with its other official entity figures.

The figures and rules of SLURP's official scorer (``scripts/evaluation/evaluate.py`` and
``metrics/`` of the SLURP repository, micro average): SLU-F1, word-F1 and char-F1 (the
two span-distance passes alone), exact-span F1, each with precision and recall.

Span-distance F1 (Bastianelli et al., 2020), per utterance, for a distance ``d`` in [0, 1+]:
for each predicted entity in order, if its type occurs among the remaining gold entities
of the utterance, the gold entity of that type with the lowest distance to it (the first
one on ties) is matched and removed: TP += 1, FP += d, FN += d; otherwise FP += 1. Each
gold entity left over: FN += 1.

Two distances between gold filler ``g`` and predicted filler ``p``:

* word: WER(g, p) = Levenshtein distance between the word lists / number of gold words
  (may exceed 1, as SLURP's ``jiwer.wer``; white space runs do not matter there);
* char: normalised Levenshtein = lev(g, p) / max(len(g), len(p)) on the filler strings as
  written (SLURP's ``textdistance`` ``levenshtein.normalized_distance``: a doubled space
  is one more character).

SLU-F1 sums the counts of both passes (TP = TP_w + TP_c, FP = FP_w + FP_c,
FN = FN_w + FN_c) and takes the micro P = TP/(TP+FP), R = TP/(TP+FN), F1 = 2PR/(P+R),
each 0 when undefined. Exact-span F1 counts a predicted entity as TP iff an identical
``(type, filler)`` remains among the gold entities (then removed), else FP; leftovers FN.

An empty predicted filler (``<entity:date> <FILL> <SEP>``) is an entity at distance 1
(as SLURP's scorer counts an empty ``filler``). A missing hypothesis passed here is an
utterance with no predicted entities; ``uslu_score --missing skip`` (the default, as
SLURP's scorer) leaves such utterances out before scoring. Malformed hypothesis chunks are
dropped (and counted); malformed reference chunks and empty gold fillers are an error.
"""

import dataclasses
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import editdistance
from typeguard import typechecked

from espnet_pruning.scoring.entities import Entity, parse_entities
from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.result import MetricResult
from espnet_pruning.scoring.text import pair_texts


@typechecked
def word_distance(gold: str, pred: str) -> float:
    """WER of ``pred`` against ``gold`` as a fraction (word-level Levenshtein / #gold).

    Args:
        gold: Gold filler (at least one word).
        pred: Predicted filler.

    Returns:
        The distance (0 for identical fillers; may exceed 1).
    """
    gold_words = gold.split()
    if not gold_words:
        raise ValueError("gold filler is empty")
    return editdistance.eval(gold_words, pred.split()) / len(gold_words)


@typechecked
def char_distance(gold: str, pred: str) -> float:
    """Normalised Levenshtein distance ``lev(gold, pred) / max(len(gold), len(pred))``.

    Args:
        gold: Gold filler.
        pred: Predicted filler.

    Returns:
        The distance in [0, 1] (0 when both are empty).
    """
    longest = max(len(gold), len(pred))
    return 0.0 if longest == 0 else editdistance.eval(gold, pred) / longest


@dataclasses.dataclass
class SpanCounts:
    """Accumulated (fractional) true positives, false positives and false negatives."""

    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0

    def __add__(self, other: "SpanCounts") -> "SpanCounts":
        return SpanCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def prf(self) -> Dict[str, float]:
        """Precision, recall and F1 in percent (0 where undefined) with the counts."""
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp > 0 else 0.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn > 0 else 0.0
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        return {
            "precision": 100.0 * p,
            "recall": 100.0 * r,
            "f1": 100.0 * f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@typechecked
def span_distance_counts(
    gold: Sequence[Entity],
    pred: Sequence[Entity],
    distance: Callable[[str, str], float],
) -> SpanCounts:
    """Span-distance confusion counts of one utterance (see the module docstring).

    Args:
        gold: Gold entities.
        pred: Predicted entities, in order.
        distance: ``distance(gold_filler, predicted_filler)``.

    Returns:
        The counts.
    """
    remaining: List[Entity] = list(gold)
    counts = SpanCounts()
    for entity in pred:
        best: Optional[int] = None
        best_d = 0.0
        for i, g in enumerate(remaining):
            if g.type != entity.type:
                continue
            d = distance(g.filler, entity.filler)
            if best is None or d < best_d:
                best, best_d = i, d
        if best is None:
            counts.fp += 1
            continue
        counts.tp += 1
        counts.fp += best_d
        counts.fn += best_d
        remaining.pop(best)
    counts.fn += len(remaining)
    return counts


@typechecked
def exact_span_counts(gold: Sequence[Entity], pred: Sequence[Entity]) -> SpanCounts:
    """Exact-match confusion counts of one utterance (type and filler identical).

    Args:
        gold: Gold entities.
        pred: Predicted entities.

    Returns:
        The counts (integers as floats).
    """
    remaining: List[Entity] = list(gold)
    counts = SpanCounts()
    for entity in pred:
        if entity in remaining:
            counts.tp += 1
            remaining.remove(entity)
        else:
            counts.fp += 1
    counts.fn += len(remaining)
    return counts


@typechecked
def score_slu_f1(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    workdir: Optional[Path] = None,
) -> MetricResult:
    """SLU-F1 (micro) in percent.

    Args:
        refs: ``{uttid: reference NER text}``.
        hyps: ``{uttid: hypothesis NER text}`` (prompt tokens are stripped).
        workdir: Unused (the signature is shared by all scorers).

    Returns:
        ``MetricResult`` named ``slu_f1``; details: ``slu`` (summed counts and P/R/F1),
        ``word`` and ``char`` (each pass alone: SLURP's word-F1 and char-F1), ``span``
        (exact-span F1), entity counts, ``n_malformed_hyp_chunks`` and ``n_missing``.
        P, R, F1 are in percent.

    Raises:
        ScoringError: Unknown hypothesis ids, no references, a malformed reference chunk
            or an empty gold filler.
    """
    paired = pair_texts(refs, hyps, keep_spaces=True)
    word, char, span = SpanCounts(), SpanCounts(), SpanCounts()
    n_gold = n_pred = n_malformed = 0
    for uttid, ref, hyp in zip(paired.uttids, paired.refs, paired.hyps):
        gold = parse_entities(ref)
        if gold.malformed:
            raise ScoringError(
                f"reference of utterance {uttid!r} has a malformed entity chunk "
                f"{gold.malformed[0]!r} (expected '<entity:TYPE> <FILL> words')",
                uttid,
                "ref",
            )
        if any(not g.filler for g in gold.entities):
            raise ScoringError(
                f"reference of utterance {uttid!r} has an entity without filler words"
            )
        pred = parse_entities(hyp)
        n_gold += len(gold.entities)
        n_pred += len(pred.entities)
        n_malformed += len(pred.malformed)
        word += span_distance_counts(gold.entities, pred.entities, word_distance)
        char += span_distance_counts(gold.entities, pred.entities, char_distance)
        span += exact_span_counts(gold.entities, pred.entities)
    slu = (word + char).prf()
    return MetricResult(
        name="slu_f1",
        value=slu["f1"],
        n=paired.n,
        higher_is_better=True,
        details={
            "slu": slu,
            "word": word.prf(),
            "char": char.prf(),
            "span": span.prf(),
            "span_f1": span.prf()["f1"],
            "n_gold_entities": n_gold,
            "n_pred_entities": n_pred,
            "n_malformed_hyp_chunks": n_malformed,
            "n_missing": paired.n_missing,
        },
    )
