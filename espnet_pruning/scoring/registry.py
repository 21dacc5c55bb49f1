"""The metrics and figures by name, as task specifiers name them (``metric:`` and
``figures:`` in ``tasks.yaml``)."""

from pathlib import Path
from typing import Callable, Dict, Mapping, Optional

from typeguard import typechecked

from espnet_pruning.scoring.accuracy import score_accuracy
from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.macro_f1 import score_macro_f1
from espnet_pruning.scoring.result import MetricResult
from espnet_pruning.scoring.slu_f1 import score_slu_f1
from espnet_pruning.scoring.slurp_intent import slurp_intent_figures
from espnet_pruning.scoring.wer import score_wer

#: ``score_fn(refs, hyps, workdir=None) -> MetricResult``.
ScoreFn = Callable[[Mapping[str, str], Mapping[str, str], Optional[Path]], MetricResult]

#: Every metric: ``METRICS[name](refs, hyps, workdir)``.
METRICS: Dict[str, ScoreFn] = {
    "accuracy": score_accuracy,
    "macro_f1": score_macro_f1,
    "slu_f1": score_slu_f1,
    "wer": score_wer,
}


#: ``figure(refs, hyps) -> {name: value}``, scored beside a task's metric.
FigureFn = Callable[[Mapping[str, str], Mapping[str, str]], Dict[str, float]]

#: Every figure a task specifier may name: ``FIGURES[name](refs, hyps)``.
FIGURES: Dict[str, FigureFn] = {"slurp_intent": slurp_intent_figures}

@typechecked
def get_metric(name: str) -> ScoreFn:
    """The scoring function of a metric.

    Args:
        name: A key of :data:`METRICS`.

    Returns:
        The function.

    Raises:
        ScoringError: Unknown metric (the message lists the known ones).
    """
    try:
        return METRICS[name]
    except KeyError:
        raise ScoringError(
            f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}"
        ) from None
