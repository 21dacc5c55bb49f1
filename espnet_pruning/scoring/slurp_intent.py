"""SLURP's scenario, action and intent figures of intent-classification outputs.

A SLURP label is ``<scenario>_<action>`` (``alarm_set``, ``iot_hue_lightup``): the
scenario is the part before the first ``_`` (no scenario name has one), the action the
rest, as ESPnet's SLURP recipe converts outputs for the official scorer. SLURP's
``evaluate.py`` reports scenario, action and intent (``scenario_action``) F1 with micro
averaging over single-label predictions, which is the accuracy (each wrong prediction is
one false positive and one false negative), so the figures here are accuracies in percent.
"""

from typing import Dict, Mapping, Optional, Tuple

from typeguard import typechecked

from espnet_pruning.scoring.labels import label_pairs
from espnet_pruning.scoring.text import pair_texts


@typechecked
def split_intent(label: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """``(scenario, action)`` of a label; ``(None, None)`` for no label.

    Args:
        label: ``<scenario>_<action>``; a label without ``_`` has the empty action.

    Returns:
        The two parts.
    """
    if label is None:
        return None, None
    scenario, _, action = label.partition("_")
    return scenario, action


@typechecked
def slurp_intent_figures(
    refs: Mapping[str, str], hyps: Mapping[str, str]
) -> Dict[str, float]:
    """Scenario, action and intent accuracy in percent.

    Args:
        refs: ``{uttid: reference text}`` (label first).
        hyps: ``{uttid: hypothesis text}`` (prompt tokens are stripped; a missing or empty
            hypothesis is wrong in all three).

    Returns:
        ``scenario_accuracy``, ``action_accuracy``, ``intent_accuracy`` and ``n``.

    Raises:
        ScoringError: Unknown hypothesis ids, no references, or an empty reference.
    """
    paired = pair_texts(refs, hyps)
    ref_labels, hyp_labels = label_pairs(paired)
    right = [0, 0, 0]
    for ref, hyp in zip(ref_labels, hyp_labels):
        ref_parts, hyp_parts = split_intent(ref), split_intent(hyp)
        right[0] += ref_parts[0] == hyp_parts[0]
        right[1] += ref_parts[1] == hyp_parts[1]
        right[2] += ref_parts == hyp_parts
    return {
        "scenario_accuracy": 100.0 * right[0] / paired.n,
        "action_accuracy": 100.0 * right[1] / paired.n,
        "intent_accuracy": 100.0 * right[2] / paired.n,
        "n": paired.n,
    }
