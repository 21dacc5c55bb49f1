"""PARP and PARP-P: prune, adjust, re-prune (paper 003; docs/methods.md §4).

PARP finds one task's mask while *all* weights train:

1. take a task-agnostic mask at the target sparsity ``s`` from the starting weights
   θ0 by unstructured magnitude pruning (MPI), or another initial mask;
2. zero the weights outside the mask, but let every weight train (the mask is
   "lifted": a zeroed weight may grow back);
3. after every ``n`` updates, prune the trained weights back to ``s`` by magnitude
   over *all* weights (a weight that grew back re-enters and displaces the smallest
   kept one), and zero the weights outside the new mask;
4. after ``N`` updates the result is the last mask ``m`` and ``m ⊙ θ_N``.

**PARP-P** reaches ``s`` progressively: the re-prunes follow a non-decreasing list of
sparsities (the paper's "60 % → 80 % → 90 %"), each held for an equal share of the
``N`` updates.

Because PARP moves every weight it never runs on weights that other tasks share: the
product runs it per task on a copy of θ0 as a mask finder and hands the masks to
Algorithm 2 (docs/methods.md §4). Between re-prunes the mask is not used at all, so
the only state of a run is the number of updates done: a resumed run continues bit for
bit from the weights and that count.

Counting follows :mod:`espnet_pruning.pruning.select`: exactly
``round(s · n)`` zeros after every re-prune (``n`` = all masked weights in ``global``
scope, each tensor's size in ``layerwise`` scope), ties broken by tensor name and flat
index.

Examples:
    >>> w = {"w": torch.nn.Parameter(torch.tensor([4.0, -1.0, 3.0, 0.5, -2.0]))}
    >>> parp = Parp(ParpHparams(target_sparsity=0.4, reprune_interval=2), total_updates=4)
    >>> parp.start(w)["w"].int().tolist(), w["w"].tolist()
    ([1, 0, 1, 0, 1], [4.0, 0.0, 3.0, 0.0, -2.0])
    >>> with torch.no_grad():  # an update: the pruned 0.5 grows back past -2
    ...     _ = w["w"].add_(torch.tensor([0.0, 0.0, 0.0, 2.5, 0.0]))
    >>> parp.after_update(1, w) is None  # no re-prune between intervals
    True
    >>> parp.after_update(2, w)["w"].int().tolist(), w["w"].tolist()
    ([1, 0, 1, 1, 0], [4.0, 0.0, 3.0, 2.5, 0.0])
"""

from dataclasses import dataclass, field
from typing import List, Mapping, Optional

import torch
from typeguard import typechecked

from espnet_pruning.hparams import Hparams
from espnet_pruning.pruning.masks import Mask
from espnet_pruning.pruning.select import ROUNDINGS, num_to_prune, prune_smallest

SCOPES = ("global", "layerwise")


def parse_sparsities(text: str) -> List[float]:
    """A PARP-P schedule ``"0.6,0.8,0.9"`` as a list of floats (empty: none).

    Raises:
        ValueError: For an entry that is not a number.
    """
    if not text.strip():
        return []
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(
            f"schedule must be comma-separated sparsities like '0.6,0.8,0.9', "
            f"got {text!r}"
        ) from None


@dataclass
class ParpHparams(Hparams):
    """Hyperparameters of PARP and PARP-P (defaults where the paper is silent).

    Args:
        target_sparsity: s, the fraction of the masked weights that is zero.
        reprune_interval: n, updates between re-prunes (the paper found its value
            matters little).
        scope: ``global`` (one threshold over all masked tensors) or ``layerwise``.
        rounding: How ``s × count`` becomes a count (see ``select.num_to_prune``).
        schedule: PARP-P: comma-separated non-decreasing sparsities ending at
            ``target_sparsity``, each held for an equal share of the updates; empty
            for PARP.
    """

    target_sparsity: float = field(
        default=0.36,
        metadata={"help": "s: fraction of the masked weights that is zero"},
    )
    reprune_interval: int = field(
        default=50, metadata={"help": "n: updates between re-prunes"}
    )
    scope: str = field(
        default="global",
        metadata={
            "help": "one magnitude threshold or one per tensor",
            "choices": SCOPES,
        },
    )
    rounding: str = field(
        default="round",
        metadata={"help": "how s x count becomes a count", "choices": ROUNDINGS},
    )
    schedule: str = field(
        default="",
        metadata={
            "help": "PARP-P: comma-separated rising sparsities ending at "
            "target_sparsity (e.g. 0.6,0.8,0.9); empty = PARP"
        },
    )

    def __post_init__(self):
        if not 0.0 <= self.target_sparsity <= 1.0:
            raise ValueError(
                f"target_sparsity must be in [0, 1], got {self.target_sparsity}"
            )
        if isinstance(self.reprune_interval, bool) or self.reprune_interval < 1:
            raise ValueError(
                f"reprune_interval must be a positive int, got {self.reprune_interval}"
            )
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(
                f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}"
            )
        steps = parse_sparsities(self.schedule)
        if steps:
            if any(not 0.0 <= s <= 1.0 for s in steps):
                raise ValueError(f"schedule sparsities must be in [0, 1]: {steps}")
            if any(b < a for a, b in zip(steps, steps[1:])):
                raise ValueError(f"schedule must not decrease: {steps}")
            if steps[-1] != self.target_sparsity:
                raise ValueError(
                    f"schedule must end at target_sparsity={self.target_sparsity}, "
                    f"got {steps}"
                )

    def sparsities(self) -> List[float]:
        """The sparsity of every stage: ``[s]`` for PARP, the schedule for PARP-P."""
        return parse_sparsities(self.schedule) or [self.target_sparsity]


@typechecked
def magnitude_mask(
    weights: Mapping[str, torch.Tensor],
    names: List[str],
    sparsity: float,
    scope: str = "global",
    rounding: str = "round",
) -> Mask:
    """Unstructured magnitude pruning from *all* weights of ``names`` (UMP).

    Unlike a pruning round of Algorithm 1, no earlier mask limits the choice: a weight
    pruned before competes again with its current magnitude.

    Args:
        weights: Tensor name → weight (may hold extra names).
        names: The masked tensors.
        sparsity: Fraction of zeros; ``round(sparsity × count)`` by ``rounding``.
        scope: ``global`` or ``layerwise`` (the count per tensor).
        rounding: ``round``, ``ceil`` or ``floor``.

    Returns:
        Tensor name → bool mask with exactly that many zeros.

    Examples:
        >>> w = {"a": torch.tensor([1.0, -5.0, 2.0]), "b": torch.tensor([0.5, 3.0])}
        >>> m = magnitude_mask(w, ["a", "b"], 0.4)
        >>> m["a"].tolist(), m["b"].tolist()
        ([False, True, True], [False, True])
        >>> magnitude_mask(w, ["a", "b"], 0.5, "layerwise")["b"].tolist()
        [False, True]
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    groups = [names] if scope == "global" else [[n] for n in names]
    out: Mask = {}
    for group in groups:
        ones = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in group}
        total = sum(m.numel() for m in ones.values())
        out.update(
            prune_smallest(weights, ones, num_to_prune(total, sparsity, rounding))
        )
    return out


@torch.no_grad()
def zero_pruned(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]):
    """Set the weights outside ``mask`` to zero, in place."""
    for name, m in mask.items():
        weights[name].masked_fill_(~m.to(weights[name].device), 0.0)


class Parp:
    """The schedule of one PARP (or PARP-P) run over ``total_updates`` updates.

    Call :meth:`start` on the starting weights, then :meth:`after_update` after every
    optimizer update with the number of updates done so far; :meth:`finish` gives the
    final mask. The weights are modified in place (zeroed outside each new mask). A
    re-prune reads nothing but the weights and the update count, so a run resumed from
    a checkpoint needs no other state.

    Args:
        hparams: The run's hyperparameters.
        total_updates: N, the number of updates of the run (PARP-P's stages are equal
            shares of it; the last update always re-prunes).
    """

    @typechecked
    def __init__(self, hparams: ParpHparams, total_updates: int):
        if total_updates < 1:
            raise ValueError(f"total_updates must be >= 1, got {total_updates}")
        self.hparams = hparams
        self.total_updates = total_updates
        self._sparsities = hparams.sparsities()
        self.mask: Optional[Mask] = None

    def sparsity_at(self, update: int) -> float:
        """The sparsity of a re-prune after ``update`` updates (0: the initial mask).

        PARP-P's stage ``k`` of ``K`` covers updates ``(k N/K, (k+1) N/K]``.

        Examples:
            >>> p = Parp(ParpHparams(target_sparsity=0.9, schedule="0.6,0.8,0.9"), 6)
            >>> [p.sparsity_at(u) for u in range(7)]
            [0.6, 0.6, 0.6, 0.8, 0.8, 0.9, 0.9]
        """
        if not 0 <= update <= self.total_updates:
            raise ValueError(f"update {update} outside [0, {self.total_updates}]")
        k = len(self._sparsities)
        stage = 0 if update == 0 else -(-update * k // self.total_updates) - 1
        return self._sparsities[stage]

    def is_reprune(self, update: int) -> bool:
        """Whether the weights are re-pruned after ``update`` updates."""
        return update == self.total_updates or (
            update > 0 and update % self.hparams.reprune_interval == 0
        )

    def _prune(self, weights: Mapping[str, torch.Tensor], sparsity: float) -> Mask:
        self.mask = magnitude_mask(
            weights,
            sorted(weights),
            sparsity,
            self.hparams.scope,
            self.hparams.rounding,
        )
        zero_pruned(weights, self.mask)
        return self.mask

    @typechecked
    def start(
        self,
        weights: Mapping[str, torch.Tensor],
        init_mask: Optional[Mapping[str, torch.Tensor]] = None,
    ) -> Mask:
        """Take the initial mask and zero the weights outside it.

        Args:
            weights: Tensor name → the weight to prune (parameters, modified in place);
                every name is masked.
            init_mask: Another initial mask (e.g. a task's mask from Algorithm 1)
                instead of the magnitude mask of ``weights`` (MPI).

        Returns:
            The initial mask.
        """
        if init_mask is None:
            return self._prune(weights, self.sparsity_at(0))
        if set(init_mask) != set(weights):
            raise ValueError("init_mask must name exactly the pruned weights")
        self.mask = {n: init_mask[n].to(torch.bool).clone() for n in sorted(weights)}
        zero_pruned(weights, self.mask)
        return self.mask

    @typechecked
    def after_update(
        self, update: int, weights: Mapping[str, torch.Tensor]
    ) -> Optional[Mask]:
        """Re-prune when ``update`` (updates done, 1-based) ends an interval.

        Returns:
            The new mask after a re-prune, else None (the weights are untouched).
        """
        if not self.is_reprune(update):
            return None
        return self._prune(weights, self.sparsity_at(update))

    @typechecked
    def finish(self, weights: Mapping[str, torch.Tensor]) -> Mask:
        """The run's mask m: a re-prune of the final weights at the target sparsity.

        Idempotent: the weights already are ``m ⊙ θ_N`` after the last update's re-prune.
        """
        return self._prune(weights, self.sparsity_at(self.total_updates))
