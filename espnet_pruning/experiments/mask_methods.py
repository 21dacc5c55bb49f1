"""The registry of mask methods a recipe can run in stage 10 (docs/methods.md §6).

A method finds every task's mask at a pruning *level* Q, the level of the core method's
tables: Q rounds of Algorithm 1 at fraction p reach sparsity ``1 − (1 − p)^Q`` (36 % at
Q = 2, p = 0.2), and a one-shot method aims at that sparsity directly, so all methods
are compared at the same Param%. Each writes the same mask-set format with its reports;
stage 11 (Algorithm 2) trains the shared weights under the masks whatever found them.

====================  =======================================================  =========
method                what it is                                               runs
====================  =======================================================  =========
``imp_lth``           Algorithm 1: Q rounds, each trains from θ0 and prunes p  per round
``imp``               Algorithm 1 without rewinding (IMP): rounds continue     per round
``omp``               one round of Algorithm 1 to the level's sparsity (OMP)   per level
``random``            Algorithm 1's schedule with random instead of magnitude  per round
``parp``              PARP at the level's sparsity, one run per task from θ0   per level
``parp_p``            PARP-P: rises through the sparsities of levels 1..Q      per level
``s3_router``         S3-Router: scores over frozen θ0, ORI, FFN, per tensor   per level
``s3_router_p``       S3-Router-P: WMI, FFN and attention (θ0 is fine-tuned)   per level
``dynamic_pathways``  Dynamic ASR Pathways: one multi-task run from θ0         per level
``hard_concrete``     HJ-Pruning: gates over heads and FFN units, structured   per level
====================  =======================================================  =========

Per-round methods need level Q − 1's masks; per-level methods start from θ0 (their
``mask_dir`` only names the tasks and the pruned tensors).
"""

from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.experiments.find_masks import FindMasksHparams, find_masks_round
from espnet_pruning.experiments.hard_concrete_masks import MODES as HC_MODES
from espnet_pruning.experiments.hard_concrete_masks import find_hard_concrete_masks
from espnet_pruning.experiments.parp_masks import find_parp_masks
from espnet_pruning.experiments.pathways_masks import find_pathways_masks
from espnet_pruning.experiments.s3_router_masks import find_s3_router_masks
from espnet_pruning.pruning.hard_concrete import HardConcreteHparams
from espnet_pruning.pruning.parp import ParpHparams
from espnet_pruning.pruning.pathways import DynamicPathwaysHparams
from espnet_pruning.pruning.s3_router import S3RouterHparams


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
            "imp",
            "Algorithm 1 with rewind none (IMP): each round continues the last",
            "docs/methods.md §1.2",
            True,
        ),
        MaskMethod(
            "omp",
            "one round of Algorithm 1 from θ0 to the level's sparsity (OMP)",
            "docs/methods.md §1.2",
            False,
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
        MaskMethod(
            "s3_router",
            "S3-Router: per-task top-k scores over frozen θ0 (ORI, FFN only)",
            "docs/methods.md §5",
            False,
        ),
        MaskMethod(
            "s3_router_p",
            "S3-Router-P: scores over frozen θ0 (WMI, FFN and attention)",
            "docs/methods.md §5",
            False,
        ),
        MaskMethod(
            "dynamic_pathways",
            "Dynamic ASR Pathways: per-task masks adapt and shrink in one run",
            "docs/methods.md §3",
            False,
        ),
        MaskMethod(
            "hard_concrete",
            "HJ-Pruning: Hard-Concrete gates remove whole heads and FFN units",
            "docs/methods.md §2",
            False,
        ),
    )
}

#: S3-Router's defaults per method (paper 004 §4.1 and §5; docs/methods.md §5); the
#: method config may override them, the level sets ``keep_ratio``.
_S3_DEFAULTS = {
    "s3_router": dict(modules="ffn", init="ori", scope="per_tensor"),
    "s3_router_p": dict(modules="both", init="wmi", scope="per_tensor"),
}


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


def _hparams_at_level(
    cls: type, method: str, conf: Mapping[str, Any], by_level: Mapping[str, Any]
):
    """``cls(**conf, **by_level)``: a method config may not set what the level sets.

    Raises:
        InputError: A key the config may not set or does not know, or a bad value.
    """
    known = {f.name for f in fields(cls)} - set(by_level)
    bad = sorted(set(conf) - known)
    if bad:
        raise InputError(
            f"{method} config: key(s) {bad} not allowed (the level sets "
            f"{sorted(by_level)}); allowed: {sorted(known)}"
        )
    try:
        return cls(**conf, **by_level)
    except (TypeError, ValueError) as e:
        raise InputError(f"{method} config: {e}") from None


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
    stages = [level_sparsity(fraction, q) for q in range(1, level + 1)]
    schedule = ",".join(repr(s) for s in stages) if method == "parp_p" else ""
    return _hparams_at_level(
        ParpHparams,
        method,
        conf,
        dict(target_sparsity=stages[-1], schedule=schedule, rounding=rounding),
    )


@typechecked
def s3_router_hparams(
    method: str, fraction: float, level: int, conf: Mapping[str, Any]
) -> S3RouterHparams:
    """S3-Router's hyperparameters at a level: defaults, method config, level.

    The kept fraction is ``1 − level_sparsity(p, Q)`` (exact decimal) of the routed
    weights.

    Raises:
        InputError: ``keep_ratio`` or an unknown key in the config, or a bad value.

    Examples:
        >>> hp = s3_router_hparams("s3_router_p", 0.2, 2, {"seed": 3})
        >>> (hp.keep_ratio, hp.modules, hp.init, hp.seed)
        (0.64, 'both', 'wmi', 3)
    """
    sparsity = Fraction(repr(level_sparsity(fraction, level)))
    return _hparams_at_level(
        S3RouterHparams,
        method,
        {**_S3_DEFAULTS[method], **conf},
        dict(keep_ratio=float(1 - sparsity)),
    )


@typechecked
def pathways_hparams(
    fraction: float, level: int, conf: Mapping[str, Any]
) -> Tuple[DynamicPathwaysHparams, float]:
    """Dynamic ASR Pathways' hyperparameters at a level, and the start sparsity.

    The target is ``level_sparsity(p, Q)``; the config may set every other field and
    ``init_sparsity`` (default p, the paper's 20 % start, at most the target).

    Raises:
        InputError: ``target_sparsity`` or an unknown key in the config, a bad value.

    Examples:
        >>> hp, s0 = pathways_hparams(0.2, 2, {"prune_interval": 9})
        >>> hp.target_sparsity, hp.prune_interval, s0
        (0.36, 9, 0.2)
    """
    conf = dict(conf)
    target = level_sparsity(fraction, level)
    init = conf.pop("init_sparsity", min(fraction, target))
    if isinstance(init, bool) or not isinstance(init, (int, float)):
        raise InputError(f"dynamic_pathways config: init_sparsity {init!r}: a number")
    hparams = _hparams_at_level(
        DynamicPathwaysHparams,
        "dynamic_pathways",
        conf,
        dict(target_sparsity=target),
    )
    return hparams, float(init)


@typechecked
def hard_concrete_hparams(
    fraction: float, level: int, conf: Mapping[str, Any]
) -> Tuple[HardConcreteHparams, str, int]:
    """HJ-Pruning's hyperparameters at a level, its mode and seed.

    The target expected sparsity of the gated structures is ``level_sparsity(p, Q)``;
    the config may set every other field, ``mode`` (``single_task``, the paper's, or
    ``multi_task``) and ``seed``.

    Raises:
        InputError: ``target_sparsity`` or an unknown key in the config, a bad value.

    Examples:
        >>> hp, mode, seed = hard_concrete_hparams(0.2, 2, {"mode": "multi_task"})
        >>> hp.target_sparsity, hp.variant, mode, seed
        (0.36, 'size', 'multi_task', 0)
    """
    conf = dict(conf)
    mode = conf.pop("mode", "single_task")
    seed = conf.pop("seed", 0)
    if mode not in HC_MODES:
        raise InputError(f"hard_concrete config: mode {mode!r}: one of {HC_MODES}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"hard_concrete config: seed {seed!r}: an int")
    hparams = _hparams_at_level(
        HardConcreteHparams,
        "hard_concrete",
        conf,
        dict(target_sparsity=level_sparsity(fraction, level)),
    )
    return hparams, mode, seed


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
        method_conf: The method's own options (PARP: ``reprune_interval``, ``scope``;
            S3-Router: :class:`S3RouterHparams` fields but ``keep_ratio``; Dynamic
            Pathways: :class:`DynamicPathwaysHparams` fields but
            ``target_sparsity``, and ``init_sparsity``; HJ-Pruning:
            :class:`HardConcreteHparams` fields but ``target_sparsity``, ``mode``,
            ``seed``).
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
    if method in ("imp_lth", "imp", "omp", "random"):
        if conf:
            raise InputError(f"{method} has no method options, got {sorted(conf)}")
        variant = dict(
            imp=dict(rewind="none"),
            random=dict(strategy="random"),
            # One round from the all-ones masks straight to the level's sparsity.
            omp=dict(fraction=level_sparsity(find_hparams.fraction, level)),
        ).get(method, {})
        find_hparams = FindMasksHparams(**{**vars(find_hparams), **variant})
        return find_masks_round(
            init_param,
            mask_dir,
            output_dir,
            train_args,
            find_hparams,
            level,
            only_tasks=only_tasks,
        )
    if method == "hard_concrete":
        hparams, mode, seed = hard_concrete_hparams(find_hparams.fraction, level, conf)
        return find_hard_concrete_masks(
            init_param,
            mask_dir,
            output_dir,
            train_args,
            hparams,
            mode=mode,
            seed=seed,
            only_tasks=only_tasks,
            task_agnostic=find_hparams.task_agnostic,
        )
    if method == "dynamic_pathways":
        hparams, init_sparsity = pathways_hparams(find_hparams.fraction, level, conf)
        return find_pathways_masks(
            init_param,
            mask_dir,
            output_dir,
            train_args,
            hparams,
            init_sparsity,
            only_tasks=only_tasks,
            task_agnostic=find_hparams.task_agnostic,
        )
    if method in _S3_DEFAULTS:
        return find_s3_router_masks(
            init_param,
            mask_dir,
            output_dir,
            train_args,
            s3_router_hparams(method, find_hparams.fraction, level, conf),
            only_tasks=only_tasks,
            task_agnostic=find_hparams.task_agnostic,
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
