"""Classification accuracy on the first token (ER, IC-SLURP, IC-FSC, SCR).

Acc = 100 / N * sum_i [label(hyp_i) == label(ref_i)], label = first whitespace-separated
token; an empty (or missing) hypothesis is wrong.
"""

from pathlib import Path
from typing import Mapping, Optional

from typeguard import typechecked

from espnet_pruning.scoring.labels import label_pairs
from espnet_pruning.scoring.result import MetricResult
from espnet_pruning.scoring.text import pair_texts


@typechecked
def score_accuracy(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    workdir: Optional[Path] = None,
) -> MetricResult:
    """First-token accuracy in percent.

    Args:
        refs: ``{uttid: reference text}``.
        hyps: ``{uttid: hypothesis text}`` (prompt tokens are stripped).
        workdir: Unused (the signature is shared by all scorers).

    Returns:
        ``MetricResult`` named ``accuracy``; details: ``n_correct``, ``n_missing``,
        ``n_empty_hyp`` (empty or missing hypotheses).

    Raises:
        ScoringError: Unknown hypothesis ids, no references, or an empty reference.
    """
    paired = pair_texts(refs, hyps)
    ref_labels, hyp_labels = label_pairs(paired)
    n_correct = sum(r == h for r, h in zip(ref_labels, hyp_labels))
    return MetricResult(
        name="accuracy",
        value=100.0 * n_correct / paired.n,
        n=paired.n,
        higher_is_better=True,
        details={
            "n_correct": n_correct,
            "n_missing": paired.n_missing,
            "n_empty_hyp": sum(h is None for h in hyp_labels),
        },
    )
