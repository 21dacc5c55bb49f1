"""Tables 1 and 2 of the paper from a finished run: Param% One / All and every task's metric.

Rows: the dense model, then per pruning level the multi-task subnetworks (Algorithm 2),
the single-task baseline (one model θ_t per task) and task-agnostic pruning (one mask).
Param% comes from the mask files (:mod:`espnet_pruning.pruning.report`), never from
zero weights: One is the share of the model's parameters one task uses (masked weights
kept plus everything never pruned), All the share all tasks need together: the union of
the masks for multi-task, the sum of One for single-task, One for task-agnostic.

Scores are the ``score/result.json`` files of ``uslu_score``: ``<exp>/decode_<set>/`` for
shared models and ``<exp>/<task>/decode_<set>/`` for the single-task baseline.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.errors import DataError
from espnet_pruning.pruning.report import param_percent_all, param_percent_one
from espnet_pruning.pruning.storage import load_masks
from espnet_pruning.pruning.systems import SYSTEM_KINDS, SystemKind

LABELS = {
    "dense": "UniverSLU dense",
    SystemKind.MULTI_TASK: "Multi-task",
    SystemKind.SINGLE_TASK: "Single-task",
    SystemKind.TASK_AGNOSTIC: "+Task-agnostic",
}


@dataclass
class System:
    """A pruned system of the table.

    Args:
        kind: ``multi_task``, ``single_task`` or ``task_agnostic``.
        level: Q, the number of pruning rounds of its masks.
        exp: Its experiment directory.
        mask_dir: Its mask set.
    """

    kind: str
    level: int
    exp: Path
    mask_dir: Path

    @classmethod
    @typechecked
    def parse(cls, text: str) -> "System":
        """From ``KIND:Q:EXP:MASK_DIR``.

        Raises:
            DataError: For a malformed item or an unknown kind.
        """
        parts = text.split(":", 3)
        if len(parts) != 4 or parts[0] not in SYSTEM_KINDS or not parts[1].isdigit():
            raise DataError(
                f"--system {text!r}: expected KIND:Q:EXP:MASK_DIR with KIND in {SYSTEM_KINDS}"
            )
        return cls(parts[0], int(parts[1]), Path(parts[2]), Path(parts[3]))

    def decode_dir(self, test_set: str, task: str) -> Path:
        """Where the system's hypotheses for ``test_set`` are."""
        if self.kind == SystemKind.SINGLE_TASK:
            return self.exp / task / f"decode_{test_set}"
        return self.exp / f"decode_{test_set}"


@typechecked
def parse_test_sets(items: Sequence[str]) -> List[Tuple[str, str]]:
    """``(set, task)`` pairs of ``SET:TASK`` items.

    Raises:
        DataError: For an item without ``:``.
    """
    sets = []
    for item in items:
        dset, sep, task = item.partition(":")
        if not sep:
            raise DataError(f"--test_set {item!r}: expected SET:TASK")
        sets.append((dset, task))
    return sets


@typechecked
def read_score(decode_dir: Path) -> Dict:
    """The scorer's result of one decoding directory.

    Raises:
        DataError: If it has not been scored.
    """
    path = decode_dir / "score" / "result.json"
    if not path.is_file():
        raise DataError(f"{path}: no score (run the scoring stage first)")
    return json.loads(path.read_text(encoding="utf-8"))


@typechecked
def param_percent(mask_dir: Path, kind: str) -> Dict[str, float]:
    """``{"one": …, "all": …, "sparsity": …}`` in percent, from a mask set.

    ``one`` is the mean over tasks (equal for all tasks when every mask was pruned by the
    same counts, as Algorithm 1 does); ``sparsity`` is the pruned share of the prunable
    weights.
    """
    masks = load_masks(mask_dir)
    tasks = masks.tasks
    try:
        return {
            "one": sum(param_percent_one(masks, t) for t in tasks) / len(tasks),
            "all": param_percent_all(masks, kind),
            "sparsity": 100.0
            * (1.0 - sum(masks.density(t) for t in tasks) / len(tasks)),
        }
    except ValueError as e:
        raise DataError(f"{mask_dir}: {e}") from e


@typechecked
def build_table(
    dense_exp: Path, test_sets: Sequence[str], systems: Sequence[System]
) -> Dict:
    """Rows of Table 1 (dense first, then per level in the order given).

    Args:
        dense_exp: Experiment directory of θ0.
        test_sets: ``SET:TASK`` items.
        systems: The pruned systems.

    Returns:
        ``{"tasks": [{task, test_set, metric, higher_is_better}], "rows": [{system,
        kind, level, sparsity, param_one, param_all, scores: {task: value}}]}``.
    """
    sets = parse_test_sets(test_sets)

    def scores(decode_dir_of) -> Dict[str, float]:
        return {t: read_score(decode_dir_of(d, t))["value"] for d, t in sets}

    head = [read_score(dense_exp / f"decode_{d}") for d, _ in sets]
    rows = [
        dict(
            system=LABELS["dense"],
            kind="dense",
            level=0,
            sparsity=0.0,
            param_one=100.0,
            param_all=100.0,
            scores=scores(lambda d, t: dense_exp / f"decode_{d}"),
        )
    ]
    levels = list(dict.fromkeys(s.level for s in systems))
    for level in levels:
        for system in sorted(
            (s for s in systems if s.level == level),
            key=lambda s: SYSTEM_KINDS.index(s.kind),
        ):
            pp = param_percent(system.mask_dir, system.kind)
            rows.append(
                dict(
                    system=LABELS[system.kind],
                    kind=system.kind,
                    level=level,
                    sparsity=pp["sparsity"],
                    param_one=pp["one"],
                    param_all=pp["all"],
                    scores=scores(system.decode_dir),
                )
            )
    return {
        "tasks": [
            dict(
                task=t,
                test_set=d,
                metric=h["name"],
                higher_is_better=h.get("higher_is_better", True),
            )
            for (d, t), h in zip(sets, head)
        ],
        "rows": rows,
    }


@typechecked
def format_markdown(table: Dict, title: Optional[str] = "Task-specific pruning") -> str:
    """The table as markdown in the paper's shape (a header line per pruning level)."""
    tasks = table["tasks"]
    header = ["", "Param(%) One / All"] + [
        f"{t['task']} {t['metric']}{'↑' if t['higher_is_better'] else '↓'}"
        for t in tasks
    ]
    lines: List[str] = []
    if title:
        lines += [f"## {title} (Table 1)", ""]
    lines += ["|" + "|".join(header) + "|", "|" + "---|" * len(header)]
    level = 0
    for row in table["rows"]:
        if row["level"] != level:
            level = row["level"]
            lines.append(
                f"|**+Task-specific pruning, Q = {level} ({row['sparsity']:.1f} %)**|"
                + "|" * (len(header) - 1)
            )
        cells = [row["system"], f"{row['param_one']:.1f} / {row['param_all']:.1f}"]
        cells += [f"{row['scores'][t['task']]:.1f}" for t in tasks]
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"


@typechecked
def format_table2(table: Dict, level: int) -> str:
    """Table 2's shape: dense, multi-task and single-task pruning at one level.

    Raises:
        DataError: If the table has no multi-task row at ``level``.
    """
    labels = {
        "dense": "UniverSLU dense",
        SystemKind.MULTI_TASK: "+Multi-task pruning",
        SystemKind.SINGLE_TASK: "+Single-task pruning",
    }
    rows = [r for r in table["rows"] if r["kind"] == "dense"]
    rows += [
        r
        for r in table["rows"]
        if r["level"] == level
        and r["kind"] in (SystemKind.MULTI_TASK, SystemKind.SINGLE_TASK)
    ]
    if not any(r["kind"] == SystemKind.MULTI_TASK for r in rows):
        raise DataError(f"no multi-task pruning at Q = {level} in the table")
    tasks = table["tasks"]
    header = ["", "Param(%) One / All"] + [
        f"{t['task']} {t['metric']}{'↑' if t['higher_is_better'] else '↓'}"
        for t in tasks
    ]
    lines = [
        f"## Dense and pruned models, Q = {level} (Table 2)",
        "",
        "|" + "|".join(header) + "|",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        cells = [
            labels[row["kind"]],
            f"{row['param_one']:.1f} / {row['param_all']:.1f}",
        ]
        cells += [f"{row['scores'][t['task']]:.1f}" for t in tasks]
        lines.append("|" + "|".join(cells) + "|")
    return "\n".join(lines) + "\n"
