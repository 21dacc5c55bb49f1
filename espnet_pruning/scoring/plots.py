"""The paper's figures from a run: task overlap (Figure 3), per-layer sparsity, and the
forgetting curves of continual learning (Figure 2).

Each figure is a *data* function (exact numbers, tested) and a *draw* function
(matplotlib, Agg backend, PNG written to a temporary file and renamed). Mask figures come
from mask files, never from zero weights.

The forgetting-curve series is a CSV with the header ``system,step,task,metric,value``
(one row per system, evaluation step and task).
"""

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from typeguard import typechecked

from espnet_pruning.errors import DataError
from espnet_pruning.fileio import atomic_write_text
from espnet_pruning.pruning.masks import MaskSet

SERIES_FIELDS = ("system", "step", "task", "metric", "value")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        _pyplot().close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------- Figure 3
@typechecked
def overlap_data(maskset: MaskSet) -> Dict:
    """Task × task overlap |m_i ∧ m_j| / |m_i ∨ m_j| in percent (prunable weights).

    Returns:
        ``{"tasks": [...], "percent": [[...], ...]}``.
    """
    from espnet_pruning.pruning.report import overlap_matrix

    overlap = overlap_matrix(maskset)
    return {
        "tasks": list(overlap["tasks"]),
        "percent": [[100.0 * v for v in row] for row in overlap["overall"]],
    }


@typechecked
def plot_overlap_heatmap(maskset: MaskSet, path: Path) -> Path:
    """Figure 3: the overlap matrix as an annotated heatmap."""
    data = overlap_data(maskset)
    plt = _pyplot()
    n = len(data["tasks"])
    fig, ax = plt.subplots(figsize=(1.1 * n + 2, 1.0 * n + 1.5))
    image = ax.imshow(data["percent"], cmap="viridis")
    ax.set_xticks(range(n), data["tasks"], rotation=45, ha="right")
    ax.set_yticks(range(n), data["tasks"])
    for i, row in enumerate(data["percent"]):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="w", size=8)
    fig.colorbar(image, ax=ax, label="overlap (%)")
    ax.set_title("Parameter overlap between task subnetworks")
    return _save(fig, path)


# ----------------------------------------------------------- per-layer sparsity
@typechecked
def layer_sparsity_data(maskset: MaskSet) -> Dict:
    """Pruned share (percent) of every layer per task, layers in model order.

    Returns:
        ``{"layers": [...], "sparsity": {task: [...]}}``; encoder layers first, then
        decoder layers, blocks in numeric order.
    """
    from espnet_pruning.pruning.report import layer_key

    totals: Dict[str, int] = {}
    kept: Dict[str, Dict[str, int]] = {t: {} for t in maskset.tasks}
    for name, shape in maskset.shapes.items():
        layer = layer_key(name)
        n = 1
        for s in shape:
            n *= s
        totals[layer] = totals.get(layer, 0) + n
    for task in maskset.tasks:
        for name, count in maskset.kept_per_tensor(task).items():
            layer = layer_key(name)
            kept[task][layer] = kept[task].get(layer, 0) + count

    def order(layer: str):
        parts = layer.split(".")
        side = 0 if parts[0] == "encoder" else 1
        numbers = [int(p) for p in parts if p.isdigit()]
        return (side, numbers[0] if numbers else -1, layer)

    layers = sorted(totals, key=order)
    return {
        "layers": layers,
        "sparsity": {
            t: [100.0 * (1 - kept[t].get(lay, 0) / totals[lay]) for lay in layers]
            for t in maskset.tasks
        },
    }


@typechecked
def plot_layer_sparsity(maskset: MaskSet, path: Path) -> Path:
    """Per-layer sparsity, one line per task."""
    data = layer_sparsity_data(maskset)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(data["layers"]) + 2), 4.5))
    x = list(range(len(data["layers"])))
    for task, values in data["sparsity"].items():
        ax.plot(x, values, marker="o", ms=3, label=task)
    ax.set_xticks(x, data["layers"], rotation=90, size=7)
    ax.set_ylabel("pruned (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Sparsity per layer and task")
    return _save(fig, path)


# --------------------------------------------------------------------- Figure 2
@typechecked
def write_series(rows: Sequence[Dict], path: Path) -> Path:
    """Write forgetting-curve rows as CSV (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SERIES_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in SERIES_FIELDS})
    atomic_write_text(path, buf.getvalue())
    return path


@typechecked
def read_series(path: Path) -> List[Dict]:
    """Read a series CSV.

    Raises:
        DataError: Missing file, wrong header or a malformed line (file and line named).
    """
    if not path.is_file():
        raise DataError(f"{path}: series file not found")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != SERIES_FIELDS:
            raise DataError(f"{path}:1: header must be {','.join(SERIES_FIELDS)}")
        rows = []
        for row in reader:
            try:
                rows.append(
                    dict(
                        system=row["system"],
                        step=int(row["step"]),
                        task=row["task"],
                        metric=row["metric"],
                        value=float(row["value"]),
                    )
                )
            except (TypeError, ValueError) as e:
                raise DataError(f"{path}:{reader.line_num}: {e}") from e
    return rows


@typechecked
def curves_data(rows: Sequence[Dict]) -> Dict[str, Dict[str, List]]:
    """``{task: {system: [(step, value), ...] sorted by step}}``."""
    out: Dict[str, Dict[str, List]] = {}
    for row in rows:
        out.setdefault(row["task"], {}).setdefault(row["system"], []).append(
            (row["step"], row["value"])
        )
    for systems in out.values():
        for points in systems.values():
            points.sort()
    return out


@typechecked
def plot_forgetting_curves(
    rows: Sequence[Dict], path: Path, title: Optional[str] = None
) -> Path:
    """Figure 2: one panel per task, the metric over continual-training steps, one
    line per system."""
    data = curves_data(rows)
    metric = {r["task"]: r["metric"] for r in rows}
    plt = _pyplot()
    n = len(data)
    cols = min(n, 4)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False
    )
    for ax, (task, systems) in zip(axes.flat, data.items()):
        for system, points in systems.items():
            ax.plot(
                [p[0] for p in points], [p[1] for p in points], marker="o", label=system
            )
        ax.set_title(task, size=9)
        ax.set_xlabel("step")
        ax.set_ylabel(metric[task])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
