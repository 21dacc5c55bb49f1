"""One task's masks written into the shared weights for a task block, values set aside.

Out of place (:func:`~espnet_pruning.pruning.apply.call_with_masks`) every forward builds
a masked copy ``m ⊙ W`` of each weight, which autograd keeps until the backward, and the
backward multiplies each gradient by the mask once more: about 4 bytes per weight of
memory and two passes over the weights per batch. Training runs in task blocks (many
consecutive batches of one task), so :class:`InPlaceMasks` writes ``m ⊙ W`` into the
parameters once per block instead and sets the pruned-out values aside, compactly: 4
bytes per *pruned* entry, plus the mask at 1 bit per weight. A hook on each parameter
multiplies the gradient by the mask in place as it is accumulated (before DDP's
all-reduce), so the forward and backward cost what dense ones do.

The values the model computes with and the gradients it accumulates are those of the
out-of-place path. Anything that reads the real weights (an optimizer step whose update
or state reads them, a ``state_dict``) must see them first: :meth:`unzero` puts the
set-aside values back and keeps them, :meth:`rezero` masks the weights again (their
set-aside values unchanged) and :meth:`regather` re-reads the pruned entries' values
first; :meth:`restore` ends the block. Positions of the pruned entries are computed from
the bits when needed (numpy on CPU, where it is 4x faster than ``torch.nonzero``).
``docs/pruning_pitfalls.md`` §1 says how training uses them.
"""

from functools import partial
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.pruning.apply import _checked_mask
from espnet_pruning.pruning.masks import MaskError, MaskSet

_BIT_VALUES = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack(kept: torch.Tensor) -> torch.Tensor:
    """Flat bool on CPU → packed bits (numpy's ``packbits`` order)."""
    return torch.from_numpy(np.packbits(kept.numpy()))


def _unpack(bits: torch.Tensor, n: int) -> torch.Tensor:
    """Packed bits → flat uint8 0/1 of ``n`` entries (multiplies faster than bool)."""
    if bits.device.type == "cpu":
        return torch.from_numpy(np.unpackbits(bits.numpy(), count=n))
    return (bits.unsqueeze(1) & _BIT_VALUES.to(bits.device)).ne(0).view(-1)[:n].byte()


def _pruned_positions(bits: torch.Tensor, n: int) -> torch.Tensor:
    """Flat int64 positions of the zero bits."""
    if bits.device.type == "cpu":
        kept = np.unpackbits(bits.numpy(), count=n)
        return torch.from_numpy(np.flatnonzero(kept == 0))
    return (_unpack(bits, n) == 0).nonzero().squeeze(1)


# Bits unpacked per piece on CPU: the piece stays in cache and no mask of a whole large
# tensor (the token embedding) is ever materialised.
_PIECE = 1 << 20
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def _mul_mask(flat: torch.Tensor, bits: torch.Tensor) -> None:
    """``flat *= mask`` in place (``x * 0`` as on the out-of-place path: ``±0``)."""
    if flat.device.type != "cpu" or flat.dtype not in _NUMPY_FLOATS:
        flat.mul_(_unpack(bits, flat.numel()))
        return
    # numpy multiplies float32 by uint8 in place about 3x faster than torch, which
    # first casts the mask to a float32 copy.
    values, packed = flat.numpy(), bits.numpy()
    for start in range(0, values.size, _PIECE):
        piece = values[start : start + _PIECE]
        mask = np.unpackbits(
            packed[start // 8 : (start + _PIECE) // 8], count=piece.size
        )
        np.multiply(piece, mask, out=piece)


def _mask_gradient(bits: torch.Tensor, param: torch.Tensor) -> None:
    # After accumulation, in place (no copy); runs before DDP's all-reduce hook.
    _mul_mask(param.grad.view(-1), bits)


def _mask_incoming(bits: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # Before accumulation, on a copy (hooks must not change what they are given).
    return grad * _unpack(bits, grad.numel()).view(grad.shape)


class InPlaceMasks:
    """Apply one task's masks in place to named parameters, keeping the pruned values.

    Args:
        named_parameters: Parameter name → parameter (e.g.
            ``dict(model.named_parameters())``); masked ones must be contiguous.

    Examples:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[2.0, 3.0]]))
        >>> masks = InPlaceMasks(dict(lin.named_parameters()))
        >>> masks.apply("a", {"weight": torch.tensor([[True, False]])})
        >>> lin.weight.tolist(), masks.task
        ([[2.0, 0.0]], 'a')
        >>> lin(torch.ones(1, 2)).sum().backward()
        >>> lin.weight.grad.tolist()
        [[1.0, 0.0]]
        >>> masks.restore()
        >>> lin.weight.tolist(), masks.task
        ([[2.0, 3.0]], None)
    """

    @typechecked
    def __init__(self, named_parameters: Mapping[str, nn.Parameter]):
        self._params: Dict[str, nn.Parameter] = dict(named_parameters)
        self.task: Optional[str] = None  # the task whose pruned entries are zero
        # name -> (the kept mask as packed bits, the pruned entries' values)
        self._pruned: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._hooks = []

    @property
    def set_aside_bytes(self) -> int:
        """Memory the set-aside values take (bytes). The mask bits are the mask set's
        own on CPU, a copy at 1 bit per weight on other devices."""
        return sum(v.numel() * v.element_size() for _, v in self._pruned.values())

    @typechecked
    def apply(
        self,
        task: str,
        mask: Union[MaskSet, Mapping[str, torch.Tensor]],
        other_gradients: bool = False,
    ) -> None:
        """Zero the entries ``mask`` prunes (after restoring any other task's).

        Args:
            task: The name the masks are known by (:attr:`task` from now on).
            mask: The mask set holding ``task`` (its packed bits are used as they are,
                one tensor unpacked at a time), or parameter name → bool (or 0/1)
                mask, 1 = kept.
            other_gradients: Whether the accumulated gradients hold other tasks'
                contributions, which this mask must not cut: gradients are then masked
                on a copy before they are added, not in place after.

        Raises:
            MaskError: For an unknown task or name, a wrong shape or a non-binary
                mask; nothing is changed then.
            ValueError: For a non-contiguous parameter.
        """
        if isinstance(mask, MaskSet):
            shapes, kept_counts = mask.shapes, mask.kept_per_tensor(task)
            wrong = [
                n
                for n, s in shapes.items()
                if n not in self._params or tuple(self._params[n].shape) != s
            ]
            if wrong:
                raise MaskError(
                    f"InPlaceMasks: masks that fit no parameter: {wrong[:3]}"
                )
            sources = {n: partial(mask.packed_bits, task, n) for n in shapes}
        else:
            checked = _checked_mask(self._params, mask, "InPlaceMasks")
            kept_counts = {n: int(m.sum()) for n, m in checked.items()}
            sources = {
                n: partial(_pack, m.reshape(-1).cpu()) for n, m in checked.items()
            }
        for name in sources:
            if not self._params[name].is_contiguous():
                raise ValueError(f"parameter {name} is not contiguous")
        self.restore()
        buffers = self._set_aside_buffers(kept_counts)
        with torch.no_grad():
            for name, source in sources.items():
                p = self._params[name]
                if kept_counts[name] == p.numel():
                    continue
                bits = source().to(p.device)
                flat = p.detach().view(-1)
                values = buffers[name]
                positions = _pruned_positions(bits, flat.numel())
                torch.index_select(flat, 0, positions, out=values)
                del positions
                _mul_mask(flat, bits)
                self._pruned[name] = (bits, values)
                if not p.requires_grad:  # frozen (``--freeze_param``): no gradient
                    continue
                if other_gradients:
                    hook = p.register_hook(partial(_mask_incoming, bits))
                else:
                    hook = p.register_post_accumulate_grad_hook(
                        partial(_mask_gradient, bits)
                    )
                self._hooks.append(hook)
        self.task = task

    def _set_aside_buffers(
        self, kept_counts: Mapping[str, int]
    ) -> Dict[str, torch.Tensor]:
        """Name → an empty tensor for its pruned entries' values: views of one buffer
        per device and dtype, so that the values take one large allocation (outside
        the allocator's heap, where many mid-sized ones kept freed memory resident)."""
        sizes: Dict[Tuple[torch.device, torch.dtype], int] = {}
        for name, kept in kept_counts.items():
            p = self._params[name]
            key = (p.device, p.dtype)
            sizes[key] = sizes.get(key, 0) + p.numel() - kept
        buffers = {k: torch.empty(n, device=k[0], dtype=k[1]) for k, n in sizes.items()}
        offsets = dict.fromkeys(sizes, 0)
        views = {}
        for name, kept in kept_counts.items():
            p = self._params[name]
            key, n = (p.device, p.dtype), p.numel() - kept
            views[name] = buffers[key][offsets[key] : offsets[key] + n]
            offsets[key] += n
        return views

    def unzero(self) -> None:
        """Write the set-aside values back (the real weights), keeping the block."""
        with torch.no_grad():
            for name, (bits, values) in self._pruned.items():
                flat = self._params[name].detach().view(-1)
                flat.index_copy_(0, _pruned_positions(bits, flat.numel()), values)

    def rezero(self) -> None:
        """Mask the weights again; the set-aside values stay what they were."""
        with torch.no_grad():
            for name, (bits, _) in self._pruned.items():
                _mul_mask(self._params[name].detach().view(-1), bits)

    def regather(self) -> None:
        """Re-read the pruned entries' values (they changed), then mask the weights."""
        with torch.no_grad():
            for name, (bits, values) in self._pruned.items():
                flat = self._params[name].detach().view(-1)
                torch.index_select(
                    flat, 0, _pruned_positions(bits, flat.numel()), out=values
                )
                _mul_mask(flat, bits)

    def restore(self) -> None:
        """Write the set-aside values back and end the block (no task applied)."""
        self.unzero()
        self.discard()

    def discard(self) -> None:
        """Forget the set-aside values without writing them."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._pruned = {}
        self.task = None
