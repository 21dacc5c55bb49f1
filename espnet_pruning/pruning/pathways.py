"""Dynamic ASR Pathways: per-task masks that adapt and shrink during multi-task training.

Xie et al.'s method (paper 002; docs/methods.md §3), with tasks in the role of languages.
Every task ``z`` owns a binary mask ``m_z`` over the shared weights θ. A batch of task
``z`` trains the *training mask* of Eq. 1,

    ``m_{z,r} = m_z ∪ (1 − ⋃_{l≠z} m_l)``,

its own subnetwork plus the *residual*: the weights that no other task owns
(:func:`training_mask`, :func:`residual`). Two events change the masks:

* **adaptation**, every ``n = adapt_interval`` steps, for the task of the current
  batch (:func:`adapt`): ``m_z`` is chosen anew as the largest-magnitude entries of
  ``m_{z,r} ⊙ θ``, holding its kept count (per tensor in ``layerwise`` scope, in total
  in ``global`` scope). So ``m_z ⊆ m_{z,r}`` and a residual weight that grew can
  displace the smallest weight ``m_z`` kept;
* **pruning**, every ``T = prune_interval`` steps, for every task while it is above
  the target sparsity (:func:`prune_masks`): ``m_z`` is chosen as the top entries of
  ``m_{z,r} ⊙ θ`` at the next count of the schedule (:func:`scheduled_kept`).

With ``residual=False`` the training mask is ``m_z`` alone (ASR Pathways): adaptation
then changes nothing and pruning nests.

Defaults where the paper is silent (docs/methods.md §3):

* **Counting.** Counts follow :mod:`espnet_pruning.pruning.select`: ``round`` (half to
  even) of the exact decimal fraction, exactly that many entries kept, ties broken by
  (sorted tensor name, row-major flat index), the earlier entry pruned first; so a tie
  between an entry of ``m_z`` and a residual one is decided by position, not by
  ownership.
* **Schedule.** A prune step removes ``round(p · size)`` (``prune_fraction_of:
  total``, the paper's "p % of total weights") or ``round(p · kept)`` (``remaining``)
  of a mask's entries, at least one while above the target, and never goes below the
  target count ``size − round(target_sparsity · size)`` (the last step is clipped). A
  mask at or below the target is left alone. ``size`` and ``kept`` are per tensor in
  ``layerwise`` scope (the paper's "uniform sparsity across all prunable layers", the
  default) and over all masked tensors in ``global`` scope. The schedule is a function
  of the current counts alone, so the masks are the schedule's position.
* **Prune order.** Tasks are pruned one after the other in sorted name order, each
  inside its ``m_{z,r}`` computed from the *current* masks: a task pruned later sees
  the new masks of the tasks pruned before it (weights they released are its
  residual). A task in ``layerwise`` scope is re-chosen only in the tensors whose
  count changes.
* **Both events at one step.** Adaptation runs first, then pruning.
* **Blocks.** ``granularity: block`` scores blocks of ``block_shape = 8x1`` weights
  (8 consecutive weights of one column: rows ``r..r+7`` of a Linear weight
  ``[out, in]``) by their L2 norm. A tensor is seen as 2-D ``[shape[0], rest]`` (a
  1-D tensor as ``[n, 1]``, a Conv1d weight ``[out, in, k]`` as ``[out, in·k]``).
  Trailing rows or columns that do not fill a block form smaller blocks of their own,
  scored by the L2 norm of the weights they have. In block mode **every count is in
  blocks** (a partial block counts as one): kept and size above are block counts and
  the selection prunes whole blocks. Weight densities equal block densities when the
  block shape divides the tensor (all Linear weights of Whisper); otherwise they differ
  by the partial blocks only. Masks must then be block-uniform (all 0 or all 1 per
  block); a mixed block is a ``ValueError``.

This module only computes masks. **It never zeroes or changes weights**: the training
loop applies ``m_{z,r}`` to the forward pass and the update. A weight that leaves
``m_z`` keeps its value while another mask uses it (zeroing shared weights would hurt
the other tasks).

Examples:
    >>> masks = {"a": {"w": torch.tensor([1, 1, 0, 0, 0, 0], dtype=torch.bool)},
    ...          "b": {"w": torch.tensor([0, 1, 1, 0, 0, 0], dtype=torch.bool)}}
    >>> training_mask(masks, "a")["w"].int().tolist()  # own + owned by no other task
    [1, 1, 0, 1, 1, 1]
    >>> w = {"w": torch.tensor([0.1, 0.2, 0.3, 0.9, 0.05, 0.0])}
    >>> adapt(w, masks, "a", DynamicPathwaysHparams())["w"].int().tolist()
    [0, 1, 0, 1, 0, 0]
"""

import math
import re
from dataclasses import dataclass, field, replace
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from typeguard import typechecked

from espnet_pruning.hparams import Hparams
from espnet_pruning.pruning import report
from espnet_pruning.pruning.masks import Mask, MaskError, MaskSet, _as_bool_mask
from espnet_pruning.pruning.scope import PruningScope
from espnet_pruning.pruning.select import FRACTION_OF, num_to_prune, prune_smallest

GRANULARITIES = ("element", "block")
SCOPES = ("layerwise", "global")
_BLOCK_SHAPE = re.compile(r"([0-9]+)x([0-9]+)")

#: Task → mask.
Masks = Dict[str, Mask]


# --------------------------------------------------------------------- hparams
@typechecked
def parse_block_shape(text: str) -> Tuple[int, int]:
    """A block shape ``"ROWSxCOLS"`` as a pair of positive ints.

    Raises:
        ValueError: For another format or a zero size.

    Examples:
        >>> parse_block_shape("8x1")
        (8, 1)
    """
    match = _BLOCK_SHAPE.fullmatch(text.strip())
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(
            f"block_shape must be ROWSxCOLS with positive sizes, e.g. '8x1'; "
            f"got {text!r}"
        )
    return int(match[1]), int(match[2])


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class DynamicPathwaysHparams(Hparams):
    """Hyperparameters of Dynamic ASR Pathways (paper values as defaults).

    Args:
        target_sparsity: Sparsity at which pruning stops (0.7 in the paper).
        adapt_interval: n, steps between adaptations of the current batch's task's
            mask (100 in the paper); 0 = never.
        prune_interval: T, steps between prune steps (the paper: 8 % of the training
            steps); 0 = never.
        prune_fraction: p, the fraction one prune step removes (0.2).
        prune_fraction_of: ``total`` (p of all entries, the paper's) or ``remaining``
            (p of the kept ones).
        granularity: ``element`` or ``block``.
        block_shape: ``ROWSxCOLS`` of a block (``8x1``: 8 consecutive weights of one
            column); used with ``granularity: block``.
        scope: ``layerwise`` (the same sparsity in every tensor, the paper's) or
            ``global`` (one threshold over all masked tensors).
        residual: Train and select within ``m_{z,r}`` (Eq. 1); False = within ``m_z``
            only (ASR Pathways).

    Raises:
        ValueError: For an invalid value; the message names the field.
    """

    target_sparsity: float = field(
        default=0.7,
        metadata={"help": "sparsity at which pruning stops, in [0, 1]"},
    )
    adapt_interval: int = field(
        default=100,
        metadata={"help": "n: steps between adaptations of a task's mask (0 = never)"},
    )
    prune_interval: int = field(
        default=0,
        metadata={
            "help": "T: steps between prune steps (paper: 8 percent of the training "
            "steps; 0 = never)"
        },
    )
    prune_fraction: float = field(
        default=0.2,
        metadata={"help": "p: fraction one prune step removes, in (0, 1]"},
    )
    prune_fraction_of: str = field(
        default="total",
        metadata={"help": "p is a fraction of these entries", "choices": FRACTION_OF},
    )
    granularity: str = field(
        default="element",
        metadata={"help": "select single weights or blocks", "choices": GRANULARITIES},
    )
    block_shape: str = field(
        default="8x1",
        metadata={"help": "ROWSxCOLS of a block, scored by its L2 norm"},
    )
    scope: str = field(
        default="layerwise",
        metadata={
            "help": "the same sparsity in every tensor, or one global threshold",
            "choices": SCOPES,
        },
    )
    residual: bool = field(
        default=True,
        metadata={
            "help": "train and select within own mask + residual (Eq. 1); "
            "false = own mask only (ASR Pathways)"
        },
    )

    def __post_init__(self):
        if not _is_number(self.target_sparsity) or not (
            0.0 <= self.target_sparsity <= 1.0
        ):
            raise ValueError(
                f"target_sparsity must be a number in [0, 1], "
                f"got {self.target_sparsity!r}"
            )
        for name in ("adapt_interval", "prune_interval"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not _is_number(self.prune_fraction) or not (
            0.0 < self.prune_fraction <= 1.0
        ):
            raise ValueError(
                f"prune_fraction must be a number in (0, 1], "
                f"got {self.prune_fraction!r}"
            )
        for name, choices in (
            ("prune_fraction_of", FRACTION_OF),
            ("granularity", GRANULARITIES),
            ("scope", SCOPES),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"{name} must be one of {choices}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.block_shape, str):
            raise ValueError(
                f"block_shape must be a string like '8x1', got {self.block_shape!r}"
            )
        parse_block_shape(self.block_shape)
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be a bool, got {self.residual!r}")

    @property
    def unit_shape(self) -> Tuple[int, int]:
        """The selection unit: the block shape, or ``(1, 1)`` for ``element``."""
        if self.granularity == "element":
            return (1, 1)
        return parse_block_shape(self.block_shape)


# --------------------------------------------------------------------- Eq. 1
def _checked(
    masks: Mapping[str, Mapping[str, torch.Tensor]],
    weights: Optional[Mapping[str, torch.Tensor]] = None,
) -> Masks:
    """Bool masks after checking that every task names the same tensors and shapes."""
    if not masks:
        raise MaskError("no task masks")
    tasks = sorted(masks)
    first = masks[tasks[0]]
    if not first:
        raise MaskError(f"task {tasks[0]!r}: mask names no tensor")
    names = sorted(first)
    shapes = {n: tuple(first[n].shape) for n in names}
    if weights is not None:
        for n in names:
            if n not in weights:
                raise MaskError(f"no weight for masked tensor {n!r}")
            if tuple(weights[n].shape) != shapes[n]:
                raise MaskError(
                    f"weight {n!r} has shape {tuple(weights[n].shape)}, "
                    f"its mask {shapes[n]}"
                )
    out: Masks = {}
    for task in tasks:
        mask = masks[task]
        if sorted(mask) != names:
            raise MaskError(
                f"task {task!r} masks tensors {sorted(mask)[:10]}, "
                f"task {tasks[0]!r} masks {names[:10]}"
            )
        where = f"task {task!r}: "
        out[task] = {n: _as_bool_mask(n, mask[n], shapes[n], where) for n in names}
    return out


def _union_of_others(masks: Masks, task: Optional[str]) -> Mask:
    """Per tensor: the OR of the masks of every task except ``task``."""
    others = [m for t, m in masks.items() if t != task]
    names = sorted(next(iter(masks.values())))
    out: Mask = {}
    for n in names:
        if not others:
            out[n] = torch.zeros_like(masks[task][n])
            continue
        u = others[0][n].clone()
        for m in others[1:]:
            u.logical_or_(m[n])
        out[n] = u
    return out


def _training_mask(masks: Masks, task: str, with_residual: bool = True) -> Mask:
    if task not in masks:
        raise MaskError(f"no mask for task {task!r}; known tasks: {sorted(masks)}")
    if not with_residual:
        return {n: m.clone() for n, m in masks[task].items()}
    others = _union_of_others(masks, task)
    return {n: masks[task][n] | ~others[n] for n in others}


@typechecked
def training_mask(masks: Mapping[str, Mapping[str, torch.Tensor]], task: str) -> Mask:
    """Eq. 1: ``m_{z,r} = m_z ∪ (1 − ⋃_{l≠z} m_l)``, the mask a batch of ``task`` trains.

    Args:
        masks: Task → (tensor name → mask); every task names the same tensors.
        task: The task ``z`` of the batch.

    Returns:
        New bool masks: the task's own entries plus those no other task owns (all
        ones if ``task`` is the only task).

    Raises:
        MaskError: For an unknown task or masks that do not match each other.
    """
    return _training_mask(_checked(masks), task)


@typechecked
def residual(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> Mask:
    """The entries in no task's mask, ``1 − ⋃_l m_l`` (new bool masks).

    Raises:
        MaskError: For masks that do not match each other.
    """
    union = _union_of_others(_checked(masks), None)
    return {n: ~u for n, u in union.items()}


@typechecked
def union_ratio(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> float:
    """The fraction of masked entries kept by at least one task (the paper's "union
    ratio": |⋃_l m_l| / masked weights).

    Raises:
        MaskError: For masks that do not match each other.

    Examples:
        >>> union_ratio({"a": {"w": torch.tensor([True, False, False, False])},
        ...              "b": {"w": torch.tensor([True, True, False, False])}})
        0.5
    """
    checked = _checked(masks)
    shapes = {n: tuple(m.shape) for n, m in next(iter(checked.values())).items()}
    return report.union_ratio(MaskSet(shapes, checked))


# --------------------------------------------------------------------- blocks
def _shape_2d(shape: Tuple[int, ...]) -> Tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], 1
    return shape[0], math.prod(shape[1:])


def _grid(shape: Tuple[int, ...], block: Tuple[int, int]) -> Tuple[int, int]:
    rows, cols = _shape_2d(shape)
    return -(-rows // block[0]), -(-cols // block[1])


def _block_sum(x2d: torch.Tensor, block: Tuple[int, int], dtype) -> torch.Tensor:
    """Sum over each block of a 2-D tensor (trailing partial blocks zero-padded)."""
    (br, bc), (rows, cols) = block, x2d.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    pad = (0, gc * bc - cols, 0, gr * br - rows)
    if any(pad):
        x2d = F.pad(x2d, pad)
    return x2d.reshape(gr, br, gc, bc).sum(dim=(1, 3), dtype=dtype)


@typechecked
def block_norms(weight: torch.Tensor, block_shape: Tuple[int, int]) -> torch.Tensor:
    """L2 norm of every block of ``weight``, as a 2-D grid of blocks.

    Args:
        weight: A tensor, seen as ``[shape[0], rest]`` (1-D as ``[n, 1]``).
        block_shape: ``(rows, cols)`` of a block; a trailing partial block is scored
            by the norm of the weights it has.

    Returns:
        Float tensor ``[ceil(rows / br), ceil(cols / bc)]`` (float64 for float64
        weights, else float32), on the weight's device.

    Examples:
        >>> block_norms(torch.tensor([3.0, 4.0, 1.0]), (2, 1)).flatten().tolist()
        [5.0, 1.0]
    """
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to(dtype).reshape(_shape_2d(tuple(weight.shape)))
    return _block_sum(w * w, block_shape, dtype).sqrt_()


@typechecked
def mask_to_blocks(
    mask: torch.Tensor, block_shape: Tuple[int, int], name: str = "mask"
) -> torch.Tensor:
    """The block grid of a block-uniform mask (True where a block is kept).

    Args:
        mask: Bool mask, seen as 2-D like :func:`block_norms`.
        block_shape: ``(rows, cols)`` of a block.
        name: Tensor name for the error message.

    Returns:
        Bool tensor of the grid shape (a view for ``(1, 1)`` blocks).

    Raises:
        ValueError: If a block has both kept and pruned entries.
    """
    m2 = mask.reshape(_shape_2d(tuple(mask.shape)))
    if block_shape == (1, 1):
        return m2
    sums = _block_sum(m2.to(torch.uint8), block_shape, torch.int32)
    (br, bc), (rows, cols) = block_shape, m2.shape
    gr, gc = sums.shape
    row_sizes = torch.full((gr,), br, dtype=torch.int32, device=sums.device)
    col_sizes = torch.full((gc,), bc, dtype=torch.int32, device=sums.device)
    if gr and gc:  # the trailing blocks may be partial
        row_sizes[-1] = rows - (gr - 1) * br
        col_sizes[-1] = cols - (gc - 1) * bc
    full = sums == row_sizes[:, None] * col_sizes[None, :]
    if not (full | (sums == 0)).all():
        raise ValueError(
            f"{name} has a {br}x{bc} block with both kept and pruned entries; "
            f"block masks must be all 0 or all 1 per block"
        )
    return full


@typechecked
def blocks_to_mask(
    blocks: torch.Tensor, shape: Tuple[int, ...], block_shape: Tuple[int, int]
) -> torch.Tensor:
    """Expand a block grid back to a mask of ``shape`` (inverse of
    :func:`mask_to_blocks`).

    Examples:
        >>> blocks_to_mask(torch.tensor([[True], [False]]), (3,), (2, 1)).tolist()
        [True, True, False]
    """
    if block_shape == (1, 1):
        return blocks.reshape(shape)
    rows, cols = _shape_2d(shape)
    expanded = blocks.repeat_interleave(block_shape[0], 0).repeat_interleave(
        block_shape[1], 1
    )
    return expanded[:rows, :cols].reshape(shape)


# --------------------------------------------------------------------- selection
def _unit_scores(
    weights: Mapping[str, torch.Tensor], names, block: Tuple[int, int]
) -> Dict[str, torch.Tensor]:
    """Per tensor: what ``prune_smallest`` ranks by ``|score|`` (weights or norms)."""
    if block == (1, 1):  # |w| is the 1x1 block norm; no copy of the weights
        return {
            n: weights[n].detach().reshape(_shape_2d(tuple(weights[n].shape)))
            for n in names
        }
    return {n: block_norms(weights[n], block) for n in names}


def _units(mask: Mask, block: Tuple[int, int], what: str) -> Mask:
    return {n: mask_to_blocks(m, block, f"{what}mask {n!r}") for n, m in mask.items()}


def _counts(units: Mask) -> Dict[str, int]:
    return {n: int(u.sum()) for n, u in units.items()}


def _choose(
    scores: Mapping[str, torch.Tensor],
    candidates: Mask,
    keep: Union[Dict[str, int], int],
) -> Mask:
    """The ``keep`` top-scored candidate units (per tensor for a dict, else in total)."""
    if isinstance(keep, int):
        kept = sum(_counts(candidates).values())
        return prune_smallest(scores, candidates, kept - keep)
    out: Mask = {}
    for n in sorted(keep):
        one = {n: candidates[n]}
        out.update(prune_smallest(scores, one, int(one[n].sum()) - keep[n]))
    return out


def _expand(units: Mask, like: Mask, block: Tuple[int, int]) -> Mask:
    return {n: blocks_to_mask(u, tuple(like[n].shape), block) for n, u in units.items()}


@typechecked
def adapt(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, Mapping[str, torch.Tensor]],
    task: str,
    hparams: DynamicPathwaysHparams,
) -> Mask:
    """Adaptation: re-choose ``m_z`` inside ``m_{z,r} ⊙ θ`` at its current kept count.

    Args:
        weights: Tensor name → current weight θ (a ``state_dict`` works).
        masks: Task → (tensor name → mask).
        task: The task ``z`` to adapt.
        hparams: Granularity, block shape, scope and ``residual``.

    Returns:
        ``task``'s new bool mask: ``⊆ m_{z,r}`` (``⊆ m_z``, i.e. unchanged, when
        ``residual`` is False), with the same number of kept units per tensor
        (``layerwise``) or in total (``global``).

    Raises:
        MaskError: For an unknown task or mismatched masks or weights.
        ValueError: For a mixed block in block mode, or NaN weights among candidates.
    """
    masks = _checked(masks, weights)
    block = hparams.unit_shape
    candidates = _units(_training_mask(masks, task, hparams.residual), block, "")
    keep = _counts(_units(masks[task], block, f"task {task!r}: "))
    if hparams.scope == "global":
        keep = sum(keep.values())
    scores = _unit_scores(weights, sorted(candidates), block)
    new = _choose(scores, candidates, keep)
    return _expand(new, masks[task], block)


@typechecked
def scheduled_kept(kept: int, size: int, hparams: DynamicPathwaysHparams) -> int:
    """The kept count after one prune step (a count of weights or of blocks).

    ``size − round(target_sparsity · size)`` is the target; a mask at or below it
    stays; otherwise it loses ``round(p · size)`` (``total``) or ``round(p · kept)``
    (``remaining``) entries, at least one, and never goes below the target.

    Args:
        kept: Entries the mask keeps now.
        size: Entries it could keep (of one tensor, or of all, by scope).
        hparams: ``target_sparsity``, ``prune_fraction`` and ``prune_fraction_of``.

    Returns:
        The next kept count.

    Examples:
        >>> hp = DynamicPathwaysHparams(target_sparsity=0.7)
        >>> [scheduled_kept(k, 100, hp) for k in (100, 80, 40, 30, 20)]
        [80, 60, 30, 30, 20]
    """
    if not 0 <= kept <= size:
        raise ValueError(f"kept={kept} must be in [0, size={size}]")
    floor = size - num_to_prune(size, hparams.target_sparsity)
    if kept <= floor:
        return kept
    base = size if hparams.prune_fraction_of == "total" else kept
    step = max(1, num_to_prune(base, hparams.prune_fraction))
    return max(floor, kept - step)


def _next_keep(
    units: Mask, hparams: DynamicPathwaysHparams
) -> Tuple[Union[Dict[str, int], int], bool]:
    """The scheduled kept counts of one task's unit masks, and whether they change."""
    counts = _counts(units)
    if hparams.scope == "global":
        kept = sum(counts.values())
        size = sum(u.numel() for u in units.values())
        nxt = scheduled_kept(kept, size, hparams)
        return nxt, nxt != kept
    nxt = {n: scheduled_kept(c, units[n].numel(), hparams) for n, c in counts.items()}
    return nxt, nxt != counts


@typechecked
def prune_masks(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, Mapping[str, torch.Tensor]],
    hparams: DynamicPathwaysHparams,
) -> Masks:
    """One prune step: every task's ``m_z`` becomes the top entries of ``m_{z,r} ⊙ θ``
    at the next scheduled count (:func:`scheduled_kept`).

    Tasks go in sorted order, each ``m_{z,r}`` computed from the current masks, so a
    task sees the new masks of the tasks before it. A task (``global``) or tensor
    (``layerwise``) already at the target is left unchanged.

    Args:
        weights: Tensor name → current weight θ_T.
        masks: Task → (tensor name → mask).
        hparams: Schedule, granularity, block shape, scope and ``residual``.

    Returns:
        Task → new bool mask (unchanged tensors are the input tensors).

    Raises:
        MaskError: For mismatched masks or weights.
        ValueError: For a mixed block in block mode, or NaN weights among candidates.

    Examples:
        >>> w = {"w": torch.tensor([10.0, 9, 8, 2, 7])}
        >>> m = {"a": {"w": torch.tensor([1, 1, 0, 0, 0])},
        ...      "b": {"w": torch.tensor([0, 0, 1, 1, 0])}}
        >>> new = prune_masks(w, m, DynamicPathwaysHparams(target_sparsity=0.8))
        >>> new["a"]["w"].int().tolist(), new["b"]["w"].int().tolist()
        ([1, 0, 0, 0, 0], [0, 1, 0, 0, 0])
    """
    current = _checked(masks, weights)
    block = hparams.unit_shape
    scores = None
    for task in sorted(current):
        own = _units(current[task], block, f"task {task!r}: ")
        keep, changes = _next_keep(own, hparams)
        if not changes:
            continue
        if isinstance(keep, dict):  # layerwise: only the tensors whose count changes
            keep = {n: k for n, k in keep.items() if k != int(own[n].sum())}
        if scores is None:
            scores = _unit_scores(weights, sorted(own), block)
        candidates = _units(_training_mask(current, task, hparams.residual), block, "")
        if isinstance(keep, dict):
            candidates = {n: candidates[n] for n in keep}
        new = _expand(_choose(scores, candidates, keep), current[task], block)
        current[task] = {**current[task], **new}
    return current


@typechecked
def shared_start(
    weights: Mapping[str, torch.Tensor],
    tasks: Sequence[str],
    sparsity: float,
    hparams: DynamicPathwaysHparams,
) -> Masks:
    """One magnitude mask of θ at ``sparsity`` for every task: the paper's LAP start
    when θ is the multi-task model (one mask from all tasks' data).

    Units, scope and counting are the run's (``granularity``, ``block_shape``,
    ``scope``): it is one prune step from all-ones masks straight to ``sparsity``.

    Args:
        weights: Tensor name → weight (the masked tensors).
        tasks: The tasks, each given the same mask.
        sparsity: The start sparsity s0, in [0, 1].
        hparams: The run's hyperparameters.

    Returns:
        Task → (tensor name → bool mask), equal for all tasks.

    Examples:
        >>> w = {"w": torch.tensor([0.5, -3.0, 1.0, 2.0])}
        >>> m = shared_start(w, ["a", "b"], 0.5, DynamicPathwaysHparams())
        >>> m["a"]["w"].int().tolist(), torch.equal(m["a"]["w"], m["b"]["w"])
        ([0, 1, 0, 1], True)
    """
    if not tasks:
        raise ValueError("shared_start: no task")
    ones = {"*": {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}}
    one_step = replace(
        hparams,
        target_sparsity=sparsity,
        prune_fraction=1.0,
        prune_fraction_of="total",
    )
    mask = prune_masks(weights, ones, one_step)["*"]
    return {t: {n: m.clone() for n, m in mask.items()} for t in sorted(tasks)}


# --------------------------------------------------------------------- the schedule
@dataclass
class StepChanges:
    """What :meth:`DynamicPathways.after_step` did at one step (for logs).

    Attributes:
        step: The step.
        adapted: The task whose mask was adapted, or None.
        pruned: Whether a prune step ran.
        flipped: Task → mask entries that changed (tasks touched by an event).
        density: Task → kept fraction of the masked weights after the step (only
            when an event ran).
        union_ratio: :func:`union_ratio` after the step (only when an event ran).
    """

    step: int
    adapted: Optional[str] = None
    pruned: bool = False
    flipped: Dict[str, int] = field(default_factory=dict)
    density: Dict[str, float] = field(default_factory=dict)
    union_ratio: Optional[float] = None

    def __bool__(self) -> bool:
        """Whether any mask changed (cached training masks are then stale)."""
        return any(self.flipped.values())


class DynamicPathways:
    """The masks of a Dynamic ASR Pathways run and their schedule.

    Call :meth:`training_mask` for the mask a batch of a task trains and
    :meth:`after_step` after every optimizer step. The weights are never modified.

    Args:
        masks: Task → (tensor name → initial mask, e.g. from LTH or LAP); copied.
            In block mode every mask must be block-uniform.
        hparams: The run's hyperparameters.

    Raises:
        MaskError: For mismatched or non-binary masks.
        ValueError: For a mixed block in block mode.

    Examples:
        >>> dp = DynamicPathways(
        ...     {"a": {"w": torch.tensor([1, 1, 0, 0])},
        ...      "b": {"w": torch.tensor([0, 1, 1, 0])}},
        ...     DynamicPathwaysHparams(adapt_interval=2))
        >>> w = {"w": torch.tensor([0.1, 0.2, 0.3, 0.9])}
        >>> bool(dp.after_step(1, "a", w))  # no event
        False
        >>> dp.after_step(2, "a", w).flipped  # 0.9 (residual) displaces 0.1
        {'a': 2}
        >>> dp.mask("a")["w"].int().tolist(), dp.training_mask("b")["w"].int().tolist()
        ([0, 1, 0, 1], [1, 1, 1, 0])
    """

    @typechecked
    def __init__(
        self,
        masks: Mapping[str, Mapping[str, torch.Tensor]],
        hparams: DynamicPathwaysHparams,
    ):
        self.hparams = hparams
        self._masks = self._validated(masks)
        self.last_step = 0
        self.n_adaptations = 0
        self.n_prunes = 0

    def _validated(self, masks) -> Masks:
        checked = _checked(masks)
        block = self.hparams.unit_shape
        out: Masks = {}
        for task, mask in checked.items():
            _units(mask, block, f"task {task!r}: ")  # block-uniform
            out[task] = {n: m.clone() for n, m in mask.items()}
        return out

    # ----------------------------------------------------------------- access
    @property
    def tasks(self) -> Tuple[str, ...]:
        """Task names, sorted."""
        return tuple(self._masks)

    @property
    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Tensor name → shape, sorted by name."""
        first = self._masks[self.tasks[0]]
        return {n: tuple(m.shape) for n, m in first.items()}

    @typechecked
    def mask(self, task: str) -> Mask:
        """``m_z`` of ``task`` (the stored tensors: do not modify them).

        Raises:
            MaskError: For an unknown task.
        """
        self._check_task(task)
        return dict(self._masks[task])

    @property
    def masks(self) -> Masks:
        """Task → mask (the stored tensors: do not modify them)."""
        return {t: dict(m) for t, m in self._masks.items()}

    @typechecked
    def training_mask(self, task: str) -> Mask:
        """The mask a batch of ``task`` trains: ``m_{z,r}`` (Eq. 1), or ``m_z`` when
        ``residual`` is False (new tensors)."""
        self._check_task(task)
        return _training_mask(self._masks, task, self.hparams.residual)

    @typechecked
    def at_target(self) -> bool:
        """Whether no prune step would change any mask."""
        block = self.hparams.unit_shape
        return not any(
            _next_keep(_units(m, block, ""), self.hparams)[1]
            for m in self._masks.values()
        )

    @typechecked
    def mask_set(
        self, n_model_params: Optional[int] = None, scope: Optional[PruningScope] = None
    ) -> MaskSet:
        """The current masks as a :class:`MaskSet` (for reports and mask files)."""
        return MaskSet(self.shapes, self._masks, n_model_params, scope)

    def _check_task(self, task: str) -> None:
        if task not in self._masks:
            raise MaskError(f"no mask for task {task!r}; known tasks: {self.tasks}")

    # ----------------------------------------------------------------- events
    @typechecked
    def due(self, step: int) -> bool:
        """Whether :meth:`after_step` at ``step`` may change a mask (and so reads the
        weights): ``step`` ends an adaptation interval, or a prune interval while a
        mask is above the target."""
        hp = self.hparams
        if hp.adapt_interval and step % hp.adapt_interval == 0:
            return True
        return bool(hp.prune_interval and step % hp.prune_interval == 0) and not (
            self.at_target()
        )

    @typechecked
    def after_step(
        self, step: int, task: str, weights: Mapping[str, torch.Tensor]
    ) -> StepChanges:
        """Adapt and prune when ``step`` ends an interval.

        Every ``adapt_interval`` steps ``task``'s mask is adapted (:func:`adapt`);
        then, every ``prune_interval`` steps while a mask is above the target, every
        mask is pruned one step (:func:`prune_masks`).

        Args:
            step: Optimizer steps done, 1-based and increasing from call to call.
            task: The task of the batch of this step.
            weights: Tensor name → weight after the step (read only).

        Returns:
            What changed; false when no mask changed.

        Raises:
            MaskError: For an unknown task.
            ValueError: If ``step`` does not increase.
        """
        self._check_task(task)
        if step <= self.last_step:
            raise ValueError(
                f"step {step} does not follow the last step {self.last_step}"
            )
        hp = self.hparams
        changes = StepChanges(step)
        old = self._masks
        if hp.adapt_interval and step % hp.adapt_interval == 0:
            new = adapt(weights, self._masks, task, hp)
            self._masks = {**self._masks, task: new}
            changes.adapted = task
            self.n_adaptations += 1
        if hp.prune_interval and step % hp.prune_interval == 0 and not self.at_target():
            self._masks = prune_masks(weights, self._masks, hp)
            changes.pruned = True
            self.n_prunes += 1
        self.last_step = step
        if changes.adapted is not None or changes.pruned:
            touched = self.tasks if changes.pruned else (task,)
            changes.flipped = {
                t: sum(int((old[t][n] != m).sum()) for n, m in self._masks[t].items())
                for t in touched
            }
            numel = sum(m.numel() for m in self._masks[task].values())
            changes.density = {
                t: sum(int(m.sum()) for m in mask.values()) / numel
                for t, mask in self._masks.items()
            }
            changes.union_ratio = union_ratio(self._masks)
        return changes

    @typechecked
    def prune_to_target(self, weights: Mapping[str, torch.Tensor]) -> int:
        """Take prune steps (:func:`prune_masks`) on ``weights`` until every mask is
        at the target, without advancing the step counter (the end of a run too
        short for its schedule).

        Returns:
            The number of prune steps taken.
        """
        n = 0
        while not self.at_target():
            self._masks = prune_masks(weights, self._masks, self.hparams)
            self.n_prunes += 1
            n += 1
        return n

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Masks (bool CPU tensors in plain dicts) and counters; with the weights it
        lets a resumed run continue bit for bit."""
        return {
            "masks": {
                t: {n: m.detach().cpu().clone() for n, m in mask.items()}
                for t, mask in self._masks.items()
            },
            "last_step": self.last_step,
            "n_adaptations": self.n_adaptations,
            "n_prunes": self.n_prunes,
        }

    @typechecked
    def load_state_dict(self, state: Mapping) -> None:
        """Restore :meth:`state_dict` (masks go to the current masks' device).

        Raises:
            MaskError: If the tasks, tensor names or shapes differ from the current
                ones, or a mask is invalid; nothing is changed then.
        """
        masks = self._validated(state["masks"])
        if tuple(masks) != self.tasks or self.shapes != {
            n: tuple(m.shape) for n, m in masks[self.tasks[0]].items()
        }:
            raise MaskError(
                f"state has tasks {tuple(masks)} over other tensors or shapes than "
                f"the run's tasks {self.tasks}"
            )
        device = {n: m.device for n, m in self._masks[self.tasks[0]].items()}
        self._masks = {
            t: {n: m.to(device[n]) for n, m in mask.items()}
            for t, mask in masks.items()
        }
        self.last_step = int(state["last_step"])
        self.n_adaptations = int(state["n_adaptations"])
        self.n_prunes = int(state["n_prunes"])
