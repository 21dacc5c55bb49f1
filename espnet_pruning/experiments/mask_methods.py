"""The registry of mask methods a recipe can run in stage 10 (docs/methods.md §6).

A method finds every task's mask at a pruning *level* Q, the level of the core method's
tables: Q rounds of Algorithm 1 at fraction p reach sparsity ``1 − (1 − p)^Q`` (36 % at
Q = 2, p = 0.2), and a one-shot method aims at that sparsity directly, so all methods
are compared at the same Param%. Each writes the same mask-set format with its reports;
stage 11 (Algorithm 2) trains the shared weights under the masks whatever found them.

=================  ==========================================================  ===========
method             what it is                                                  runs
=================  ==========================================================  ===========
``imp_lth``        Algorithm 1: Q rounds, each trains from θ0 and prunes p      per round
``random``         Algorithm 1's schedule with random instead of magnitude      per round
``parp``           PARP at the level's sparsity, one run per task from θ0       per level
``parp_p``         PARP-P: rises through the sparsities of levels 1..Q          per level
=================  ==========================================================  ===========

Per-round methods need level Q − 1's masks; per-level methods start from θ0 (their
``mask_dir`` only names the tasks and the pruned tensors).
"""

from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import FindMasksHparams, find_masks_round
from espnet_pruning.experiments.parp_masks import find_parp_masks
from espnet_pruning.pruning.parp import ParpHparams


@dataclass(frozen=True)
class MaskMethod:
    """One entry of :data:`MASK_METHODS`.

    Args:
        name: The key (``--mask_method``).
        summary: One line for help texts.
        spec: Where the method is specified (``docs/methods.md`` section).
        per_round: Whether level Q is built from level Q − 1's masks.
    """

    name: str
    summary: str
    spec: str
    per_round: bool


MASK_METHODS: Dict[str, MaskMethod] = {
    m.name: m
    for m in (
        MaskMethod(
            "imp_lth",
            "iterative magnitude pruning with rewinding to θ0 (Algorithm 1)",
            "docs/methods.md §1.2",
            True,
        ),
        MaskMethod(
            "random",
            "Algorithm 1's schedule, random masks (the control)",
            "docs/methods.md §1.2",
            True,
        ),
        MaskMethod(
            "parp",
            "PARP: train all weights, re-prune by magnitude every interval",
            "docs/methods.md §4",
            False,
        ),
        MaskMethod(
            "parp_p",
            "PARP-P: PARP rising through the sparsities of levels 1..Q",
            "docs/methods.md §4",
            False,
        ),
    )
}

#: Method options a recipe's method config may not set (the level decides them).
_PARP_BY_LEVEL = ("target_sparsity", "schedule", "rounding")


@typechecked
def level_sparsity(fraction: float, level: int) -> float:
    """The sparsity of Q rounds at fraction p, ``1 − (1 − p)^Q``, as an exact decimal.

    Examples:
        >>> level_sparsity(0.2, 2), level_sparsity(0.2, 5)
        (0.36, 0.67232)
    """
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    return float(1 - (1 - Fraction(repr(float(fraction)))) ** level)


@typechecked
def parp_hparams(
    method: str, fraction: float, level: int, rounding: str, conf: Mapping[str, Any]
) -> ParpHparams:
    """PARP's hyperparameters at a level: the method config plus the level's sparsity.

    ``parp`` prunes to ``level_sparsity(p, Q)``; ``parp_p`` rises through
    ``level_sparsity(p, 1), ..., level_sparsity(p, Q)``, each an equal share of the run.

    Raises:
        InputError: A key the config may not set or does not know, or a bad value.

    Examples:
        >>> parp_hparams("parp_p", 0.2, 3, "round", {"reprune_interval": 2}).schedule
        '0.2,0.36,0.488'
    """
    known = {f.name for f in fields(ParpHparams)} - set(_PARP_BY_LEVEL)
    bad = sorted(set(conf) - known)
    if bad:
        raise InputError(
            f"{method} config: key(s) {bad} not allowed (the level sets "
            f"{list(_PARP_BY_LEVEL)}); allowed: {sorted(known)}"
        )
    stages = [level_sparsity(fraction, q) for q in range(1, level + 1)]
    schedule = ",".join(repr(s) for s in stages) if method == "parp_p" else ""
    try:
        return ParpHparams(
            **conf, target_sparsity=stages[-1], schedule=schedule, rounding=rounding
        )
    except (TypeError, ValueError) as e:
        raise InputError(f"{method} config: {e}") from None


@typechecked
def find_level_masks(
    method: str,
    init_param: Path,
    mask_dir: Path,
    output_dir: Path,
    train_args: Sequence[str],
    find_hparams: FindMasksHparams,
    level: int,
    method_conf: Optional[Mapping[str, Any]] = None,
    only_tasks: Optional[Sequence[str]] = None,
) -> Optional[Path]:
    """Find the masks of level ``level`` with ``method``.

    Args:
        method: A key of :data:`MASK_METHODS`.
        init_param: θ0.
        mask_dir: Level Q − 1's masks (per-round methods) or any mask set naming the
            tasks and pruned tensors (per-level methods, e.g. level 0's).
        output_dir: The level's directory.
        train_args: ``uslu_train`` options of each run.
        find_hparams: Algorithm 1's hyperparameters (p, strategy, rounding, seed,
            task-agnostic); p and rounding also set PARP's sparsity.
        level: Q, 1-based.
        method_conf: The method's own options (PARP: ``reprune_interval``, ``scope``).
        only_tasks: Run only these tasks; a later call without them merges.

    Returns:
        The masks' directory (None with ``only_tasks``).

    Raises:
        InputError: An unknown method or bad options.
    """
    if method not in MASK_METHODS:
        raise InputError(
            f"unknown mask method {method!r}; choose from {sorted(MASK_METHODS)}"
        )
    conf = dict(method_conf or {})
    if MASK_METHODS[method].per_round:
        if conf:
            raise InputError(f"{method} has no method options, got {sorted(conf)}")
        if method == "random":
            find_hparams = FindMasksHparams(
                **{**vars(find_hparams), "strategy": "random"}
            )
        return find_masks_round(
            init_param,
            mask_dir,
            output_dir,
            train_args,
            find_hparams,
            level,
            only_tasks=only_tasks,
        )
    hparams = parp_hparams(
        method, find_hparams.fraction, level, find_hparams.rounding, conf
    )
    return find_parp_masks(
        init_param,
        mask_dir,
        output_dir,
        train_args,
        hparams,
        only_tasks=only_tasks,
        task_agnostic=find_hparams.task_agnostic,
    )
