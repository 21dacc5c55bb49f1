"""Pruning strategies: which kept weights to drop in one pruning round.

Conventions (docs/pruning_pitfalls.md §4):

* **Fraction of the remaining weights.** One round prunes ``num_to_prune(kept, p)`` of
  the weights the mask still keeps, and only kept weights compete, so masks nest
  (``m_{k+1} <= m_k``) and density after ``q`` rounds is ``(1 - p)^q`` up to rounding.
  ``fraction_of="total"`` prunes ``p`` of all masked weights instead (Dynamic ASR
  Pathways' convention).
* **Rounding.** ``round`` is Python's ``round`` (half to even), as
  ``torch.nn.utils.prune`` uses (``round(0.4 * 17) == 7``); ``ceil`` (open_lth) and
  ``floor`` are available. The fraction is taken as the exact decimal it prints as
  (``0.2`` is 1/5), so ``ceil(0.2 * 15)`` is 3, not 4.
* **Exact count and deterministic ties.** Kept weights are ordered by the key
  ``(|w|, position of the tensor name in sorted order, row-major flat index)`` and the
  first ``k`` are pruned. Hence exactly ``k`` weights go, and the result is the same on
  CPU, GPU and every rank even when many fp16-valued weights tie at the threshold.
* **Memory.** The k-th smallest ``|w|`` is found by an exact radix select over the
  float bits (``|w|`` of a float is ordered like its bit pattern with the sign cleared):
  one histogram pass per 16-bit digit (two for fp32, four for fp64), over chunks of
  each tensor. Extra memory is a few chunk-sized buffers and a 65,537-bin histogram; no
  concatenated copy, no sort, no ``torch.quantile``. A last pass writes the new masks.

All functions return new mask dicts and never modify weights or input masks.
"""

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
from typeguard import typechecked

from espnet_pruning.hparams import Hparams
from espnet_pruning.pruning.masks import Mask, MaskError, _as_bool_mask

ROUNDINGS = ("round", "ceil", "floor")
FRACTION_OF = ("remaining", "total")

#: Elements per chunk: large enough to amortise per-op and threading overhead, small
#: enough that the few chunk-sized temporaries stay a few tens of MB.
_CHUNK = 1 << 22
_DIGIT = 16
_BINS = 1 << _DIGIT


@typechecked
def num_to_prune(n_remaining: int, fraction: float, rounding: str = "round") -> int:
    """How many of ``n_remaining`` weights one round at ``fraction`` prunes.

    Args:
        n_remaining: Weights still kept (or the total, for ``fraction_of="total"``).
        fraction: Fraction in ``[0, 1]``, read as the decimal it prints as.
        rounding: ``round`` (half to even, like Python's ``round`` and
            ``torch.nn.utils.prune``), ``ceil`` or ``floor``.

    Returns:
        The count, between 0 and ``n_remaining``.

    Raises:
        ValueError: For a negative count, a fraction outside ``[0, 1]`` or an unknown
            rounding.

    Examples:
        >>> num_to_prune(17, 0.4), num_to_prune(15, 0.2, "ceil"), num_to_prune(5, 0.5)
        (7, 3, 2)
    """
    if n_remaining < 0:
        raise ValueError(f"n_remaining must be >= 0, got {n_remaining}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    exact = Fraction(repr(float(fraction))) * n_remaining
    if rounding == "round":
        return int(round(exact))
    if rounding == "ceil":
        return int(math.ceil(exact))
    if rounding == "floor":
        return int(math.floor(exact))
    raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


# --------------------------------------------------------------------- radix select
def _key_float(weights: Mapping[str, torch.Tensor], names: List[str]) -> torch.dtype:
    # fp16/bf16/fp32 map into fp32 exactly; fp64 needs 64-bit keys.
    return (
        torch.float64
        if any(weights[n].dtype == torch.float64 for n in names)
        else torch.float32
    )


def _keys(chunk: torch.Tensor, key_float: torch.dtype) -> torch.Tensor:
    """Non-negative integers ordered exactly like ``|chunk|`` (sign bit cleared)."""
    if chunk.dtype != key_float:
        chunk = chunk.to(key_float)
    if key_float == torch.float32:
        return chunk.view(torch.int32) & 0x7FFFFFFF
    return chunk.view(torch.int64) & 0x7FFFFFFFFFFFFFFF


def _chunks(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    names: List[str],
    key_float: torch.dtype,
) -> Iterator[Tuple[str, int, torch.Tensor, torch.Tensor]]:
    """``(name, start, keys, mask)`` chunks in the global order."""
    for name in names:
        w = weights[name].detach().reshape(-1)
        m = mask[name].to(w.device).reshape(-1)
        for start in range(0, w.numel(), _CHUNK):
            stop = start + _CHUNK
            yield name, start, _keys(w[start:stop], key_float), m[start:stop]


def _check_no_nan(weights, mask, names, key_float) -> None:
    inf_key = int(_keys(torch.tensor([math.inf], dtype=key_float), key_float))
    for name, _, key, m in _chunks(weights, mask, names, key_float):
        if ((key > inf_key) & m).any():
            raise ValueError(f"weight {name!r} has NaN entries")


def _kth_smallest(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    names: List[str],
    k: int,
) -> Tuple[int, int]:
    """Key ``v`` of the k-th smallest kept ``|w|`` (1-based) and #kept keys ``< v``."""
    key_float = _key_float(weights, names)
    n_bits = 32 if key_float == torch.float32 else 64
    shifts = list(range(n_bits - _DIGIT, -1, -_DIGIT))
    device = weights[names[0]].device
    ones = torch.ones(1, dtype=torch.int64, device=device)
    prefix, below, rank = 0, 0, k
    for i, shift in enumerate(shifts):
        # Bin _BINS collects masked-out entries in the first pass.
        hist = torch.zeros(_BINS + 1, dtype=torch.int64, device=device)
        for _, _, key, m in _chunks(weights, mask, names, key_float):
            if i == 0:
                digit = torch.where(m, key >> shift, _BINS)
            else:
                cand = key[m & ((key >> (shift + _DIGIT)) == prefix)]
                if cand.numel() == 0:
                    continue
                digit = (cand >> shift) & (_BINS - 1)
            digit = digit.to(device)
            hist.index_add_(0, digit, ones.expand(digit.numel()))
        if i == 0:
            inf_digit = 0x7F80 if key_float == torch.float32 else 0x7FF0
            if int(hist[inf_digit:_BINS].sum()):
                _check_no_nan(weights, mask, names, key_float)
        cum = hist[:_BINS].cumsum(0)
        j = int(torch.searchsorted(cum, torch.tensor([rank], device=device)))
        before = int(cum[j - 1]) if j > 0 else 0
        below += before
        rank -= before
        prefix = (prefix << _DIGIT) | j
    return prefix, below


@typechecked
def prune_smallest(
    scores: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], k: int
) -> Mask:
    """Prune exactly ``k`` kept entries with the smallest ``|score|`` across all tensors.

    Ties are broken by (tensor name in sorted order, row-major flat index): the earlier
    entry is pruned first.

    Args:
        scores: Tensor name → floating scores (e.g. weights); may hold extra names.
        mask: Tensor name → current mask (bool or 0/1); only its names take part.
        k: Number of kept entries to prune, ``0 <= k <= kept``.

    Returns:
        New bool masks (on the masks' devices), ``new <= mask`` element-wise.

    Raises:
        ValueError: For a name missing in ``scores``, a shape mismatch, non-floating
            scores, NaN among kept scores, or ``k`` out of range.
    """
    names = sorted(mask)
    mask = _validate(scores, mask, names)
    n_kept = sum(int(m.sum()) for m in mask.values())
    if not 0 <= k <= n_kept:
        raise ValueError(f"cannot prune {k} of {n_kept} kept weights")
    if k == 0:
        return {n: mask[n].clone() for n in names}
    if k == n_kept:
        return {n: torch.zeros_like(mask[n]) for n in names}
    v, below = _kth_smallest(scores, mask, names, k)
    ties = k - below  # entries equal to v that are pruned, earliest first
    key_float = _key_float(scores, names)
    out: Mask = {}
    for name in names:
        out[name] = torch.empty(
            scores[name].numel(), dtype=torch.bool, device=scores[name].device
        )
    for name, start, key, m in _chunks(scores, mask, names, key_float):
        o = out[name][start : start + key.numel()]
        if ties == 0:
            torch.ge(key, v, out=o)
            o.logical_and_(m)
            continue
        torch.gt(key, v, out=o)
        o.logical_and_(m)
        eq = (key == v).logical_and_(m)
        n_eq = int(eq.sum())
        if n_eq <= ties:
            ties -= n_eq
        else:
            o[eq.nonzero().squeeze(1)[ties:]] = True
            ties = 0
    return {
        n: out[n].view(mask[n].shape).to(mask[n].device, non_blocking=False)
        for n in names
    }


def _validate(
    scores: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    names: List[str],
) -> Mask:
    if not names:
        raise ValueError("no tensors to prune")
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"no weights for masked tensors {missing}")
    validated = {}
    for n in names:
        w = scores[n]
        if not w.is_floating_point():
            raise ValueError(f"weight {n!r} is {w.dtype}, not floating point")
        try:
            validated[n] = _as_bool_mask(n, mask[n], tuple(w.shape), "")
        except MaskError as e:
            raise ValueError(str(e)) from None
    return validated


# --------------------------------------------------------------------- strategies
def _count(mask: Mapping[str, torch.Tensor]) -> Tuple[int, int]:
    kept = sum(int(m.sum()) for m in mask.values())
    return kept, sum(m.numel() for m in mask.values())


def _k(kept: int, total: int, fraction: float, rounding: str, fraction_of: str) -> int:
    if fraction_of == "remaining":
        return num_to_prune(kept, fraction, rounding)
    if fraction_of == "total":
        return min(kept, num_to_prune(total, fraction, rounding))
    raise ValueError(f"fraction_of must be one of {FRACTION_OF}, got {fraction_of!r}")


@typechecked
def prune_global_magnitude(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    fraction: float,
    rounding: str = "round",
    fraction_of: str = "remaining",
) -> Mask:
    """One round of global magnitude pruning: one threshold across all tensors.

    Args:
        weights: Tensor name → weight (may hold extra names, e.g. a state dict).
        mask: Tensor name → current mask; its names are the prunable set.
        fraction: Fraction to prune (of the kept weights, or of all masked weights).
        rounding: ``round``, ``ceil`` or ``floor`` (see :func:`num_to_prune`).
        fraction_of: ``remaining`` (nested rounds, the core method) or ``total``.

    Returns:
        New bool masks; exactly ``num_to_prune(kept, fraction, rounding)`` fewer ones.

    Raises:
        ValueError: For invalid arguments, missing weights or shape mismatches.

    Examples:
        >>> w = {"a": torch.tensor([[1.0, 2, 3, 4], [-4, -3, -2, -1]]),
        ...      "b": torch.tensor([[0.0, 0.1, -2]])}
        >>> m = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
        >>> new = prune_global_magnitude(w, m, 4 / 11)
        >>> new["a"].int().tolist(), new["b"].int().tolist()
        ([[0, 1, 1, 1], [1, 1, 1, 0]], [[0, 0, 1]])
    """
    kept, total = _count(mask)
    return prune_smallest(
        weights, mask, _k(kept, total, fraction, rounding, fraction_of)
    )


@typechecked
def prune_layerwise_magnitude(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    fraction: float,
    rounding: str = "round",
    fraction_of: str = "remaining",
) -> Mask:
    """One round of layer-wise magnitude pruning: the same fraction in every tensor.

    Args and Raises as :func:`prune_global_magnitude`; counts are rounded per tensor.

    Returns:
        New bool masks.
    """
    out: Mask = {}
    for name in sorted(mask):
        one = {name: mask[name]}
        kept, total = _count(one)
        k = _k(kept, total, fraction, rounding, fraction_of)
        out.update(prune_smallest(weights, one, k))
    return out


@typechecked
def prune_random(
    mask: Mapping[str, torch.Tensor],
    target: Mapping[str, Union[torch.Tensor, int]],
    generator: Optional[torch.Generator] = None,
) -> Mask:
    """A random-mask control: random positions with given per-tensor kept counts.

    Only entries kept by ``mask`` can stay, so the result nests inside ``mask``.

    Args:
        mask: Tensor name → mask before pruning.
        target: Tensor name → the kept count to reach: an int, or a reference mask
            (e.g. the magnitude-pruned mask this control is compared with).
        generator: A CPU ``torch.Generator`` for reproducibility (global RNG if None).

    Returns:
        New bool masks with exactly the target count of ones per tensor.

    Raises:
        ValueError: For a missing target, or a target above the tensor's kept count.

    Examples:
        >>> before = {"w": torch.ones(4, 4, dtype=torch.bool)}
        >>> after = prune_random(before, {"w": 10}, torch.Generator().manual_seed(0))
        >>> int(after["w"].sum())
        10
    """
    out: Mask = {}
    for name in sorted(mask):
        if name not in target:
            raise ValueError(f"no target kept count for tensor {name!r}")
        m = mask[name]
        want = target[name]
        want = int(want.sum()) if isinstance(want, torch.Tensor) else want
        kept = int(m.sum())
        if not 0 <= want <= kept:
            raise ValueError(
                f"tensor {name!r}: cannot keep {want} of {kept} kept weights"
            )
        scores = torch.rand(m.shape, generator=generator)
        out.update(prune_smallest({name: scores}, {name: m.cpu()}, kept - want))
        out[name] = out[name].to(m.device)
    return out


# --------------------------------------------------------------------- registry
@dataclass
class PruningHparams(Hparams):
    """Hyperparameters of one pruning step (the defaults are the paper's).

    Args:
        strategy: Key of :data:`STRATEGIES`.
        fraction: Fraction to prune per round (0.2 in the core method).
        rounding: ``round`` (half to even), ``ceil`` or ``floor``.
        seed: Seed of the ``random`` strategy (and of Algorithm 1's task order).
        fraction_of: ``remaining`` (of the kept weights) or ``total``.
    """

    strategy: str = field(
        default="global_magnitude",
        metadata={
            "help": "global_magnitude (paper), layerwise_magnitude or random",
        },
    )
    fraction: float = field(
        default=0.2,
        metadata={"help": "p, the fraction of a mask's weights pruned per round"},
    )
    rounding: str = field(
        default="round",
        metadata={
            "help": "how p x remaining becomes a count (round: half to even)",
            "choices": ROUNDINGS,
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of task order and random"})
    fraction_of: str = field(
        default="remaining",
        metadata={"help": "p is a fraction of these weights", "choices": FRACTION_OF},
    )

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown pruning strategy {self.strategy!r}; "
                f"choose from {sorted(STRATEGIES)}"
            )
        if isinstance(self.fraction, bool) or not isinstance(
            self.fraction, (int, float)
        ):
            raise ValueError(f"fraction must be a number, got {self.fraction!r}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(
                f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if self.fraction_of not in FRACTION_OF:
            raise ValueError(
                f"fraction_of must be one of {FRACTION_OF}, got {self.fraction_of!r}"
            )


Strategy = Callable[
    [Mapping[str, torch.Tensor], Mapping[str, torch.Tensor], PruningHparams], Mask
]


def _global(weights, mask, hp: PruningHparams) -> Mask:
    return prune_global_magnitude(
        weights, mask, hp.fraction, hp.rounding, hp.fraction_of
    )


def _layerwise(weights, mask, hp: PruningHparams) -> Mask:
    return prune_layerwise_magnitude(
        weights, mask, hp.fraction, hp.rounding, hp.fraction_of
    )


def _random(weights, mask, hp: PruningHparams) -> Mask:
    # Layer-wise counts, random positions: the control for layer-wise magnitude.
    target = {}
    for name in sorted(mask):
        kept, total = _count({name: mask[name]})
        target[name] = kept - _k(kept, total, hp.fraction, hp.rounding, hp.fraction_of)
    return prune_random(mask, target, torch.Generator().manual_seed(hp.seed))


#: Strategy name → ``fn(weights, mask, hparams) -> new mask``.
STRATEGIES: Dict[str, Strategy] = {
    "global_magnitude": _global,
    "layerwise_magnitude": _layerwise,
    "random": _random,
}


@typechecked
def prune(
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    hparams: PruningHparams,
) -> Mask:
    """One pruning round with the strategy named in ``hparams``.

    Args:
        weights: Tensor name → weight (a model's ``state_dict()`` works).
        mask: Tensor name → current mask.
        hparams: Strategy, fraction, rounding and seed.

    Returns:
        New bool masks nested in ``mask``.

    Examples:
        >>> w = {"w": torch.arange(10.0)}
        >>> new = prune(w, {"w": torch.ones(10, dtype=torch.bool)}, PruningHparams())
        >>> new["w"].int().tolist()
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    """
    return STRATEGIES[hparams.strategy](weights, mask, hparams)
