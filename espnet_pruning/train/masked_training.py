"""The one owner of training under per-task masks inside ESPnet's Trainer.

:class:`MaskedTraining` holds everything masked training needs besides the weights: the
mask set, the active task's masks on the training device, the update restriction on the
optimizers, the tasks of the current gradient-accumulation window and what stays
frozen. The task (``USLUTask``) builds it once per run and gives it to the model and
the optimizers; from then on

* the model calls :meth:`MaskedTraining.use_masks` with a batch's task t before its
  forward: the weights then hold ``m_t ⊙ W`` in place, the pruned-out values kept aside
  until the task changes (:mod:`espnet_pruning.pruning.in_place`; never zeroed for good,
  ``docs/pruning_pitfalls.md`` §1); :meth:`MaskedTraining.effective_parameters` gives
  the same weights out of place;
* the optimizer hooks it registers restrict every step to the union of the masks of
  the tasks whose batches were accumulated into that step (§2), whatever the
  optimizer: the step sees the real weights, except where it may only move frozen
  entries, which are masked again after it, and its state never reads weights (AdamW;
  Adam or SGD without weight decay);
* the trainer asks :meth:`MaskedTraining.frozen_scope` which entries must stay exact
  when it repairs ESPnet's averaged checkpoints (§6).

The model never touches optimizer state and the optimizers never call back into the
model. Mask methods that change masks during training plug in here as a
:class:`MaskSchedule` (see ``docs/architecture.md``, "Masked-training interface"):
after every optimizer step the schedule may give new masks, which
:meth:`MaskedTraining.replace_masks` installs between two steps.
"""

from typing import Dict, List, Mapping, Optional, Protocol, Sequence, Set, Tuple

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
from espnet_pruning.pruning.in_place import InPlaceMasks
from espnet_pruning.pruning.masks import Mask, MaskSet


def _state_ignores_weights(optimizer: Optimizer) -> bool:
    """Whether ``optimizer``'s state updates never read weight values: AdamW
    (decoupled weight decay), or Adam and SGD without weight decay."""
    if type(optimizer) is torch.optim.AdamW:
        return True
    return type(optimizer) in (torch.optim.Adam, torch.optim.SGD) and all(
        g.get("weight_decay", 0) == 0 and not g.get("decoupled_weight_decay", False)
        for g in optimizer.param_groups
    )


class MaskedTrainingError(InputError):
    """Masks, tasks or policies that do not fit the run."""


class MaskSchedule(Protocol):
    """Masks that change during a run (e.g. Dynamic ASR Pathways), stepped by
    :class:`MaskedTraining` after every optimizer step of its first optimizer."""

    last_step: int  # optimizer steps done (restored on resume)

    def due(self, step: int) -> bool:
        """Whether :meth:`after_step` at ``step`` may change a mask (it then gets the
        real weights)."""

    def after_step(
        self, step: int, task: str, weights: Mapping[str, torch.Tensor]
    ) -> Optional[Dict[str, Mask]]:
        """Advance to ``step`` (a batch of ``task``); the new training masks of the
        tasks whose masks changed, or None."""


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
        # The last task's masks cast to the weights' dtype and device, for the
        # out-of-place path only.
        self._cast_masks: Dict[str, CastMasks] = {}
        self._in_place: Optional[InPlaceMasks] = None
        self._module: Optional[nn.Module] = None
        # With freeze: the unmasked parameters' restriction, and the masked ones' for
        # steps that accumulated batches of several tasks (the union of their masks).
        self._unmasked_restriction: Optional[UpdateRestriction] = None
        self._union_restriction: Optional[UpdateRestriction] = None
        self._window: List[str] = []  # tasks accumulated into the next optimizer step
        # The optimizers that stepped since the window's batches: the window ends at
        # the next batch or at a second step of one of them, so that every optimizer
        # stepping after the same batches sees it, and no step sees a stale one.
        self._stepped: Set[int] = set()
        self._same: Dict[Tuple[str, str], bool] = {}
        self._restricted_to: Optional[Tuple[str, ...]] = None
        # The task whose mask every step so far trained ("" before the first step;
        # None: several masks, or a loaded optimizer state). While it is the applied
        # task, the optimizers' moments are exactly zero at its pruned entries.
        self._trained_mask: Optional[str] = ""
        self._weights_unzeroed = False  # by the current step's pre-hook
        self._schedule: Optional[MaskSchedule] = None
        self._scheduled_optimizer: Optional[int] = None
        # With freeze and a schedule: the union of the start masks, which holds every
        # mask the schedule gives (see set_schedule).
        self._past_trainable: Optional[Mask] = None

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
    def _check_task(self, task: str) -> None:
        if task not in self.masks:
            raise MaskedTrainingError(
                f"no mask for task {task!r}; the mask set has "
                f"{', '.join(self.masks.tasks)}"
            )

    def _open_window(self) -> List[str]:
        if self._stepped:
            self._window.clear()
            self._stepped.clear()
        return self._window

    def _join_window(self, module: nn.Module, task: str) -> None:
        window = self._open_window()
        if module.training and task not in window:
            window.append(task)

    @typechecked
    def use_masks(self, module: nn.Module, task: str) -> None:
        """Make ``module``'s weights ``m_task ⊙ W`` in place for a batch of ``task``.

        The pruned-out values are kept aside while batches of the task follow (a task
        block) and written back when another task's batch comes, before every
        optimizer step (which sees the real weights) and before ``state_dict``. In
        training mode the task joins the current accumulation window: the next
        optimizer step may update the union of the window's task masks.

        Args:
            module: The model the masks are for; always the same one.
            task: The batch's task.

        Raises:
            MaskedTrainingError: No mask for ``task``, or another module.
        """
        in_place = self._bind(module)
        self._check_task(task)
        if in_place.task is None or not self._same_mask(in_place.task, task):
            # Gradients of the window's earlier tasks (a step accumulating several)
            # must keep the entries this mask prunes.
            others = module.training and any(
                not self._same_mask(t, task) for t in self._open_window()
            )
            in_place.apply(task, self.masks, other_gradients=others)
        self._join_window(module, task)

    def _same_mask(self, a: str, b: str) -> bool:
        # Tasks sharing one mask (a task-agnostic mask set) need no switch.
        key = (a, b) if a <= b else (b, a)
        if key not in self._same:
            self._same[key] = self.masks.same_mask(a, b)
        return self._same[key]

    def _bind(self, module: nn.Module) -> InPlaceMasks:
        if self._module is None:
            params = dict(module.named_parameters())
            missing = [n for n in self.masks.names if n not in params]
            if missing:
                raise MaskedTrainingError(
                    f"{self.masks.source or 'mask set'}: masks for parameters the "
                    f"model does not have: {missing[:3]}"
                )
            self._module = module
            self._in_place = InPlaceMasks({n: params[n] for n in self.masks.names})
            # Whatever reads or replaces the weights sees the real ones.
            module.register_state_dict_pre_hook(lambda *_: self.restore())
            module._register_load_state_dict_pre_hook(lambda *_: self.restore())
        elif module is not self._module:
            raise MaskedTrainingError(
                "masked training is bound to another module; build one per model"
            )
        return self._in_place

    @property
    def set_aside_bytes(self) -> int:
        """Memory the values :meth:`use_masks` set aside take now (bytes)."""
        return 0 if self._in_place is None else self._in_place.set_aside_bytes

    def restore(self) -> None:
        """Write the values :meth:`use_masks` set aside back into the weights."""
        if self._in_place is not None:
            self._in_place.restore()

    @typechecked
    def effective_parameters(
        self, module: nn.Module, task: str
    ) -> Dict[str, torch.Tensor]:
        """``m_task ⊙ W`` for the masked parameters of ``module`` (out of place).

        The model's own path is :meth:`use_masks`; this one builds masked copies
        (ending any in-place block first). In training mode the task joins the
        current accumulation window.

        Args:
            module: The model the masks are for (its parameters keep their values).
            task: The batch's task.

        Returns:
            Parameter name → effective weight (gradients flow to the parameters).
        """
        self._check_task(task)
        self.restore()
        device = next(module.parameters()).device
        cast = self._cast_masks.get(task)
        if cast is None or next(iter(cast.values())).device != device:
            cast = cast_masks(module, self.masks.to(device).mask(task))
            self._cast_masks = {task: cast}  # one task at a time: task blocks
        self._join_window(module, task)
        return masked_parameters(module, cast)

    # ----------------------------------------------------------------- optimizer steps
    @typechecked
    def bind_optimizers(self, module: nn.Module, optimizers: Sequence[Optimizer]):
        """Hook the optimizers' steps as the policies say; call once per run.

        Before each step the weights are made real (values set aside put back); with
        ``freeze`` the step is then restricted to the union of the masks of the tasks
        accumulated since the previous step. After it, the active task's pruned entries
        are zeroed again (their set-aside values re-read unless they were frozen) and
        the window ends.
        """
        params = dict(module.named_parameters())
        if any(optim.state for optim in optimizers):
            self._trained_mask = None  # moments of unknown steps
        # Registered before the restrictions' hooks: their pre-hooks snapshot the
        # real weights.
        for optim in optimizers:
            optim.register_step_pre_hook(lambda opt, *_: self._before_step(module, opt))
            optim.register_load_state_dict_post_hook(self._forget_trained_mask)
        if self.restricts_updates:
            masked = {n: p for n, p in params.items() if n in self.masks.shapes}
            self._union_restriction = UpdateRestriction(masked, optimizers)
            if self.unmasked_update == "freeze":
                self._unmasked_restriction = UpdateRestriction(
                    {n: p for n, p in params.items() if n not in masked},
                    optimizers,
                    unmasked_update="freeze",
                )
                self._unmasked_restriction.set_trainable({})
        # After the restrictions' post-hooks: frozen entries are back when re-read.
        for optim in optimizers:
            optim.register_step_post_hook(lambda *_: self._after_step())
        if optimizers:
            self._scheduled_optimizer = id(optimizers[0])
            optimizers[0].register_step_post_hook(
                lambda opt, *_: self._advance_schedule(module, opt)
            )

    def _single_task_window(self) -> bool:
        """Whether every task of the window has the mask applied in place."""
        return (
            self._in_place is not None
            and self._in_place.task is not None
            and bool(self._window)
            and all(self._same_mask(t, self._in_place.task) for t in self._window)
        )

    def _before_step(self, module: nn.Module, optimizer: Optimizer) -> None:
        if id(optimizer) in self._stepped:  # no batch since its last step
            self._open_window()
        self._stepped.add(id(optimizer))
        if self._in_place is not None and not (
            self.restricts_updates
            and self._single_task_window()
            and _state_ignores_weights(optimizer)
        ):
            # The step must see the real values. Not needed when every entry it may
            # move from zero is frozen and zeroed again after it, and the optimizer's
            # state does not depend on weight values.
            self._in_place.unzero()
            self._weights_unzeroed = True
        if self._union_restriction is None or not self._window:
            return
        # One task: its pruned entries are the frozen ones, and the values set aside
        # put them back after the step. Several: restrict to the union of the masks.
        key = () if self._single_task_window() else tuple(sorted(self._window))
        if key == self._restricted_to:
            return
        if not key:
            self._union_restriction.set_trainable(None)
        else:
            trainable = self.masks.mask(key[0])
            for task in key[1:]:
                for n, m in self.masks.mask(task).items():
                    trainable[n] = trainable[n] | m
            self._union_restriction.set_trainable(trainable)
        self._restricted_to = key

    def _forget_trained_mask(self, *_) -> None:
        self._trained_mask = None

    def _after_step(self) -> None:
        single = self._single_task_window()
        task = self._in_place.task if self._in_place is not None else None
        if task is not None:
            if not (self.restricts_updates and single):
                self._in_place.regather()
            elif self._weights_unzeroed or not self._moments_zero_outside(task):
                self._in_place.rezero()
            # Else the step left the pruned entries at ±0: a gradient that was ±0
            # there in every step moves no such entry (AdamW, Adam, SGD), so zeroing
            # them again would change nothing.
        self._weights_unzeroed = False
        if single and self._moments_zero_outside(task):
            self._trained_mask = task
        else:
            self._trained_mask = None

    # ----------------------------------------------------------------- mask schedules
    @typechecked
    def set_schedule(self, schedule: MaskSchedule) -> None:
        """Step ``schedule`` after every step of the first bound optimizer and install
        the masks it gives (:meth:`replace_masks`).

        With ``freeze`` every task of the mask set must train, and the union of the
        masks it replaces must stay within the union of the start masks (true of
        Dynamic ASR Pathways: with the residual, the union of all training masks is
        every entry; without it, masks only shrink); the frozen scope is then that
        of the start masks.

        Raises:
            MaskedTrainingError: With ``freeze``, train tasks that are not all tasks.
        """
        if self.restricts_updates:
            if set(self.train_tasks) != set(self.masks.tasks):
                raise MaskedTrainingError(
                    "a mask schedule with update_outside_mask: freeze trains every "
                    f"task of the mask set ({', '.join(self.masks.tasks)}), not only "
                    f"{', '.join(self.train_tasks)}"
                )
            self._past_trainable = self.frozen_scope()[0]
        self._schedule = schedule

    @property
    def schedule(self) -> Optional[MaskSchedule]:
        """The run's mask schedule, or None (fixed masks)."""
        return self._schedule

    def _advance_schedule(self, module: nn.Module, optimizer: Optimizer) -> None:
        if self._schedule is None or id(optimizer) != self._scheduled_optimizer:
            return
        if not self._window:
            raise MaskedTrainingError(
                "an optimizer step without a batch: the mask schedule needs its task"
            )
        step = self._schedule.last_step + 1
        weights: Dict[str, torch.Tensor] = {}
        if self._schedule.due(step):
            self.restore()  # the schedule ranks the real weights
            params = dict(module.named_parameters())
            weights = {n: params[n].detach() for n in self.masks.names}
        # One task per step (the task iterator); with several, the last one's.
        new = self._schedule.after_step(step, self._window[-1], weights)
        if new:
            self.replace_masks(new)

    @typechecked
    def replace_masks(self, masks: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Install new masks for some tasks between two optimizer steps.

        The weights get their set-aside values back first; the next batch applies its
        task's new mask. Every cached view of the old masks is dropped, and the
        optimizers' moments are no longer known to be zero at pruned entries.

        Args:
            masks: Task → (parameter name → mask), for tasks of the mask set.

        Raises:
            MaskedTrainingError: A task not in the mask set.
            MaskError: An invalid mask (nothing is replaced then).
        """
        unknown = sorted(set(masks) - set(self.masks.tasks))
        if unknown:
            raise MaskedTrainingError(
                f"replace_masks: task(s) {unknown} not in the mask set"
            )
        self.restore()
        validated = MaskSet(self.masks.shapes, masks)  # all or nothing
        for task in validated.tasks:
            self.masks.set_mask(task, validated.mask(task))
        self._same.clear()
        self._cast_masks = {}
        self._restricted_to = None
        self._trained_mask = None

    def _moments_zero_outside(self, task: str) -> bool:
        return self._trained_mask == "" or (
            self._trained_mask is not None and self._same_mask(self._trained_mask, task)
        )

    # ----------------------------------------------------------------- checkpoints
    def frozen_scope(self) -> Optional[Tuple[Mask, str]]:
        """What the run keeps exact: (union of the train tasks' masks, unmasked policy).

        Entries outside the union (and, with ``unmasked_update: freeze``, every
        parameter no mask covers) keep their starting values; with a schedule, the
        union is that of the start masks. None when updates are not restricted.
        """
        if not self.restricts_updates:
            return None
        union = {n: m.clone() for n, m in self.masks.mask(self.train_tasks[0]).items()}
        for task in self.train_tasks[1:]:
            for n, m in self.masks.mask(task).items():
                union[n] |= m
        if self._past_trainable is not None:  # the start masks of a schedule
            for n, m in self._past_trainable.items():
                union[n] |= m
        return union, self.unmasked_update
