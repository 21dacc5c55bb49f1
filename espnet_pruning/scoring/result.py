"""The value a scorer returns."""

import dataclasses
from typing import Any, Dict


@dataclasses.dataclass
class MetricResult:
    """One metric computed over a test set.

    Attributes:
        name: Metric name, a key of :data:`espnet_pruning.scoring.METRICS`.
        value: The metric in percent (accuracy and F1 in 0-100, WER in %; WER may
            exceed 100).
        n: Number of scored utterances (every reference passed to the scorer; missing
            hypotheses count as empty ones).
        higher_is_better: ``True`` for accuracy and F1, ``False`` for WER.
        details: JSON-serialisable counts behind ``value`` (metric-specific).
    """

    name: str
    value: float
    n: int
    higher_is_better: bool
    details: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable copy (``details`` deep-copied)."""
        return dataclasses.asdict(self)
