"""A validated set of binary masks, one per task, over the same named tensors.

Masks are held by :class:`MaskSet` (never module buffers or parameters), so they stay
out of a model's ``state_dict`` (checkpoint keys stay ESPnet's, checkpoint averaging
never touches them) and out of DDP's buffer broadcast. In host memory a task's mask costs
one bit per prunable weight (packed, as on disk: :mod:`espnet_pruning.pruning.storage`);
:meth:`MaskSet.mask` unpacks it into bool tensors when a task is used.

Tensor names are kept **sorted**: that is the global order used for tie-breaking and
for the layout of mask files.
"""

import math
import re
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.pruning.scope import PruningScope, prunable_parameter_names

TASK_NAME = re.compile(r"[A-Za-z0-9_.-]+")

#: One task's mask: tensor name → bool tensor.
Mask = Dict[str, torch.Tensor]


class MaskError(InputError):
    """A mask has a wrong task name, tensor name, shape or value; the message names it."""


@typechecked
def check_task_name(task: str) -> str:
    """Return ``task`` if it is a valid task name (``[A-Za-z0-9_.-]+``).

    Args:
        task: Candidate task name (also used in mask file names).

    Returns:
        ``task`` unchanged.

    Raises:
        MaskError: If the name is empty or has other characters.
    """
    if not TASK_NAME.fullmatch(task) or task in (".", ".."):
        raise MaskError(f"invalid task name {task!r}: use [A-Za-z0-9_.-]+")
    return task


def _as_bool_mask(
    name: str, value: torch.Tensor, shape: Tuple[int, ...], where: str
) -> torch.Tensor:
    """Validate one mask tensor and return it as a bool tensor (a copy only if needed)."""
    if not isinstance(value, torch.Tensor):
        raise MaskError(
            f"{where}mask {name!r} is a {type(value).__name__}, not a tensor"
        )
    if tuple(value.shape) != shape:
        raise MaskError(
            f"{where}mask {name!r} has shape {tuple(value.shape)}, expected {shape}"
        )
    if value.dtype == torch.bool:
        return value
    if value.is_complex() or not ((value == 0) | (value == 1)).all():
        raise MaskError(
            f"{where}mask {name!r} ({value.dtype}) has values other than 0 and 1"
        )
    return value != 0


class _PackedMask:
    """One task's masks at one bit per weight, and its kept count per tensor."""

    __slots__ = ("bits", "kept")

    def __init__(self, mask: Mask):
        self.bits: Dict[str, np.ndarray] = {}
        self.kept: Dict[str, int] = {}
        for name, m in mask.items():
            flat = m.detach().reshape(-1).cpu().numpy()
            self.bits[name] = np.packbits(flat)
            self.kept[name] = int(np.count_nonzero(flat))

    @classmethod
    def ones(cls, shapes: Mapping[str, Tuple[int, ...]]) -> "_PackedMask":
        """All kept, packed directly (no byte-per-weight mask on the way)."""
        out = cls({})
        for name, shape in shapes.items():
            n = math.prod(shape)
            bits = np.full((n + 7) // 8, 255, dtype=np.uint8)
            if n % 8:
                bits[-1] = (0xFF << (8 - n % 8)) & 0xFF  # padding bits are zero
            out.bits[name], out.kept[name] = bits, n
        return out

    def unpack(self, shapes: Mapping[str, Tuple[int, ...]], device) -> Mask:
        out = {}
        for name, shape in shapes.items():
            n = math.prod(shape)
            flat = np.unpackbits(self.bits[name], count=n).view(np.bool_)
            out[name] = torch.from_numpy(flat).reshape(shape).to(device)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PackedMask) and all(
            np.array_equal(b, other.bits[n]) for n, b in self.bits.items()
        )


def _first(items: Sequence[str], n: int = 3) -> str:
    """The first ``n`` items and how many more (for error messages)."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return f"{list(items[:n])}{more}"


@typechecked
def model_prunable_shapes(
    model: nn.Module, scope: PruningScope
) -> Tuple[Dict[str, Tuple[int, ...]], int]:
    """Name → shape of the prunable parameters of ``model``, and its parameter count.

    Raises:
        ValueError: If ``scope`` leaves nothing prunable.
    """
    params = dict(model.named_parameters())
    names = prunable_parameter_names(model, scope)
    n_params = sum(p.numel() for p in params.values())
    return {n: tuple(params[n].shape) for n in names}, n_params


class MaskSet:
    """Binary masks ``m_t`` for tasks ``t`` over a declared set of named tensors.

    A mask bit 1 means "kept" (the weight belongs to the task's subnetwork).

    Args:
        shapes: Tensor name → shape of every masked tensor.
        masks: Task → (tensor name → mask); every task must give exactly the names of
            ``shapes``. Values must be bool or exactly 0/1 (converted to bool).
        n_model_params: Parameter count of the whole model the masks belong to (needed
            for Param%); ``None`` if unknown.
        scope: The policy that chose the masked tensors (needed to check that masks
            cover exactly a model's prunable tensors); ``None`` if unknown.

    Attributes:
        source: Where the set was loaded from (named in error messages), or None.

    Raises:
        MaskError: A task name, tensor name, shape or value is invalid; the message
            names the task and the tensor.

    Examples:
        >>> ms = MaskSet.ones(["asr", "ic"], {"w": (2, 2), "v": (3,)})
        >>> ms.names, ms.kept("asr"), ms.numel()
        (('v', 'w'), 7, 7)
        >>> ms.set_mask("ic", {"w": torch.eye(2), "v": torch.ones(3)})
        >>> ms.density("ic")
        0.7142857142857143
    """

    __hash__ = None  # mutable

    @typechecked
    def __init__(
        self,
        shapes: Mapping[str, Sequence[int]],
        masks: Mapping[str, Mapping[str, torch.Tensor]],
        n_model_params: Optional[int] = None,
        scope: Optional[PruningScope] = None,
    ):
        if not shapes:
            raise MaskError("a mask set needs at least one tensor")
        self._shapes: Dict[str, Tuple[int, ...]] = {}
        for name in sorted(shapes):
            shape = tuple(int(s) for s in shapes[name])
            if not name or any(s < 0 for s in shape):
                raise MaskError(f"invalid tensor {name!r} with shape {shape}")
            self._shapes[name] = shape
        numel = self.numel()
        if n_model_params is not None and n_model_params < numel:
            raise MaskError(
                f"n_model_params={n_model_params} is smaller than the "
                f"{numel} masked weights"
            )
        self.n_model_params = n_model_params
        self.scope = scope
        self.source: Optional[str] = None
        self.device = torch.device("cpu")  # where :meth:`mask` puts a task's masks
        # Validate everything before storing anything (failure atomicity).
        validated = {str(t): self._validated(t, m) for t, m in masks.items()}
        self._masks: Dict[str, _PackedMask] = validated

    # ----------------------------------------------------------------- construction
    @classmethod
    @typechecked
    def ones(
        cls,
        tasks: Iterable[str],
        shapes: Mapping[str, Sequence[int]],
        n_model_params: Optional[int] = None,
        scope: Optional[PruningScope] = None,
    ) -> "MaskSet":
        """All-ones (dense) masks for ``tasks``.

        Args:
            tasks: Task names.
            shapes: Tensor name → shape.
            n_model_params: Parameter count of the whole model, if known.
            scope: The policy that chose the tensors, if known.

        Returns:
            The mask set.
        """
        ms = cls(shapes, {}, n_model_params, scope)
        for task in tasks:
            ms.add_task(task)
        return ms

    @classmethod
    @typechecked
    def from_model(
        cls, model: nn.Module, scope: PruningScope, tasks: Iterable[str]
    ) -> "MaskSet":
        """All-ones masks over the prunable parameters of ``model``.

        Args:
            model: The shared model.
            scope: Which parameters are prunable.
            tasks: Task names.

        Returns:
            The mask set; ``n_model_params`` is the number of elements of all (unique)
            parameters of ``model``; it records ``scope``.

        Raises:
            ValueError: If ``scope`` leaves nothing prunable.
        """
        shapes, n_params = model_prunable_shapes(model, scope)
        return cls.ones(tasks, shapes, n_params, scope)

    # ----------------------------------------------------------------- validation
    def _validated(self, task: str, mask: Mapping[str, torch.Tensor]) -> "_PackedMask":
        check_task_name(task)
        where = f"task {task!r}: "
        missing = [n for n in self._shapes if n not in mask]
        extra = sorted(n for n in mask if n not in self._shapes)
        if missing or extra:
            raise MaskError(
                f"{where}mask tensors do not match the declared names; "
                f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
                f"unexpected {extra[:10]}{'...' if len(extra) > 10 else ''}"
            )
        return _PackedMask(
            {
                n: _as_bool_mask(n, mask[n], shape, where)
                for n, shape in self._shapes.items()
            }
        )

    # ----------------------------------------------------------------- properties
    @property
    def tasks(self) -> Tuple[str, ...]:
        """Task names in insertion order."""
        return tuple(self._masks)

    @property
    def names(self) -> Tuple[str, ...]:
        """Masked tensor names, sorted (the global order)."""
        return tuple(self._shapes)

    @property
    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Tensor name → shape, in :attr:`names` order (a copy)."""
        return dict(self._shapes)

    def __contains__(self, task: object) -> bool:
        return task in self._masks

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        dens = ", ".join(f"{t}: {self.density(t):.4f}" for t in self.tasks)
        return (
            f"MaskSet({len(self._shapes)} tensors, {self.numel()} weights, "
            f"density {{{dens}}})"
        )

    # ----------------------------------------------------------------- access
    def _get(self, task: str) -> "_PackedMask":
        try:
            return self._masks[task]
        except KeyError:
            raise MaskError(
                f"no mask for task {task!r}; known tasks: {list(self._masks)}"
            ) from None

    @typechecked
    def mask(self, task: str) -> Mask:
        """The mask of ``task``, unpacked into new bool tensors on :attr:`device`.

        Raises:
            MaskError: If the task is unknown.
        """
        return self._get(task).unpack(self._shapes, self.device)

    @typechecked
    def set_mask(self, task: str, mask: Mapping[str, torch.Tensor]) -> None:
        """Replace (or add) the mask of ``task`` after validating it.

        Raises:
            MaskError: If the mask is invalid; the set is then unchanged.
        """
        self._masks[task] = self._validated(task, mask)

    @typechecked
    def add_task(
        self, task: str, mask: Optional[Mapping[str, torch.Tensor]] = None
    ) -> None:
        """Add a task with ``mask`` (all ones if ``None``).

        Raises:
            MaskError: If the task exists already or the mask is invalid.
        """
        if task in self._masks:
            raise MaskError(f"task {task!r} exists already")
        if mask is None:
            check_task_name(task)
            self._masks[task] = _PackedMask.ones(self._shapes)
            return
        self._masks[task] = self._validated(task, mask)

    @typechecked
    def remove_task(self, task: str) -> None:
        """Drop the mask of ``task``.

        Raises:
            MaskError: If the task is unknown.
        """
        self._get(task)
        del self._masks[task]

    # ----------------------------------------------------------------- counts
    def numel(self) -> int:
        """Number of masked (prunable) weights."""
        return sum(math.prod(s) for s in self._shapes.values())

    @typechecked
    def packed_bits(self, task: str, name: str) -> torch.Tensor:
        """The stored bits of one tensor's mask (uint8, numpy's ``packbits`` order,
        padded to whole bytes); shares memory with the set: do not mutate.

        Raises:
            MaskError: If the task or the tensor is unknown.
        """
        bits = self._get(task).bits
        if name not in bits:
            raise MaskError(f"{self._where()}no masked tensor {name!r}")
        return torch.from_numpy(bits[name])

    @typechecked
    def same_mask(self, a: str, b: str) -> bool:
        """Whether tasks ``a`` and ``b`` have identical masks.

        Raises:
            MaskError: If a task is unknown.
        """
        return a == b or self._get(a) == self._get(b)

    @property
    def nbytes(self) -> int:
        """Host memory the masks take: one bit per weight and task, bytes padded."""
        return sum(b.nbytes for m in self._masks.values() for b in m.bits.values())

    @typechecked
    def kept_per_tensor(self, task: str) -> Dict[str, int]:
        """Tensor name → number of kept weights of ``task``."""
        return dict(self._get(task).kept)

    @typechecked
    def kept(self, task: str) -> int:
        """Number of weights kept by ``task``'s mask."""
        return sum(self.kept_per_tensor(task).values())

    @typechecked
    def density(self, task: str) -> float:
        """Kept fraction of the masked weights (1 - sparsity)."""
        n = self.numel()
        return self.kept(task) / n if n else 1.0

    # ----------------------------------------------------------------- misc
    @typechecked
    def to(self, device: Union[str, torch.device]) -> "MaskSet":
        """A copy whose :meth:`mask` gives tensors on ``device`` (storage stays packed
        in host memory)."""
        out = MaskSet.__new__(MaskSet)
        out.__dict__.update(self.__dict__)
        out._masks = dict(self._masks)
        out.device = torch.device(device)
        return out

    def _where(self) -> str:
        return f"mask set {self.source}: " if self.source else ""

    @typechecked
    def check_compatible(
        self, model_or_shapes: Union[nn.Module, Mapping[str, Sequence[int]]]
    ) -> None:
        """Check that the masks fit a model (exactly) or a checkpoint (every tensor).

        Args:
            model_or_shapes: A model: the masks must cover exactly its prunable
                parameters under :attr:`scope`, with the same shapes, and
                :attr:`n_model_params` must be its parameter count. Or a mapping of
                tensor name → shape (e.g. a checkpoint's state dict): every masked
                tensor must be there with the same shape; extra names are fine.

        Raises:
            MaskError: Naming the mask set's folder (:attr:`source`) and the first
                tensors that are missing, extra or of another shape.
        """
        if isinstance(model_or_shapes, nn.Module):
            self._check_model(model_or_shapes)
            return
        shapes = {n: tuple(int(x) for x in s) for n, s in model_or_shapes.items()}
        missing = [n for n in self._shapes if n not in shapes]
        wrong = [
            f"{n}: mask {s} vs {shapes[n]}"
            for n, s in self._shapes.items()
            if n in shapes and shapes[n] != s
        ]
        if missing or wrong:
            raise MaskError(
                f"{self._where()}masks do not fit the model: "
                + (f"missing tensors {_first(missing)}; " if missing else "")
                + (f"shape mismatches [{'; '.join(wrong[:3])}]" if wrong else "")
            )

    def _check_model(self, model: nn.Module) -> None:
        if self.scope is None:
            raise MaskError(
                f"{self._where()}records no pruning scope, so its coverage of the "
                "model cannot be checked"
            )
        shapes, n_params = model_prunable_shapes(model, self.scope)
        uncovered = [n for n in shapes if n not in self._shapes]
        extra = [n for n in self._shapes if n not in shapes]
        wrong = [
            f"{n}: mask {s} vs model {shapes[n]}"
            for n, s in self._shapes.items()
            if n in shapes and shapes[n] != s
        ]
        if uncovered or extra or wrong:
            raise MaskError(
                f"{self._where()}masks do not cover exactly the model's prunable "
                "tensors: "
                + "; ".join(
                    part
                    for part in (
                        uncovered and f"no mask for {_first(uncovered)}",
                        extra and f"masks for tensors it lacks {_first(extra)}",
                        wrong and f"shape mismatches {_first(wrong)}",
                    )
                    if part
                )
            )
        if self.n_model_params is not None and self.n_model_params != n_params:
            raise MaskError(
                f"{self._where()}made for a model of {self.n_model_params} parameters; "
                f"this model has {n_params}"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskSet):
            return NotImplemented
        if (
            self._shapes != other._shapes
            or self.n_model_params != other.n_model_params
            or self.scope != other.scope
            or set(self._masks) != set(other._masks)
        ):
            return False
        return all(m == other._masks[t] for t, m in self._masks.items())
