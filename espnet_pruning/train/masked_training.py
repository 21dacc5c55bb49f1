"""The one owner of training under per-task masks inside ESPnet's Trainer.

:class:`MaskedTraining` holds everything masked training needs besides the weights: the
mask set, the active task's masks on the training device, the update restriction on the
optimizers, the tasks of the current gradient-accumulation window and what stays
frozen. The task (``USLUTask``) builds it once per run and gives it to the model and
the optimizers; from then on

* the model asks :meth:`MaskedTraining.effective_parameters` for ``m_t ⊙ W`` of a
  batch's task t and runs with them (out of place, ``docs/pruning_pitfalls.md`` §1);
* the optimizer hooks it registers restrict every step to the union of the masks of
  the tasks whose batches were accumulated into that step (§2), whatever the optimizer;
* the trainer asks :meth:`MaskedTraining.frozen_scope` which entries must stay exact
  when it repairs ESPnet's averaged checkpoints (§6).

The model never touches optimizer state and the optimizers never call back into the
model. Mask methods that change masks during training plug in here (see
``docs/architecture.md``, "Masked-training interface").
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.optim import Optimizer
from typeguard import typechecked

from espnet_pruning.errors import InputError
from espnet_pruning.pruning.apply import (
    UPDATE_POLICIES,
    CastMasks,
    UpdateRestriction,
    cast_masks,
    masked_parameters,
)
from espnet_pruning.pruning.masks import Mask, MaskSet


class MaskedTrainingError(InputError):
    """Masks, tasks or policies that do not fit the run."""


class MaskedTraining:
    """Per-task masks, update restriction and frozen scope of one training run.

    Args:
        masks: The mask set (its tensor names are parameter names of the model).
        train_tasks: The tasks this run trains (default: every task of ``masks``); the
            entries outside the union of their masks are what the run keeps frozen.
        update_outside_mask: ``allow``: the masks only select the weights each batch
            uses (gradients outside them are zero, but momentum and weight decay may
            still move those entries); ``freeze``: optimizer steps leave every entry
            outside the accumulated tasks' masks bit-identical.
        unmasked_update: With ``freeze``, whether parameters no mask covers (biases,
            LayerNorm, positional embedding) are trained (``allow``) or not
            (``freeze``).

    Raises:
        MaskedTrainingError: A train task without a mask or an unknown policy.

    Examples:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> ms = MaskSet.ones(["asr"], {"weight": (1, 2)})
        >>> ms.set_mask("asr", {"weight": torch.tensor([[True, False]])})
        >>> training = MaskedTraining(ms)
        >>> training.effective_parameters(lin, "asr")["weight"][0, 1].item() == 0
        True
    """

    @typechecked
    def __init__(
        self,
        masks: MaskSet,
        train_tasks: Optional[Sequence[str]] = None,
        update_outside_mask: str = "allow",
        unmasked_update: str = "allow",
    ):
        for key, value in (
            ("update_outside_mask", update_outside_mask),
            ("unmasked_update", unmasked_update),
        ):
            if value not in UPDATE_POLICIES:
                raise MaskedTrainingError(
                    f"{key}: {value!r} is not one of {', '.join(UPDATE_POLICIES)}"
                )
        tasks = list(train_tasks) if train_tasks else list(masks.tasks)
        missing = [t for t in tasks if t not in masks]
        if missing:
            raise MaskedTrainingError(
                f"{masks.source or 'mask set'}: no mask for train task(s) {missing}; "
                f"the mask set has {', '.join(masks.tasks)}"
            )
        self.masks = masks
        self.train_tasks = tasks
        self.update_outside_mask = update_outside_mask
        self.unmasked_update = unmasked_update
        # The active task's masks on the training device: (bool, cast to the weights'
        # dtype). One task at a time: training runs in task blocks.
        self._device_masks: Dict[str, Tuple[Mask, CastMasks]] = {}
        self._restriction: Optional[UpdateRestriction] = None
        self._window: List[str] = []  # tasks accumulated into the next optimizer step
        self._restricted_to: Optional[Tuple[str, ...]] = None

    @typechecked
    def check_model(self, model: nn.Module, task_names: Sequence[str]) -> None:
        """Check that the masks cover the model's prunable parameters and its tasks.

        Raises:
            MaskError: The masks do not fit the parameters.
            MaskedTrainingError: The mask set has tasks the model does not know.
        """
        self.masks.check_compatible(model)
        unknown = [t for t in self.masks.tasks if t not in task_names]
        if unknown:
            raise MaskedTrainingError(
                f"{self.masks.source or 'mask set'}: task(s) {unknown} unknown to the "
                f"model ({', '.join(task_names)})"
            )

    @property
    def restricts_updates(self) -> bool:
        """Whether optimizer steps are restricted (``update_outside_mask: freeze``)."""
        return self.update_outside_mask == "freeze"

    # ----------------------------------------------------------------- forward
    def task_mask(self, task: str, device: torch.device) -> Mask:
        """The task's bool masks on ``device``."""
        return self._masks_on(task, device, None)[0]

    def _masks_on(self, task: str, device: torch.device, module: Optional[nn.Module]):
        if task not in self.masks:
            raise MaskedTrainingError(
                f"no mask for task {task!r}; the mask set has "
                f"{', '.join(self.masks.tasks)}"
            )
        cached = self._device_masks.get(task)
        if cached is None or next(iter(cached[0].values())).device != device:
            bool_masks = {n: m.to(device) for n, m in self.masks.mask(task).items()}
            cached = (bool_masks, None)
        if cached[1] is None and module is not None:
            cached = (cached[0], cast_masks(module, cached[0]))
        self._device_masks = {task: cached}
        return cached

    @typechecked
    def effective_parameters(
        self, module: nn.Module, task: str
    ) -> Dict[str, torch.Tensor]:
        """``m_task ⊙ W`` for the masked parameters of ``module`` (out of place).

        In training mode the task joins the current accumulation window: the next
        optimizer step may update the union of the window's task masks.

        Args:
            module: The model the masks are for (its parameters keep their values).
            task: The batch's task.

        Returns:
            Parameter name → effective weight (gradients flow to the parameters).
        """
        device = next(module.parameters()).device
        cast = self._masks_on(task, device, module)[1]
        if module.training and task not in self._window:
            self._window.append(task)
        return masked_parameters(module, cast)

    # ----------------------------------------------------------------- optimizer steps
    @typechecked
    def bind_optimizers(self, module: nn.Module, optimizers: Sequence[Optimizer]):
        """Restrict the optimizers' steps as the policies say; call once per run.

        Every step first sets the trainable entries to the union of the masks of the
        tasks accumulated since the previous step (recomputed only when that set of
        tasks changes, i.e. at task-block boundaries), and ends the window after it.
        """
        # Registered before the restriction's own hooks, so they run first.
        for optim in optimizers:
            optim.register_step_pre_hook(lambda *_: self._before_step(module))
            optim.register_step_post_hook(lambda *_: self._window.clear())
        if self.restricts_updates:
            self._restriction = UpdateRestriction(
                dict(module.named_parameters()),
                optimizers,
                unmasked_update=self.unmasked_update,
            )

    def _before_step(self, module: nn.Module) -> None:
        if self._restriction is None or not self._window:
            return
        key = tuple(sorted(self._window))
        if key == self._restricted_to:
            return
        device = next(module.parameters()).device
        trainable = dict(self.task_mask(self._window[0], device))
        for task in self._window[1:]:
            for n, m in self.masks.mask(task).items():
                trainable[n] = trainable[n] | m.to(device)
        self._restriction.set_trainable(trainable)
        self._restricted_to = key

    # ----------------------------------------------------------------- checkpoints
    def frozen_scope(self) -> Optional[Tuple[Mask, str]]:
        """What the run keeps exact: (union of the train tasks' masks, unmasked policy).

        Entries outside the union (and, with ``unmasked_update: freeze``, every
        parameter no mask covers) keep their starting values; None when updates are
        not restricted.
        """
        if not self.restricts_updates:
            return None
        union = {n: m.clone() for n, m in self.masks.mask(self.train_tasks[0]).items()}
        for task in self.train_tasks[1:]:
            for n, m in self.masks.mask(task).items():
                union[n] |= m
        return union, self.unmasked_update
