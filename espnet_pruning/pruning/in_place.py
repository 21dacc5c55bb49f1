"""One task's masks written into the shared weights for a task block, values kept aside.

Out of place (:func:`~espnet_pruning.pruning.apply.call_with_masks`) every forward builds
a masked copy ``m ⊙ W`` of each weight, which autograd keeps until the backward, and the
backward multiplies each gradient by the mask once more: about 4 bytes per weight of
memory and two passes over the weights per batch. Training runs in task blocks (many
consecutive batches of one task), so :class:`InPlaceMasks` writes ``m ⊙ W`` into the
parameters once per block instead and keeps the pruned-out values aside, compactly:
their values and their int32 positions, 8 bytes per pruned entry. A hook on each
parameter sets the gradient of the pruned entries to zero in place as it is accumulated
(before DDP's all-reduce), so the forward and backward then cost what dense ones do.

The values the model computes with and the gradients it accumulates are those of the
out-of-place path (a pruned entry is ``+0`` where ``W * 0`` may give ``-0``, and its
gradient is ``0`` even where ``inf * 0`` would give NaN). Anything that reads the real
weights (an optimizer step, a ``state_dict``) must see them first: :meth:`unzero` puts the
kept values back and keeps them, :meth:`rezero` zeroes the pruned entries again and
:meth:`regather` re-reads their (changed) values first; :meth:`restore` ends the block.
``docs/architecture.md`` ("Masked-training interface") says how training uses them.
"""

from functools import partial
from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.pruning.apply import _checked_mask

# Positions are widened to int64 (what index ops need on CPU) this many at a time, so
# the transient copy stays small next to a large tensor (the token embedding).
_CHUNK = 1 << 22


def _chunks(positions: torch.Tensor):
    for start in range(0, positions.numel(), _CHUNK):
        yield slice(start, start + _CHUNK), positions[start : start + _CHUNK].long()


def _fill_zero(flat: torch.Tensor, positions: torch.Tensor) -> None:
    for _, index in _chunks(positions):
        flat.index_fill_(0, index, 0)


def _zero_pruned_gradient(positions: torch.Tensor, param: torch.Tensor) -> None:
    # After accumulation, in place (no copy of the gradient); this runs inside the
    # accumulation, before DDP's all-reduce hook.
    _fill_zero(param.grad.view(-1), positions)


def _zero_pruned_incoming(positions: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    # Before accumulation, on a copy (hooks must not change what they are given).
    flat = grad.reshape(-1).clone()
    _fill_zero(flat, positions)
    return flat.view(grad.shape)


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
        # name -> (positions of the pruned entries in the flat tensor, their values)
        self._pruned: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._hooks = []

    @property
    def kept_bytes(self) -> int:
        """Memory the kept values and positions take (bytes)."""
        return sum(
            i.numel() * i.element_size() + v.numel() * v.element_size()
            for i, v in self._pruned.values()
        )

    @typechecked
    def apply(
        self, task: str, mask: Mapping[str, torch.Tensor], other_gradients: bool = False
    ) -> None:
        """Zero the entries ``mask`` prunes (after restoring any other task's).

        Args:
            task: The name the masks are known by (:attr:`task` from now on).
            mask: Parameter name → bool (or 0/1) mask, 1 = kept.
            other_gradients: Whether the accumulated gradients hold other tasks'
                contributions, which this mask must not cut: gradients are then masked
                on a copy before they are added, not in place after.

        Raises:
            MaskError: For an unknown name, a wrong shape or a non-binary mask;
                nothing is changed then.
            ValueError: For a non-contiguous parameter.
        """
        checked = _checked_mask(self._params, mask, "InPlaceMasks")
        for name in checked:
            if not self._params[name].is_contiguous():
                raise ValueError(f"parameter {name} is not contiguous")
        self.restore()
        with torch.no_grad():
            for name, m in checked.items():
                p = self._params[name]
                positions = (~m.to(p.device)).reshape(-1).nonzero().squeeze(1)
                if positions.numel() == 0:
                    continue
                flat = p.detach().view(-1)
                values = flat.index_select(0, positions)
                flat.index_fill_(0, positions, 0)
                if p.device.type != "cpu" or p.numel() < 2**31:
                    # Half the memory; converting back per use costs less than a pass
                    # over the weights.
                    positions = positions.to(torch.int32)
                self._pruned[name] = (positions, values)
                if other_gradients:
                    hook = p.register_hook(partial(_zero_pruned_incoming, positions))
                else:
                    hook = p.register_post_accumulate_grad_hook(
                        partial(_zero_pruned_gradient, positions)
                    )
                self._hooks.append(hook)
        self.task = task

    def unzero(self) -> None:
        """Write the kept values back (the real weights), keeping the block's state."""
        with torch.no_grad():
            for name, (positions, values) in self._pruned.items():
                flat = self._params[name].detach().view(-1)
                for part, index in _chunks(positions):
                    flat.index_copy_(0, index, values[part])

    def rezero(self) -> None:
        """Zero the pruned entries again; the kept values stay what they were."""
        with torch.no_grad():
            for name, (positions, _) in self._pruned.items():
                _fill_zero(self._params[name].detach().view(-1), positions)

    def regather(self) -> None:
        """Re-read the pruned entries' values (they changed), then zero them."""
        with torch.no_grad():
            for name, (positions, values) in self._pruned.items():
                flat = self._params[name].detach().view(-1)
                for part, index in _chunks(positions):
                    torch.index_select(flat, 0, index, out=values[part])
                    flat.index_fill_(0, index, 0)

    def restore(self) -> None:
        """Write the kept values back and end the block (no task applied)."""
        self.unzero()
        self.discard()

    def discard(self) -> None:
        """Forget the kept values without writing them (the weights were replaced)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._pruned = {}
        self.task = None
