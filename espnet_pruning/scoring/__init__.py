"""espnet_pruning.scoring: the task metrics of UniverSLU (accuracy, macro-F1, SLU-F1, WER).

Every scorer has the signature ``score_fn(refs, hyps, workdir=None) -> MetricResult`` with
``{uttid: text}`` mappings (see :func:`espnet_pruning.scoring.text.read_text`); prompt
tokens ``<|...|>`` are stripped from the texts, references without a hypothesis are scored
as empty hypotheses (``uslu_score`` leaves them out first by default, as SLURP's official
scorer does: :func:`espnet_pruning.scoring.text.apply_missing_policy`), hypotheses for
unknown ids are an error. Values are in percent.
"""

from espnet_pruning.scoring.errors import ScoringError
from espnet_pruning.scoring.registry import METRICS, ScoreFn, get_metric
from espnet_pruning.scoring.result import MetricResult
from espnet_pruning.scoring.text import (
    normalize_for_wer,
    pair_texts,
    read_text,
    strip_prompt_tokens,
)

__all__ = [
    "METRICS",
    "MetricResult",
    "ScoreFn",
    "ScoringError",
    "get_metric",
    "normalize_for_wer",
    "pair_texts",
    "read_text",
    "strip_prompt_tokens",
]
