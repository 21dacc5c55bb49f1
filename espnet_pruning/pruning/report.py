"""Sparsity, Param% and overlap reports, computed from the masks alone.

Never from ``weight == 0``: weights can be zero naturally, and with shared weights a
pruned entry keeps its value (docs/pruning_pitfalls.md §4.1). Definitions
(docs/methods.md §7), with ``n_model_params`` all parameters of the model and
``n_unprunable = n_model_params - maskset.numel()`` the parameters no mask covers:

* density = kept / masked weights; sparsity = 1 - density;
* Param% One(t) = 100 (kept_t + n_unprunable) / n_model_params;
* Param% All: ``multi_task`` = 100 (|union of masks| + n_unprunable) / n_model_params,
  ``single_task`` = sum over tasks of One(t) (separate models), ``task_agnostic`` = One
  of the single shared mask;
* overlap(i, j) = |m_i ∧ m_j| / |m_i ∨ m_j| (IoU; 1.0 for two empty masks), overall and
  per tensor; with ``include_unprunable`` the never-pruned parameters count in both;
* union ratio = |union of masks| / masked weights.

Per-layer figures aggregate tensors by :func:`layer_key`: the name up to its first
all-digit component (``encoder.blocks.3.attn.query.weight`` → ``encoder.blocks.3``),
otherwise the owning module (``decoder.token_embedding.weight`` →
``decoder.token_embedding``).
"""

from typing import List, Mapping, Optional, Sequence

import torch
from typeguard import typechecked

from espnet_pruning.pruning.masks import MaskSet
from espnet_pruning.pruning.systems import SYSTEM_KINDS, SystemKind


@typechecked
def layer_key(name: str) -> str:
    """The layer a tensor belongs to (see the module docstring).

    Examples:
        >>> layer_key("encoder.blocks.3.mlp.0.weight"), layer_key("encoder.conv1.weight")
        ('encoder.blocks.3', 'encoder.conv1')
    """
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or name


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def _n_unprunable(maskset: MaskSet) -> int:
    if maskset.n_model_params is None:
        raise ValueError("the mask set has no n_model_params; Param% is undefined")
    return maskset.n_model_params - maskset.numel()


@typechecked
def sparsity_report(maskset: MaskSet, task: str) -> dict:
    """Counts of one task's mask: total, per tensor and per layer.

    Args:
        maskset: The masks.
        task: The task.

    Returns:
        ``{"task", "n_total", "n_kept", "density", "sparsity", "per_tensor",
        "per_layer"}``; ``per_tensor`` and ``per_layer`` map a name to
        ``{"numel", "kept", "density"}``.

    Raises:
        MaskError: If the task is unknown.
    """
    kept = maskset.kept_per_tensor(task)
    per_tensor, per_layer = {}, {}
    for name, shape in maskset.shapes.items():
        numel = int(torch.Size(shape).numel())
        per_tensor[name] = {
            "numel": numel,
            "kept": kept[name],
            "density": _ratio(kept[name], numel),
        }
        layer = per_layer.setdefault(layer_key(name), {"numel": 0, "kept": 0})
        layer["numel"] += numel
        layer["kept"] += kept[name]
    for layer in per_layer.values():
        layer["density"] = _ratio(layer["kept"], layer["numel"])
    n_total, n_kept = maskset.numel(), sum(kept.values())
    density = _ratio(n_kept, n_total)
    return {
        "task": task,
        "n_total": n_total,
        "n_kept": n_kept,
        "density": density,
        "sparsity": 1.0 - density,
        "per_tensor": per_tensor,
        "per_layer": per_layer,
    }


@typechecked
def param_percent_one(maskset: MaskSet, task: str) -> float:
    """Param% One: percent of the model's parameters one task needs.

    Raises:
        ValueError: If ``maskset.n_model_params`` is unknown.
        MaskError: If the task is unknown.
    """
    n_unprunable = _n_unprunable(maskset)
    return 100.0 * (maskset.kept(task) + n_unprunable) / maskset.n_model_params


def _union_count(maskset: MaskSet) -> int:
    masks = [maskset.mask(t) for t in maskset.tasks]
    total = 0
    for name in maskset.names:
        union = masks[0][name].cpu().clone()
        for m in masks[1:]:
            union.logical_or_(m[name].cpu())
        total += int(union.sum())
    return total


@typechecked
def param_percent_all(maskset: MaskSet, mode: str) -> float:
    """Param% All: percent of the model's parameters all tasks need together.

    Args:
        maskset: The masks of all tasks.
        mode: ``multi_task`` (shared weights: the union of masks), ``single_task``
            (separate models: the sum of One over tasks) or ``task_agnostic`` (one mask
            shared by all tasks: its One; every task's mask must be that mask).

    Returns:
        The percentage.

    Raises:
        ValueError: For an unknown mode, no tasks, unknown ``n_model_params``, or
            differing masks in ``task_agnostic`` mode.
    """
    if mode not in SYSTEM_KINDS:
        raise ValueError(f"mode must be one of {SYSTEM_KINDS}, got {mode!r}")
    if not maskset.tasks:
        raise ValueError("the mask set has no tasks")
    n_unprunable = _n_unprunable(maskset)
    if mode == SystemKind.SINGLE_TASK:
        return sum(param_percent_one(maskset, t) for t in maskset.tasks)
    if mode == SystemKind.TASK_AGNOSTIC:
        first = maskset.mask(maskset.tasks[0])
        for t in maskset.tasks[1:]:
            if any(not torch.equal(first[n], m) for n, m in maskset.mask(t).items()):
                raise ValueError(
                    f"task_agnostic Param% needs one shared mask; {t!r} differs "
                    f"from {maskset.tasks[0]!r}"
                )
        return param_percent_one(maskset, maskset.tasks[0])
    return 100.0 * (_union_count(maskset) + n_unprunable) / maskset.n_model_params


@typechecked
def overlap_matrix(maskset: MaskSet, include_unprunable: bool = False) -> dict:
    """Pairwise IoU of the task masks, overall and per tensor.

    Args:
        maskset: The masks.
        include_unprunable: Count never-pruned parameters (kept by every task) in
            both intersection and union (needs ``n_model_params``).

    Returns:
        ``{"tasks": [...], "overall": [[...]], "per_tensor": {name: [[...]]}}``, ratios
        in ``[0, 1]``, symmetric with 1.0 on the diagonal.

    Raises:
        ValueError: If ``include_unprunable`` and ``n_model_params`` is unknown.
    """
    tasks = list(maskset.tasks)
    extra = _n_unprunable(maskset) if include_unprunable else 0
    masks = [maskset.mask(t) for t in tasks]
    size = len(tasks)
    inter_total = [[0] * size for _ in range(size)]
    kept_total = [extra] * size
    per_tensor = {}
    for name in maskset.names:
        ms = [m[name].cpu() for m in masks]
        kept = [int(m.sum()) for m in ms]
        mat = [[1.0] * size for _ in range(size)]
        for i in range(size):
            kept_total[i] += kept[i]
            inter_total[i][i] += kept[i]
            for j in range(i + 1, size):
                inter = int(torch.logical_and(ms[i], ms[j]).sum())
                inter_total[i][j] += inter
                mat[i][j] = mat[j][i] = _ratio(inter, kept[i] + kept[j] - inter)
        per_tensor[name] = mat
    overall = [[1.0] * size for _ in range(size)]
    for i in range(size):
        for j in range(i + 1, size):
            inter = inter_total[i][j] + extra
            union = kept_total[i] + kept_total[j] - inter
            overall[i][j] = overall[j][i] = _ratio(inter, union)
    return {"tasks": tasks, "overall": overall, "per_tensor": per_tensor}


@typechecked
def union_ratio(maskset: MaskSet, include_unprunable: bool = False) -> float:
    """|union of the task masks| / masked weights (or / all parameters).

    Args:
        maskset: The masks.
        include_unprunable: Use ``(|union| + n_unprunable) / n_model_params``.

    Returns:
        The ratio in ``[0, 1]``.
    """
    union = _union_count(maskset)
    if include_unprunable:
        return (union + _n_unprunable(maskset)) / maskset.n_model_params
    return _ratio(union, maskset.numel())


@typechecked
def full_report(maskset: MaskSet) -> dict:
    """Everything above in one JSON-serialisable dict.

    Returns:
        ``{"n_model_params", "n_prunable", "n_unprunable", "tasks": {task: sparsity},
        "param_percent": {"one": {task: %}, "all": {mode: %}} or None, "overlap",
        "union_ratio"}``. ``param_percent["all"]["task_agnostic"]`` is None unless all
        masks are equal.
    """
    n_params = maskset.n_model_params
    param_percent = None
    if n_params is not None and maskset.tasks:
        all_ = {}
        for mode in SYSTEM_KINDS:
            try:
                all_[mode] = param_percent_all(maskset, mode)
            except ValueError:
                all_[mode] = None
        param_percent = {
            "one": {t: param_percent_one(maskset, t) for t in maskset.tasks},
            "all": all_,
        }
    return {
        "n_model_params": n_params,
        "n_prunable": maskset.numel(),
        "n_unprunable": None if n_params is None else n_params - maskset.numel(),
        "tasks": {t: sparsity_report(maskset, t) for t in maskset.tasks},
        "param_percent": param_percent,
        "overlap": overlap_matrix(maskset) if maskset.tasks else None,
        "union_ratio": union_ratio(maskset) if maskset.tasks else None,
    }


def _table(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100.0 * x:.2f}"


@typechecked
def format_report(
    report: Mapping,
    tasks: Optional[Sequence[str]] = None,
    per_layer: bool = True,
    per_tensor: bool = False,
) -> str:
    """Readable aligned tables of a :func:`full_report`.

    Args:
        report: The output of :func:`full_report` (or its JSON).
        tasks: Show only these tasks (all if None).
        per_layer: Include the per-layer density table.
        per_tensor: Include the per-tensor density table.

    Returns:
        The text.
    """
    shown = list(report["tasks"]) if tasks is None else list(tasks)
    pp = report.get("param_percent")
    out = [
        f"model parameters: {report['n_model_params'] or 'unknown'}   "
        f"prunable: {report['n_prunable']}   "
        f"never pruned: {report['n_unprunable'] if report['n_unprunable'] is not None else 'unknown'}",
        "",
    ]
    rows = []
    for t in shown:
        r = report["tasks"][t]
        one = "-" if pp is None else f"{pp['one'][t]:.2f}"
        rows.append(
            [t, r["n_kept"], r["n_total"], _pct(r["density"]), _pct(r["sparsity"]), one]
        )
    out.append(
        _table(
            ["task", "kept", "prunable", "density%", "sparsity%", "Param% One"], rows
        )
    )
    if pp is not None:
        out += [
            "",
            "Param% All: "
            + "   ".join(
                f"{m} {'-' if v is None else f'{v:.2f}'}" for m, v in pp["all"].items()
            ),
        ]
    if report.get("union_ratio") is not None:
        out.append(f"union ratio (of prunable): {_pct(report['union_ratio'])} %")
    overlap = report.get("overlap")
    if overlap and len(overlap["tasks"]) > 1:
        idx = [overlap["tasks"].index(t) for t in shown]
        out += ["", "overlap (IoU %, prunable weights):"]
        rows = [
            [shown[a], *(_pct(overlap["overall"][i][j]) for j in idx)]
            for a, i in enumerate(idx)
        ]
        out.append(_table(["", *shown], rows))
    for flag, key, title in (
        (per_layer, "per_layer", "layer"),
        (per_tensor, "per_tensor", "tensor"),
    ):
        if not flag or not shown:
            continue
        first = report["tasks"][shown[0]][key]
        rows = [
            [name, first[name]["numel"]]
            + [_pct(report["tasks"][t][key][name]["density"]) for t in shown]
            for name in first
        ]
        out += ["", f"density % per {title}:"]
        out.append(_table([title, "numel", *shown], rows))
    return "\n".join(out) + "\n"
