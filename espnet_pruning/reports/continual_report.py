"""The continual-learning report of one run (the paper's §4.1 and Figure 2).

For every system (masked subnetworks at each pruning level, dense fine-tuning, dense with
only the encoder's linear layers updated) the run's checkpoints were decoded on every
test set. This module turns their scores into

* the series ``system, step, task, metric, value`` (step 0 = the model before continual
  training; step e·K after epoch e, K = ``num_iters_per_epoch`` of the run's config);
* a before/after table per task and system, and the question of the paper: did the
  masked model forget less? "Forgetting" of a system is the mean over the *other*
  tasks of its score change, signed so that a positive number is a loss (accuracy down,
  WER up).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.errors import DataError
from espnet_pruning.fileio import read_yaml
from espnet_pruning.reports.pruning_table import parse_test_sets, read_score


@dataclass
class ContinualSystem:
    """One line of the curves: a name, where its start and its checkpoints were decoded.

    Args:
        name: e.g. ``masked_q2``, ``dense``, ``dense_enc_linear``.
        start_exp: Experiment whose ``decode_<set>`` dirs score the starting model.
        exp: The continual run (``curve/ep<e>/decode_<set>`` per checkpoint).
    """

    name: str
    start_exp: Path
    exp: Path

    @classmethod
    @typechecked
    def parse(cls, text: str) -> "ContinualSystem":
        """From ``NAME:START_EXP:EXP``."""
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise DataError(f"--system {text!r}: expected NAME:START_EXP:EXP")
        return cls(parts[0], Path(parts[1]), Path(parts[2]))

    def steps_per_epoch(self) -> Optional[int]:
        """K, the iterations between two checkpoints (None if the config has none)."""
        config = self.exp / "config.yaml"
        if not config.is_file():
            raise DataError(f"{config}: not found (run the continual training stage)")
        return (read_yaml(config) or {}).get("num_iters_per_epoch")

    def epochs(self) -> List[int]:
        """Epochs whose checkpoints were decoded."""
        curve = self.exp / "curve"
        found = sorted(
            int(p.name[2:])
            for p in curve.glob("ep*")
            if p.is_dir() and p.name[2:].isdigit()
        )
        if not found:
            raise DataError(f"{curve}: no decoded checkpoints (run stages 18-19)")
        return found


@typechecked
def collect_series(
    systems: Sequence[ContinualSystem], test_sets: Sequence[str]
) -> Tuple[List[Dict], Dict[str, Dict]]:
    """Series rows of every system, task and checkpoint, and the tasks' metric info.

    Returns:
        ``(rows, tasks)``: rows ``{system, step, task, metric, value}``; tasks
        ``{task: {metric, higher_is_better}}``.

    Raises:
        DataError: For a malformed ``SET:TASK`` or a missing score.
    """
    sets = parse_test_sets(test_sets)
    rows, tasks = [], {}
    for system in systems:
        k = system.steps_per_epoch()
        points = [(0, lambda d: system.start_exp / f"decode_{d}")]
        for e in system.epochs():
            points.append(
                (
                    e * (k or 1),
                    lambda d, e=e: system.exp / "curve" / f"ep{e}" / f"decode_{d}",
                )
            )
        for step, where in points:
            for dset, task in sets:
                score = read_score(where(dset))
                tasks[task] = dict(
                    metric=score["name"],
                    higher_is_better=score.get("higher_is_better", True),
                )
                rows.append(
                    dict(
                        system=system.name,
                        step=step,
                        task=task,
                        metric=score["name"],
                        value=float(score["value"]),
                    )
                )
    return rows, tasks


@typechecked
def before_after(rows: Sequence[Dict]) -> Dict[str, Dict[str, Tuple[float, float]]]:
    """``{system: {task: (value at step 0, value at the last step)}}``."""
    out: Dict[str, Dict[str, Tuple[float, float]]] = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        last = max(r["step"] for r in mine)
        out[system] = {
            r["task"]: (
                r["value"],
                next(
                    x["value"]
                    for x in mine
                    if x["task"] == r["task"] and x["step"] == last
                ),
            )
            for r in mine
            if r["step"] == 0
        }
    return out


@typechecked
def forgetting(
    changes: Dict[str, Tuple[float, float]],
    tasks: Dict[str, Dict],
    new_task: str,
) -> float:
    """Mean loss of score over the tasks other than ``new_task`` (positive = forgot).

    Examples:
        >>> info = {"er": {"higher_is_better": True}, "asr": {"higher_is_better": False},
        ...         "ic": {"higher_is_better": True}}
        >>> forgetting({"er": (70.0, 60.0), "asr": (10.0, 14.0), "ic": (80.0, 90.0)},
        ...            info, "ic")
        7.0
    """
    losses = []
    for task, (before, after) in changes.items():
        if task == new_task:
            continue
        sign = 1.0 if tasks[task]["higher_is_better"] else -1.0
        losses.append(sign * (before - after))
    if not losses:
        raise DataError("no task besides the continual-learning task to measure")
    return sum(losses) / len(losses)


@typechecked
def format_report(
    name: str,
    new_task: str,
    new_data: str,
    rows: Sequence[Dict],
    tasks: Dict[str, Dict],
    figure: Optional[str] = None,
) -> Tuple[str, Dict]:
    """Markdown section and JSON summary of one continual-learning run."""
    table = before_after(rows)
    systems = list(table)
    forgot = {s: forgetting(table[s], tasks, new_task) for s in systems}
    gain = {}
    for s in systems:
        before, after = table[s][new_task]
        gain[s] = (after - before) * (1 if tasks[new_task]["higher_is_better"] else -1)
    lines = [
        f"## Continual learning: {name} (new {new_task} data: `{new_data}`)",
        "",
        "Each cell: before → after continual training. Forgetting: mean loss over the "
        "other tasks (points; positive = worse). Gain: improvement on "
        f"{new_task} (points).",
        "",
        "|system|"
        + "|".join(
            f"{t} {tasks[t]['metric']}{'↑' if tasks[t]['higher_is_better'] else '↓'}"
            for t in tasks
        )
        + "|gain|forgetting|",
        "|---|" + "---|" * (len(tasks) + 2),
    ]
    for s in systems:
        cells = [f"{table[s][t][0]:.1f} → {table[s][t][1]:.1f}" for t in tasks]
        lines.append(f"|{s}|" + "|".join(cells) + f"|{gain[s]:+.1f}|{forgot[s]:+.1f}|")
    verdicts = []
    masked = [s for s in systems if s.startswith("masked")]
    for m in masked:
        for d in (s for s in systems if s.startswith("dense")):
            less = forgot[m] < forgot[d]
            verdicts.append(dict(masked=m, dense=d, masked_forgot_less=less))
            lines.append(
                f"- {m} forgot {'less' if less else 'not less'} than {d}: "
                f"{forgot[m]:+.1f} vs {forgot[d]:+.1f} points."
            )
    if figure:
        lines += ["", f"![forgetting curves of {name}]({figure})"]
    summary = dict(
        name=name,
        task=new_task,
        new_data=new_data,
        before_after={s: {t: list(v) for t, v in c.items()} for s, c in table.items()},
        gain=gain,
        forgetting=forgot,
        verdicts=verdicts,
    )
    return "\n".join(lines) + "\n", summary
