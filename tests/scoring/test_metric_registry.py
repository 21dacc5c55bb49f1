"""The metric registry matches the metric names task specifiers use."""

import inspect

import pytest

from espnet_pruning import specifiers
from espnet_pruning.scoring import METRICS, ScoringError, get_metric
from espnet_pruning.scoring.registry import FIGURES


def test_metric_names_match_task_specifiers():
    assert sorted(METRICS) == sorted(specifiers.METRICS)
    assert sorted(FIGURES) == sorted(specifiers.FIGURES)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_common_signature(name):
    params = list(inspect.signature(METRICS[name]).parameters)
    assert params == ["refs", "hyps", "workdir"]
    assert get_metric(name) is METRICS[name]


def test_unknown_metric():
    with pytest.raises(ScoringError, match="unknown metric 'bleu'; known: accuracy"):
        get_metric("bleu")

