"""The figures reported beside a task's metric, as rows of a results table.

A task specifier may name figures (``figures: [slurp_intent]`` in ``tasks.yaml``, the
functions in :data:`espnet_pruning.scoring.registry.FIGURES`); ``uslu_score`` computes
them on the same references and hypotheses as the metric and keeps them in
``result.json`` under ``details[<figure name>]``. :func:`report_figures` turns a
``result.json`` record into the ``{label: value}`` rows of ``RESULTS.md``: SLURP's
scenario and action accuracy for ``slurp_intent``, and SLU precision and recall, word-F1,
char-F1 and exact-span F1 for ``slu_f1`` (every one higher-is-better, in percent).
"""

from typing import Dict, Mapping

from typeguard import typechecked


@typechecked
def report_figures(record: Mapping) -> Dict[str, float]:
    """The extra rows of a result in a results table, ``{label: value in percent}``.

    Args:
        record: A ``result.json`` record (``MetricResult.to_dict()``).

    Returns:
        SLURP's official figures found in the record, in a fixed order; empty for other
        metrics.
    """
    details = record.get("details") or {}
    out: Dict[str, float] = {}
    intent = details.get("slurp_intent")
    if intent:
        out["scenario accuracy"] = intent["scenario_accuracy"]
        out["action accuracy"] = intent["action_accuracy"]
    if record.get("name") == "slu_f1":
        out["SLU precision"] = details["slu"]["precision"]
        out["SLU recall"] = details["slu"]["recall"]
        out["word-F1"] = details["word"]["f1"]
        out["char-F1"] = details["char"]["f1"]
        out["span-F1"] = details["span"]["f1"]
    return out
