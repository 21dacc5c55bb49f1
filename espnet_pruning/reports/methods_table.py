"""The mask methods side by side: one row per method and pruning level.

Every mask method a recipe ran (``slu.sh --mask_method``) leaves its results in its own
directory: Algorithm 1's in ``exp/``, another method's in ``exp/<method>/``. From each
this module reads

* ``pruning_table.json`` (stage 14): the multi-task system's Param% One / All and every
  task's metric at each level;
* ``find_masks/multi_task/round<Q>/report.json`` (stage 10): the mean pairwise overlap
  (IoU) of the task masks and their union ratio;
* ``continual_<run>/report.json`` (stage 20), when it exists: the forgetting of the
  masked system ``masked_q<Q>`` (mean score loss on the other tasks);
* ``structure_speed_q<Q>.json`` (stage 16 of structured methods), when it exists: the
  mean measured speed-up of the tasks' compiled models over the dense one
  (``uslu_structure_speed``).

and writes one table, the dense model's row first. Forgetting is signed so that a
positive number is a loss (docs/methods.md §7.1 for the overlap, §1.5 for continual
learning).
"""

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from typeguard import typechecked

from espnet_pruning.errors import DataError


@dataclass
class MethodResults:
    """Where one method's results are.

    Args:
        method: Its name (``imp_lth``, ``parp``, ...).
        directory: Its result directory (``exp`` or ``exp/<method>``).
    """

    method: str
    directory: Path

    @classmethod
    @typechecked
    def parse(cls, text: str) -> "MethodResults":
        """From ``METHOD:DIR``."""
        method, sep, directory = text.partition(":")
        if not sep or not method or not directory:
            raise DataError(f"--method {text!r}: expected METHOD:DIR")
        return cls(method, Path(directory))


def _read_json(path: Path) -> Dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found (run its stage first)") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None


@typechecked
def mean_overlap(report: Dict) -> Optional[float]:
    """The mean of the off-diagonal overall IoUs of a mask report (None: one task).

    Examples:
        >>> mean_overlap({"overlap": {"overall": [[1, .5, .3], [.5, 1, .1], [.3, .1, 1]]}})
        0.3
    """
    matrix = report["overlap"]["overall"]
    pairs = [matrix[i][j] for i, j in combinations(range(len(matrix)), 2)]
    return round(sum(pairs) / len(pairs), 12) if pairs else None


@typechecked
def build_methods_table(
    methods: Sequence[MethodResults], cl_runs: Sequence[str] = ()
) -> Dict:
    """Rows of the comparison: dense, then each method's multi-task system per level.

    Args:
        methods: The methods, in the order of the table.
        cl_runs: Continual-learning runs whose forgetting is shown (reports that do
            not exist leave the cell empty).

    Returns:
        ``{"tasks": [...] (as pruning_table), "cl_runs": [...], "rows": [{method,
        level, sparsity, param_one, param_all, scores, overlap, union_ratio,
        forgetting: {run: value or None}}]}``.

    Raises:
        DataError: A missing or malformed file, or methods scored on other tasks.
    """
    if not methods:
        raise DataError("no methods to compare")
    tables = [_read_json(m.directory / "pruning_table.json") for m in methods]
    tasks = tables[0]["tasks"]
    for m, table in zip(methods, tables):
        if [t["task"] for t in table["tasks"]] != [t["task"] for t in tasks]:
            raise DataError(
                f"{m.directory / 'pruning_table.json'}: other tasks than "
                f"{methods[0].directory / 'pruning_table.json'}"
            )
    dense = next(r for r in tables[0]["rows"] if r["kind"] == "dense")
    rows: List[Dict] = [
        dict(
            method="dense",
            level=0,
            sparsity=0.0,
            param_one=dense["param_one"],
            param_all=dense["param_all"],
            scores=dense["scores"],
            overlap=None,
            union_ratio=None,
            forgetting={run: None for run in cl_runs},
            speedup=None,
        )
    ]
    for m, table in zip(methods, tables):
        for row in table["rows"]:
            if row["kind"] != "multi_task":
                continue
            level = row["level"]
            report = _read_json(
                m.directory
                / "find_masks"
                / "multi_task"
                / f"round{level}"
                / "report.json"
            )
            forgetting = {}
            for run in cl_runs:
                path = m.directory / f"continual_{run}" / "report.json"
                forgot = _read_json(path)["forgetting"] if path.is_file() else {}
                forgetting[run] = forgot.get(f"masked_q{level}")
            speed = m.directory / f"structure_speed_q{level}.json"
            speedup = None
            if speed.is_file():
                mean = _read_json(speed)["mean"]
                speedup = dict(
                    encoder=mean["encoder_speedup"], decoder=mean["decoder_speedup"]
                )
            rows.append(
                dict(
                    method=m.method,
                    level=level,
                    sparsity=row["sparsity"],
                    param_one=row["param_one"],
                    param_all=row["param_all"],
                    scores=row["scores"],
                    overlap=mean_overlap(report),
                    union_ratio=report["union_ratio"],
                    forgetting=forgetting,
                    speedup=speedup,
                )
            )
    return {"tasks": tasks, "cl_runs": list(cl_runs), "rows": rows}


def _cell(value: Optional[float], fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


@typechecked
def format_methods_markdown(table: Dict) -> str:
    """The comparison as markdown (levels in rows, sorted by level then method order)."""
    tasks = table["tasks"]
    header = ["method", "Q", "Param(%) One / All"]
    header += [
        f"{t['task']} {t['metric']}{'↑' if t['higher_is_better'] else '↓'}"
        for t in tasks
    ]
    header += ["overlap (%)", "union (%)"]
    header += [f"forgetting {run}" for run in table["cl_runs"]]
    header += ["speed-up enc / dec"]
    lines = [
        "## Mask methods compared (multi-task systems)",
        "",
        "|" + "|".join(header) + "|",
        "|" + "---|" * len(header),
    ]
    order = {
        m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in table["rows"]))
    }
    for row in sorted(table["rows"], key=lambda r: (r["level"], order[r["method"]])):
        cells = [
            row["method"],
            str(row["level"]),
            f"{row['param_one']:.1f} / {row['param_all']:.1f}",
        ]
        cells += [f"{row['scores'][t['task']]:.1f}" for t in tasks]
        cells += [
            _cell(None if row["overlap"] is None else 100 * row["overlap"]),
            _cell(None if row["union_ratio"] is None else 100 * row["union_ratio"]),
        ]
        cells += [_cell(row["forgetting"][run], "{:+.2f}") for run in table["cl_runs"]]
        speed = row.get("speedup")
        cells.append(
            "–"
            if speed is None
            else f"{speed['encoder']:.2f}× / {speed['decoder']:.2f}×"
        )
        lines.append("|" + "|".join(cells) + "|")
    lines += [
        "",
        "Overlap: mean pairwise IoU of the task masks; union: share of the masked "
        "weights some task keeps; forgetting: mean score loss on the other tasks after "
        "continual learning of the run's task (positive = worse); speed-up: measured "
        "throughput of the tasks' compiled models over the dense model (structured "
        "methods only, mean over tasks; structure_speed_q<Q>.json).",
    ]
    return "\n".join(lines) + "\n"
