"""The paper's figures from a run: task overlap (Figure 3), per-layer sparsity, and the
forgetting curves of continual learning (Figure 2).

Each figure is a *data* function (exact numbers, tested) and a *draw* function
(a matplotlib ``Figure`` without pyplot, so no backend or display is chosen for the
process; the PNG, drawn by Agg, is written to a temporary file in the target directory
and renamed over the target). Mask figures come from the masks, never from zero weights
(docs/pruning_pitfalls.md §4.1).

The forgetting-curve series is a table with the columns
``system,step,task,metric,value``, one row per system, evaluation step of the
continual-learning stage and task; it is stored as CSV with that header, or as a JSON
list of objects with these keys (``.json``).
"""

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from typeguard import typechecked

from espnet_pruning.errors import DataError
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.report import layer_key, overlap_matrix, sparsity_report

SERIES_FIELDS = ("system", "step", "task", "metric", "value")

#: A matrix of overlap ratios, a report dict or masks (see :func:`overlap_data`).
OverlapSource = Union[MaskSet, Mapping[str, Any], Sequence[Sequence[float]], np.ndarray]
#: Labels per task, in task order, or task → label (tasks not named keep their name).
TaskLabels = Optional[Union[Sequence[str], Mapping[str, str]]]


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------- Figure 3
def _labels(tasks: Sequence[str], task_labels: TaskLabels) -> List[str]:
    if task_labels is None:
        return list(tasks)
    if isinstance(task_labels, Mapping):
        return [task_labels.get(t, t) for t in tasks]
    if len(task_labels) != len(tasks):
        raise DataError(
            f"{len(task_labels)} task labels for {len(tasks)} tasks {list(tasks)}"
        )
    return list(task_labels)


@typechecked
def overlap_data(source: OverlapSource, task_labels: TaskLabels = None) -> Dict:
    """Task × task overlap |m_i ∧ m_j| / |m_i ∨ m_j| in percent (prunable weights).

    Args:
        source: A :class:`MaskSet`; or the dict of
            :func:`~espnet_pruning.pruning.report.overlap_matrix` (``tasks``,
            ``overall`` ratios) or of this function (``tasks``, ``percent``); or a
            square matrix of ratios in [0, 1] (then ``task_labels`` names the rows,
            else ``task 1`` ...).
        task_labels: Names shown for the tasks.

    Returns:
        ``{"tasks": [label, ...], "percent": [[...], ...]}``.

    Raises:
        DataError: A matrix that is not square, has values out of range, or does not
            match the number of tasks or labels.
    """
    if isinstance(source, MaskSet):
        report = overlap_matrix(source)
        tasks, matrix, scale = report["tasks"], report["overall"], 100.0
    elif isinstance(source, Mapping):
        if "percent" in source:
            matrix, scale = source["percent"], 1.0
        elif "overall" in source:
            matrix, scale = source["overall"], 100.0
        else:
            raise DataError(
                "an overlap dict needs 'percent' or 'overall' (and 'tasks')"
            )
        tasks = list(source.get("tasks") or [])
    else:
        matrix, scale, tasks = source, 100.0, []
    try:
        percent = np.asarray(matrix, dtype=float) * scale
    except (TypeError, ValueError) as e:  # ragged rows, non-numbers
        raise DataError(
            f"the overlap matrix is not a matrix of numbers ({e})"
        ) from None
    n = len(percent) if percent.ndim else 0
    if percent.shape != (n, n) or n == 0:
        raise DataError(
            "the overlap matrix must be square and non-empty, "
            f"got shape {percent.shape}"
        )
    if not np.all(np.isfinite(percent)) or percent.min() < 0 or percent.max() > 100:
        raise DataError("overlap values must be ratios in [0, 1] (percent in [0, 100])")
    if not tasks:  # a bare matrix: its labels, if given as a list, name the tasks
        if task_labels is not None and not isinstance(task_labels, Mapping):
            tasks = list(task_labels)
        else:
            tasks = [f"task {i + 1}" for i in range(n)]
    if len(tasks) != n:
        raise DataError(f"{len(tasks)} tasks for a {n} x {n} overlap matrix")
    return {"tasks": _labels(tasks, task_labels), "percent": percent.tolist()}


@typechecked
def plot_overlap_heatmap(
    source: OverlapSource,
    path: Path,
    task_labels: TaskLabels = None,
    title: Optional[str] = "Parameter overlap between task subnetworks",
) -> Path:
    """Figure 3: the overlap matrix (percent) as a heatmap, numbers in the cells.

    Args:
        source: Masks or an overlap matrix (see :func:`overlap_data`).
        path: The PNG to write.
        task_labels: Names shown for the tasks.
        title: Figure title (None for none).

    Returns:
        ``path``.
    """
    data = overlap_data(source, task_labels)
    n = len(data["tasks"])
    fig = Figure(figsize=(1.1 * n + 2.5, 1.0 * n + 1.5))
    ax = fig.subplots()
    image = ax.imshow(data["percent"], cmap="viridis", vmin=0.0, vmax=100.0)
    ax.set_xticks(range(n), data["tasks"], rotation=45, ha="right")
    ax.set_yticks(range(n), data["tasks"])
    for i, row in enumerate(data["percent"]):
        for j, value in enumerate(row):
            # Dark cells (low values in viridis) get white text, bright ones black.
            color = "w" if value < 60 else "k"
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color=color, size=8)
    fig.colorbar(image, ax=ax, label="overlap (%)")
    if title:
        ax.set_title(title)
    return _save(fig, path)


# ----------------------------------------------------------- per-layer sparsity
@typechecked
def layer_order_key(layer: str) -> Tuple[int, int, int, str]:
    """Sort key putting layers in model order.

    Encoder before decoder (then anything else); within each, the layers before the
    blocks (convolutions, embeddings), the blocks by number, then the final layer norms
    (a last name component starting with ``ln`` or ending in ``norm``).

    Examples:
        >>> names = ["decoder.blocks.0", "encoder.blocks.10", "encoder.ln_post",
        ...          "encoder.blocks.2", "decoder.token_embedding", "encoder.conv1"]
        >>> sorted(names, key=layer_order_key)  # doctest: +NORMALIZE_WHITESPACE
        ['encoder.conv1', 'encoder.blocks.2', 'encoder.blocks.10', 'encoder.ln_post',
         'decoder.token_embedding', 'decoder.blocks.0']
    """
    parts = layer.split(".")
    side = {"encoder": 0, "decoder": 1}.get(parts[0], 2)
    numbers = [int(p) for p in parts if p.isdigit()]
    if numbers:
        return (side, 1, numbers[0], layer)
    last = parts[-1]
    tail = 2 if last.startswith("ln") or last.endswith("norm") else 0
    return (side, tail, 0, layer)


@typechecked
def layer_sparsity_data(maskset: MaskSet) -> Dict:
    """Pruned share (percent) of every layer per task, layers in model order.

    Layers group tensors as :func:`~espnet_pruning.pruning.report.layer_key` does; the
    counts come from :func:`~espnet_pruning.pruning.report.sparsity_report`.

    Returns:
        ``{"layers": [...], "numel": [...], "sparsity": {task: [percent, ...]}}``.
    """
    reports = {t: sparsity_report(maskset, t)["per_layer"] for t in maskset.tasks}
    if reports:
        some = next(iter(reports.values()))
    else:  # no task: the layers still exist
        some = {layer_key(n): {"numel": 0} for n in maskset.names}
    layers = sorted(some, key=layer_order_key)
    return {
        "layers": layers,
        "numel": [some[lay]["numel"] for lay in layers],
        "sparsity": {
            t: [
                (
                    100.0 * (r[lay]["numel"] - r[lay]["kept"]) / r[lay]["numel"]
                    if r[lay]["numel"]
                    else 0.0
                )
                for lay in layers
            ]
            for t, r in reports.items()
        },
    }


@typechecked
def plot_layer_sparsity(
    maskset: MaskSet,
    path: Path,
    title: Optional[str] = "Sparsity per layer and task",
) -> Path:
    """Per-layer sparsity, one line per task, encoder layers then decoder layers.

    Args:
        maskset: The task masks.
        path: The PNG to write.
        title: Figure title (None for none).

    Returns:
        ``path``.

    Raises:
        DataError: The mask set has no task.
    """
    data = layer_sparsity_data(maskset)
    if not data["sparsity"]:
        raise DataError("the mask set has no task to plot")
    fig = Figure(figsize=(max(6.0, 0.35 * len(data["layers"]) + 2), 4.5))
    ax = fig.subplots()
    x = list(range(len(data["layers"])))
    for task, values in data["sparsity"].items():
        ax.plot(x, values, marker="o", ms=3, label=task)
    sides = [layer_order_key(lay)[0] for lay in data["layers"]]
    for i in range(1, len(sides)):
        if sides[i] != sides[i - 1]:  # mark where the decoder starts
            ax.axvline(i - 0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, data["layers"], rotation=90, size=7)
    ax.set_ylabel("pruned (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return _save(fig, path)


# --------------------------------------------------------------------- Figure 2
def _validated(raw: Sequence[Any], where: Sequence[str]) -> List[Dict]:
    """Rows with typed values; ``where[i]`` names row i in error messages."""
    rows: List[Dict] = []
    seen: Dict[Tuple, str] = {}
    metric_of: Dict[str, Tuple[str, str]] = {}
    for row, loc in zip(raw, where):
        if not isinstance(row, Mapping):
            raise DataError(f"{loc}: expected an object with {','.join(SERIES_FIELDS)}")
        keys = set(row)
        if keys != set(SERIES_FIELDS):
            missing = [k for k in SERIES_FIELDS if k not in keys]
            extra = sorted(str(k) for k in keys - set(SERIES_FIELDS))
            raise DataError(f"{loc}: missing fields {missing}, unexpected {extra}")
        out = {}
        for key in ("system", "task", "metric"):
            value = row[key]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{loc}: {key} must be a non-empty text, got {value!r}")
            out[key] = value
        step = row["step"]
        try:
            if isinstance(step, bool) or (
                isinstance(step, float) and not step.is_integer()
            ):
                raise ValueError
            out["step"] = int(step) if not isinstance(step, str) else int(step.strip())
        except (TypeError, ValueError):
            raise DataError(f"{loc}: step must be an integer, got {step!r}") from None
        if out["step"] < 0:
            raise DataError(f"{loc}: step must be >= 0, got {out['step']}")
        try:
            if isinstance(row["value"], bool):
                raise ValueError
            out["value"] = float(row["value"])
        except (TypeError, ValueError):
            raise DataError(
                f"{loc}: value must be a number, got {row['value']!r}"
            ) from None
        if not math.isfinite(out["value"]):
            raise DataError(f"{loc}: value must be finite, got {row['value']!r}")
        key = (out["system"], out["step"], out["task"])
        if key in seen:
            raise DataError(
                f"{loc}: system {key[0]!r}, step {key[1]}, task {key[2]!r} again "
                f"(first at {seen[key]})"
            )
        seen[key] = loc
        first = metric_of.setdefault(out["task"], (out["metric"], loc))
        if first[0] != out["metric"]:
            raise DataError(
                f"{loc}: task {out['task']!r} has metric {out['metric']!r} here but "
                f"{first[0]!r} at {first[1]}"
            )
        rows.append({k: out[k] for k in SERIES_FIELDS})
    return rows


@typechecked
def validate_series(series: Sequence[Mapping[str, Any]]) -> List[Dict]:
    """Check forgetting-curve rows and return them with typed values.

    Every row has exactly the fields ``system, step, task, metric, value``: non-empty
    texts, an integer step >= 0 and a finite value; a (system, step, task) occurs once
    and every task has one metric.

    Raises:
        DataError: Naming the row (``row i``, from 1) at fault.
    """
    return _validated(series, [f"row {i}" for i in range(1, len(series) + 1)])


@typechecked
def write_series(series: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write forgetting-curve rows (atomically): JSON for ``.json``, else CSV.

    Raises:
        DataError: Invalid rows (see :func:`validate_series`); nothing is written.
    """
    rows = validate_series(series)
    path = Path(path)
    if path.suffix.lower() == ".json":
        atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
        return path
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SERIES_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


@typechecked
def read_series(path: Path) -> List[Dict]:
    """Read forgetting-curve rows from a CSV (header ``system,step,task,metric,value``)
    or, for ``.json``, a JSON list of objects with these keys.

    Raises:
        DataError: Missing file, wrong header, a malformed or invalid line (CSV:
            ``file:line``; JSON: ``file: item i``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: series file not found")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            where = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
            raise DataError(f"{path}{where}: not valid JSON ({e})") from None
        if not isinstance(raw, list):
            raise DataError(f"{path}: expected a JSON list of rows")
        return _validated(raw, [f"{path}: item {i}" for i in range(1, len(raw) + 1)])
    raw, where = [], []
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != SERIES_FIELDS:
                raise DataError(f"{path}:1: header must be {','.join(SERIES_FIELDS)}")
            for cells in reader:
                loc = f"{path}:{reader.line_num}"
                if not cells:
                    continue  # csv gives [] for a blank line
                if len(cells) != len(SERIES_FIELDS):
                    raise DataError(
                        f"{loc}: {len(cells)} fields, expected {len(SERIES_FIELDS)}"
                    )
                raw.append(dict(zip(SERIES_FIELDS, cells)))
                where.append(loc)
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable CSV ({e})") from None
    return _validated(raw, where)


@typechecked
def curves_data(series: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, List]]:
    """``{task: {system: [(step, value), ...] sorted by step}}``, tasks and systems in
    order of first appearance.

    Raises:
        DataError: Invalid rows (see :func:`validate_series`).
    """
    out: Dict[str, Dict[str, List]] = {}
    for row in validate_series(series):
        out.setdefault(row["task"], {}).setdefault(row["system"], []).append(
            (row["step"], row["value"])
        )
    for systems in out.values():
        for points in systems.values():
            points.sort()
    return out


@typechecked
def plot_forgetting_curves(
    series: Sequence[Mapping[str, Any]], path: Path, title: Optional[str] = None
) -> Path:
    """Figure 2: one panel per task, the task's metric over the training steps of the
    continual-learning stage, one line per system (same colour in every panel).

    Args:
        series: Rows ``{system, step, task, metric, value}``.
        path: The PNG to write.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        DataError: No rows, or invalid rows (see :func:`validate_series`).
    """
    data = curves_data(series)
    if not data:
        raise DataError("no series rows to plot")
    metric = {r["task"]: r["metric"] for r in series}
    systems = list(dict.fromkeys(r["system"] for r in series))
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {s: cycle[i % len(cycle)] for i, s in enumerate(systems)}
    n = len(data)
    cols = min(n, 4)
    nrows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols, 3.0 * nrows + 0.6))
    axes = fig.subplots(nrows, cols, squeeze=False)
    handles = {}
    for ax, (task, lines) in zip(axes.flat, data.items()):
        for system, points in lines.items():
            (handles[system],) = ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                color=color[system],
                label=system,
            )
        ax.set_title(task, size=9)
        ax.set_xlabel("step")
        ax.set_ylabel(metric[task])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.legend(
        [handles[s] for s in systems],
        systems,
        loc="lower center",
        ncol=min(len(systems), 4),
        fontsize=8,
        bbox_to_anchor=(0.5, 0.0),
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)
