"""Macro-averaged F1 over first-token labels (IC-SNIPS).

The label set is the union of reference labels and predicted labels. Per label:
TP = #(pred = ref = label), FP = #(pred = label != ref), FN = #(ref = label != pred);
P = 0 if TP = 0 else TP / (TP + FP); R = 0 if TP = 0 else TP / (TP + FN);
F1 = 0 if P = 0 or R = 0 else 2PR / (P + R). Macro-F1 = 100 * mean of F1 over labels, so a
spurious predicted label (never in the references) adds a zero-F1 class.

An empty (or missing) hypothesis predicts no label: it is a false negative of the
reference label and adds no class.
"""

from pathlib import Path
from typing import Dict, List, Mapping, Optional

from typeguard import typechecked

from espnet_pruning.scoring.labels import label_pairs
from espnet_pruning.scoring.result import MetricResult
from espnet_pruning.scoring.text import pair_texts


@typechecked
def label_counts(
    ref_labels: List[str], hyp_labels: List[Optional[str]]
) -> Dict[str, Dict[str, int]]:
    """Per-label TP, FP and FN over the union of reference and predicted labels.

    Args:
        ref_labels: Reference labels.
        hyp_labels: Predicted labels, ``None`` for no prediction.

    Returns:
        ``{label: {"tp": .., "fp": .., "fn": ..}}``, labels sorted.
    """
    labels = set(ref_labels) | {h for h in hyp_labels if h is not None}
    counts = {label: {"tp": 0, "fp": 0, "fn": 0} for label in sorted(labels)}
    for ref, hyp in zip(ref_labels, hyp_labels):
        if hyp == ref:
            counts[ref]["tp"] += 1
            continue
        counts[ref]["fn"] += 1
        if hyp is not None:
            counts[hyp]["fp"] += 1
    return counts


@typechecked
def score_macro_f1(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    workdir: Optional[Path] = None,
) -> MetricResult:
    """Macro-F1 in percent.

    Args:
        refs: ``{uttid: reference text}``.
        hyps: ``{uttid: hypothesis text}`` (prompt tokens are stripped).
        workdir: Unused (the signature is shared by all scorers).

    Returns:
        ``MetricResult`` named ``macro_f1``; details: ``per_label`` (``tp fp fn`` and
        ``precision recall f1`` in percent), ``n_labels``, ``n_missing``, ``n_empty_hyp``.

    Raises:
        ScoringError: Unknown hypothesis ids, no references, or an empty reference.
    """
    paired = pair_texts(refs, hyps)
    ref_labels, hyp_labels = label_pairs(paired)
    per_label: Dict[str, Dict[str, float]] = {}
    for label, c in label_counts(ref_labels, hyp_labels).items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        p = 0.0 if tp == 0 else tp / (tp + fp)
        r = 0.0 if tp == 0 else tp / (tp + fn)
        f1 = 0.0 if p == 0.0 or r == 0.0 else 2 * p * r / (p + r)
        per_label[label] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": 100.0 * p,
            "recall": 100.0 * r,
            "f1": 100.0 * f1,
        }
    value = sum(v["f1"] for v in per_label.values()) / len(per_label)
    return MetricResult(
        name="macro_f1",
        value=value,
        n=paired.n,
        higher_is_better=True,
        details={
            "per_label": per_label,
            "n_labels": len(per_label),
            "n_missing": paired.n_missing,
            "n_empty_hyp": sum(h is None for h in hyp_labels),
        },
    )
