"""Serving every task's subnetwork from one loaded model: switching costs one pass.

For decoding, a task's weights ``m_t ⊙ θ`` are best written into the parameters once
(then the model runs at dense speed, no per-step masking). :class:`TaskSwitcher` keeps a
copy of the shared weights θ of the masked tensors, so that switching to another task
rewrites those parameters from θ in one pass over the masked weights (no reload, nothing
recomputed), and :meth:`TaskSwitcher.dense` gives θ back.
"""

from typing import Optional

import torch
from torch import nn
from typeguard import typechecked

from espnet_pruning.pruning.masks import MaskSet


class TaskSwitcher:
    """Writes one task's ``m_t ⊙ θ`` into a model's parameters at a time.

    Args:
        module: The model; its current parameter values are θ.
        masks: The mask set (tensor names are parameter names of ``module``).

    Raises:
        MaskError: The masks do not fit ``module``.
    """

    @typechecked
    def __init__(self, module: nn.Module, masks: MaskSet):
        masks.check_compatible(module)
        params = dict(module.named_parameters())
        self.masks = masks
        self._params = {n: params[n] for n in masks.names}
        self._shared = {n: p.detach().clone() for n, p in self._params.items()}
        self.task: Optional[str] = None

    @torch.no_grad()
    def switch(self, task: Optional[str]) -> None:
        """Make the parameters ``m_task ⊙ θ`` (θ for None or a task without a mask).

        One pass over the masked weights; a no-op if ``task`` is already active.
        """
        if task == self.task:
            return
        if task is not None and task not in self.masks:
            task = None
        if task is None:
            for name, param in self._params.items():
                param.copy_(self._shared[name])
        else:
            for name, mask in self.masks.mask(task).items():
                param = self._params[name]
                torch.mul(self._shared[name], mask.to(param.device), out=param)
        self.task = task

    def dense(self) -> None:
        """Give the parameters back their shared values θ."""
        self.switch(None)

    @property
    def active(self) -> str:
        """Name of the active task ('dense' for θ)."""
        return self.task or "dense"
